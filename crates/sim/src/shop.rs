//! Serves the reference storefront (`storefront/`, built into its `dist/`)
//! beside a local stack: its pages, where the services are, and demo buyers
//! signed in with the stack's own tokens. The pages call the services
//! directly with gRPC-Web; the stack lets this server's origin in.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use harvest_domain::Regions;
use harvest_kit::auth::Role;
use harvest_kit::issuer::Issuer;
use harvest_stack::{ServiceKind, Stack};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long a demo buyer's token is valid; the page signs the same buyer in
/// again when it expires.
pub const DEMO_TOKEN_SECS: i64 = 3_600;

/// Where the built storefront is, from the repository's root.
pub const DIST_DIR: &str = "storefront/dist";

/// What the storefront server serves.
pub struct Shop {
    /// The built pages.
    pub dist: PathBuf,
    /// `/config.json`: where the services are and where buyers can ship to.
    pub config: Value,
    /// Signs demo buyers in; `None` when authentication is off.
    pub issuer: Option<Arc<Issuer>>,
}

impl Shop {
    /// The storefront of `stack`, with pages from `dist`.
    pub fn for_stack(stack: &Stack, regions: &Regions, dist: &Path) -> anyhow::Result<Shop> {
        let endpoint = |kind| stack.endpoint(kind);
        let provinces: Vec<Value> = harvest_domain::provinces()
            .filter(|province| {
                regions
                    .iter()
                    .any(|region| region.as_str() == province.region)
            })
            .map(|province| {
                json!({
                    "name": province.name,
                    "name_zh": province.name_zh,
                    "region": province.region,
                })
            })
            .collect();
        Ok(Shop {
            dist: dist.to_owned(),
            config: json!({
                "catalog": endpoint(ServiceKind::Catalog)?,
                "orders": endpoint(ServiceKind::Orders)?,
                "payments": endpoint(ServiceKind::Payments)?,
                "auth": stack.issuer().is_some(),
                "provinces": provinces,
            }),
            issuer: stack.issuer().cloned(),
        })
    }

    /// Whether the pages have been built.
    pub fn is_built(&self) -> bool {
        self.dist.join("index.html").is_file()
    }
}

/// The origin of a storefront served on `listener`, as its pages' requests
/// name it (`http://127.0.0.1:8080`): what the services must let in.
pub fn origin(listener: &TcpListener) -> std::io::Result<String> {
    Ok(format!("http://{}", listener.local_addr()?))
}

/// Serves `shop` on `listener` until `stop`.
pub async fn serve(
    listener: TcpListener,
    shop: Shop,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/config.json", get(config))
        .route("/demo/sign-in", post(sign_in))
        .fallback(get(page))
        .with_state(Arc::new(shop));
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
}

async fn config(State(shop): State<Arc<Shop>>) -> Response {
    json_response(StatusCode::OK, &shop.config)
}

/// Signs a demo buyer in: a new one for `{}`, the same one again for
/// `{"buyer": "buyer-web-…"}`.
async fn sign_in(State(shop): State<Arc<Shop>>, body: Bytes) -> Response {
    let asked: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(value) => value,
            Err(error) => return refusal(&format!("the body is not JSON: {error}")),
        }
    };
    let buyer = match asked.get("buyer").and_then(Value::as_str) {
        None | Some("") => new_demo_buyer(),
        Some(buyer) if is_demo_buyer(buyer) => buyer.to_owned(),
        Some(other) => {
            return refusal(&format!(
                "{other:?} is not a demo buyer: they are named buyer-web- and 8 hex digits"
            ));
        }
    };
    let expires = SystemTime::now() + Duration::from_secs(DEMO_TOKEN_SECS as u64);
    let token = shop
        .issuer
        .as_ref()
        .map(|issuer| issuer.token_with(Role::Buyer, &buyer, DEMO_TOKEN_SECS))
        .unwrap_or_default();
    let expires_at_ms = expires
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64);
    json_response(
        StatusCode::OK,
        &json!({ "buyer": buyer, "token": token, "expires_at_ms": expires_at_ms }),
    )
}

const DEMO_PREFIX: &str = "buyer-web-";

fn new_demo_buyer() -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{DEMO_PREFIX}{}", &random[..8])
}

fn is_demo_buyer(buyer: &str) -> bool {
    buyer.strip_prefix(DEMO_PREFIX).is_some_and(|rest| {
        rest.len() == 8
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// A file of the built pages; `/` is `index.html`.
async fn page(State(shop): State<Arc<Shop>>, uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    // Only plain names under the folder: no way out of it.
    let plain = path
        .split('/')
        .all(|part| !part.is_empty() && part != ".." && part != "." && !part.contains('\\'));
    if !plain {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    }
    if !shop.is_built() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!(
                "the storefront is not built: no {}. Run `make storefront` (or `make run`, which builds it).\n",
                shop.dist.join("index.html").display()
            ),
        )
            .into_response();
    }
    let file = shop.dist.join(path);
    match tokio::task::spawn_blocking(move || std::fs::read(file)).await {
        Ok(Ok(bytes)) => Response::builder()
            .header(header::CONTENT_TYPE, content_type(path))
            // Rebuilt pages show on the next load.
            .header(header::CACHE_CONTROL, "no-cache")
            .body(Body::from(bytes))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()),
        _ => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, extension)| extension) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") | Some("map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

fn refusal(error: &str) -> Response {
    json_response(StatusCode::BAD_REQUEST, &json!({ "error": error }))
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        value.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_buyers_are_recognised_by_name() {
        let made = new_demo_buyer();
        assert!(is_demo_buyer(&made), "{made}");
        for other in [
            "buyer-web-",
            "buyer-web-1234567",
            "buyer-web-123456789",
            "buyer-web-ABCDEF12",
            "buyer-hangzhou-1",
            "operator",
        ] {
            assert!(!is_demo_buyer(other), "{other}");
        }
    }

    #[test]
    fn pages_get_their_content_types() {
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("app.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("LICENSE"), "application/octet-stream");
    }
}
