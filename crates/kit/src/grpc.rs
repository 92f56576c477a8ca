//! Serving a gRPC API the Harvest way.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use opentelemetry::propagation::Extractor;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::codegen::http::{HeaderMap, Request, Response};
use tonic::server::NamedService;
use tower::{Layer, Service};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Histogram: seconds per gRPC request, by `method` and `code`.
pub const REQUEST_SECONDS: &str = "harvest_grpc_request_seconds";

/// Serves `api` with gRPC health (reporting it as serving) and server
/// reflection over every Harvest package, until `shutdown`.
pub async fn serve<S>(
    listener: TcpListener,
    api: S,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<S>().await;
    // Both reflection versions: grpcurl and other tools differ in which they ask.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(harvest_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    // The descriptor sets are compiled into the binary: a failure here is a
    // build defect, logged rather than fatal.
    let log_defect = |error: &tonic_reflection::server::Error| {
        tracing::error!(error.cause_chain = ?error, "reflection descriptors are invalid");
    };
    let reflection_v1 = reflection().build_v1().inspect_err(log_defect).ok();
    let reflection_v1alpha = reflection().build_v1alpha().inspect_err(log_defect).ok();

    let draining = shutdown.clone();
    let reporter = health_reporter.clone();
    // A response is several small writes (headers, data, trailers): with
    // Nagle's algorithm on, the last one waits for the client's delayed ACK,
    // about 40 ms. The server's own nodelay setting applies only to
    // listeners it binds itself.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .trace_fn(request_span)
        .layer(RequestMetricsLayer)
        .add_service(health)
        .add_optional_service(reflection_v1)
        .add_optional_service(reflection_v1alpha)
        .add_service(api)
        .serve_with_incoming_shutdown(incoming, async move {
            draining.cancelled().await;
            reporter.set_not_serving::<S>().await;
        })
        .await
}

/// A server span per request, following the OpenTelemetry RPC conventions
/// and continuing the caller's trace from its `traceparent` metadata.
fn request_span(request: &Request<()>) -> tracing::Span {
    let path = request.uri().path();
    let (service, method) = path
        .trim_start_matches('/')
        .split_once('/')
        .unwrap_or(("", path));
    let span = tracing::info_span!(
        "grpc",
        otel.name = %path.trim_start_matches('/'),
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
    );
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&MetadataExtractor(request.headers()))
    });
    let _ = span.set_parent(parent);
    span
}

struct MetadataExtractor<'a>(&'a HeaderMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

/// Records [`REQUEST_SECONDS`] for every request.
#[derive(Clone, Copy, Debug)]
pub struct RequestMetricsLayer;

impl<S> Layer<S> for RequestMetricsLayer {
    type Service = RequestMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestMetrics { inner }
    }
}

#[derive(Clone, Debug)]
pub struct RequestMetrics<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequestMetrics<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let method = request.uri().path().to_owned();
        let started = Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await;
            // Errors of unary calls travel in the headers ("trailers-only");
            // a response without a status there succeeded or is a stream.
            let code = match &response {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|code| code.to_str().ok())
                    .unwrap_or("0")
                    .to_owned(),
                Err(_) => "transport".to_owned(),
            };
            metrics::histogram!(REQUEST_SECONDS, "method" => method, "code" => code)
                .record(started.elapsed().as_secs_f64());
            response
        })
    }
}
