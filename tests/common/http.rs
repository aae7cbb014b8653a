//! Reading a member's `/metrics` (served on its client port).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The body of `endpoint`'s `/metrics` (Prometheus text).
pub fn scrape(endpoint: &str) -> Option<String> {
    let addr = endpoint.trim_start_matches("http://");
    let mut conn = TcpStream::connect(addr).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    conn.write_all(req.as_bytes()).ok()?;
    let mut text = String::new();
    conn.read_to_string(&mut text).ok()?;
    Some(text.split_once("\r\n\r\n")?.1.to_string())
}

/// The value of counter or gauge `name` in `endpoint`'s `/metrics`.
pub fn metric(endpoint: &str, name: &str) -> Option<u64> {
    let text = scrape(endpoint)?;
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok()).map(|v| v as u64)
}
