//! Counts every etcd gRPC call this member receives, started and handled
//! by status code (`grpc_server_started_total`, `grpc_server_handled_total`
//! in [`crate::metrics::etcd`]): an axum middleware in front of the
//! services. A call's code is its `grpc-status`: in the answer's headers
//! (a trailers-only error) or its trailers; an answer dropped before its
//! trailers (the client went away) counts as Canceled.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::Frame;

use crate::metrics::etcd::ETCD;

/// The services counted (not the peer transport nor health checks).
const COUNTED: &[&str] = &["/etcdserverpb.", "/v3lockpb.", "/v3electionpb."];

const CANCELED: i32 = 1;

pub async fn count(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if !COUNTED.iter().any(|p| path.starts_with(p)) {
        return next.run(req).await;
    }
    ETCD.grpc_started(&path);
    let started = Instant::now();
    let resp = next.run(req).await;
    if let Some(code) = status_of(resp.headers()) {
        ETCD.grpc_handled(&path, code, started.elapsed());
        return resp;
    }
    resp.map(|inner| Body::new(Counted { inner, path: Some(path), started }))
}

fn status_of(headers: &axum::http::HeaderMap) -> Option<i32> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// An answer's body, passed on as it is; counts the call when its
/// trailers pass (or it is dropped without them).
struct Counted {
    inner: Body,
    /// The call's path until it is counted.
    path: Option<String>,
    started: Instant,
}

impl Counted {
    fn handled(&mut self, code: i32) {
        if let Some(path) = self.path.take() {
            ETCD.grpc_handled(&path, code, self.started.elapsed());
        }
    }
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(status_of) {
                    this.handled(code);
                }
            }
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => this.handled(CANCELED),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.handled(CANCELED);
    }
}
