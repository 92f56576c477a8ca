//! A partition's events handled as batches: types the handler does not act
//! on are passed over, different orders are handled concurrently, a poison
//! event goes to the dead-letter topic alone, and the batch's offset never
//! passes an event that was not finished.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harvest_bus::event::types;
use harvest_bus::{Envelope, Handler, HandlerError, IncomingEvent, Payload, Stream};
use harvest_proto::events::v1::OrderStateChanged;
use harvest_testkit::Broker;
use tokio_util::sync::CancellationToken;

use super::{Bus, WAIT, stop_in_time};

/// Records every call; acts only on order-delivered events when `only_wanted`;
/// rejects one event and never finishes another, when told to.
#[derive(Default)]
struct Recorder {
    only_delivered: bool,
    reject: Option<String>,
    stall: Option<String>,
    hold: Duration,
    calls: Mutex<Vec<String>>,
    running: AtomicUsize,
    most_at_once: AtomicUsize,
}

impl Handler for Recorder {
    fn wants(&self, event_type: &str) -> bool {
        !self.only_delivered || event_type == types::ORDER_DELIVERED
    }

    fn handle(
        &self,
        event: &IncomingEvent,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        let id = event.envelope.event_id.clone();
        async move {
            self.calls.lock().expect("lock").push(id.clone());
            if self.stall.as_ref() == Some(&id) {
                std::future::pending::<()>().await;
            }
            if self.reject.as_ref() == Some(&id) {
                return Err(HandlerError::Rejected("no such product".to_owned()));
            }
            let running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_at_once.fetch_max(running, Ordering::SeqCst);
            tokio::time::sleep(self.hold).await;
            self.running.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        }
    }
}

impl Recorder {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("lock").clone()
    }

    fn times_called(&self) -> HashMap<String, usize> {
        let mut times = HashMap::new();
        for id in self.calls() {
            *times.entry(id).or_insert(0) += 1;
        }
        times
    }

    async fn wait_for_calls(&self, ids: &[&str]) {
        harvest_testkit::eventually(WAIT, || {
            let calls = self.calls();
            std::future::ready(
                ids.iter()
                    .all(|id| calls.iter().any(|call| call == id))
                    .then_some(()),
            )
        })
        .await
        .unwrap_or_else(|| panic!("calls for {ids:?}; got {:?}", self.calls()));
    }
}

/// A bus whose orders stream has one partition, so that every event below
/// lands in the same partition, in the order written.
async fn one_partition() -> Bus {
    Bus::start_with(Broker::shared().expect("the shared broker is up"), 1).await
}

async fn publish_all(bus: &Bus, events: &[&Envelope]) {
    let publisher = bus.publisher(Stream::Orders);
    for event in events {
        publisher
            .publish((*event).clone())
            .await
            .expect("published");
    }
}

/// A later event of the same order.
fn again(event: &Envelope) -> Envelope {
    Envelope {
        event_id: harvest_domain::deterministic_id("evt", &[&event.order_id, "again"]).to_string(),
        ..event.clone()
    }
}

fn state_changed(bus: &Bus, step: &str) -> Envelope {
    bus.event_of(
        step,
        Payload::OrderStateChanged(OrderStateChanged::default()),
    )
}

#[tokio::test]
async fn a_batch_passes_over_unwanted_types_and_handles_different_orders_at_once() {
    let bus = one_partition().await;
    let dead_letters = bus.dead_letters();
    let delivered: Vec<Envelope> = (0..4).map(|_| bus.event()).collect();
    let changed: Vec<Envelope> = (0..4)
        .map(|i| state_changed(&bus, &i.to_string()))
        .collect();
    let interleaved: Vec<&Envelope> = delivered
        .iter()
        .zip(&changed)
        .flat_map(|(a, b)| [a, b])
        .collect();
    // Written before the consumer starts: its first fetch brings them all.
    publish_all(&bus, &interleaved).await;
    let handler = Arc::new(Recorder {
        only_delivered: true,
        hold: Duration::from_millis(300),
        ..Recorder::default()
    });
    let shutdown = CancellationToken::new();
    let consuming = bus.consume(handler.clone(), shutdown.clone());
    let ids: Vec<&str> = delivered.iter().map(|e| e.event_id.as_str()).collect();
    handler.wait_for_calls(&ids).await;

    // One more wanted event after them: once it is handled, everything
    // before it on the partition was passed.
    let last = bus.event();
    publish_all(&bus, &[&last]).await;
    handler.wait_for_calls(&[&last.event_id]).await;
    let times = handler.times_called();
    assert_eq!(times.len(), 5, "only the wanted events: {times:?}");
    assert!(times.values().all(|&n| n == 1), "each once: {times:?}");
    assert!(
        changed.iter().all(|e| !times.contains_key(&e.event_id)),
        "unwanted types never reach the handler"
    );
    assert!(
        handler.most_at_once.load(Ordering::SeqCst) >= 2,
        "different orders of one batch are handled concurrently"
    );
    assert!(
        dead_letters.messages().is_empty(),
        "passed over is not dead-lettered"
    );
    shutdown.cancel();
    consuming.await.expect("consumer stops");
}

