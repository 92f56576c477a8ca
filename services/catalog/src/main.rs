//! `harvest-catalog`: runs the catalog service.

use std::process::ExitCode;

use harvest_catalog::{App, CatalogConfig};

#[tokio::main]
async fn main() -> ExitCode {
    harvest_kit::cli::main(
        harvest_catalog::SERVICE,
        "The Harvest catalog: products, prices, stock lots and reservations.",
        |config: CatalogConfig, shutdown| async move {
            let app = App::build(config).await?;
            app.run_until_stopped(shutdown).await?;
            Ok(())
        },
    )
    .await
}
