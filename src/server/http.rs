//! etcd's plain HTTP paths: `GET /metrics` (Prometheus text), `/health`,
//! `/livez`, `/readyz` ([`super::probes`]) and `/version`. Served on the client port beside gRPC (see
//! [`super::serve`]) and by a minimal HTTP/1.1 listener of their own for
//! `--listen-metrics-urls`.

use std::future::Future;
use std::sync::Arc;

use axum::http::{header, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::metrics::METRICS;
use crate::raftstore::Store;
use crate::router::Router;

/// The paths [`answer_path`] serves.
pub const PATHS: [&str; 5] = ["/metrics", "/health", "/livez", "/readyz", "/version"];

/// A response: status, content type, body (an axum response as it is).
pub type Answer = (StatusCode, [(header::HeaderName, &'static str); 1], String);

fn not_found() -> Answer {
    (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain")], "404 page not found\n".to_string())
}

/// The answer to `GET path?query`.
pub async fn answer_path(path: &str, query: &str, router: &Router) -> Answer {
    let store = router.store();
    let json =
        |status, body: serde_json::Value| (status, [(header::CONTENT_TYPE, "application/json")], body.to_string());
    match path {
        "/livez" | "/readyz" => {
            let (status, body) = super::probes::answer(&path[1..], query, router).await;
            (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body)
        }
        "/metrics" => (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], render_metrics(store)),
        "/health" if store.healthy() => json(StatusCode::OK, json!({"health": "true"})),
        "/health" => {
            json(StatusCode::SERVICE_UNAVAILABLE, json!({"health": "false", "reason": "a region has no leader"}))
        }
        "/version" => json(
            StatusCode::OK,
            json!({"etcdserver": super::maintenance::ETCD_VERSION, "etcdcluster": ETCD_CLUSTER_VERSION}),
        ),
        _ => not_found(),
    }
}

/// The cluster version /version reports (etcd reports major.minor.0).
const ETCD_CLUSTER_VERSION: &str = "3.5.0";

pub fn render_metrics(store: &Store) -> String {
    let mut scrape = crate::metrics::Scrape::new();
    METRICS.scrape(&mut scrape);
    store.scrape(&mut scrape);
    scrape.render()
}

pub async fn serve(router: Arc<Router>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => {
                let Ok((conn, _)) = accepted else { continue };
                let router = router.clone();
                tokio::spawn(async move {
                    let _ = answer(conn, &router).await;
                });
            }
        }
    }
}

async fn answer(mut conn: TcpStream, router: &Router) -> std::io::Result<()> {
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
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let (status, [(_, content_type)], body) = match method {
        "GET" => answer_path(path, query, router).await,
        _ => not_found(),
    };
    let response = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    conn.write_all(response.as_bytes()).await?;
    conn.shutdown().await
}