#[tokio::test]
async fn a_poison_event_in_a_batch_is_dead_lettered_and_the_rest_handled_once() {
    let bus = one_partition().await;
    let dead_letters = bus.dead_letters();
    let topic = bus.topology.topic(Stream::Orders, &bus.region);
    let first = bus.event();
    let second = bus.event();
    let refused = bus.event();
    let third = bus.event();
    // The same order as the first: handled after it.
    let first_again = again(&first);

    publish_all(&bus, &[&first, &second]).await;
    harvest_testkit::kafka::send_raw(
        &bus.broker.bootstrap(),
        &topic,
        b"ord-garbled",
        b"\xff\xff not an envelope",
        &[("event-type", types::ORDER_DELIVERED)],
    )
    .await
    .expect("written");
    publish_all(&bus, &[&refused, &third, &first_again]).await;

    let handler = Arc::new(Recorder {
        reject: Some(refused.event_id.clone()),
        hold: Duration::from_millis(50),
        ..Recorder::default()
    });
    let shutdown = CancellationToken::new();
    let consuming = bus.consume(handler.clone(), shutdown.clone());
    let good = [
        first.event_id.as_str(),
        second.event_id.as_str(),
        third.event_id.as_str(),
        first_again.event_id.as_str(),
    ];
    handler.wait_for_calls(&good).await;
    let dead = dead_letters
        .wait_for(WAIT, |messages| {
            (messages.len() >= 2).then(|| messages.to_vec())
        })
        .await
        .expect("both poison events are dead-lettered");
    let reasons: Vec<&str> = dead
        .iter()
        .map(|message| message.header("dead-letter-reason").unwrap_or_default())
        .collect();
    assert!(
        reasons.iter().any(|r| r.starts_with("undecodable")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r == &"rejected: no such product"),
        "{reasons:?}"
    );
    let calls = handler.calls();
    let position = |id: &str| calls.iter().position(|call| call == id).expect("called");
    assert!(
        position(&first.event_id) < position(&first_again.event_id),
        "one order's events in turn"
    );
    let times = handler.times_called();
    assert_eq!(times.len(), 5, "{times:?}");
    assert!(times.values().all(|&n| n == 1), "each once: {times:?}");
    shutdown.cancel();
    consuming.await.expect("consumer stops");

    // The batch's offset covers all of it: the group's next member sees
    // only what comes after.
    let fresh = Arc::new(Recorder::default());
    let shutdown = CancellationToken::new();
    let consuming = bus.consume(fresh.clone(), shutdown.clone());
    let next = bus.event();
    publish_all(&bus, &[&next]).await;
    fresh.wait_for_calls(&[&next.event_id]).await;
    assert_eq!(
        fresh.calls(),
        vec![next.event_id.clone()],
        "nothing redelivered"
    );
    shutdown.cancel();
    consuming.await.expect("consumer stops");
}

#[tokio::test]
async fn a_crash_in_the_middle_of_a_batch_redelivers_from_its_first_unfinished_event() {
    let bus = one_partition().await;
    let before = bus.event();
    let stalled = bus.event();
    let after = bus.event();
    let before_again = again(&before);
    publish_all(&bus, &[&before, &stalled, &after, &before_again]).await;

    let crashing = Arc::new(Recorder {
        stall: Some(stalled.event_id.clone()),
        ..Recorder::default()
    });
    let consuming = bus.consume(crashing.clone(), CancellationToken::new());
    // Everything but the stalled event finishes; the stalled one never does.
    crashing
        .wait_for_calls(&[
            &before.event_id,
            &stalled.event_id,
            &after.event_id,
            &before_again.event_id,
        ])
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The process dies: no shutdown, no final commit of its own.
    consuming.abort();
    let _ = consuming.await;

    let next = Arc::new(Recorder::default());
    let shutdown = CancellationToken::new();
    let consuming = bus.consume(next.clone(), shutdown.clone());
    next.wait_for_calls(&[&stalled.event_id, &after.event_id, &before_again.event_id])
        .await;
    let times = next.times_called();
    assert!(
        times.contains_key(&after.event_id) && times.contains_key(&before_again.event_id),
        "events after the unfinished one are delivered again although they were handled: {times:?}"
    );
    shutdown.cancel();
    consuming.await.expect("consumer stops");
}

#[tokio::test]
async fn shutdown_in_the_middle_of_a_batch_finishes_the_event_in_hand_and_leaves_the_rest() {
    let bus = one_partition().await;
    let first = bus.event();
    let second = again(&first);
    let third = Envelope {
        event_id: harvest_domain::deterministic_id("evt", &[&first.order_id, "third"]).to_string(),
        ..first.clone()
    };
    publish_all(&bus, &[&first, &second, &third]).await;

    let slow = Arc::new(Recorder {
        hold: Duration::from_secs(1),
        ..Recorder::default()
    });
    let shutdown = CancellationToken::new();
    let consuming = bus.consume(slow.clone(), shutdown.clone());
    slow.wait_for_calls(&[&first.event_id]).await;
    stop_in_time(&shutdown, consuming).await;
    assert_eq!(
        slow.calls(),
        vec![first.event_id.clone()],
        "the order's next events are not begun after shutdown"
    );

    let next = Arc::new(Recorder::default());
    let shutdown = CancellationToken::new();
    let consuming = bus.consume(next.clone(), shutdown.clone());
    next.wait_for_calls(&[&second.event_id, &third.event_id])
        .await;
    assert!(
        !next.calls().contains(&first.event_id),
        "the finished event's offset was stored: {:?}",
        next.calls()
    );
    shutdown.cancel();
    consuming.await.expect("consumer stops");
}
