//! The gRPC health status tells the truth about Redis.

use std::time::Duration;

use harvest_testkit::eventually;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::TestCatalog;

async fn status(catalog: &TestCatalog) -> ServingStatus {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", catalog.grpc_addr))
        .expect("endpoint")
        .connect()
        .await
        .expect("connects");
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "harvest.catalog.v1.CatalogService".to_owned(),
        })
        .await
        .expect("health answers")
        .into_inner()
        .status()
}

#[tokio::test]
async fn not_serving_while_redis_is_unreachable() {
    let catalog = TestCatalog::start().await;
    assert_eq!(status(&catalog).await, ServingStatus::Serving);

    catalog.redis.pause();
    let within = Duration::from_secs(15);
    let stopped = eventually(within, || async {
        (status(&catalog).await == ServingStatus::NotServing).then_some(())
    })
    .await;
    catalog.redis.resume();
    assert!(stopped.is_some(), "still serving with Redis stopped");

    let back = eventually(within, || async {
        (status(&catalog).await == ServingStatus::Serving).then_some(())
    })
    .await;
    assert!(back.is_some(), "not serving again once Redis answers");
}
