//! Crashes: each service killed (SIGKILL) and restarted while orders flow.
//! Afterwards every acknowledged order has ended, nothing was oversold and
//! nobody was charged twice.

use std::time::Duration;

use harvest_bus::Topology;
use harvest_sim::couriers::CourierBehavior;
use harvest_sim::storefront::Traffic;
use harvest_sim::{Plan, Target};
use harvest_stack::ServiceKind;
use tokio_util::sync::CancellationToken;

use crate::helpers::System;

#[tokio::test]
async fn every_order_ends_when_each_service_is_killed_and_restarted_mid_flow() {
    let mut system = System::start().await;
    let regions = system.stack.options().regions.clone();
    let target = Target {
        clients: system.clients.clone(),
        bootstrap: system.stack.bootstrap(),
        topology: Topology::new(&system.stack.bus_config(), regions.clone()),
    };
    let plan = Plan {
        traffic: Traffic {
            regions: regions.iter().cloned().collect(),
            rate_per_region: 3.0,
            duration: Duration::from_secs(36),
            spike: None,
            declined: 0.05,
            flaky_payment: 0.05,
            buyer_cancels: 0.05,
            max_in_flight: 500,
            retry_unanswered: false,
        },
        couriers: CourierBehavior::default(),
        couriers_per_point: 2,
        courier_capacity: 20,
        drain_timeout: Duration::from_secs(150),
    };
    let traffic = harvest_sim::run(&target, &plan, CancellationToken::new(), |_| {});
    let crashes = async {
        for kind in ServiceKind::ALL {
            tokio::time::sleep(Duration::from_secs(6)).await;
            system.stack.kill_service(kind);
            tokio::time::sleep(Duration::from_millis(500)).await;
            system
                .stack
                .start_service(kind)
                .await
                .unwrap_or_else(|error| panic!("{kind} restarts: {error:#}"));
        }
    };
    let (summary, ()) = tokio::join!(traffic, crashes);
    let summary = summary.expect("the simulation runs");
    print!("{}", harvest_sim::report::summary(&summary));
    assert!(
        summary.placed() > 100,
        "orders flowed through the crashes ({})",
        summary.placed()
    );
    let findings = &summary.findings;
    assert_eq!(findings.oversold_units, 0);
    assert!(
        findings.broken_lots.is_empty(),
        "{:?}",
        findings.broken_lots
    );
    assert!(
        findings.unfinished_orders.is_empty(),
        "unfinished: {:?}",
        findings.unfinished_orders
    );
    assert!(
        findings.double_charges.is_empty(),
        "charged twice: {:?}",
        findings.double_charges
    );
    assert!(
        findings.money_held_after_cancel.is_empty(),
        "money held for cancelled orders: {:?}",
        findings.money_held_after_cancel
    );
    assert!(
        findings.payments_checked as u64 >= summary.placed() / 2,
        "payments were checked ({})",
        findings.payments_checked
    );
    let delivered: u64 = summary.regions.values().map(|r| r.delivered).sum();
    assert!(delivered > 0, "orders were delivered");
    // Every order ended, so the summary's table says so too.
    for (region, counts) in &summary.regions {
        assert_eq!(
            counts.placed,
            counts.delivered + counts.cancelled_total(),
            "{region}: placed = delivered + cancelled"
        );
    }
}
