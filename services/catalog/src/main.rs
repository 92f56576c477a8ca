//! `harvest-catalog`: runs the catalog service.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use harvest_catalog::{App, CatalogConfig};

/// The Harvest catalog: products, prices, stock lots and reservations.
///
/// Every setting has a default; override it in a TOML file or with an
/// environment variable named HARVEST_<SECTION>__<KEY>, for example
/// HARVEST_BUS__BROKERS=127.0.0.1:9092 or HARVEST_REDIS__URL=redis://127.0.0.1:6379.
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
    let config: CatalogConfig = match harvest_kit::config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("harvest-catalog: {}", harvest_kit::config::describe(&error));
            return ExitCode::FAILURE;
        }
    };
    if let Err(problem) = config.validate() {
        eprintln!("harvest-catalog: invalid configuration: {problem}");
        return ExitCode::FAILURE;
    }
    if cli.print_config {
        println!("{config:#?}");
        return ExitCode::SUCCESS;
    }
    let _telemetry = match harvest_kit::telemetry::init(harvest_catalog::SERVICE, &config.telemetry)
    {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("harvest-catalog: telemetry: {error}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = harvest_kit::shutdown::on_signals();
    let app = match App::build(config).await {
        Ok(app) => app,
        Err(error) => {
            tracing::error!(error.cause_chain = ?error, "catalog failed to start");
            return ExitCode::FAILURE;
        }
    };
    match app.run_until_stopped(shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error.cause_chain = ?error, "catalog stopped with an error");
            ExitCode::FAILURE
        }
    }
}
