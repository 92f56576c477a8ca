//! `harvest-bench`: how much Harvest takes on this machine, and how a
//! regional spike affects the other regions. Starts the whole system locally,
//! measures the machine's own ceilings, climbs a ladder of arrival rates,
//! runs a spike and a flash sale, checks the invariants, and writes
//! `target/bench/results.json`.

use harvest_kit::auth::Role;
use harvest_kit::issuer::act_as;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use futures::StreamExt;
use harvest_domain::{Region, Regions};
use harvest_proto::catalog::v1::{
    Category, CollectionPointInput, CreateProductRequest, GetStockRequest, ReceiveStockLotRequest,
    Unit,
};
use harvest_proto::common::v1::{Date, GeoPoint, OrderLine, Origin, Seller, SellerKind};
use harvest_sim::bench;
use harvest_sim::couriers::CourierBehavior;
use harvest_sim::stats::{Samples, millis};
use harvest_sim::storefront::{Spike, Traffic};
use harvest_sim::{Phase, Session, Setup, Target};
use harvest_stack::{ServiceKind, Stack, StackOptions};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Benchmarks Harvest on this machine.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Total arrival rates to climb, orders per second over all regions.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10,25,50,100,200,300,400,600,800,1000,1500,2000"
    )]
    ladder: Vec<f64>,
    /// Seconds each rung is measured (after its warm-up).
    #[arg(long, default_value_t = 30)]
    rung_secs: u64,
    /// Seconds of warm-up before each rung is measured.
    #[arg(long, default_value_t = 5)]
    warmup_secs: u64,
    /// Seconds before and during the regional spike.
    #[arg(long, default_value_t = 20)]
    spike_secs: u64,
    /// The spike multiplies one region's rate by this.
    #[arg(long, default_value_t = 10.0)]
    spike_factor: f64,
    /// Orders fired at once at one product in the flash sale.
    #[arg(long, default_value_t = 3_000)]
    flash_orders: usize,
    /// Units of that product in stock.
    #[arg(long, default_value_t = 300)]
    flash_stock: i64,
    /// Partitions of each regional stream.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// The regions of the deployment.
    #[arg(long, default_value = "north,east,south,southwest")]
    regions: String,
    /// How long a consumer's fetch may wait at the broker for new events.
    #[arg(long, default_value_t = harvest_bus::BusConfig::default().fetch_wait_max_ms)]
    fetch_wait_ms: u32,
    /// How many bytes a consumer's fetch waits for at the broker before it
    /// answers (up to the fetch wait).
    #[arg(long, default_value_t = harvest_bus::BusConfig::default().fetch_min_bytes)]
    fetch_min_bytes: u32,
    /// How long a producer waits to batch events.
    #[arg(long, default_value_t = harvest_bus::BusConfig::default().linger_ms)]
    linger_ms: u32,
    /// Worker threads of each service's async runtime (`TOKIO_WORKER_THREADS`);
    /// 0 keeps the runtime's default, one per core.
    #[arg(long, default_value_t = 1)]
    service_threads: usize,
    /// Keep Redis's data in an append-only file, and the broker's log
    /// directories in the state directory instead of a temporary folder.
    #[arg(long)]
    durable: bool,
    /// Run the services with authentication off. By default it is on, as
    /// in the local stack: every call carries a token the client signs and
    /// the service verifies.
    #[arg(long)]
    no_auth: bool,
    /// With --durable: when Redis writes its append-only file to disk
    /// (`always`: before it answers each write; `everysec`: once a second).
    #[arg(long, default_value = "always", value_parser = ["always", "everysec"])]
    redis_fsync: String,
    /// Where logs go.
    #[arg(long, default_value = "target/bench/run")]
    state_dir: PathBuf,
    /// Where the results go.
    #[arg(long, default_value = "target/bench/results.json")]
    out: PathBuf,
}

/// The thresholds a rung must meet.
const PLACE_P99: f64 = 0.025;
const CONFIRM_P99: f64 = 0.250;
const MAX_ERROR_RATIO: f64 = 0.001;

