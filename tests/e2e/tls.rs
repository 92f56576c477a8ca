//! gRPC over TLS: every service serving TLS only, with mutual TLS, one order
//! from placement to delivery; and the clients TLS turns away.

use harvest_proto::catalog::v1::ListProductsRequest;
use harvest_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use harvest_proto::common::v1::OrderState;
use harvest_proto::payments::v1::PaymentState;
use harvest_stack::ServiceKind;
use harvest_stack::tls::LocalTls;
use tonic::Code;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

use crate::helpers::{ANJI, System};

const COURIER: &str = "courier-anji-tls";

/// What a call without a token through `endpoint`, with `tls`, comes to:
/// the service's answer, `UNAUTHENTICATED` (authentication is on), when
/// the connection is made; anything else when it is not.
async fn reach(endpoint: &str, tls: Option<ClientTlsConfig>) -> Result<Code, String> {
    let mut endpoint = Endpoint::from_shared(endpoint.to_owned()).map_err(|e| e.to_string())?;
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).map_err(|e| e.to_string())?;
    }
    let channel = endpoint.connect().await.map_err(|e| format!("{e:?}"))?;
    let mut request = tonic::Request::new(ListProductsRequest::default());
    request.set_timeout(std::time::Duration::from_secs(5));
    let answer = CatalogServiceClient::new(channel)
        .list_products(request)
        .await;
    Ok(answer.map_or_else(|status| status.code(), |_| Code::Ok))
}

fn reached(answer: &Result<Code, String>) -> bool {
    matches!(answer, Ok(Code::Unauthenticated | Code::Ok))
}

#[tokio::test]
async fn an_order_goes_from_placement_to_delivery_over_mutual_tls() {
    let system = System::start_with(|options| {
        options.tls = true;
        options.mutual_tls = true;
    })
    .await;
    let catalog = system
        .stack
        .endpoint(ServiceKind::Catalog)
        .expect("running");
    assert!(catalog.starts_with("https://"), "{catalog}");

    // The whole order, every call over TLS with the client certificate.
    system.courier(COURIER, &ANJI, 5).await;
    let tea = system.product("Anji white tea, 250 g", &ANJI, 10).await;
    let order = system.place(&[(&tea, 2)], "approve").await;
    let id = order.order_id.as_str();
    let delivered = system.carry(COURIER, id, &tea).await;
    assert_eq!(delivered.state(), OrderState::Delivered);
    let payment = system.wait_payment(id, PaymentState::Captured).await;
    assert_eq!(payment.captured_fen, delivered.total_fen);

    let files = system.stack.tls_files().expect("TLS is on").clone();
    let trusted = Certificate::from_pem(std::fs::read(&files.ca_file).expect("the CA"));

    // Plaintext to a TLS port: no answer.
    let plain = catalog.replacen("https://", "http://", 1);
    let answer = reach(&plain, None).await;
    assert!(!reached(&answer), "plaintext was answered: {answer:?}");

    // TLS, but without the client certificate mutual TLS asks for.
    let anonymous = ClientTlsConfig::new().ca_certificate(trusted);
    let answer = reach(&catalog, Some(anonymous)).await;
    assert!(
        !reached(&answer),
        "a client without a certificate: {answer:?}"
    );

    // A client that trusts another authority does not take the server's
    // certificate.
    let elsewhere = std::env::temp_dir().join(harvest_testkit::unique_name());
    let other = LocalTls::make(&elsewhere).expect("another authority");
    let answer = reach(&catalog, Some(other.client(true).expect("its config"))).await;
    assert!(!reached(&answer), "another authority's client: {answer:?}");
    let _ = std::fs::remove_dir_all(&elsewhere);

    // The stack's own client setup is answered: UNAUTHENTICATED, for want
    // of a token, which only a client past TLS gets to hear.
    let tls = system.stack.client_tls().expect("readable").expect("on");
    assert_eq!(reach(&catalog, Some(tls)).await, Ok(Code::Unauthenticated));
}
