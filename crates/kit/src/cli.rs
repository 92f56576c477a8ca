//! The `main` every service shares: command line → configuration (errors go
//! to stderr, as tracing is not up yet) → telemetry → run until SIGINT or
//! SIGTERM → drain → flush telemetry.

use std::error::Error;
use std::fmt::Debug;
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::TelemetryConfig;

/// Any error a service's start or run ends with.
pub type BoxError = Box<dyn Error + Send + Sync>;

/// A service's configuration, as `main` needs it.
pub trait ServiceConfig: Default + Serialize + DeserializeOwned + Debug {
    /// Problems that make the configuration unusable.
    fn validate(&self) -> Result<(), String>;
    fn telemetry(&self) -> &TelemetryConfig;
}

const SETTINGS_HELP: &str = "Every setting has a default; override it in a TOML file (--config) or \
with an environment variable named HARVEST_<SECTION>__<KEY>, for example \
HARVEST_BUS__BROKERS=127.0.0.1:9092 or HARVEST_REDIS__URL=redis://127.0.0.1:6379. \
--print-config shows every setting and its current value.";

/// Parses the command line, loads and checks the configuration, starts
/// telemetry and runs `serve` until a shutdown signal.
pub async fn main<C, Serve, Fut>(
    service: &'static str,
    about: &'static str,
    serve: Serve,
) -> ExitCode
where
    C: ServiceConfig,
    Serve: FnOnce(C, CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), BoxError>>,
{
    let name = format!("harvest-{service}");
    let command = clap::Command::new(name.clone())
        .version(env!("CARGO_PKG_VERSION"))
        .about(about)
        .after_help(SETTINGS_HELP)
        .arg(
            clap::Arg::new("config")
                .long("config")
                .short('c')
                .env("HARVEST_CONFIG")
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help("A TOML configuration file"),
        )
        .arg(
            clap::Arg::new("print-config")
                .long("print-config")
                .action(clap::ArgAction::SetTrue)
                .help("Print the effective configuration and exit"),
        );
    let matches = command.get_matches();
    let file = matches.get_one::<PathBuf>("config");
    let config: C = match crate::config::load(file.map(PathBuf::as_path)) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{name}: {}", crate::config::describe(&error));
            return ExitCode::FAILURE;
        }
    };
    if let Err(problem) = config.validate() {
        eprintln!("{name}: invalid configuration: {problem}");
        return ExitCode::FAILURE;
    }
    if matches.get_flag("print-config") {
        println!("{config:#?}");
        return ExitCode::SUCCESS;
    }
    let telemetry = match crate::telemetry::init(service, config.telemetry()) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("{name}: telemetry: {error}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = crate::shutdown::on_signals();
    let code = match serve(config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let chain = harvest_domain::cause_chain(error.as_ref());
            tracing::error!(error.cause_chain = %chain, "stopped with an error");
            eprintln!("{name}: {chain}");
            ExitCode::FAILURE
        }
    };
    drop(telemetry);
    code
}