#[tokio::main]
async fn main() -> ExitCode {
    match bench(Cli::parse()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(3),
        Err(error) => {
            eprintln!("harvest-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, name)| name.trim().to_owned())
        })
        .unwrap_or_default();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| info.lines().next().map(str::to_owned))
        .unwrap_or_default();
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "memory": memory,
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
    })
}

fn ms(seconds: Option<f64>) -> Value {
    seconds.map_or(Value::Null, |s| json!((s * 1000.0 * 10.0).round() / 10.0))
}

fn merged(map: &BTreeMap<String, Samples>, regions: &[&str]) -> Samples {
    let mut all = Samples::default();
    for (region, samples) in map {
        if regions.is_empty() || regions.contains(&region.as_str()) {
            all.extend(samples);
        }
    }
    all
}

fn traffic(
    regions: &[Region],
    rate_per_region: f64,
    seconds: u64,
    spike: Option<Spike>,
) -> Traffic {
    Traffic {
        regions: regions.to_vec(),
        rate_per_region,
        duration: Duration::from_secs(seconds),
        spike,
        declined: 0.0,
        flaky_payment: 0.0,
        buyer_cancels: 0.0,
        max_in_flight: 20_000,
        retry_unanswered: false,
    }
}

async fn bench(cli: Cli) -> anyhow::Result<bool> {
    let names: Vec<String> = cli
        .regions
        .split(',')
        .map(|r| r.trim().to_owned())
        .collect();
    let deployment = Regions::try_from(names).context("--regions")?;
    let regions: Vec<Region> = deployment.iter().cloned().collect();
    let _ = std::fs::remove_dir_all(&cli.state_dir);
    let mut options = StackOptions::new(&cli.state_dir);
    options.durable = cli.durable;
    options.auth = !cli.no_auth;
    options.redis_fsync = match cli.redis_fsync.as_str() {
        "everysec" => harvest_stack::Fsync::EverySec,
        _ => harvest_stack::Fsync::Always,
    };
    options.regions = deployment.clone();
    options.partitions = cli.partitions;
    options.services = Vec::new();
    options.log_filter = "warn,rdkafka=error".to_owned();
    options.env = vec![
        (
            "HARVEST_BUS__FETCH_WAIT_MAX_MS".to_owned(),
            cli.fetch_wait_ms.to_string(),
        ),
        (
            "HARVEST_BUS__LINGER_MS".to_owned(),
            cli.linger_ms.to_string(),
        ),
        (
            "HARVEST_BUS__FETCH_MIN_BYTES".to_owned(),
            cli.fetch_min_bytes.to_string(),
        ),
    ];
    if cli.service_threads > 0 {
        options.env.push((
            "TOKIO_WORKER_THREADS".to_owned(),
            cli.service_threads.to_string(),
        ));
    }
    options.service_env = vec![
        (
            ServiceKind::Orders,
            "HARVEST_ORDERS__PAYMENT_DEADLINE_SECS".to_owned(),
            "900".to_owned(),
        ),
        (
            ServiceKind::Delivery,
            "HARVEST_ASSIGNMENT__RETRY_INTERVAL_MS".to_owned(),
            "500".to_owned(),
        ),
        (
            ServiceKind::Delivery,
            "HARVEST_ASSIGNMENT__DEADLINE_SECS".to_owned(),
            "300".to_owned(),
        ),
        (
            ServiceKind::Delivery,
            "HARVEST_ASSIGNMENT__STREAM_POLL_MS".to_owned(),
            "500".to_owned(),
        ),
    ];
    println!("starting redis and the broker…");
    let mut stack = Stack::start(options).await?;

    println!("measuring the ceilings: raw broker and Redis with Harvest's client settings…");
    let bus = harvest_bus::BusConfig {
        fetch_wait_max_ms: cli.fetch_wait_ms,
        fetch_min_bytes: cli.fetch_min_bytes,
        linger_ms: cli.linger_ms,
        ..stack.bus_config()
    };
    let (produced_per_sec, round_trip_per_sec) = bench::broker_ceiling(&bus, 100_000, 400).await?;
    let lua_per_sec = bench::redis_ceiling(&stack.redis_url(), 64, Duration::from_secs(5)).await?;
    println!(
        "  broker: {produced_per_sec:.0} msgs/s produced, {round_trip_per_sec:.0} msgs/s produced and consumed; redis: {lua_per_sec:.0} Lua calls/s"
    );

    println!("starting the four services…");
    for kind in ServiceKind::ALL {
        stack.start_service(kind).await?;
    }
    // The broker and Redis are measured beside the services: on one machine
    // they share its cores.
    let pids: BTreeMap<String, u32> = stack
        .pids()
        .into_iter()
        .map(|(kind, pid)| (kind.name().to_owned(), pid))
        .chain(
            stack
                .server_pids()
                .into_iter()
                .map(|(name, pid)| (name.to_owned(), pid)),
        )
        .collect();
    let admins: BTreeMap<String, std::net::SocketAddr> = ServiceKind::ALL
        .into_iter()
        .filter_map(|kind| Some((kind.name().to_owned(), stack.admin_addr(kind)?)))
        .collect();
    let redis_url = stack.redis_url();
    let target = Target::of(&stack).await?;
    let session = Session::open(
        &target,
        &Setup {
            couriers: CourierBehavior {
                failures: 0.0,
                ..CourierBehavior::default()
            },
            couriers_per_point: 4,
            courier_capacity: 1_000,
            stock_factor: 5_000,
            buyers_at_the_door: false,
        },
    )
    .await?;
    let stop = CancellationToken::new();

    // The ladder: climb while the system keeps up with the offered rate;
    // the highest rung that also meets the latency limits is the result.
    let mut rungs = Vec::new();
    let mut best: Option<(f64, Value)> = None;
    let mut throughput: Option<(f64, Value)> = None;
    for &total in &cli.ladder {
        let per_region = total / regions.len() as f64;
        print!("rung {total:>6.0} orders/s: ");
        let _warmup = session
            .phase(
                &traffic(&regions, per_region, cli.warmup_secs, None),
                Duration::ZERO,
                &stop,
            )
            .await;
        let cpu_before = bench::cpu_times(&pids);
        let work_before = read_work(&redis_url, &admins).await;
        let phase = session
            .phase(
                &traffic(&regions, per_region, cli.rung_secs, None),
                Duration::from_secs(15),
                &stop,
            )
            .await;
        let cpu_after = bench::cpu_times(&pids);
        let work_after = read_work(&redis_url, &admins).await;
        let (mut rung, passed, kept_up) = rung_report(total, &phase, &cpu_before, &cpu_after);
        let work = match (work_before, work_after) {
            (Some(before), Some(after)) => {
                after.per_order(&before, rung["placed"].as_u64().unwrap_or(0))
            }
            _ => Value::Null,
        };
        rung["saga_messages_per_sec"] = match work["events_published"].as_f64() {
            Some(events) => {
                json!((events * rung["achieved_per_sec"].as_f64().unwrap_or(0.0)).round())
            }
            None => Value::Null,
        };
        rung["per_order"] = work;
        let confirm_p99 = match (
            rung["confirm_ms"]["p99"].as_f64(),
            rung["unconfirmed"].as_u64(),
        ) {
            (Some(p99), _) => format!("{p99} ms"),
            (None, Some(unconfirmed)) if unconfirmed > 0 => {
                format!("unknown ({unconfirmed} unconfirmed)")
            }
            (None, _) => "-".to_owned(),
        };
        let cpu = |names: &[&str]| -> f64 {
            names
                .iter()
                .filter_map(|name| rung["cpu_ms_per_order"][*name].as_f64())
                .sum()
        };
        println!(
            "placed {} ({:.0}/s), place p99 {} ms, confirm p99 {}, errors {}, CPU ms/order: services {:.1}, kafka {:.1}, redis {:.1}; per order: {} Redis round trips ({} commands sent, {} run), {} events published, {} handled, {} skipped: {}",
            rung["placed"],
            rung["achieved_per_sec"].as_f64().unwrap_or(0.0),
            rung["place_ms"]["p99"],
            confirm_p99,
            rung["errors"],
            cpu(&["catalog", "orders", "payments", "delivery"]),
            cpu(&["kafka"]),
            cpu(&["redis"]),
            rung["per_order"]["redis_round_trips"],
            rung["per_order"]["redis_commands_sent"],
            rung["per_order"]["redis_commands_run"],
            rung["per_order"]["events_published"],
            rung["per_order"]["events_handled"],
            rung["per_order"]["events_skipped"],
            match (passed, kept_up) {
                (true, _) => "within the limits",
                (false, true) => "kept up, over the latency limits",
                (false, false) => "did not keep up",
            }
        );
        rungs.push(rung.clone());
        if passed && best.as_ref().is_none_or(|(rate, _)| *rate < total) {
            best = Some((total, rung.clone()));
        }
        if !kept_up {
            break;
        }
        throughput = Some((total, rung));
    }
    let sustained = best.as_ref().map_or(0.0, |(rate, _)| *rate);
    let kept_up_to = throughput.as_ref().map_or(0.0, |(rate, _)| *rate);
    // Let any backlog of the failed rung clear before the next measurement.
    session
        .drain(Duration::from_secs(120), &stop, &mut |_| {})
        .await;

    // Region isolation: steady, then one region at `spike_factor`×.
    let base_total = (kept_up_to * 0.5).max(20.0);
    let per_region = base_total / regions.len() as f64;
    let spike_region = regions
        .get(1)
        .or(regions.first())
        .cloned()
        .context("no regions")?;
    let others: Vec<&str> = regions
        .iter()
        .filter(|r| **r != spike_region)
        .map(Region::as_str)
        .collect();
    println!(
        "isolation: {base_total:.0} orders/s steady, then {spike_region} at {}×…",
        cli.spike_factor
    );
    let before = session
        .phase(
            &traffic(&regions, per_region, cli.spike_secs, None),
            Duration::from_secs(15),
            &stop,
        )
        .await;
    let spike = Spike {
        region: spike_region.clone(),
        factor: cli.spike_factor,
        start: Duration::ZERO,
        length: Duration::from_secs(cli.spike_secs),
    };
    let during = session
        .phase(
            &traffic(&regions, per_region, cli.spike_secs, Some(spike)),
            Duration::from_secs(15),
            &stop,
        )
        .await;
    let p99 = |phase: &Phase, map: fn(&Phase) -> &BTreeMap<String, Samples>, regions: &[&str]| {
        merged(map(phase), regions).quantile(0.99)
    };
    let place_before = p99(&before, |p| &p.place_latency, &others);
    let place_during = p99(&during, |p| &p.place_latency, &others);
    let confirm_before = p99(&before, |p| &p.placed_to_confirmed, &others);
    let confirm_during = p99(&during, |p| &p.placed_to_confirmed, &others);
    let rise = |before: Option<f64>, during: Option<f64>| match (before, during) {
        (Some(before), Some(during)) if before > 0.0 => {
            json!(((during / before - 1.0) * 1000.0).round() / 10.0)
        }
        _ => Value::Null,
    };
    let isolation = json!({
        "base_orders_per_sec": base_total,
        "spike_region": spike_region.as_str(),
        "spike_factor": cli.spike_factor,
        "other_regions": others,
        "others_place_p99_ms": {"before": ms(place_before), "during": ms(place_during), "rise_pct": rise(place_before, place_during)},
        "others_confirm_p99_ms": {"before": ms(confirm_before), "during": ms(confirm_during), "rise_pct": rise(confirm_before, confirm_during)},
        "spike_region_place_p99_ms_during": ms(p99(&during, |p| &p.place_latency, &[spike_region.as_str()])),
        "spike_region_confirm_p99_ms_during": ms(p99(&during, |p| &p.placed_to_confirmed, &[spike_region.as_str()])),
        "spike_region_unconfirmed": during.unconfirmed.get(spike_region.as_str()).copied().unwrap_or(0),
    });
    println!(
        "  other regions' place p99 {} → {}, confirm p99 {} → {}",
        millis(place_before),
        millis(place_during),
        millis(confirm_before),
        millis(confirm_during)
    );

    // The flash sale.
    println!(
        "flash sale: {} orders at once for {} units of one product…",
        cli.flash_orders, cli.flash_stock
    );
    let flash = flash_sale(&session, &regions, cli.flash_orders, cli.flash_stock).await?;
    println!(
        "  {} reserved, {} rejected, {:.0} reservations/s, oversold {}",
        flash["reserved_orders"],
        flash["rejected_orders"],
        flash["decisions_per_sec"].as_f64().unwrap_or(0.0),
        flash["oversold_units"]
    );

    println!("draining and checking the invariants…");
    session
        .drain(Duration::from_secs(180), &stop, &mut |_| {})
        .await;
    let memory: BTreeMap<String, Value> = pids
        .iter()
        .map(|(name, pid)| {
            (
                name.clone(),
                json!(bench::peak_memory(*pid).map(|b| b / (1024 * 1024))),
            )
        })
        .collect();
    let summary = session.finish().await?;
    stack.stop();
    let findings = &summary.findings;

    let best_rung = best.map(|(_, rung)| rung).unwrap_or(Value::Null);
    let top_rung = throughput.map(|(_, rung)| rung).unwrap_or(Value::Null);
    let saga_messages_per_sec = top_rung["saga_messages_per_sec"].as_f64();
    let results = json!({
        "machine": machine(),
        "setup": {
            "regions": deployment.to_string(),
            "partitions_per_regional_stream": cli.partitions,
            "broker": "apache-kafka",
            "redis_persistence": if cli.durable { format!("aof, appendfsync {}", cli.redis_fsync) } else { "none".to_owned() },
            "authentication": if cli.no_auth { "off" } else { "jwt" },
            "rung_secs": cli.rung_secs,
            "warmup_secs": cli.warmup_secs,
            "thresholds": {"place_p99_ms": PLACE_P99 * 1000.0, "confirm_p99_ms": CONFIRM_P99 * 1000.0, "max_error_ratio": MAX_ERROR_RATIO},
        },
        "ceilings": {
            "broker_produced_per_sec": produced_per_sec.round(),
            "broker_produced_and_consumed_per_sec": round_trip_per_sec.round(),
            "redis_lua_calls_per_sec": lua_per_sec.round(),
        },
        "ladder": rungs,
        "max_sustained_orders_per_sec": sustained,
        "at_max_sustained": best_rung,
        "max_kept_up_orders_per_sec": kept_up_to,
        "at_max_kept_up": top_rung,
        "ratios": {
            "saga_messages_per_sec_over_broker_round_trip": match saga_messages_per_sec { Some(rate) if round_trip_per_sec > 0.0 => json!((rate / round_trip_per_sec * 1000.0).round() / 1000.0), _ => Value::Null },
        },
        "isolation": isolation,
        "flash_sale": flash,
        "peak_memory_mb": memory,
        "invariants": {
            "oversold_units": findings.oversold_units,
            "broken_lots": findings.broken_lots.len(),
            "orders_not_final": findings.unfinished_orders.len(),
            "double_charges": findings.double_charges.len(),
            "money_held_after_cancel": findings.money_held_after_cancel.len(),
            "orders_acknowledged": summary.placed(),
        },
    });
    if let Some(dir) = cli.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&cli.out, serde_json::to_string_pretty(&results)?)?;
    println!();
    println!(
        "highest rate meeting the limits: {sustained:.0} orders/s (place p99 ≤ {} ms, confirm p99 ≤ {} ms, errors < {}%)",
        PLACE_P99 * 1000.0,
        CONFIRM_P99 * 1000.0,
        MAX_ERROR_RATIO * 100.0
    );
    println!(
        "invariants: oversold {}, not final {}, double charges {}",
        findings.oversold_units,
        findings.unfinished_orders.len(),
        findings.double_charges.len()
    );
    println!("results: {}", cli.out.display());
    Ok(findings.all_clear())
}

