//! `harvest-stack`: runs Harvest locally, in one command.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use harvest_bus::{BusConfig, Topology};
use harvest_domain::{Region, Regions};
use harvest_kit::auth::Role;
use harvest_kit::issuer::Issuer;
use harvest_sim::couriers::CourierBehavior;
use harvest_sim::storefront::{Spike, Traffic};
use harvest_sim::{Clients, Plan, Target, report, seed};
use harvest_stack::{
    AUTH_DIR, ISSUER, Prometheus, ServiceKind, Stack, StackOptions, Supervision, TraceViewer,
};
use tokio_util::sync::CancellationToken;

/// Runs Harvest on this machine: Apache Kafka, Redis, the topics
/// and the four services, each as its own process on free loopback ports.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct StackArgs {
    /// Where logs and data go; cleared at start.
    #[arg(long, default_value = "target/harvest")]
    state_dir: PathBuf,
    /// Where the service binaries are (default: next to this one).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Export every service's spans to this OTLP/gRPC collector instead of
    /// the trace viewer.
    #[arg(long)]
    otlp_endpoint: Option<String>,
    /// Start neither the trace viewer (Zipkin, which every service sends its
    /// spans to) nor Prometheus (which scrapes every service's metrics);
    /// both start by default and their URLs are printed.
    #[arg(long)]
    no_observability: bool,
    /// The regions of the deployment, comma-separated.
    #[arg(long, default_value = "north,east,south,southwest")]
    regions: String,
    /// Partitions of each regional stream.
    #[arg(long, default_value_t = 2)]
    partitions: i32,
    /// Keep Redis's data in memory only, and the broker's log directories in
    /// a temporary folder removed when the stack stops, instead of both in
    /// the state directory.
    #[arg(long)]
    in_memory: bool,
    /// Run the services with authentication off: every caller may do
    /// anything. By default it is on, and every call needs a token of the
    /// stack's issuer (`harvest` signs its calls with the issuer's key; see
    /// `harvest-stack token` for other clients).
    #[arg(long)]
    no_auth: bool,
    /// Serve gRPC over TLS only, with certificates of an authority made for
    /// the run under `tls/` in the state directory (`harvest` trusts it with
    /// --ca-cert).
    #[arg(long)]
    tls: bool,
    /// The port of the reference storefront (the web shop built from
    /// `storefront/`), on 127.0.0.1; another free port when it is taken
    /// (0: any free port).
    #[arg(long, default_value_t = 8080)]
    storefront_port: u16,
    /// Where the built storefront is.
    #[arg(long, default_value = harvest_sim::shop::DIST_DIR)]
    storefront_dir: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Start everything, seed produce and couriers, drive simulated buyers
    /// and couriers with a festival spike in one region, print a live table
    /// per region and, at the end (or on Ctrl-C), a summary with the
    /// invariant checks; then stop everything. A service that exits is
    /// reported and restarted (after 1 s, doubling up to 30 s).
    Demo {
        #[command(flatten)]
        stack: StackArgs,
        /// Seconds of simulated traffic.
        #[arg(long, default_value_t = 60)]
        duration: u64,
        /// Orders per second in each region.
        #[arg(long, default_value_t = 2.0)]
        rate: f64,
        /// The region with a festival spike ("none" for no spike).
        #[arg(long, default_value = "east")]
        spike_region: String,
        /// How many times its normal rate the spiking region sees.
        #[arg(long, default_value_t = 5.0)]
        spike_factor: f64,
        /// When the spike starts, in seconds from the start of traffic.
        #[arg(long, default_value_t = 20)]
        spike_at: u64,
        /// How long the spike lasts, in seconds.
        #[arg(long, default_value_t = 15)]
        spike_for: u64,
        /// Seconds to wait after the traffic for every order to finish.
        #[arg(long, default_value_t = 90)]
        drain: u64,
    },
    /// Start everything with a sample catalog, print the endpoints, and run
    /// until Ctrl-C. A service that exits is reported and restarted (after
    /// 1 s, doubling up to 30 s).
    Run {
        #[command(flatten)]
        stack: StackArgs,
        /// Also register couriers at every collection point and simulate
        /// them: they pick up and deliver every order placed (from the
        /// storefront, `harvest` or any client), the buyer giving the
        /// delivery code at the door.
        #[arg(long)]
        couriers: bool,
    },
    /// Print a token of a running stack's issuer, for a client that calls
    /// the services as `--subject` in `--role`, e.g.
    /// `grpcurl -H "authorization: Bearer $(harvest-stack token --role buyer --subject buyer-hangzhou-1)" …`.
    Token {
        /// buyer, seller, courier, partner or operator.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Who the token speaks for: a buyer, seller, courier or partner id,
        /// or an operator's name.
        #[arg(long)]
        subject: String,
        /// Seconds the token is valid for.
        #[arg(long, default_value_t = 3_600)]
        valid_for: u32,
        /// The stack's state directory (its issuer is in `auth/` there).
        #[arg(long, default_value = "target/harvest")]
        state_dir: PathBuf,
    },
    /// Print the topics of a deployment, and create the missing ones with
    /// --create.
    Topics {
        /// Brokers to create the topics on.
        #[arg(long, default_value = "127.0.0.1:9092")]
        brokers: String,
        /// Every region of the deployment, comma-separated.
        #[arg(long, default_value_t = Regions::default().to_string())]
        regions: String,
        #[arg(long, default_value_t = BusConfig::default().partitions)]
        partitions: i32,
        #[arg(long, default_value_t = BusConfig::default().replication_factor)]
        replication_factor: i32,
        /// Prepended to every topic name.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Create the missing topics on --brokers.
        #[arg(long)]
        create: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo {
            stack,
            duration,
            rate,
            spike_region,
            spike_factor,
            spike_at,
            spike_for,
            drain,
        } => {
            let spike = (spike_region != "none").then_some((
                spike_region,
                spike_factor,
                spike_at,
                spike_for,
            ));
            demo(stack, duration, rate, spike, drain).await
        }
        Command::Run { stack, couriers } => run(stack, couriers).await,
        Command::Token {
            role,
            subject,
            valid_for,
            state_dir,
        } => token(role, &subject, valid_for, &state_dir),
        Command::Topics {
            brokers,
            regions,
            partitions,
            replication_factor,
            prefix,
            create,
        } => {
            topics(
                brokers,
                regions,
                partitions,
                replication_factor,
                prefix,
                create,
            )
            .await
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(3),
        Err(error) => {
            eprintln!("harvest-stack: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Settings that make a local run lively: short deadlines, quick retries.
fn local_settings() -> Vec<(ServiceKind, String, String)> {
    [
        (
            ServiceKind::Orders,
            "HARVEST_ORDERS__PAYMENT_DEADLINE_SECS",
            "60",
        ),
        (
            ServiceKind::Delivery,
            "HARVEST_ASSIGNMENT__RETRY_INTERVAL_MS",
            "500",
        ),
        (
            ServiceKind::Delivery,
            "HARVEST_ASSIGNMENT__DEADLINE_SECS",
            "30",
        ),
        (
            ServiceKind::Delivery,
            "HARVEST_ASSIGNMENT__STREAM_POLL_MS",
            "250",
        ),
    ]
    .into_iter()
    .map(|(kind, key, value)| (kind, key.to_owned(), value.to_owned()))
    .collect()
}

/// The trace viewer, Prometheus and the storefront of a run, stopped when
/// dropped.
#[derive(Default)]
struct Observability {
    traces: Option<TraceViewer>,
    metrics: Option<Prometheus>,
    storefront: Option<Storefront>,
}

/// The reference storefront's server.
struct Storefront {
    url: String,
    stop: CancellationToken,
}

impl Drop for Storefront {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The storefront's port: the one asked for, else any free one.
async fn storefront_listener(port: u16) -> anyhow::Result<tokio::net::TcpListener> {
    let bind = |port| tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port));
    match bind(port).await {
        Ok(listener) => Ok(listener),
        Err(_) => bind(0).await.context("binding the storefront's port"),
    }
}

async fn start(args: &StackArgs, default_ports: bool) -> anyhow::Result<(Stack, Observability)> {
    if args.state_dir.exists() {
        std::fs::remove_dir_all(&args.state_dir)
            .with_context(|| format!("clearing {}", args.state_dir.display()))?;
    }
    let mut options = StackOptions::new(&args.state_dir);
    options.durable = !args.in_memory;
    let names: Vec<String> = args
        .regions
        .split(',')
        .map(|r| r.trim().to_owned())
        .collect();
    options.regions = Regions::try_from(names).context("--regions")?;
    options.partitions = args.partitions;
    options.bin_dir.clone_from(&args.bin_dir);
    options.otlp_endpoint.clone_from(&args.otlp_endpoint);
    options.service_env = local_settings();
    options.prefer_default_ports = default_ports;
    options.auth = !args.no_auth;
    options.tls = args.tls;
    // Bound first, so that the services let its pages in.
    let shop_listener = storefront_listener(args.storefront_port).await?;
    let shop_origin = harvest_sim::shop::origin(&shop_listener)?;
    options.env.push((
        "HARVEST_SERVER__WEB_ORIGINS".to_owned(),
        shop_origin.clone(),
    ));
    let regions = options.regions.clone();
    let mut observability = Observability::default();
    if !args.no_observability && args.otlp_endpoint.is_none() {
        println!("starting the trace viewer (Zipkin)…");
        let log = args.state_dir.join("logs/zipkin.log");
        let traces = TraceViewer::start(&log)
            .await
            .context("starting the trace viewer (or pass --no-observability)")?;
        options.otlp_endpoint = Some(traces.otlp_endpoint());
        observability.traces = Some(traces);
    }
    println!("starting redis, the broker and the four services…");
    let stack = Stack::start(options).await?;
    if !args.no_observability {
        let targets: Vec<(String, std::net::SocketAddr)> = ServiceKind::ALL
            .into_iter()
            .filter_map(|kind| Some((kind.name().to_owned(), stack.admin_addr(kind)?)))
            .collect();
        let metrics = Prometheus::start(&args.state_dir.join("prometheus"), &targets)
            .context("starting Prometheus (or pass --no-observability)")?;
        observability.metrics = Some(metrics);
    }
    match stack.broker_log_file() {
        Some(log) => println!("  kafka     {}  log {}", stack.bootstrap(), log.display()),
        None => println!("  kafka     {}", stack.bootstrap()),
    }
    println!("  redis     {}", stack.redis_url());
    for kind in ServiceKind::ALL {
        let grpc = stack
            .grpc_addr(kind)
            .map(|a| a.to_string())
            .unwrap_or_default();
        let admin = stack
            .admin_addr(kind)
            .map(|a| a.to_string())
            .unwrap_or_default();
        println!(
            "  {kind:<9} grpc {grpc:<16} metrics http://{admin}/metrics  log {}",
            stack.log_file(kind).display()
        );
    }
    if let Some(traces) = &observability.traces {
        println!(
            "  traces    {}  (Zipkin: find an order with tag order_id=…)",
            traces.url()
        );
    }
    if let Some(metrics) = &observability.metrics {
        println!(
            "  metrics   {}  (Prometheus, scraping the four services)",
            metrics.url()
        );
    }
    let shop = harvest_sim::shop::Shop::for_stack(&stack, &regions, &args.storefront_dir)?;
    let built = shop.is_built();
    let stop_shop = CancellationToken::new();
    tokio::spawn(harvest_sim::shop::serve(
        shop_listener,
        shop,
        stop_shop.clone(),
    ));
    let url = format!("{shop_origin}/");
    if built {
        println!("  storefront {url}  (the reference web shop: open it in a browser)");
    } else {
        println!(
            "  storefront {url}  (not built: no {}; `make storefront` builds it)",
            args.storefront_dir.display()
        );
    }
    observability.storefront = Some(Storefront {
        url,
        stop: stop_shop,
    });
    Ok((stack, observability))
}

/// How often the services are looked at.
const SUPERVISION_INTERVAL: Duration = Duration::from_millis(250);

/// Until `stop`: reports a service that exits without being asked to the
/// moment it is seen, and restarts it with backoff (1 s doubling to 30 s).
async fn supervise(stack: &mut Stack, stop: &CancellationToken) {
    let mut ticker = tokio::time::interval(SUPERVISION_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => stack.supervise(print_supervision).await,
        }
    }
}

fn print_supervision(event: &Supervision) {
    let mark = match event {
        Supervision::Restarted { .. } => "",
        Supervision::Exited { .. } | Supervision::RestartFailed { .. } => "!! ",
    };
    println!("{mark}supervisor: {event}");
}

/// Ctrl-C (or SIGTERM, as `kill` sends) once cancels `token`, so that every
/// process the stack started is stopped; Ctrl-C a second time exits at once.
fn interrupt() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            interrupted = tokio::signal::ctrl_c() => {
                if interrupted.is_ok() {
                    eprintln!("\ninterrupted: finishing up (Ctrl-C again to quit at once)");
                    cancel.cancel();
                }
            }
            () = terminate => {
                eprintln!("\nterminated: finishing up");
                cancel.cancel();
            }
        }
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    });
    token
}

