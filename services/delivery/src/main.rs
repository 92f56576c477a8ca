//! `harvest-delivery`: runs the delivery service.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use harvest_delivery::{App, DeliveryConfig};

/// The Harvest delivery service: couriers, shipments and their assignment.
///
/// Every setting has a default; override it in a TOML file or with an
/// environment variable named HARVEST_<SECTION>__<KEY>, for example
/// HARVEST_BUS__BROKERS=127.0.0.1:9092 or HARVEST_ASSIGNMENT__DEADLINE_SECS=300.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// A TOML configuration file.
    #[arg(long, short, env = "HARVEST_CONFIG")]
    config: Option<PathBuf>,
    /// Print the effective configuration and exit.
    #[arg(long)]
    print_config: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config: DeliveryConfig = match harvest_kit::config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!(
                "harvest-delivery: {}",
                harvest_kit::config::describe(&error)
            );
            return ExitCode::FAILURE;
        }
    };
    if let Err(problem) = config.validate() {
        eprintln!("harvest-delivery: invalid configuration: {problem}");
        return ExitCode::FAILURE;
    }
    if cli.print_config {
        println!("{config:#?}");
        return ExitCode::SUCCESS;
    }
    let _telemetry =
        match harvest_kit::telemetry::init(harvest_delivery::SERVICE, &config.telemetry) {
            Ok(guard) => guard,
            Err(error) => {
                eprintln!("harvest-delivery: telemetry: {error}");
                return ExitCode::FAILURE;
            }
        };
    let shutdown = harvest_kit::shutdown::on_signals();
    let app = match App::build(config).await {
        Ok(app) => app,
        Err(error) => {
            tracing::error!(error.cause_chain = ?error, "delivery failed to start");
            return ExitCode::FAILURE;
        }
    };
    match app.run_until_stopped(shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error.cause_chain = ?error, "delivery stopped with an error");
            ExitCode::FAILURE
        }
    }
}
