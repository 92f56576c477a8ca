//! What operators look at, for a local stack: a trace viewer and Prometheus.
//!
//! The trace viewer is Zipkin's server (an executable jar from Maven Central,
//! run with `java -jar`; `make deps` caches it) in front of a small OTLP/gRPC
//! receiver that hands each span on to Zipkin's span API. The services keep
//! exporting OTLP, as they do in production, and Zipkin only ever sees spans
//! that already carry their service's name. Prometheus is Debian's package,
//! scraping every service's admin port. Each runs as a child process on a free
//! loopback port and stops when its handle is dropped.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use serde_json::{Map, Value, json};

use crate::kafka::{harvest_cache_dir, java_binary};
use crate::servers::{ChildGuard, find_binary, free_port, retry_on_port_clash};

/// How long Zipkin's JVM may take to answer (about 5 s on two busy cores).
const ZIPKIN_START: Duration = Duration::from_secs(90);
/// How long Prometheus may take to answer.
const PROMETHEUS_START: Duration = Duration::from_secs(30);

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// `GET url`: its status and body.
async fn get(client: &HttpClient, url: &str) -> anyhow::Result<(u16, Bytes)> {
    let request = hyper::Request::get(url)
        .body(Full::new(Bytes::new()))
        .context("building a request")?;
    let response = client
        .request(request)
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// Zipkin's executable jar: `HARVEST_ZIPKIN_JAR`, else the one `make deps`
/// put in `~/.cache/harvest/zipkin` (or under `$XDG_CACHE_HOME`).
pub fn zipkin_jar() -> anyhow::Result<PathBuf> {
    if let Some(jar) = std::env::var_os("HARVEST_ZIPKIN_JAR") {
        return Ok(PathBuf::from(jar));
    }
    let dir = harvest_cache_dir()?.join("zipkin");
    std::fs::read_dir(&dir)
        .ok()
        .and_then(|entries| {
            entries.flatten().map(|entry| entry.path()).find(|path| {
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                name.starts_with("zipkin-server-") && name.ends_with("-exec.jar")
            })
        })
        .with_context(|| {
            format!(
                "Zipkin is not installed in {}: run `make deps` (or set HARVEST_ZIPKIN_JAR)",
                dir.display()
            )
        })
}

/// Zipkin, and the OTLP receiver that feeds it.
pub struct TraceViewer {
    port: u16,
    client: HttpClient,
    otlp_addr: SocketAddr,
    receiver: tokio::task::JoinHandle<()>,
    // Dropped last: the receiver stops before Zipkin does.
    _zipkin: ChildGuard,
}

impl Drop for TraceViewer {
    fn drop(&mut self) {
        self.receiver.abort();
    }
}

impl TraceViewer {
    /// Starts Zipkin (its output in `log`) with spans kept in memory, and the
    /// OTLP receiver; returns once Zipkin answers.
    pub async fn start(log: &Path) -> anyhow::Result<TraceViewer> {
        let java = java_binary()?;
        let jar = zipkin_jar()?;
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let client = http_client();
        let mut attempts = 0;
        let (port, mut zipkin) = loop {
            attempts += 1;
            let port = free_port()?;
            let mut zipkin = spawn_zipkin(&java, &jar, port, log)?;
            match wait_for_zipkin(&client, port, &mut zipkin).await {
                Ok(()) => break (port, zipkin),
                Err(error) if attempts >= 3 => return Err(error),
                // Another process may have taken the port first.
                Err(_) => continue,
            }
        };
        zipkin.name = format!("zipkin (log {})", log.display());

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the OTLP receiver")?;
        let otlp_addr = listener.local_addr()?;
        let forwarder = Forwarder {
            client: client.clone(),
            spans_url: format!("http://127.0.0.1:{port}/api/v2/spans"),
        };
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let receiver = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(forwarder))
                .serve_with_incoming(incoming)
                .await;
        });
        Ok(TraceViewer {
            port,
            client,
            otlp_addr,
            receiver,
            _zipkin: zipkin,
        })
    }

    /// Where the services send their spans (OTLP/gRPC).
    pub fn otlp_endpoint(&self) -> String {
        format!("http://{}", self.otlp_addr)
    }

    /// The web UI.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/zipkin/", self.port)
    }

    /// One trace in the web UI; `trace_id` in hex.
    pub fn trace_url(&self, trace_id: &str) -> String {
        format!("http://127.0.0.1:{}/zipkin/traces/{trace_id}", self.port)
    }

    /// The traces of the last hour with a span tagged `key=value`, as
    /// Zipkin's query API returns them: each a JSON array of spans.
    pub async fn traces_tagged(&self, key: &str, value: &str) -> anyhow::Result<Vec<Value>> {
        let url = format!(
            "http://127.0.0.1:{}/api/v2/traces?annotationQuery={key}%3D{value}&lookback=3600000&limit=100",
            self.port
        );
        let (status, body) = get(&self.client, &url).await?;
        if status != 200 {
            bail!("{url} answered {status}");
        }
        serde_json::from_slice(&body).with_context(|| format!("reading the answer of {url}"))
    }
}

