//! `harvest-faults`: the fault suite. Starts the whole system locally on
//! durable Redis and a broker of its own, drives steady traffic through it,
//! and meanwhile kills every service several times, kills and restarts
//! Kafka, kills Redis and restarts it from its append-only file, freezes
//! Redis, and writes malformed and forged events onto the streams. Then it
//! checks that every acknowledged order ended, nothing was oversold or
//! charged twice, no cancelled order holds money, and only the bad events
//! were dead-lettered. Writes `target/faults/results.json`; exits 3 when an
//! invariant was broken.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use harvest_domain::Regions;
use harvest_sim::couriers::CourierBehavior;
use harvest_sim::faults::{self, FaultPlan, FaultReport, Footprint};
use harvest_sim::{Setup, Summary};
use harvest_stack::{Fsync, ServiceKind, Stack, StackOptions};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Runs Harvest through outages of everything it stands on, under load, and
/// checks that nothing was lost, oversold or charged twice.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Orders per second over all regions, all along.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// The regions of the deployment.
    #[arg(long, default_value = "north,east,south,southwest")]
    regions: String,
    /// Partitions of each regional stream.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Rounds of killing every service once (SIGKILL), in turn.
    #[arg(long, default_value_t = 3)]
    service_kill_rounds: u32,
    /// Seconds a killed service stays down.
    #[arg(long, default_value_t = 2)]
    service_down_secs: u64,
    /// Seconds the broker stays down after it is killed (0: not killed).
    #[arg(long, default_value_t = 10)]
    broker_down_secs: u64,
    /// Leave Redis running instead of killing it and restarting it from its
    /// append-only file.
    #[arg(long)]
    no_redis_crash: bool,
    /// Seconds Redis stays frozen (SIGSTOP, then SIGCONT; 0: not frozen).
    #[arg(long, default_value_t = 20)]
    redis_frozen_secs: u64,
    /// Malformed and forged events written onto the streams.
    #[arg(long, default_value_t = 40)]
    bad_events: usize,
    /// Seconds of calm traffic before, between and after the faults.
    #[arg(long, default_value_t = 20)]
    calm_secs: u64,
    /// Seconds every acknowledged order has to end after the traffic.
    #[arg(long, default_value_t = 600)]
    drain_secs: u64,
    /// When Redis writes its append-only file to disk.
    #[arg(long, value_enum, default_value_t = FsyncArg::Always)]
    redis_fsync: FsyncArg,
    /// The services' log filter.
    #[arg(long, default_value = "warn,rdkafka=error")]
    log_filter: String,
    /// Keep the system running this many seconds after a failed run, for
    /// a look at what it holds.
    #[arg(long, default_value_t = 0)]
    hold_on_failure_secs: u64,
    /// Where logs and data go.
    #[arg(long, default_value = "target/faults/run")]
    state_dir: PathBuf,
    /// Where the results go.
    #[arg(long, default_value = "target/faults/results.json")]
    out: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum FsyncArg {
    Always,
    Everysec,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(3),
        Err(error) => {
            eprintln!("harvest-faults: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<bool> {
    let names: Vec<String> = cli
        .regions
        .split(',')
        .map(|r| r.trim().to_owned())
        .collect();
    let regions = Regions::try_from(names).context("--regions")?;
    let _ = std::fs::remove_dir_all(&cli.state_dir);
    let mut options = StackOptions::new(&cli.state_dir);
    options.durable = true;
    options.redis_fsync = match cli.redis_fsync {
        FsyncArg::Always => Fsync::Always,
        FsyncArg::Everysec => Fsync::EverySec,
    };
    options.regions = regions.clone();
    options.partitions = cli.partitions;
    options.log_filter = cli.log_filter.clone();
    options.service_env = vec![
        (
            ServiceKind::Delivery,
            "HARVEST_ASSIGNMENT__RETRY_INTERVAL_MS".to_owned(),
            "500".to_owned(),
        ),
        (
            ServiceKind::Delivery,
            "HARVEST_ASSIGNMENT__STREAM_POLL_MS".to_owned(),
            "500".to_owned(),
        ),
    ];
    println!(
        "starting the system on durable Redis (appendfsync {}) and a broker of its own…",
        options.redis_fsync.as_str()
    );
    let mut stack = Stack::start(options).await?;
    let plan = FaultPlan {
        rate_per_region: cli.rate / regions.len() as f64,
        service_kill_rounds: cli.service_kill_rounds,
        service_down: Duration::from_secs(cli.service_down_secs),
        broker_down: Duration::from_secs(cli.broker_down_secs),
        redis_crash: !cli.no_redis_crash,
        redis_frozen: Duration::from_secs(cli.redis_frozen_secs),
        bad_events: cli.bad_events,
        calm: Duration::from_secs(cli.calm_secs),
        drain_timeout: Duration::from_secs(cli.drain_secs),
    };
    let setup = Setup {
        couriers: CourierBehavior::default(),
        couriers_per_point: 4,
        courier_capacity: 1_000,
        stock_factor: 2_000,
        buyers_at_the_door: false,
    };
    let stop = CancellationToken::new();
    let interrupt = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\ninterrupted: stopping the traffic and checking what there is");
            interrupt.cancel();
        }
    });
    println!(
        "traffic: {:.0} orders/s over {} regions; faults follow",
        cli.rate,
        regions.len()
    );
    let report = faults::run(&mut stack, &setup, &plan, &stop, |line| println!("{line}")).await;
    let held = match &report {
        Ok(report) if !report.passed() && cli.hold_on_failure_secs > 0 => {
            print_report(report);
            println!(
                "holding the system for {} s: redis {}, kafka {}",
                cli.hold_on_failure_secs,
                stack.redis_url(),
                stack.bootstrap()
            );
            tokio::time::sleep(Duration::from_secs(cli.hold_on_failure_secs)).await;
            true
        }
        _ => false,
    };
    stack.stop();
    let report = report?;
    if !held {
        print_report(&report);
    }
    write_results(&cli, &report)?;
    Ok(report.passed())
}

