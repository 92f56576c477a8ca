//! Serving a gRPC API the Harvest way.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use opentelemetry::propagation::Extractor;
use tokio::net::TcpListener;
use tokio_stream::StreamExt as _;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::codegen::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response};
use tonic::server::NamedService;
use tower::{Layer, Service};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Histogram: seconds per gRPC request, by `method` (`unknown` for a path
/// the server does not serve) and `code`.
pub const REQUEST_SECONDS: &str = "harvest_grpc_request_seconds";

/// How a gRPC port serves, whatever the API.
pub struct Serving {
    /// A request message larger than this is refused with
    /// RESOURCE_EXHAUSTED before it is read.
    pub limit: RequestLimit,
    /// Who may call which method.
    pub access: crate::auth::Access,
    /// TLS only, when set; plaintext otherwise.
    pub tls: Option<tonic::transport::ServerTlsConfig>,
    /// Origins whose web pages may call with gRPC-Web (CORS); gRPC-Web is
    /// served beside native gRPC whatever this holds.
    pub web_origins: Vec<HeaderValue>,
}

/// What a browser may send with a gRPC-Web call from another origin: the
/// protocol's own headers, the token, deadlines, the trace context and the
/// region a deployment's gateway routes by.
const WEB_REQUEST_HEADERS: [&str; 8] = [
    "authorization",
    "content-type",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
    "traceparent",
    "tracestate",
    "x-harvest-region",
];

/// What a page may read of a gRPC-Web answer: the status, where a call that
/// fails at once carries it (its other answers carry it in the body).
const WEB_RESPONSE_HEADERS: [&str; 3] = ["grpc-status", "grpc-message", "grpc-status-details-bin"];

/// CORS for gRPC-Web calls from the pages of `origins`: a preflight from
/// another origin is answered without permission, so the browser does not
/// send the call.
fn web_cors(origins: Vec<HeaderValue>) -> PagesOnlyLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    PagesOnlyLayer(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::POST])
            .allow_headers(WEB_REQUEST_HEADERS.map(HeaderName::from_static))
            .expose_headers(WEB_RESPONSE_HEADERS.map(HeaderName::from_static))
            .max_age(std::time::Duration::from_secs(24 * 60 * 60)),
    )
}

/// CORS for the calls of web pages (those with an `Origin`) only: native
/// gRPC calls pass by it untouched, without its response headers.
#[derive(Clone, Debug)]
struct PagesOnlyLayer(tower_http::cors::CorsLayer);

impl<S: Clone> Layer<S> for PagesOnlyLayer {
    type Service = PagesOnly<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PagesOnly {
            cors: self.0.layer(inner.clone()),
            plain: inner,
        }
    }
}

#[derive(Clone, Debug)]
struct PagesOnly<S> {
    cors: tower_http::cors::Cors<S>,
    plain: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for PagesOnly<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = futures::future::Either<tower_http::cors::ResponseFuture<S::Future>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self.cors.poll_ready(cx) {
            Poll::Ready(Ok(())) => self.plain.poll_ready(cx),
            other => other,
        }
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if request
            .headers()
            .contains_key(tonic::codegen::http::header::ORIGIN)
        {
            futures::future::Either::Left(self.cors.call(request))
        } else {
            futures::future::Either::Right(self.plain.call(request))
        }
    }
}

