//! Listening addresses from etcd's URL flags.

use std::net::SocketAddr;

use anyhow::{bail, Context, Result};

/// `http://127.0.0.1:2379` -> `127.0.0.1:2379`.
pub fn socket_addr(url: &str) -> Result<SocketAddr> {
    let hostport = url.strip_prefix("http://").unwrap_or(url).trim_end_matches('/');
    if url.starts_with("https://") || url.starts_with("unix") {
        bail!("{url}: only http:// URLs are supported");
    }
    let hostport = hostport.replace("localhost", "127.0.0.1");
    hostport.parse().with_context(|| format!("{url}: expected http://IP:PORT"))
}

pub fn bind_all(urls: &[String]) -> Result<Vec<std::net::TcpListener>> {
    urls.iter()
        .map(|url| {
            let l = std::net::TcpListener::bind(socket_addr(url)?).with_context(|| format!("binding {url}"))?;
            l.set_nonblocking(true)?;
            Ok(l)
        })
        .collect()
}
