//! The fault suite, short: steady traffic while every service is killed
//! once, the broker is killed and restarted, Redis is killed and restarted
//! from its append-only file and then frozen, and bad events are written
//! onto the streams. `make chaos` runs the long version.

use std::time::Duration;

use harvest_domain::Regions;
use harvest_sim::Setup;
use harvest_sim::couriers::CourierBehavior;
use harvest_sim::faults::{self, FaultPlan};
use harvest_stack::{Fsync, ServiceKind, Stack, StackOptions};
use tokio_util::sync::CancellationToken;

/// Nothing acknowledged is lost, nothing oversold or charged twice, no
/// cancelled order holds money, only the bad events are dead-lettered, and
/// no key of an ended order stays in Redis for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_when_services_the_broker_and_redis_fail_under_load() {
    let state_dir =
        std::env::temp_dir().join(format!("harvest-faults-{}", uuid::Uuid::new_v4().simple()));
    let mut options = StackOptions::new(&state_dir);
    // A broker of its own (this test kills it) and Redis on disk.
    options.durable = true;
    options.redis_fsync = Fsync::Always;
    options.regions = Regions::default();
    options.partitions = 2;
    options.env = vec![(
        "HARVEST_BUS__SESSION_TIMEOUT_MS".to_owned(),
        "6000".to_owned(),
    )];
    let set = |kind, key: &str, value: &str| (kind, key.to_owned(), value.to_owned());
    options.service_env = vec![
        set(
            ServiceKind::Orders,
            "HARVEST_ORDERS__OUTBOX_STALE_SECS",
            "2",
        ),
        set(
            ServiceKind::Delivery,
            "HARVEST_ASSIGNMENT__RETRY_INTERVAL_MS",
            "300",
        ),
        set(
            ServiceKind::Delivery,
            "HARVEST_ASSIGNMENT__STREAM_POLL_MS",
            "200",
        ),
    ];
    let mut stack = Stack::start(options).await.expect("the stack starts");
    let plan = FaultPlan {
        rate_per_region: 5.0,
        service_kill_rounds: 1,
        service_down: Duration::from_secs(1),
        broker_down: Duration::from_secs(2),
        redis_crash: true,
        redis_frozen: Duration::from_secs(6),
        bad_events: 8,
        calm: Duration::from_secs(4),
        drain_timeout: Duration::from_secs(180),
    };
    let setup = Setup {
        couriers: CourierBehavior::default(),
        couriers_per_point: 2,
        courier_capacity: 1_000,
        stock_factor: 100,
        buyers_at_the_door: false,
    };
    let report = faults::run(
        &mut stack,
        &setup,
        &plan,
        &CancellationToken::new(),
        |line| eprintln!("{line}"),
    )
    .await
    .expect("the fault run completes");
    stack.stop();
    if report.passed() {
        let _ = std::fs::remove_dir_all(&state_dir);
    } else {
        // The services' logs and Redis's append-only file, to read after.
        eprintln!("kept for reading: {}", state_dir.display());
    }

    let summary = &report.summary;
    let findings = &summary.findings;
    assert!(summary.placed() > 100, "traffic went through: {summary:?}");
    // Calls made while the orders service or the broker was down got no
    // answer; placed again with their keys, their orders were acknowledged
    // and are among those checked below.
    assert!(
        summary.placed_on_retry() > 0,
        "no order was acknowledged on a retry: {summary:?}"
    );
    assert_eq!(
        report.faults.len(),
        8,
        "every fault was made: {:?}",
        report.faults
    );
    assert!(
        findings.unfinished_orders.is_empty(),
        "{} acknowledged orders did not end: {:#?}",
        findings.unfinished_orders.len(),
        report.unfinished
    );
    assert!(findings.all_clear(), "{findings:#?}");
    assert!(
        report.dead_letters.others.is_empty(),
        "only bad events are dead-lettered: {:#?}",
        report.dead_letters.others
    );
    // Every bad event was dead-lettered by the catalog, the one consumer of
    // the orders stream that acts on order-placed events.
    assert_eq!(
        report.dead_letters.of_bad_events.get("catalog"),
        Some(&plan.bad_events)
    );
    // An order's keys last only while it is open (those placed by a call
    // that got no answer stay open until their deadlines); once it has
    // ended, each expires with it.
    assert!(
        report.redis_after.outliving_their_order.is_empty(),
        "keys without expiry of orders that ended: {:?}",
        report.redis_after.outliving_their_order
    );
    assert!(report.passed());
}