/// The work counted so far; `None` (with a warning) when a count could not
/// be read, so that a rung without counts is still measured.
async fn read_work(
    redis_url: &str,
    admins: &BTreeMap<String, std::net::SocketAddr>,
) -> Option<bench::WorkCounts> {
    match bench::WorkCounts::read(redis_url, admins).await {
        Ok(counts) => Some(counts),
        Err(error) => {
            eprintln!("harvest-bench: could not count the work done: {error:#}");
            None
        }
    }
}

/// What a rung did, and whether it met the limits.
fn rung_report(
    total: f64,
    phase: &Phase,
    cpu_before: &BTreeMap<String, Duration>,
    cpu_after: &BTreeMap<String, Duration>,
) -> (Value, bool, bool) {
    let placed = Phase::total(&phase.placed);
    let errors = Phase::total(&phase.errors);
    let unconfirmed: u64 = phase.unconfirmed.values().sum();
    let place = merged(&phase.place_latency, &[]);
    // An order still unconfirmed when measured took longer than any limit;
    // a quantile that falls among those is unknown (null), not a number.
    let confirmed = merged(&phase.placed_to_confirmed, &[]);
    let confirm_quantile = |q: f64| confirmed.quantile_with_unfinished(q, unconfirmed as usize);
    let assigned = merged(&phase.placed_to_assigned, &[]);
    let error_ratio = errors as f64 / (placed + errors).max(1) as f64;
    let passed = placed > 0
        && place.quantile(0.99).is_some_and(|p| p <= PLACE_P99)
        && confirm_quantile(0.99).is_some_and(|p| p <= CONFIRM_P99)
        && error_ratio < MAX_ERROR_RATIO;
    let cpu_ms_per_order: BTreeMap<String, Value> = cpu_after
        .iter()
        .map(|(name, after)| {
            let spent = after.saturating_sub(cpu_before.get(name).copied().unwrap_or_default());
            (
                name.clone(),
                json!(
                    ((spent.as_secs_f64() * 1000.0 / placed.max(1) as f64) * 100.0).round() / 100.0
                ),
            )
        })
        .collect();
    let achieved = placed as f64 / phase.seconds.max(0.001);
    let kept_up = achieved >= 0.95 * total
        && error_ratio < 0.01
        && unconfirmed as f64 <= 0.01 * placed as f64
        && confirm_quantile(0.5).is_some_and(|p| p < 5.0);
    let quantiles = |samples: &Samples| json!({"p50": ms(samples.quantile(0.5)), "p90": ms(samples.quantile(0.9)), "p99": ms(samples.quantile(0.99)), "max": ms(samples.quantile(1.0))});
    (
        json!({
            "offered_per_sec": total,
            "achieved_per_sec": (achieved * 10.0).round() / 10.0,
            "placed": placed,
            "errors": errors,
            "error_ratio": error_ratio,
            "unconfirmed": unconfirmed,
            "place_ms": quantiles(&place),
            "confirm_ms": json!({"p50": ms(confirm_quantile(0.5)), "p90": ms(confirm_quantile(0.9)), "p99": ms(confirm_quantile(0.99)), "max": ms(confirm_quantile(1.0))}),
            "assigned_ms": quantiles(&assigned),
            "cpu_ms_per_order": cpu_ms_per_order,
            "first_error": phase.first_error,
            "passed": passed,
            "kept_up": kept_up,
        }),
        passed,
        kept_up,
    )
}

