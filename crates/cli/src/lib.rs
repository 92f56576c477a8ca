//! `harvest`: the command-line client for people who poke at a running
//! Harvest system. It browses the catalog, places, follows and cancels orders,
//! plays a courier against the delivery service, and reads and refunds
//! payments, and lists the services' audit logs, all through the services'
//! public gRPC APIs; and it lists and replays the consumers' dead letters,
//! through Kafka.
//!
//! Output is for people by default (aligned blocks and tables, money as
//! `¥12.34`, enum values as `IN_TRANSIT`), or JSON with `--json`. Exit codes:
//! 0 on success, 1 on failure, 2 for a usage error or `INVALID_ARGUMENT`, and
//! 3 when `order watch` sees the order cancelled.

#![forbid(unsafe_code)]

mod args;
mod audit;
mod catalog;
mod connect;
mod couriers;
mod credentials;
mod dlq;
mod enums;
mod error;
mod orders;
mod output;
mod payments;
pub mod trace;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::connect::{Context, Endpoints, TlsArgs};
use crate::credentials::{Credentials, IdentityArgs};
pub use crate::error::CliError;
use crate::output::Printer;

/// Talk to a running Harvest system: catalog, orders, delivery and payments.
///
/// Each service's endpoint comes from its flag, else its environment variable,
/// else the service's default port on this machine.
#[derive(Debug, Parser)]
#[command(name = "harvest", version, max_term_width = 100)]
pub struct Cli {
    /// Print JSON: one object per result, one per line for streams.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        conflicts_with = "quiet"
    )]
    json: bool,
    /// Print only ids, one per line (for `order watch`, each state reached):
    /// for scripts, e.g. ORDER=$(harvest -q order place …).
    #[arg(long, short, global = true, help_heading = "Global options")]
    quiet: bool,
    /// Seconds a service may take to answer a request.
    #[arg(long, global = true, help_heading = "Global options", value_name = "SECS",
          default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,
    #[command(flatten)]
    endpoints: Endpoints,
    #[command(flatten)]
    tls: TlsArgs,
    #[command(flatten)]
    identity: IdentityArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List products, optionally by category, province or seller.
    Products(catalog::ProductsArgs),
    /// Show one product: price, what is available and its earliest best-before, seller, origin and pickup point.
    Product(catalog::ProductArgs),
    /// Show a product's stock: on hand, available and reserved, in total and
    /// per lot.
    Stock(catalog::ProductArgs),
    /// Place, show, list, watch and cancel orders.
    #[command(subcommand)]
    Order(orders::OrderCommand),
    /// Register couriers, report their status and follow their assignments.
    #[command(subcommand)]
    Courier(couriers::CourierCommand),
    /// Show shipments; confirm pickup or delivery, or report a failure.
    #[command(subcommand)]
    Shipment(couriers::ShipmentCommand),
    /// Show, list and refund payments.
    #[command(subcommand)]
    Payment(payments::PaymentCommand),
    /// List a service's audit log: price changes, stock receipts, refunds
    /// and delivery overrides, with who made them and why.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// List, show and replay a consumer's dead letters (reads Kafka).
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Print a shell completion script, e.g.
    /// `harvest completions bash > ~/.local/share/bash-completion/completions/harvest`.
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
}

/// How a successful run ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// `order watch` saw the order cancelled.
    OrderCancelled,
}

impl Outcome {
    pub fn exit_code(self) -> ExitCode {
        match self {
            Outcome::Done => ExitCode::SUCCESS,
            Outcome::OrderCancelled => ExitCode::from(error::exit::CANCELLED),
        }
    }
}

/// Runs one command.
pub async fn run(cli: Cli) -> Result<Outcome, CliError> {
    if let Command::Completions { shell } = cli.command {
        let mut command = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(shell, &mut command, "harvest", &mut std::io::stdout());
        return Ok(Outcome::Done);
    }
    let context = Context {
        endpoints: cli.endpoints,
        printer: Printer {
            json: cli.json,
            quiet: cli.quiet,
        },
        timeout: Duration::from_secs(cli.timeout),
        credentials: Credentials::from_args(&cli.identity)?,
        tls: cli.tls.config()?,
    };
    match cli.command {
        Command::Products(request) => catalog::products(&context, request).await?,
        Command::Product(request) => catalog::product(&context, request).await?,
        Command::Stock(request) => catalog::stock(&context, request).await?,
        Command::Order(command) => return orders::run(&context, command).await,
        Command::Courier(command) => couriers::courier(&context, command).await?,
        Command::Shipment(command) => couriers::shipment(&context, command).await?,
        Command::Payment(command) => payments::run(&context, command).await?,
        Command::Audit(command) => audit::run(&context, command).await?,
        Command::Dlq(command) => dlq::run(&context, command).await?,
        Command::Completions { .. } => {}
    }
    Ok(Outcome::Done)
}