fn print_report(report: &FaultReport) {
    let summary: &Summary = &report.summary;
    let findings = &summary.findings;
    let counts = summary.regions.values().fold((0, 0, 0, 0), |acc, r| {
        (
            acc.0 + r.placed,
            acc.1 + r.errors,
            acc.2 + r.delivered,
            acc.3 + r.cancelled_total(),
        )
    });
    println!();
    println!(
        "orders acknowledged {} ({} on a retry with the same key), refused or failed calls {}, delivered {}, cancelled {}",
        counts.0,
        summary.placed_on_retry(),
        counts.1,
        counts.2,
        counts.3
    );
    println!(
        "lost (acknowledged, not ended) {}, oversold units {}, broken lots {}, double charges {}, money held after cancel {}",
        findings.unfinished_orders.len(),
        findings.oversold_units,
        findings.broken_lots.len(),
        findings.double_charges.len(),
        findings.money_held_after_cancel.len()
    );
    println!(
        "couriers: {} assignments, {} delivered, {} failed deliveries, {} steps refused",
        summary.fleet_assignments,
        summary.fleet_delivered,
        summary.fleet_failed,
        summary.fleet_refused
    );
    println!(
        "dead letters: {} of the {} bad events ({:?}), {} of anything else",
        report.dead_letters.of_bad_events.values().sum::<usize>(),
        report.dead_letters.bad_events_sent,
        report.dead_letters.of_bad_events,
        report.dead_letters.others.len()
    );
    let (before, after) = (&report.redis_before, &report.redis_after);
    let orders = counts.0.max(1) as f64;
    println!(
        "redis: {} bytes and {} keys ({} without expiry) before the orders, {} bytes and {} keys ({} without expiry) after: {:.0} bytes and {:.2} lasting keys per acknowledged order",
        before.used_bytes,
        before.keys,
        before.lasting_keys(),
        after.used_bytes,
        after.keys,
        after.lasting_keys(),
        after.used_bytes.saturating_sub(before.used_bytes) as f64 / orders,
        after.lasting_keys().saturating_sub(before.lasting_keys()) as f64 / orders,
    );
    println!("keys without expiry, by shape (before the orders -> after):");
    let shapes: std::collections::BTreeSet<&String> = before
        .lasting_by_shape
        .keys()
        .chain(after.lasting_by_shape.keys())
        .collect();
    for shape in shapes {
        let count = |footprint: &Footprint| footprint.lasting_by_shape.get(shape).copied();
        println!(
            "  {shape}: {} -> {}",
            count(before).unwrap_or(0),
            count(after).unwrap_or(0)
        );
    }
    let open: u64 = after.lasting_per_order().values().sum();
    let outliving: u64 = after.outliving_their_order.values().sum();
    println!(
        "keys of open orders without expiry yet: {}; keys outliving their order: {outliving} {:?}",
        open - outliving,
        after.outliving_their_order
    );
    for other in report.dead_letters.others.iter().take(20) {
        println!("  {other}");
    }
    for order in findings.money_held_after_cancel.iter().take(20) {
        println!("  cancelled and still holding money: {order}");
    }
    for order in findings.double_charges.iter().take(20) {
        println!("  charged twice: {order}");
    }
    for order in report.unfinished.iter().take(20) {
        println!("  not ended: {order}");
    }
    println!(
        "{}",
        if report.passed() {
            "PASSED: nothing lost, oversold or charged twice"
        } else {
            "FAILED"
        }
    );
}