/// Fires `orders` one-unit orders at once at a product with `stock` units,
/// and measures how fast the catalog decides them and that none is oversold.
async fn flash_sale(
    session: &Session,
    regions: &[Region],
    orders: usize,
    stock: i64,
) -> anyhow::Result<Value> {
    let clients = session.clients().clone();
    let mut catalog = clients.catalog.clone();
    let seller = "coop-dangshan-pears";
    let product = catalog
        .create_product(act_as(
            Role::Seller,
            seller,
            CreateProductRequest {
                seller: Some(Seller {
                    seller_id: seller.to_owned(),
                    name: "Dangshan Pear Cooperative".to_owned(),
                    kind: SellerKind::Cooperative.into(),
                    origin: Some(Origin {
                        village: "Liangli".to_owned(),
                        county: "Dangshan".to_owned(),
                        province: "Anhui".to_owned(),
                    }),
                }),
                name: "Dangshan crisp pears, live-stream special".to_owned(),
                category: Category::Fruit.into(),
                unit: Unit::Box.into(),
                price_fen: 1_990,
                perishable: false,
                shelf_life_days: 0,
                cold_chain: false,
                collection_point: Some(CollectionPointInput {
                    name: "Liangli pear market".to_owned(),
                    location: Some(GeoPoint {
                        latitude: 34.42,
                        longitude: 116.33,
                    }),
                }),
                request_id: String::new(),
                per_buyer_limit: 0,
            },
        ))
        .await?
        .into_inner();
    let today = harvest_domain::Date::today();
    let date = |d: harvest_domain::Date| {
        let (year, month, day) = d.ymd();
        Date { year, month, day }
    };
    let lot = ReceiveStockLotRequest {
        product_id: product.product_id.clone(),
        lot_id: "flash-lot".to_owned(),
        quantity: stock,
        harvest_date: Some(date(today)),
        best_before: Some(date(today.plus_days(60))),
    };
    catalog
        .receive_stock_lot(act_as(Role::Seller, seller, lot))
        .await?;

    let started = Instant::now();
    let placed: Vec<String> = futures::stream::iter(0..orders)
        .map(|index| {
            let mut orders_client = clients.orders.clone();
            let region = regions[index % regions.len()].clone();
            let product_id = product.product_id.clone();
            async move {
                let request = harvest_proto::orders::v1::PlaceOrderRequest {
                    idempotency_key: format!("flash-{index}-{}", uuid::Uuid::new_v4().simple()),
                    buyer_id: format!("fan-{index}"),
                    region: region.to_string(),
                    ship_to: Some(harvest_proto::common::v1::Address {
                        recipient: format!("Fan {index}"),
                        phone: "+86 139 0000 0000".to_owned(),
                        province: "Zhejiang".to_owned(),
                        county: "Xihu".to_owned(),
                        street: "1 Wensan Road".to_owned(),
                        location: None,
                    }),
                    lines: vec![OrderLine {
                        product_id,
                        quantity: 1,
                    }],
                    payment_method: "approve".to_owned(),
                };
                let buyer = request.buyer_id.clone();
                orders_client
                    .place_order(act_as(Role::Buyer, &buyer, request))
                    .await
                    .ok()
                    .map(|o| o.into_inner().order_id)
            }
        })
        .buffer_unordered(300)
        .filter_map(std::future::ready)
        .collect()
        .await;
    let place_seconds = started.elapsed().as_secs_f64();

    // Wait until the catalog decided every order: reserved, or cancelled.
    let observer = session.observer();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let undecided = placed
            .iter()
            .filter(|id| {
                observer
                    .track(id)
                    .is_none_or(|track| track.reserved_at.is_none() && track.ending.is_none())
            })
            .count();
        if undecided == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let tracks: Vec<_> = placed.iter().filter_map(|id| observer.track(id)).collect();
    let reserved = tracks.iter().filter(|t| t.reserved_at.is_some()).count();
    let rejected = tracks
        .iter()
        .filter(|t| {
            t.reserved_at.is_none()
                && matches!(t.ending, Some(harvest_sim::observer::Ending::Cancelled(_)))
        })
        .count();
    let first = tracks
        .iter()
        .filter_map(|t| t.placed_at)
        .fold(f64::INFINITY, f64::min);
    let last = tracks
        .iter()
        .filter_map(|t| t.reserved_at.or(t.ended_at))
        .fold(f64::NEG_INFINITY, f64::max);
    let decided_in = (last - first).max(0.001);
    let stock_now = catalog
        .get_stock(GetStockRequest {
            product_id: product.product_id.clone(),
        })
        .await?
        .into_inner();
    let committed = stock - stock_now.on_hand;
    let oversold =
        (stock_now.reserved + committed - stock).max(0) + (reserved as i64 - stock).max(0);
    Ok(json!({
        "orders": orders,
        "stock_units": stock,
        "acknowledged": placed.len(),
        "placed_in_secs": (place_seconds * 100.0).round() / 100.0,
        "reserved_orders": reserved,
        "rejected_orders": rejected,
        "decisions_per_sec": ((reserved + rejected) as f64 / decided_in).round(),
        "decided_in_secs": (decided_in * 100.0).round() / 100.0,
        "lots_consistent": stock_now.on_hand == stock_now.available + stock_now.reserved,
        "oversold_units": oversold,
    }))
}
