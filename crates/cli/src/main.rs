//! `harvest`: the command-line client of a running Harvest system.

use std::process::ExitCode;

use clap::Parser;
use harvest_cli::Cli;

fn main() -> ExitCode {
    // Parse before starting a runtime: usage errors exit with clap's code 2.
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: could not start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let _trace = harvest_cli::trace::join_caller_trace();
    match runtime.block_on(harvest_cli::run(cli)) {
        Ok(outcome) => outcome.exit_code(),
        Err(error) => harvest_cli::report(&error),
    }
}