/// Serves `api` with gRPC health (serving while `ready` says so, not serving
/// from the start of shutdown) and server reflection over every Harvest
/// package, until `shutdown`: native gRPC, and gRPC-Web (over HTTP/1.1 too)
/// on the same port for browsers.
pub async fn serve<S>(
    listener: TcpListener,
    serving: Serving,
    api: S,
    ready: tokio::sync::watch::Receiver<bool>,
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
    tokio::spawn(crate::readiness::report::<S>(
        health_reporter.clone(),
        ready,
        shutdown.clone(),
    ));
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
    let mut builder = tonic::transport::Server::builder().accept_http1(true);
    if let Some(tls) = serving.tls {
        builder = builder.tls_config(tls)?;
    }
    builder
        .trace_fn(request_span)
        // Outermost: a preflight is answered before anything else sees it,
        // and a gRPC-Web call is plain gRPC from here on in.
        .layer(web_cors(serving.web_origins))
        .layer(tonic_web::GrpcWebLayer::new())
        .layer(RequestMetricsLayer {
            rules: serving.access.rules(),
        })
        .layer(RequestLimitLayer(serving.limit))
        .layer(crate::auth::AccessLayer(serving.access))
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

/// The methods every server has beside its API: health and reflection.
const SERVER_METHODS: &[&str] = &[
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// Records [`REQUEST_SECONDS`] for every request, labelled by method for
/// the service's own methods (those `rules` name) and the server's, and
/// `unknown` for any other path: a caller cannot make up labels.
#[derive(Clone, Copy, Debug)]
pub struct RequestMetricsLayer {
    pub rules: &'static [crate::auth::Rule],
}

impl<S> Layer<S> for RequestMetricsLayer {
    type Service = RequestMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestMetrics {
            inner,
            rules: self.rules,
        }
    }
}

#[derive(Clone, Debug)]
pub struct RequestMetrics<S> {
    inner: S,
    rules: &'static [crate::auth::Rule],
}

/// The `method` label of a call to `path`.
fn method_label(path: &str, rules: &[crate::auth::Rule]) -> &'static str {
    rules
        .iter()
        .map(|rule| rule.method)
        .chain(SERVER_METHODS.iter().copied())
        .find(|known| *known == path)
        .unwrap_or("unknown")
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
        let method = method_label(request.uri().path(), self.rules);
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

/// The largest request message tonic decodes unless a generated server is
/// told otherwise. A [`RequestLimit`] stays within it, so that the kit, not
/// the decoder, is what refuses an oversized request.
pub const DECODER_LIMIT_BYTES: usize = 4 * 1024 * 1024;

/// The largest request message a service reads, in bytes. Each service
/// chooses its own from the largest request its API can validly carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestLimit {
    bytes: usize,
}

impl RequestLimit {
    /// Panics (at compile time, when used in a `const`) above
    /// [`DECODER_LIMIT_BYTES`]: beyond it the decoder would answer
    /// OUT_OF_RANGE first.
    pub const fn new(bytes: usize) -> RequestLimit {
        assert!(
            bytes > 0 && bytes <= DECODER_LIMIT_BYTES,
            "a request limit must be between 1 byte and the decoder's 4 MiB"
        );
        RequestLimit { bytes }
    }

    pub const fn bytes(self) -> usize {
        self.bytes
    }

    /// The status of a request whose message is `size` bytes.
    fn refusal(self, method: &str, size: usize) -> tonic::Status {
        tonic::Status::resource_exhausted(format!(
            "the request message to {method} is {size} bytes; the limit is {} bytes ({})",
            self.bytes,
            human_bytes(self.bytes),
        ))
    }
}

fn human_bytes(bytes: usize) -> String {
    match bytes {
        bytes if bytes >= 1024 * 1024 && bytes % (1024 * 1024) == 0 => {
            format!("{} MiB", bytes / (1024 * 1024))
        }
        bytes if bytes >= 1024 && bytes % 1024 == 0 => format!("{} KiB", bytes / 1024),
        bytes => format!("{bytes} bytes"),
    }
}

/// Refuses request messages over a [`RequestLimit`] with RESOURCE_EXHAUSTED,
/// the code gRPC gives to a message too large, as soon as a message's length
/// prefix shows it: the message itself is never buffered.
#[derive(Clone, Copy, Debug)]
pub struct RequestLimitLayer(pub RequestLimit);

impl<S> Layer<S> for RequestLimitLayer {
    type Service = RequestLimited<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestLimited {
            inner,
            limit: self.0,
        }
    }
}

#[derive(Clone, Debug)]
pub struct RequestLimited<S> {
    inner: S,
    limit: RequestLimit,
}

