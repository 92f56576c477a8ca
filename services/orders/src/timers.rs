//! Background work of the orders service: firing due deadlines and
//! publishing events a crashed process left in an outbox.
//!
//! Deadlines live in Redis, so they survive restarts; a replica claims a due
//! deadline with a lease before acting on it, so each fires once however many
//! replicas run, and one whose replica died comes due again.

use std::time::Duration;

use harvest_domain::Region;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::saga::{Applied, Input, Saga};

/// Gauge: seconds since the earliest of a region's deadlines fell due and
/// nobody acted on it (`kind="deadline"`), or since the earliest order
/// events still unpublished were noted (`kind="outbox"`); 0 when there is
/// none. Past a minute or so, orders are stuck in a state longer than its
/// deadline, or events are not going out.
pub const OVERDUE_SECONDS: &str = "harvest_orders_overdue_seconds";

/// How long a claimed deadline is held before another replica may take it.
const DEADLINE_LEASE: Duration = Duration::from_secs(30);
const BATCH: usize = 100;

/// Fires due deadlines of `region` until `shutdown`.
pub async fn run_deadlines(
    saga: Saga,
    region: Region,
    poll: Duration,
    shutdown: CancellationToken,
) -> Result<(), std::convert::Infallible> {
    while !shutdown.is_cancelled() {
        match saga.store().claim_due(&region, DEADLINE_LEASE, BATCH).await {
            Ok(due) => {
                for (kind, order_id) in due {
                    let span = tracing::info_span!("deadline", ?kind, %order_id);
                    if let Ok(Some(stored)) = saga.store().load(&order_id).await {
                        harvest_bus::trace::set_parent(&span, &stored.record.traceparent);
                    }
                    let applied = saga
                        .apply(&order_id, &Input::Deadline(kind))
                        .instrument(span)
                        .await;
                    match applied {
                        Ok(applied) => {
                            if let Applied::Accepted(_) = applied {
                                tracing::info!(%order_id, ?kind, "deadline passed; order cancelled");
                            }
                            if let Err(error) =
                                saga.store().finish_deadline(&region, kind, &order_id).await
                            {
                                tracing::warn!(%order_id, error.cause_chain = ?error, "could not clear deadline");
                            }
                        }
                        Err(error) => {
                            tracing::warn!(%order_id, ?kind, error.cause_chain = ?error, "deadline failed; will retry");
                        }
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%region, error.cause_chain = ?error, "could not read deadlines")
            }
        }
        report_overdue(&saga, &region).await;
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep(poll) => {}
        }
    }
    Ok(())
}

/// Sets [`OVERDUE_SECONDS`] for the region's deadlines and outbox notes.
async fn report_overdue(saga: &Saga, region: &Region) {
    let Ok((deadline, outbox)) = saga.store().earliest_due(region).await else {
        // Redis is unreachable: the handlers say so; the last value stays.
        return;
    };
    let now = crate::store::now_millis();
    for (kind, earliest) in [("deadline", deadline), ("outbox", outbox)] {
        let overdue = earliest.map_or(0, |at| (now - at).max(0)) as f64 / 1_000.0;
        metrics::gauge!(OVERDUE_SECONDS, "region" => region.to_string(), "kind" => kind)
            .set(overdue);
    }
}

/// Publishes outboxes older than `stale` in `region` until `shutdown`.
pub async fn run_outbox_sweeper(
    saga: Saga,
    region: Region,
    stale: Duration,
    shutdown: CancellationToken,
) -> Result<(), std::convert::Infallible> {
    let every = (stale / 2).max(Duration::from_millis(200));
    while !shutdown.is_cancelled() {
        match saga.store().stale_outboxes(&region, stale, BATCH).await {
            Ok(orders) => {
                for order_id in orders {
                    let span = tracing::info_span!("publish left-over events", %order_id);
                    let seen_at = crate::store::now_millis();
                    match saga.store().load(&order_id).await {
                        Ok(Some(stored)) => {
                            harvest_bus::trace::set_parent(&span, &stored.record.traceparent);
                        }
                        Ok(None) => {
                            // Expired, or never written (a note left by a
                            // write that lost): nothing will publish it.
                            if let Err(error) = saga
                                .store()
                                .clear_outbox_mark(&region, &order_id, seen_at)
                                .await
                            {
                                tracing::warn!(%order_id, error.cause_chain = ?error, "could not drop the note of a vanished order");
                            }
                            continue;
                        }
                        Err(_) => {}
                    }
                    if let Err(error) = saga.flush(&order_id).instrument(span).await {
                        tracing::warn!(%order_id, error.cause_chain = ?error, "could not publish left-over events");
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%region, error.cause_chain = ?error, "could not read outboxes")
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep(every) => {}
        }
    }
    Ok(())
}