/// A bar at the bottom of the terminal: how far the traffic has come.
fn traffic_progress(duration: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(duration);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} traffic {pos}/{len} s [{wide_bar}] {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

async fn demo(
    args: StackArgs,
    duration: u64,
    rate: f64,
    spike: Option<(String, f64, u64, u64)>,
    drain: u64,
) -> anyhow::Result<bool> {
    let stop = interrupt();
    let (mut stack, observability) = start(&args, false).await?;
    let regions: Vec<Region> = stack.options().regions.iter().cloned().collect();
    let spike = match spike {
        None => None,
        Some((region, factor, at, length)) => Some(Spike {
            region: stack
                .options()
                .regions
                .resolve(&region)
                .context("--spike-region")?,
            factor,
            start: Duration::from_secs(at),
            length: Duration::from_secs(length),
        }),
    };
    if let Some(spike) = &spike {
        println!(
            "traffic: {rate} orders/s in each of {} regions for {duration} s; {} at {}× from {} s to {} s",
            regions.len(),
            spike.region,
            spike.factor,
            spike.start.as_secs(),
            (spike.start + spike.length).as_secs()
        );
    }
    let plan = Plan {
        traffic: Traffic {
            regions,
            rate_per_region: rate,
            duration: Duration::from_secs(duration),
            spike,
            declined: 0.03,
            flaky_payment: 0.05,
            buyer_cancels: 0.03,
            max_in_flight: 2_000,
            retry_unanswered: false,
        },
        couriers: CourierBehavior::default(),
        couriers_per_point: 4,
        courier_capacity: 20,
        drain_timeout: Duration::from_secs(drain),
    };
    println!(
        "seeding produce from villages in eleven provinces and couriers at every collection point…"
    );
    let target = Target::of(&stack).await?;
    let simulated = CancellationToken::new();
    let progress = traffic_progress(duration);
    let simulation = async {
        let outcome = harvest_sim::run(&target, &plan, stop, |tick| {
            let table = report::tick_table(tick);
            progress.set_position(tick.elapsed.as_secs().min(duration));
            if tick.draining {
                progress.set_message("traffic over; every order ending");
            }
            // A bar shows on a terminal only; elsewhere the tables are the
            // progress.
            if progress.is_hidden() {
                print!("{table}");
            } else {
                progress.println(table.trim_end());
            }
        })
        .await;
        progress.finish_and_clear();
        simulated.cancel();
        outcome
    };
    let ((), outcome) = tokio::join!(supervise(&mut stack, &simulated), simulation);
    let restarts = stack.restarts().clone();
    println!("stopping every process…");
    stack.stop();
    drop(observability);
    let mut summary = outcome?;
    summary.service_restarts = restarts
        .into_iter()
        .map(|(kind, count)| (kind.name().to_owned(), count))
        .collect();
    println!();
    print!("{}", report::summary(&summary));
    Ok(summary.findings.all_clear())
}

async fn run(args: StackArgs, couriers: bool) -> anyhow::Result<bool> {
    let stop = interrupt();
    let (mut stack, observability) = start(&args, true).await?;
    let mut clients = Clients::connect(&stack).await?;
    let products = seed::seed_catalog(&mut clients.catalog).await?;
    if couriers {
        let fleet = harvest_sim::couriers::register_fleet(
            &mut clients.delivery,
            &stack.options().regions,
            2,
            20,
        )
        .await?;
        println!(
            "seeded {} products and {} simulated couriers, who deliver every order placed",
            products.len(),
            fleet.len()
        );
        tokio::spawn(harvest_sim::couriers::run_fleet(
            clients.delivery.clone(),
            fleet,
            CourierBehavior {
                failures: 0.0,
                ..CourierBehavior::default()
            },
            Default::default(),
            std::sync::Arc::new(harvest_sim::couriers::Doorstep::asking_buyers(
                clients.orders.clone(),
            )),
            stop.clone(),
        ));
    } else {
        println!(
            "seeded {} products; no couriers yet: register some with `harvest courier register` \
             (or run with --couriers for simulated ones)",
            products.len()
        );
    }
    if let Some(storefront) = &observability.storefront {
        println!("the storefront: {}", storefront.url);
    }
    println!();
    let on_defaults = ServiceKind::ALL
        .into_iter()
        .all(|kind| stack.grpc_addr(kind).map(|addr| addr.port()) == Some(kind.default_ports().0));
    if let Some(tls) = stack.tls_files() {
        println!("the services speak TLS only; point the harvest client at them:");
        for kind in ServiceKind::ALL {
            println!(
                "  export HARVEST_{}_URL={}",
                kind.name().to_uppercase(),
                stack.endpoint(kind).unwrap_or_default()
            );
        }
        println!("  export HARVEST_CA_CERT={}", tls.ca_file.display());
    } else if on_defaults {
        println!("the services are on their default ports: `harvest` finds them as it is");
    } else {
        println!("some default ports were taken; point the harvest client at the services:");
        for kind in ServiceKind::ALL {
            println!(
                "  export HARVEST_{}_URL={}",
                kind.name().to_uppercase(),
                stack.endpoint(kind).unwrap_or_default()
            );
        }
    }
    println!(
        "dead letters: export HARVEST_BUS__BROKERS={} for `harvest dlq`",
        stack.bootstrap()
    );
    if let Some(issuer) = stack.issuer() {
        let dir = issuer.jwks_file().parent().unwrap_or(&args.state_dir);
        println!(
            "authentication is on: `harvest` signs its calls with the key in {}; for other \
             clients, `harvest-stack token --role buyer --subject buyer-hangzhou-1`",
            dir.display()
        );
    }
    println!("running (Ctrl-C to stop); a service that exits is reported here and restarted");
    supervise(&mut stack, &stop).await;
    println!("stopping every process…");
    stack.stop();
    drop(observability);
    Ok(true)
}

fn parse_role(name: &str) -> Result<Role, String> {
    Role::parse(name).ok_or_else(|| "one of buyer, seller, courier, partner, operator".to_owned())
}

fn token(role: Role, subject: &str, valid_for: u32, state_dir: &Path) -> anyhow::Result<bool> {
    let subject = subject.trim();
    if subject.is_empty() {
        anyhow::bail!("--subject must not be empty");
    }
    let dir = state_dir.join(AUTH_DIR);
    let issuer = Issuer::open(&dir, ISSUER).with_context(|| {
        format!(
            "no issuer key in {}: is a stack running there (`make run`) with authentication on?",
            dir.display()
        )
    })?;
    println!("{}", issuer.token_with(role, subject, i64::from(valid_for)));
    Ok(true)
}

async fn topics(
    brokers: String,
    regions: String,
    partitions: i32,
    replication_factor: i32,
    prefix: String,
    create: bool,
) -> anyhow::Result<bool> {
    let names: Vec<String> = regions.split(',').map(|r| r.trim().to_owned()).collect();
    let regions = Regions::try_from(names).context("--regions")?;
    let bus = BusConfig {
        brokers,
        topic_prefix: prefix,
        partitions,
        replication_factor,
        ..BusConfig::default()
    };
    bus.validate().map_err(anyhow::Error::msg)?;
    let topics = Topology::new(&bus, regions).all_topics();
    for topic in &topics {
        println!(
            "{:<48} partitions {:>3}  replication {}  retention {} h",
            topic.name,
            topic.partitions,
            topic.replication_factor,
            topic.retention_ms / 3_600_000
        );
    }
    if create {
        let created = harvest_bus::admin::ensure_topics(&bus, &topics).await?;
        println!(
            "created {} of {} topics on {}",
            created.len(),
            topics.len(),
            bus.brokers
        );
    }
    Ok(true)
}
