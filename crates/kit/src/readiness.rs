//! Readiness: an instance serves only while it can do its work, that is
//! while Redis and at least one Kafka broker answer. The gRPC health status
//! (what Kubernetes' readiness probe asks) follows it, so that calls go to
//! the replicas that can answer them.

use std::time::Duration;

use harvest_bus::Publisher;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::store::Redis;

/// How often Redis and the brokers are asked.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);
/// How long each may take to answer before it counts as unreachable.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(1);

/// Asks Redis (PING) and the brokers (a metadata request) every
/// [`CHECK_EVERY`], and sends on `ready` whether both answered, until `stop`.
pub async fn follow(
    mut redis: Redis,
    publisher: Publisher,
    ready: watch::Sender<bool>,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(CHECK_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let ping_command = redis::cmd("PING");
        let ping = ping_command.query_async::<String>(&mut redis);
        let redis_answers = matches!(tokio::time::timeout(ANSWER_WITHIN, ping).await, Ok(Ok(_)));
        let asking = publisher.clone();
        let broker_answers =
            tokio::task::spawn_blocking(move || asking.broker_answers(ANSWER_WITHIN))
                .await
                .unwrap_or(false);
        let now = redis_answers && broker_answers;
        if *ready.borrow() != now {
            if now {
                tracing::info!("redis and the brokers answer; serving");
            } else {
                tracing::warn!(
                    redis_answers,
                    broker_answers,
                    "a dependency is unreachable; not serving"
                );
            }
        }
        ready.send_replace(now);
    }
}

/// Sets `S`'s health status to what `ready` says, until `draining` (after
/// which the server reports not serving itself).
pub(crate) async fn report<S: tonic::server::NamedService>(
    reporter: tonic_health::server::HealthReporter,
    mut ready: watch::Receiver<bool>,
    draining: CancellationToken,
) {
    loop {
        let now = *ready.borrow_and_update();
        if draining.is_cancelled() {
            return;
        }
        if now {
            reporter.set_serving::<S>().await;
        } else {
            reporter.set_not_serving::<S>().await;
        }
        tokio::select! {
            () = draining.cancelled() => return,
            changed = ready.changed() => if changed.is_err() { return },
        }
    }
}
