//! A minimal HTTP/1.1 endpoint for `--listen-metrics-urls`: `GET /metrics`
//! (Prometheus text) and `GET /health`.

use std::future::Future;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::metrics::METRICS;
use crate::raftstore::Store;

pub fn render_metrics(store: &Store) -> String {
    let mut out = String::new();
    METRICS.render(&mut out);
    store.render_metrics(&mut out);
    out
}

pub async fn serve(store: Arc<Store>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => {
                let Ok((conn, _)) = accepted else { continue };
                let store = store.clone();
                tokio::spawn(async move {
                    let _ = answer(conn, &store).await;
                });
            }
        }
    }
}

async fn answer(mut conn: TcpStream, store: &Store) -> std::io::Result<()> {
    let mut buf = vec![0u8; 8192];
    let mut len = 0;
    // Read the request head (bounded); the body, if any, is ignored.
    while len < buf.len() {
        let n = conn.read(&mut buf[len..]).await?;
        if n == 0 {
            break;
        }
        len += n;
        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path.split('?').next().unwrap_or("")) {
        ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4", render_metrics(store)),
        ("GET", "/health") => {
            if store.all_leading() {
                ("200 OK", "application/json", "{\"health\":\"true\"}".to_string())
            } else {
                (
                    "503 Service Unavailable",
                    "application/json",
                    "{\"health\":\"false\",\"reason\":\"a region has no leader\"}".to_string(),
                )
            }
        }
        _ => ("404 Not Found", "text/plain", "404 page not found\n".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(response.as_bytes()).await?;
    conn.shutdown().await
}
