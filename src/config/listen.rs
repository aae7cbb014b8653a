//! Listening addresses from etcd's URL flags: `http://` and `https://`
//! URLs, and both schemes on one host:port served by one listener (as
//! etcd merges them).

use std::net::SocketAddr;

use anyhow::{bail, Context, Result};

/// `http://127.0.0.1:2379` (or `https://`) -> `127.0.0.1:2379`.
pub fn socket_addr(url: &str) -> Result<SocketAddr> {
    let (_, hostport) = split(url)?;
    let hostport = hostport.replace("localhost", "127.0.0.1");
    hostport.parse().with_context(|| format!("{url}: expected http://IP:PORT or https://IP:PORT"))
}

/// A URL's scheme (`http` or `https`) and host:port.
fn split(url: &str) -> Result<(&str, &str)> {
    let Some((scheme, rest)) = url.split_once("://") else { bail!("{url}: expected http://IP:PORT") };
    if scheme != "http" && scheme != "https" {
        bail!("{url}: only http:// and https:// URLs are supported");
    }
    Ok((scheme, rest.trim_end_matches('/')))
}

/// Whether a URL asks for TLS.
pub fn is_https(url: &str) -> bool {
    url.starts_with("https://")
}

/// One listener and the schemes its URLs named.
pub struct Listen {
    pub listener: std::net::TcpListener,
    pub plain: bool,
    pub tls: bool,
}

impl Listen {
    /// The URLs it serves, as bound (a port 0 resolved): https first.
    pub fn urls(&self) -> Result<Vec<String>> {
        let addr = self.listener.local_addr()?;
        let schemes = [(self.tls, "https"), (self.plain, "http")];
        Ok(schemes.iter().filter(|(on, _)| *on).map(|(_, s)| format!("{s}://{addr}")).collect())
    }
}

/// Binds every host:port of `urls` once, noting which schemes name it.
pub fn bind_urls(urls: &[String]) -> Result<Vec<Listen>> {
    let mut hosts: Vec<(&str, bool, bool, &String)> = Vec::new();
    for url in urls {
        let (scheme, host) = split(url)?;
        let tls = scheme == "https";
        match hosts.iter_mut().find(|(h, ..)| *h == host) {
            Some(entry) => {
                entry.1 |= !tls;
                entry.2 |= tls;
            }
            None => hosts.push((host, !tls, tls, url)),
        }
    }
    hosts
        .into_iter()
        .map(|(_, plain, tls, url)| {
            let listener = std::net::TcpListener::bind(socket_addr(url)?).with_context(|| format!("binding {url}"))?;
            listener.set_nonblocking(true)?;
            Ok(Listen { listener, plain, tls })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_schemes_on_one_port_share_a_listener() {
        let urls: Vec<String> = ["http://127.0.0.1:0", "https://127.0.0.1:0", "https://127.0.0.1:0/"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let bound = bind_urls(&urls).unwrap();
        assert_eq!(bound.len(), 1, "127.0.0.1:0 and 127.0.0.1:0/ are one host");
        assert!(bound[0].plain && bound[0].tls);
        let urls = bound[0].urls().unwrap();
        assert!(urls[0].starts_with("https://") && urls[1].starts_with("http://"), "{urls:?}");
        assert!(socket_addr("unix://x").is_err());
    }
}
