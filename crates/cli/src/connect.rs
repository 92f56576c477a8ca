//! Reaching the services: where they are, one traced channel per call of
//! `harvest`, deadlines, and following page tokens.

use std::future::Future;
use std::time::Duration;

use harvest_kit::auth::Role;
use harvest_kit::issuer::act_as;
use harvest_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use harvest_proto::delivery::v1::delivery_service_client::DeliveryServiceClient;
use harvest_proto::orders::v1::orders_service_client::OrdersServiceClient;
use harvest_proto::payments::v1::payments_service_client::PaymentsServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::args;
use crate::credentials::Credentials;
use crate::error::{CliError, Service};
use crate::output::Printer;
use crate::trace::TraceContext;

/// A service that is up accepts a connection at once; waiting longer only
/// delays the hint that it is not running.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The services' gRPC endpoints; the defaults are their default ports on this
/// machine.
#[derive(Clone, Debug, clap::Args)]
#[command(next_help_heading = "Services")]
pub struct Endpoints {
    /// The catalog service.
    #[arg(long, global = true, value_name = "URL", env = "HARVEST_CATALOG_URL",
          default_value = "http://127.0.0.1:50051", value_parser = args::endpoint)]
    pub catalog: String,
    /// The orders service.
    #[arg(long, global = true, value_name = "URL", env = "HARVEST_ORDERS_URL",
          default_value = "http://127.0.0.1:50052", value_parser = args::endpoint)]
    pub orders: String,
    /// The payments service.
    #[arg(long, global = true, value_name = "URL", env = "HARVEST_PAYMENTS_URL",
          default_value = "http://127.0.0.1:50053", value_parser = args::endpoint)]
    pub payments: String,
    /// The delivery service.
    #[arg(long, global = true, value_name = "URL", env = "HARVEST_DELIVERY_URL",
          default_value = "http://127.0.0.1:50054", value_parser = args::endpoint)]
    pub delivery: String,
}

/// How `https://` endpoints are trusted, and the client certificate for
/// services that ask for one (mutual TLS).
#[derive(Clone, Debug, Default, clap::Args)]
#[command(next_help_heading = "Services")]
pub struct TlsArgs {
    /// A CA certificate (PEM) to trust for `https://` endpoints, beside the
    /// system's (`make run ARGS=--tls` prints the local stack's).
    #[arg(long, global = true, value_name = "FILE", env = "HARVEST_CA_CERT")]
    pub ca_cert: Option<std::path::PathBuf>,
    /// The client certificate (PEM) to present, with --client-key.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "HARVEST_CLIENT_CERT",
        requires = "client_key"
    )]
    pub client_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --client-cert.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "HARVEST_CLIENT_KEY",
        requires = "client_cert"
    )]
    pub client_key: Option<std::path::PathBuf>,
}

impl TlsArgs {
    /// The client TLS these flags describe.
    pub fn config(&self) -> Result<ClientTlsConfig, CliError> {
        let read = |flag: &str, path: &std::path::Path| {
            std::fs::read(path)
                .map_err(|error| CliError::Usage(format!("{flag} {}: {error}", path.display())))
        };
        let mut config = ClientTlsConfig::new().with_native_roots();
        if let Some(ca) = &self.ca_cert {
            config = config.ca_certificate(Certificate::from_pem(read("--ca-cert", ca)?));
        }
        if let (Some(cert), Some(key)) = (&self.client_cert, &self.client_key) {
            config = config.identity(Identity::from_pem(
                read("--client-cert", cert)?,
                read("--client-key", key)?,
            ));
        }
        Ok(config)
    }
}

impl Endpoints {
    pub fn url(&self, service: Service) -> &str {
        match service {
            Service::Catalog => &self.catalog,
            Service::Orders => &self.orders,
            Service::Payments => &self.payments,
            Service::Delivery => &self.delivery,
        }
    }
}

/// A channel whose calls carry the caller's trace context and token.
pub type Traced = InterceptedService<Channel, Outgoing>;

/// What every call carries: the trace it is part of and who makes it.
#[derive(Clone, Debug)]
pub struct Outgoing {
    credentials: Credentials,
}

impl tonic::service::Interceptor for Outgoing {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let request = TraceContext.call(request)?;
        self.credentials.call(request)
    }
}

/// What every command needs: where the services are, how to print, and how
/// long to wait for an answer.
#[derive(Clone, Debug)]
pub struct Context {
    pub endpoints: Endpoints,
    pub printer: Printer,
    pub timeout: Duration,
    pub credentials: Credentials,
    /// For `https://` endpoints.
    pub tls: ClientTlsConfig,
}

