//! Services declared by the etcd contract that tessera does not serve yet:
//! every method answers gRPC UNIMPLEMENTED naming itself (never a panic or
//! a hang), streaming or not.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::http;
use tonic::server::NamedService;

/// A gRPC service name, as a type.
pub trait ServiceName: Send + Sync + 'static {
    const NAME: &'static str;
}

/// Answers every method of service `S` with UNIMPLEMENTED.
pub struct Unimplemented<S>(PhantomData<S>);

impl<S> Unimplemented<S> {
    pub fn new() -> Self {
        Unimplemented(PhantomData)
    }
}

impl<S> Default for Unimplemented<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Clone for Unimplemented<S> {
    fn clone(&self) -> Self {
        Unimplemented(PhantomData)
    }
}

impl<S: ServiceName> NamedService for Unimplemented<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower_service::Service<http::Request<B>> for Unimplemented<S> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let status = super::not_yet(req.uri().path().trim_start_matches('/'));
        std::future::ready(Ok(status.into_http()))
    }
}

macro_rules! service_names {
    ($($ty:ident => $name:literal),* $(,)?) => {
        $(
            pub struct $ty;
            impl ServiceName for $ty {
                const NAME: &'static str = $name;
            }
        )*
    };
}

service_names! {
    Auth => "etcdserverpb.Auth",
    Lock => "v3lockpb.Lock",
    Election => "v3electionpb.Election",
}