fn spawn_zipkin(java: &Path, jar: &Path, port: u16, log: &Path) -> anyhow::Result<ChildGuard> {
    let file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let child = Command::new(java)
        // A small heap and a quick start matter more here than peak speed.
        .args([
            "-Xms64m",
            "-Xmx384m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
        ])
        .arg("-jar")
        .arg(jar)
        .arg(format!("--armeria.ports[0].port={port}"))
        .arg("--armeria.ports[0].ip=127.0.0.1")
        .env("STORAGE_TYPE", "mem")
        .env("MEM_MAX_SPANS", "200000")
        .stdin(Stdio::null())
        .stdout(Stdio::from(file.try_clone()?))
        .stderr(Stdio::from(file))
        .spawn()
        .with_context(|| format!("starting {} -jar {}", java.display(), jar.display()))?;
    Ok(ChildGuard::new("zipkin", child))
}

async fn wait_for_zipkin(
    client: &HttpClient,
    port: u16,
    zipkin: &mut ChildGuard,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + ZIPKIN_START;
    let health = format!("http://127.0.0.1:{port}/health");
    while Instant::now() < deadline {
        if let Some(exit) = zipkin.exited() {
            bail!(exit);
        }
        if matches!(get(client, &health).await, Ok((200, _))) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("zipkin did not answer within {ZIPKIN_START:?}")
}

/// Receives OTLP spans and posts them to Zipkin as JSON.
struct Forwarder {
    client: HttpClient,
    spans_url: String,
}

#[tonic::async_trait]
impl TraceService for Forwarder {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans = zipkin_spans(request.into_inner());
        let body = serde_json::to_vec(&spans)
            .map_err(|error| tonic::Status::internal(format!("encoding spans: {error}")))?;
        let post = hyper::Request::post(&self.spans_url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|error| tonic::Status::internal(format!("building a request: {error}")))?;
        let response = self
            .client
            .request(post)
            .await
            .map_err(|error| tonic::Status::unavailable(format!("zipkin: {error}")))?;
        if !response.status().is_success() {
            return Err(tonic::Status::unavailable(format!(
                "zipkin answered {}",
                response.status()
            )));
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// An attribute's value as Zipkin keeps tags: text.
fn tag_value(value: &AnyValue) -> Option<String> {
    match value.value.as_ref()? {
        any_value::Value::StringValue(text) => Some(text.clone()),
        any_value::Value::BoolValue(flag) => Some(flag.to_string()),
        any_value::Value::IntValue(number) => Some(number.to_string()),
        any_value::Value::DoubleValue(number) => Some(number.to_string()),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut text, byte| {
        let _ = write!(text, "{byte:02x}");
        text
    })
}

fn tags(attributes: &[KeyValue]) -> Map<String, Value> {
    attributes
        .iter()
        .filter_map(|attribute| {
            let value = tag_value(attribute.value.as_ref()?)?;
            Some((attribute.key.clone(), Value::String(value)))
        })
        .collect()
}

/// OTLP spans in Zipkin's v2 JSON model: the resource's `service.name` as the
/// local endpoint, attributes as tags, events as annotations, times in µs.
pub fn zipkin_spans(request: ExportTraceServiceRequest) -> Vec<Value> {
    let mut spans = Vec::new();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|resource| &resource.attributes)
            .find(|attribute| attribute.key == "service.name")
            .and_then(|attribute| tag_value(attribute.value.as_ref()?))
            .unwrap_or_else(|| "unknown".to_owned());
        for span in resource_spans
            .scope_spans
            .into_iter()
            .flat_map(|scope| scope.spans)
        {
            let start = span.start_time_unix_nano / 1_000;
            let duration = (span
                .end_time_unix_nano
                .saturating_sub(span.start_time_unix_nano)
                / 1_000)
                .max(1);
            let mut zipkin = json!({
                "traceId": hex(&span.trace_id),
                "id": hex(&span.span_id),
                "name": span.name,
                "timestamp": start,
                "duration": duration,
                "localEndpoint": { "serviceName": service },
            });
            let mut span_tags = tags(&span.attributes);
            if let Some(status) = &span.status
                && status.code == StatusCode::Error as i32
            {
                span_tags.insert("error".to_owned(), Value::String(status.message.clone()));
            }
            zipkin["tags"] = Value::Object(span_tags);
            if !span.parent_span_id.is_empty() {
                zipkin["parentId"] = Value::String(hex(&span.parent_span_id));
            }
            let kind = match SpanKind::try_from(span.kind) {
                Ok(SpanKind::Server) => Some("SERVER"),
                Ok(SpanKind::Client) => Some("CLIENT"),
                Ok(SpanKind::Producer) => Some("PRODUCER"),
                Ok(SpanKind::Consumer) => Some("CONSUMER"),
                _ => None,
            };
            if let Some(kind) = kind {
                zipkin["kind"] = Value::String(kind.to_owned());
            }
            let annotations: Vec<Value> = span
                .events
                .iter()
                .map(|event| json!({ "timestamp": event.time_unix_nano / 1_000, "value": event.name }))
                .collect();
            if !annotations.is_empty() {
                zipkin["annotations"] = Value::Array(annotations);
            }
            spans.push(zipkin);
        }
    }
    spans
}

/// Prometheus, scraping the services' admin ports.
pub struct Prometheus {
    port: u16,
    _guard: ChildGuard,
}

impl Prometheus {
    /// Starts Prometheus with its configuration and data in `dir` (created),
    /// scraping `/metrics` of each `(service, admin address)` every 5 s;
    /// returns once it answers.
    pub fn start(dir: &Path, targets: &[(String, SocketAddr)]) -> anyhow::Result<Prometheus> {
        let binary = find_binary("HARVEST_PROMETHEUS", "prometheus")?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, scrape_config(targets))
            .with_context(|| format!("writing {}", config.display()))?;
        let log = dir.join("prometheus.log");
        retry_on_port_clash(|| {
            let port = free_port()?;
            let file = std::fs::File::create(&log)
                .with_context(|| format!("creating {}", log.display()))?;
            let child = Command::new(&binary)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--storage.tsdb.retention.time=1d")
                .stdin(Stdio::null())
                .stdout(Stdio::from(file.try_clone()?))
                .stderr(Stdio::from(file))
                .spawn()
                .with_context(|| format!("starting {}", binary.display()))?;
            let mut guard = ChildGuard::new(format!("prometheus (log {})", log.display()), child);
            crate::servers::wait_until(
                PROMETHEUS_START,
                "prometheus",
                || guard.exited(),
                || {
                    std::net::TcpStream::connect_timeout(
                        &SocketAddr::from(([127, 0, 0, 1], port)),
                        Duration::from_millis(200),
                    )
                    .is_ok()
                },
            )?;
            Ok(Prometheus {
                port,
                _guard: guard,
            })
        })
    }

    /// The web UI.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

/// One job, `harvest`, with a `service` label per target.
fn scrape_config(targets: &[(String, SocketAddr)]) -> String {
    let mut config = String::from(
        "# Written by harvest-stack for this run.\n\
         global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\n\
         scrape_configs:\n  - job_name: harvest\n    static_configs:\n",
    );
    for (service, address) in targets {
        let _ = write!(
            config,
            "      - targets: ['{address}']\n        labels:\n          service: {service}\n"
        );
    }
    config
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    use super::*;

    fn text(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.to_owned())),
            }),
        }
    }

    #[test]
    fn a_span_keeps_its_service_kind_parent_and_tags() {
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![text("service.name", "orders")],
                    ..Resource::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: vec![0xab; 16],
                        span_id: vec![1, 2, 3, 4, 5, 6, 7, 8],
                        parent_span_id: vec![0x0f; 8],
                        name: "orders.east publish".to_owned(),
                        kind: SpanKind::Producer as i32,
                        start_time_unix_nano: 2_000_000_000,
                        end_time_unix_nano: 2_000_500_000,
                        attributes: vec![text("messaging.system", "kafka")],
                        ..Span::default()
                    }],
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        };
        let spans = zipkin_spans(request);
        assert_eq!(
            spans,
            vec![json!({
                "traceId": "ab".repeat(16),
                "id": "0102030405060708",
                "parentId": "0f".repeat(8),
                "name": "orders.east publish",
                "kind": "PRODUCER",
                "timestamp": 2_000_000,
                "duration": 500,
                "localEndpoint": { "serviceName": "orders" },
                "tags": { "messaging.system": "kafka" },
            })]
        );
    }

    #[test]
    fn the_scrape_config_names_each_service() {
        let config = scrape_config(&[
            (
                "catalog".to_owned(),
                "127.0.0.1:9101".parse().expect("address"),
            ),
            (
                "orders".to_owned(),
                "127.0.0.1:9102".parse().expect("address"),
            ),
        ]);
        assert!(config.contains(
            "- targets: ['127.0.0.1:9101']\n        labels:\n          service: catalog\n"
        ));
        assert!(config.contains("service: orders"));
    }
}