impl Context {
    async fn channel(&self, service: Service) -> Result<Traced, CliError> {
        let url = self.endpoints.url(service);
        let unreachable = |source| CliError::Unreachable {
            service,
            endpoint: url.to_owned(),
            source,
        };
        let mut endpoint = Endpoint::from_shared(url.to_owned()).map_err(unreachable)?;
        if url.starts_with("https://") {
            endpoint = endpoint.tls_config(self.tls.clone()).map_err(unreachable)?;
        }
        let channel = endpoint
            .connect_timeout(CONNECT_TIMEOUT)
            .connect()
            .await
            .map_err(unreachable)?;
        Ok(InterceptedService::new(
            channel,
            Outgoing {
                credentials: self.credentials.clone(),
            },
        ))
    }

    pub async fn catalog(&self) -> Result<CatalogServiceClient<Traced>, CliError> {
        Ok(CatalogServiceClient::new(
            self.channel(Service::Catalog).await?,
        ))
    }

    pub async fn orders(&self) -> Result<OrdersServiceClient<Traced>, CliError> {
        Ok(OrdersServiceClient::new(
            self.channel(Service::Orders).await?,
        ))
    }

    pub async fn payments(&self) -> Result<PaymentsServiceClient<Traced>, CliError> {
        Ok(PaymentsServiceClient::new(
            self.channel(Service::Payments).await?,
        ))
    }

    pub async fn delivery(&self) -> Result<DeliveryServiceClient<Traced>, CliError> {
        Ok(DeliveryServiceClient::new(
            self.channel(Service::Delivery).await?,
        ))
    }

    /// A request that the server gives up on after `--timeout`. Streams are
    /// sent without one: they last as long as the person watches.
    pub fn unary<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.timeout);
        request
    }

    /// A [`Context::unary`] request made as `subject` in `role`, when calls
    /// are signed by a local issuer (`--issuer-dir`); a `--token` speaks
    /// for itself.
    pub fn unary_as<T>(&self, role: Role, subject: &str, message: T) -> tonic::Request<T> {
        let mut request = act_as(role, subject, message);
        request.set_timeout(self.timeout);
        request
    }
}

/// Page size and limit of a listing command.
#[derive(Clone, Copy, Debug, clap::Args)]
pub struct Paging {
    /// Show at most this many; pages are followed until then.
    #[arg(long, value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
    /// Ask for this many per request (services cap it).
    #[arg(long, value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(i32).range(1..=200))]
    pub page_size: i32,
}

/// Calls `fetch(page_token, page_size)` page after page until `limit` items,
/// the last page, or an empty one.
pub async fn collect_pages<T, F, Fut>(paging: Paging, mut fetch: F) -> Result<Vec<T>, CliError>
where
    F: FnMut(String, i32) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, String), CliError>>,
{
    let limit = paging.limit as usize;
    let mut items = Vec::new();
    let mut token = String::new();
    loop {
        let wanted = (limit - items.len()).min(paging.page_size as usize);
        let (page, next) = fetch(token, wanted as i32).await?;
        let empty = page.is_empty();
        items.extend(page);
        if items.len() >= limit || next.is_empty() || empty {
            items.truncate(limit);
            return Ok(items);
        }
        token = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listing of `total` numbers served `cap` at a time at most.
    async fn serve(total: usize, cap: usize, paging: Paging) -> (Vec<usize>, Vec<(String, i32)>) {
        let calls = std::cell::RefCell::new(Vec::new());
        let items = collect_pages(paging, |token, size| {
            calls.borrow_mut().push((token.clone(), size));
            async move {
                let start: usize = if token.is_empty() {
                    0
                } else {
                    token.parse().expect("token")
                };
                let end = (start + (size as usize).min(cap)).min(total);
                let next = if end < total {
                    end.to_string()
                } else {
                    String::new()
                };
                Ok((((start)..end).collect(), next))
            }
        })
        .await
        .expect("pages");
        (items, calls.into_inner())
    }

    fn paging(limit: u32, page_size: i32) -> Paging {
        Paging { limit, page_size }
    }

    #[tokio::test]
    async fn follows_tokens_up_to_the_limit() {
        let (items, calls) = serve(12, 200, paging(10, 4)).await;
        assert_eq!(items, (0..10).collect::<Vec<_>>());
        assert_eq!(
            calls,
            [(String::new(), 4), ("4".to_owned(), 4), ("8".to_owned(), 2)]
        );
    }

    #[tokio::test]
    async fn stops_at_the_last_page() {
        let (items, calls) = serve(5, 200, paging(50, 2)).await;
        assert_eq!(items, (0..5).collect::<Vec<_>>());
        assert_eq!(calls.len(), 3);
    }

    #[tokio::test]
    async fn copes_with_servers_that_send_fewer_than_asked() {
        let (items, _) = serve(30, 7, paging(20, 50)).await;
        assert_eq!(items, (0..20).collect::<Vec<_>>());
    }
}
