//! The gRPC front: routes `ShouldRateLimit` to the limiter, written against
//! tonic's lower-level API (what tonic's code generator would emit).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::{http, BoxFuture, Service};
use tonic::server::{Grpc, NamedService};
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

use crate::limiter::Limiter;
use crate::proto::{RateLimitRequest, RateLimitResponse, SHOULD_RATE_LIMIT_PATH};

/// `envoy.service.ratelimit.v3.RateLimitService` as an HTTP service.
#[derive(Clone)]
pub struct RateLimitService {
    limiter: Arc<Limiter>,
}

impl RateLimitService {
    pub fn new(limiter: Arc<Limiter>) -> Self {
        Self { limiter }
    }
}

impl NamedService for RateLimitService {
    const NAME: &'static str = "envoy.service.ratelimit.v3.RateLimitService";
}

impl Service<http::Request<Body>> for RateLimitService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if req.uri().path() != SHOULD_RATE_LIMIT_PATH {
            let status = Status::unimplemented(format!("no method {}", req.uri().path()));
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let method = ShouldRateLimit(Arc::clone(&self.limiter));
        Box::pin(async move {
            let mut grpc = Grpc::new(ProstCodec::<RateLimitResponse, RateLimitRequest>::default());
            Ok(grpc.unary(method, req).await)
        })
    }
}

/// The unary method, as tonic's `UnaryService` wants it.
struct ShouldRateLimit(Arc<Limiter>);

impl Service<Request<RateLimitRequest>> for ShouldRateLimit {
    type Response = Response<RateLimitResponse>;
    type Error = Status;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<RateLimitRequest>) -> Self::Future {
        let limiter = Arc::clone(&self.0);
        Box::pin(async move {
            limiter
                .should_rate_limit(req.get_ref())
                .await
                .map(Response::new)
        })
    }
}
