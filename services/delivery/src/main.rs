//! `harvest-delivery`: runs the delivery service.

use std::process::ExitCode;

use harvest_delivery::{App, DeliveryConfig};

#[tokio::main]
async fn main() -> ExitCode {
    harvest_kit::cli::main(
        harvest_delivery::SERVICE,
        "The Harvest delivery service: couriers, shipments and their assignment.",
        |config: DeliveryConfig, shutdown| async move {
            let app = App::build(config).await?;
            app.run_until_stopped(shutdown).await?;
            Ok(())
        },
    )
    .await
}