fn footprint_json(footprint: &Footprint) -> serde_json::Value {
    json!({
        "used_bytes": footprint.used_bytes,
        "keys": footprint.keys,
        "keys_without_expiry": footprint.lasting_keys(),
        "keys_without_expiry_by_shape": footprint.lasting_by_shape,
        "keys_without_expiry_per_order": footprint.lasting_per_order(),
        "keys_outliving_their_order": footprint.outliving_their_order,
    })
}

fn write_results(cli: &Cli, report: &FaultReport) -> anyhow::Result<()> {
    let summary = &report.summary;
    let findings = &summary.findings;
    let results = json!({
        "rate_per_sec": cli.rate,
        "regions": cli.regions,
        "redis_fsync": match cli.redis_fsync { FsyncArg::Always => "always", FsyncArg::Everysec => "everysec" },
        "faults": report.faults.iter().map(|fault| json!({
            "what": fault.what,
            "at_s": (fault.at.as_secs_f64() * 10.0).round() / 10.0,
            "took_s": (fault.took.as_secs_f64() * 10.0).round() / 10.0,
        })).collect::<Vec<_>>(),
        "orders": {
            "acknowledged": summary.placed(),
            "acknowledged_on_retry": summary.placed_on_retry(),
            "failed_calls": summary.errors(),
            "delivered": summary.regions.values().map(|r| r.delivered).sum::<u64>(),
            "cancelled": summary.regions.values().map(|r| r.cancelled_total()).sum::<u64>(),
        },
        "invariants": {
            "lost_orders": findings.unfinished_orders.len(),
            "oversold_units": findings.oversold_units,
            "broken_lots": findings.broken_lots.len(),
            "double_charges": findings.double_charges.len(),
            "money_held_after_cancel": findings.money_held_after_cancel.len(),
            "holding_money": findings.money_held_after_cancel.iter().take(50).collect::<Vec<_>>(),
            "charged_twice": findings.double_charges.iter().take(50).collect::<Vec<_>>(),
            "not_ended": report.unfinished,
            "products_checked": findings.products_checked,
            "payments_checked": findings.payments_checked,
        },
        "dead_letters": {
            "bad_events_sent": report.dead_letters.bad_events_sent,
            "of_bad_events": report.dead_letters.of_bad_events,
            "others": report.dead_letters.others,
        },
        "redis": {
            "before": footprint_json(&report.redis_before),
            "after": footprint_json(&report.redis_after),
            "bytes_per_order": report.redis_after.used_bytes.saturating_sub(report.redis_before.used_bytes)
                / summary.placed().max(1),
        },
        "elapsed_s": summary.elapsed.as_secs(),
        "passed": report.passed(),
    });
    if let Some(dir) = cli.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&cli.out, serde_json::to_string_pretty(&results)?)
        .with_context(|| format!("writing {}", cli.out.display()))?;
    println!("results in {}", cli.out.display());
    Ok(())
}
