//! `harvest-payments`: runs the payments service.

use std::process::ExitCode;

use harvest_payments::{App, PaymentsConfig};

#[tokio::main]
async fn main() -> ExitCode {
    harvest_kit::cli::main(
        harvest_payments::SERVICE,
        "The Harvest payments service: authorizations, captures, refunds and payouts to sellers.",
        |config: PaymentsConfig, shutdown| async move {
            let app = App::build(config).await?;
            app.run_until_stopped(shutdown).await?;
            Ok(())
        },
    )
    .await
}