/// Tells the error on stderr and gives the exit code for it.
pub fn report(error: &CliError) -> ExitCode {
    if error.is_broken_pipe() {
        return ExitCode::SUCCESS;
    }
    eprintln!("{}", error::describe(error));
    ExitCode::from(error.exit_code())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use clap::error::ErrorKind;

    use super::*;

    fn parse(line: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("harvest").chain(line.split_whitespace()))
    }

    fn rejected(line: &str) -> String {
        let error = parse(line).expect_err(line);
        assert_eq!(error.exit_code(), 2, "{line}");
        error.to_string()
    }

    const PLACE: &str = "order place --buyer buyer-1 --region east --recipient Zhang \
                         --phone 13800000000 --province Zhejiang --county Xihu --street Wensan";

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn completions_cover_every_command() {
        let mut script = Vec::new();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut Cli::command(),
            "harvest",
            &mut script,
        );
        let script = String::from_utf8(script).expect("utf-8");
        for command in [
            "products", "order", "courier", "shipment", "payment", "audit", "dlq",
        ] {
            assert!(script.contains(command), "{command} is completed");
        }
        assert!(script.contains("--json"));
        assert!(rejected("completions tcsh").contains("bash"));
    }

    #[test]
    fn defaults_are_the_local_services() {
        let cli = parse("products").expect("parses");
        assert_eq!(cli.endpoints.catalog, "http://127.0.0.1:50051");
        assert_eq!(cli.endpoints.delivery, "http://127.0.0.1:50054");
        assert!(!cli.json);
        assert_eq!(cli.timeout, 30);
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = parse("order show ord_1 --json --orders http://10.0.0.7:7000").expect("parses");
        assert!(cli.json);
        assert_eq!(cli.endpoints.orders, "http://10.0.0.7:7000");
    }

    #[test]
    fn order_lines_are_checked_before_any_call() {
        let cli =
            parse(&format!("{PLACE} --line prd_apples=3 --line prd_honey=1")).expect("parses");
        let Command::Order(orders::OrderCommand::Place(_)) = cli.command else {
            panic!("not a place command");
        };
        let error = rejected(&format!("{PLACE} --line apples"));
        assert!(error.contains("--line"), "{error}");
        assert!(error.contains("PRODUCT=QUANTITY"), "{error}");
        let error = rejected(&format!("{PLACE} --line apples=0"));
        assert!(error.contains("positive"), "{error}");
        let error = rejected(PLACE);
        assert!(error.contains("--line"), "{error}");
    }

    #[test]
    fn bad_values_are_usage_errors_naming_the_flag() {
        let error = rejected("products --category fruits");
        assert!(error.contains("--category"), "{error}");
        assert!(error.contains("vegetable"), "{error}");
        let error = rejected("products --limit 0");
        assert!(error.contains("--limit"), "{error}");
        let error = rejected("order show ord_1 --orders localhost:50052");
        assert!(error.contains("--orders"), "{error}");
        let error = rejected("payment refund ord_1 --reason x --amount 12.50");
        assert!(error.contains("--amount"), "{error}");
        let error = rejected("order show {ord}");
        assert!(error.contains("ORDER_ID"), "{error}");
        let error = rejected(&format!("{PLACE} --line a=1 --key a/b"));
        assert!(error.contains("--key"), "{error}");
    }

    #[test]
    fn audit_list_names_a_service_with_a_log() {
        let cli = parse("audit list --service payments --subject ord_1 --limit 5").expect("parses");
        let Command::Audit(audit::AuditCommand::List(request)) = cli.command else {
            panic!("not an audit command");
        };
        let text = format!("{request:?}");
        assert!(text.contains("Payments"), "{text}");
        assert!(text.contains("limit: 5"), "{text}");
        let error = rejected("audit list --service orders");
        assert!(error.contains("catalog"), "{error}");
        rejected("audit list");
        rejected("audit list --service catalog --subject {prd}");
    }

    #[test]
    fn courier_status_needs_exactly_one_availability() {
        let base = "courier status c-1 --lat 35.7 --lon 109.4";
        assert!(parse(&format!("{base} --available")).is_ok());
        assert!(parse(&format!("{base} --unavailable")).is_ok());
        rejected(base);
        rejected(&format!("{base} --available --unavailable"));
        let error = rejected("courier status c-1 --lat 95 --lon 109.4 --available");
        assert!(error.contains("--lat"), "{error}");
        assert!(parse("courier status c-1 --lat -33.9 --lon -70.6 --available").is_ok());
    }

    #[test]
    fn courier_register_defaults() {
        let cli = parse(
            "courier register --name Li --county Luochuan --province Shaanxi --region north \
             --lat 35.7 --lon 109.4 --vehicle van",
        )
        .expect("parses");
        let Command::Courier(couriers::CourierCommand::Register(request)) = cli.command else {
            panic!("not a register command");
        };
        let text = format!("{request:?}");
        assert!(text.contains("vehicle: Van"), "{text}");
        assert!(text.contains("capacity: 4"), "{text}");
    }

    #[test]
    fn help_and_version_exit_zero() {
        for line in ["--help", "order --help", "order place --help", "--version"] {
            let error = parse(line).expect_err(line);
            assert!(
                matches!(
                    error.kind(),
                    ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
                ),
                "{line}"
            );
            assert_eq!(error.exit_code(), 0, "{line}");
        }
    }
}