impl<S> Service<Request<Body>> for RequestLimited<S>
where
    S: Service<Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let limit = self.limit;
        let method = request.uri().path().trim_start_matches('/').to_owned();
        let mut framing = MessageFraming::default();
        let request = request.map(|body| {
            let checked = axum::body::Body::new(body).into_data_stream().map(
                move |chunk| -> Result<axum::body::Bytes, BoxError> {
                    let chunk = chunk?;
                    match framing.oversized(&chunk, limit.bytes) {
                        // The decoder finds this status in the body error and
                        // answers with it.
                        Some(size) => Err(Box::new(limit.refusal(&method, size))),
                        None => Ok(chunk),
                    }
                },
            );
            Body::new(axum::body::Body::from_stream(checked))
        });
        self.inner.call(request)
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Follows the gRPC framing of a request body across chunks: every message
/// is a compression flag byte and a four-byte big-endian length, then that
/// many bytes.
#[derive(Clone, Debug, Default)]
struct MessageFraming {
    prefix: [u8; 5],
    prefix_read: usize,
    /// Bytes of the current message still to come.
    remaining: usize,
}

impl MessageFraming {
    /// Reads `chunk`; the length of the first message in it longer than
    /// `limit`, if any.
    fn oversized(&mut self, mut chunk: &[u8], limit: usize) -> Option<usize> {
        while !chunk.is_empty() {
            if self.remaining > 0 {
                let skipped = self.remaining.min(chunk.len());
                self.remaining -= skipped;
                chunk = &chunk[skipped..];
                continue;
            }
            let taken = (self.prefix.len() - self.prefix_read).min(chunk.len());
            self.prefix[self.prefix_read..self.prefix_read + taken]
                .copy_from_slice(&chunk[..taken]);
            self.prefix_read += taken;
            chunk = &chunk[taken..];
            if self.prefix_read == self.prefix.len() {
                self.prefix_read = 0;
                let [_, a, b, c, d] = self.prefix;
                let length = u32::from_be_bytes([a, b, c, d]) as usize;
                if length > limit {
                    return Some(length);
                }
                self.remaining = length;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_methods_become_labels() {
        const RULES: &[crate::auth::Rule] = &[crate::auth::Rule {
            method: "/harvest.orders.v1.OrdersService/GetOrder",
            roles: &crate::auth::Role::ALL,
        }];
        for (path, label) in [
            (
                "/harvest.orders.v1.OrdersService/GetOrder",
                "/harvest.orders.v1.OrdersService/GetOrder",
            ),
            (
                "/grpc.health.v1.Health/Check",
                "/grpc.health.v1.Health/Check",
            ),
            // Refused by the access check rather than unimplemented, and
            // still no label of its own.
            ("/harvest.orders.v1.OrdersService/MadeUp1", "unknown"),
            ("/grpc.health.v1.Health/MadeUp2", "unknown"),
            ("/anything/else", "unknown"),
        ] {
            assert_eq!(method_label(path, RULES), label, "{path}");
        }
    }

    fn message(length: usize) -> Vec<u8> {
        let mut framed = vec![0];
        framed.extend_from_slice(&(length as u32).to_be_bytes());
        framed.resize(5 + length, 7);
        framed
    }

    #[test]
    fn finds_an_oversized_message_whatever_the_chunks() {
        let mut body = message(10);
        body.extend(message(3));
        body.extend(message(100));
        for chunk_size in [1, 2, 4, 5, 6, 13, 16, 1000] {
            let mut framing = MessageFraming::default();
            // The first finding ends the request, so only it counts.
            let found = body
                .chunks(chunk_size)
                .find_map(|chunk| framing.oversized(chunk, 50));
            assert_eq!(found, Some(100), "chunks of {chunk_size}");
        }
    }

    #[test]
    fn messages_up_to_the_limit_pass() {
        let mut framing = MessageFraming::default();
        let mut body = message(50);
        body.extend(message(0));
        body.extend(message(50));
        assert_eq!(framing.oversized(&body, 50), None);
    }

    #[test]
    fn the_refusal_names_the_method_and_the_limit() {
        let status = RequestLimit::new(64 * 1024).refusal("harvest.x.v1.X/Do", 4_194_309);
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            status.message(),
            "the request message to harvest.x.v1.X/Do is 4194309 bytes; the limit is 65536 bytes (64 KiB)"
        );
        assert_eq!(human_bytes(1024 * 1024), "1 MiB");
        assert_eq!(human_bytes(1000), "1000 bytes");
    }
}
