//! `harvest-orders`: runs the orders service.

use std::process::ExitCode;

use harvest_orders::{App, OrdersConfig};

#[tokio::main]
async fn main() -> ExitCode {
    harvest_kit::cli::main(
        harvest_orders::SERVICE,
        "The Harvest orders service: places orders and decides their fate.",
        |config: OrdersConfig, shutdown| async move {
            let app = App::build(config).await?;
            app.run_until_stopped(shutdown).await?;
            Ok(())
        },
    )
    .await
}
