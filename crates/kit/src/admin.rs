//! The admin HTTP port: Prometheus metrics and liveness.

use std::sync::OnceLock;

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

static PROMETHEUS: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// Latency buckets, in seconds, for every `*_seconds` histogram.
const SECONDS_BUCKETS: [f64; 14] = [
    0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
];

/// The process's metrics recorder, installed on first use.
pub fn prometheus() -> Result<PrometheusHandle, String> {
    PROMETHEUS
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &SECONDS_BUCKETS)
                .map_err(|error: BuildError| error.to_string())?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder)
                .map_err(|_| "another metrics recorder is installed".to_owned())?;
            Ok(handle)
        })
        .clone()
}

/// Serves `/metrics` and `/healthz` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    metrics: PrometheusHandle,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route(
            "/metrics",
            get(move || std::future::ready(metrics.render())),
        )
        .route("/healthz", get(|| std::future::ready("ok\n")));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
