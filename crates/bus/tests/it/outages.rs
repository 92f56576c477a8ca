//! What a consumer does while what it stands on fails: a partition whose
//! handler cannot go on is paused and holds up no other partition, and a
//! partition the group takes away stops before its next event; a dead letter
//! is replayed once its cause is fixed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harvest_bus::dead_letters;
use harvest_bus::{Handler, HandlerError, IncomingEvent, Stream};
use harvest_testkit::Broker;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Bus, WAIT, stop_in_time};

/// Holds every event of one order until the gate opens; records every
/// event as handled, in the order handled.
struct Gated {
    stuck_order: String,
    open: watch::Receiver<bool>,
    handled: Mutex<Vec<String>>,
    seen_stuck: AtomicUsize,
}

impl Handler for Gated {
    async fn handle(&self, event: &IncomingEvent) -> Result<(), HandlerError> {
        if event.envelope.order_id == self.stuck_order {
            self.seen_stuck.fetch_add(1, Ordering::SeqCst);
            let mut open = self.open.clone();
            let _ = open.wait_for(|open| *open).await;
        }
        self.handled
            .lock()
            .expect("lock")
            .push(event.envelope.event_id.clone());
        Ok(())
    }
}

impl Gated {
    fn handled(&self) -> Vec<String> {
        self.handled.lock().expect("lock").clone()
    }

    async fn wait_for(&self, ids: &[String]) {
        harvest_testkit::eventually(WAIT, || {
            let handled = self.handled();
            std::future::ready(ids.iter().all(|id| handled.contains(id)).then_some(()))
        })
        .await
        .unwrap_or_else(|| {
            let handled = self.handled();
            let missing = ids.iter().filter(|id| !handled.contains(id)).count();
            panic!("{missing} of {} events not handled", ids.len())
        });
    }
}

/// One order's handler cannot finish (its partition's queue fills and the
/// events behind wait): the other partition's events, written after, are
/// handled meanwhile. Once it can, the stuck partition's events are handled,
/// each once and in the order written.
#[tokio::test]
async fn a_partition_that_cannot_go_on_holds_up_only_itself() {
    let mut bus = Bus::start_with(Broker::shared().expect("the shared broker is up"), 2).await;
    bus.config.partition_queue_depth = 2;
    bus.config.max_batch = 2;
    let publisher = bus.publisher(Stream::Orders);

    let first = bus.event();
    let stuck_partition = publisher
        .publish(first.clone())
        .await
        .expect("published")
        .partition;
    let mut stuck = vec![first.event_id.clone()];
    for step in 0..40 {
        let mut event = bus.event();
        event.order_id.clone_from(&first.order_id);
        event.event_id =
            harvest_domain::deterministic_id("evt", &[&first.order_id, &step.to_string()])
                .to_string();
        publisher.publish(event.clone()).await.expect("published");
        stuck.push(event.event_id);
    }
    let (gate, open) = watch::channel(false);
    let handler = Arc::new(Gated {
        stuck_order: first.order_id.clone(),
        open,
        handled: Mutex::default(),
        seen_stuck: AtomicUsize::new(0),
    });
    let shutdown = CancellationToken::new();
    let consuming = bus.consume(handler.clone(), shutdown.clone());
    harvest_testkit::eventually(WAIT, || {
        std::future::ready((handler.seen_stuck.load(Ordering::SeqCst) > 0).then_some(()))
    })
    .await
    .expect("the stuck order's first event is in hand");

    // Other orders, written after: those that land on the other partition
    // must not wait for the stuck one.
    let mut free = Vec::new();
    while free.len() < 10 {
        let event = bus.event();
        let published = publisher.publish(event.clone()).await.expect("published");
        if published.partition != stuck_partition {
            free.push(event.event_id);
        }
    }
    handler.wait_for(&free).await;
    assert!(
        !handler.handled().contains(&first.event_id),
        "the stuck order is still failing"
    );

    gate.send(true).expect("gate");
    handler.wait_for(&stuck).await;
    let handled_stuck: Vec<String> = handler
        .handled()
        .into_iter()
        .filter(|id| stuck.contains(id))
        .collect();
    assert_eq!(handled_stuck, stuck, "each once, in the order written");
    stop_in_time(&shutdown, consuming).await;
}

/// Takes its time over every event, and counts how many ran at once.
#[derive(Default)]
struct Slow {
    running: AtomicUsize,
    /// Events that started while another was running.
    overlapping: AtomicUsize,
    handled: Mutex<Vec<String>>,
}

impl Handler for Slow {
    async fn handle(&self, event: &IncomingEvent) -> Result<(), HandlerError> {
        if self.running.fetch_add(1, Ordering::SeqCst) > 0 {
            self.overlapping.fetch_add(1, Ordering::SeqCst);
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        self.handled
            .lock()
            .expect("lock")
            .push(event.envelope.event_id.clone());
        self.running.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
}

/// One order's events in one partition, handled one after the other by one
/// member. A second member joins the group, which takes the partition away
/// from the first (and gives it to one of them). The first member's task
/// stops before its next queued event, so the partition's events are never
/// handled by two tasks at once, but for the one in hand at the handover,
/// and none is handled again but that one. Nothing is lost.
#[tokio::test]
async fn a_revoked_partition_stops_before_its_next_event() {
    let mut bus = Bus::start_with(Broker::shared().expect("the shared broker is up"), 1).await;
    // Each event is a batch of its own, so the offset follows every event.
    bus.config.max_batch = 1;
    let publisher = bus.publisher(Stream::Orders);
    let first = bus.event();
    let mut events = Vec::new();
    for step in 0..60 {
        let mut event = first.clone();
        event.event_id =
            harvest_domain::deterministic_id("evt", &[&first.order_id, &step.to_string()])
                .to_string();
        publisher.publish(event.clone()).await.expect("published");
        events.push(event.event_id);
    }

    let handler = Arc::new(Slow::default());
    let shutdown = CancellationToken::new();
    let one = bus.consume(handler.clone(), shutdown.clone());
    harvest_testkit::eventually(WAIT, || {
        std::future::ready((handler.handled().len() >= 3).then_some(()))
    })
    .await
    .expect("the first member is under way");
    let two = bus.consume(handler.clone(), shutdown.clone());

    harvest_testkit::eventually(Duration::from_secs(60), || {
        let handled = handler.handled();
        std::future::ready(events.iter().all(|id| handled.contains(id)).then_some(()))
    })
    .await
    .expect("every event handled");
    // Whatever either member still had to handle of the partition comes
    // before this.
    let mut marker = first.clone();
    marker.event_id =
        harvest_domain::deterministic_id("evt", &[&first.order_id, "marker"]).to_string();
    publisher.publish(marker.clone()).await.expect("published");
    harvest_testkit::eventually(WAIT, || {
        std::future::ready(handler.handled().contains(&marker.event_id).then_some(()))
    })
    .await
    .expect("the marker handled");
    assert!(
        handler.overlapping.load(Ordering::SeqCst) <= 1,
        "{} events started while another of the partition ran",
        handler.overlapping.load(Ordering::SeqCst)
    );
    let handled = handler.handled();
    let again = handled.len() - events.len() - 1;
    assert!(again <= 1, "{again} events handled twice");
    stop_in_time(&shutdown, one).await;
    two.await.expect("the second member stops");
}

impl Slow {
    fn handled(&self) -> Vec<String> {
        self.handled.lock().expect("lock").clone()
    }
}

/// Rejects every event while broken, as a handler with a bug would.
#[derive(Default)]
struct Buggy {
    fixed: std::sync::atomic::AtomicBool,
    handled: Mutex<Vec<String>>,
}

impl Handler for Buggy {
    async fn handle(&self, event: &IncomingEvent) -> Result<(), HandlerError> {
        if !self.fixed.load(Ordering::SeqCst) {
            return Err(HandlerError::Rejected("no such product".to_owned()));
        }
        self.handled
            .lock()
            .expect("lock")
            .push(event.envelope.event_id.clone());
        Ok(())
    }
}

/// An event a handler rejected is read back from the dead-letter topic, and
/// once the handler is fixed, replayed to its stream and handled; the
/// redrive mark moves past it.
#[tokio::test]
async fn a_dead_letter_replayed_after_the_fix_is_handled() {
    let bus = Bus::start().await;
    let handler = Arc::new(Buggy::default());
    let shutdown = CancellationToken::new();
    let consuming = bus.consume(handler.clone(), shutdown.clone());
    let event = bus.event();
    bus.publisher(Stream::Orders)
        .publish(event.clone())
        .await
        .expect("published");

    let read = || dead_letters::read(&bus.config, &bus.topology, "catalog", &bus.region);
    let letters = harvest_testkit::eventually(WAIT, || async {
        read()
            .await
            .ok()
            .filter(|letters| !letters.letters.is_empty())
    })
    .await
    .expect("a dead letter");
    let letter = &letters.letters[0];
    assert_eq!(letter.reason(), "rejected: no such product");
    assert_eq!(
        letter.envelope().map(|e| e.event_id),
        Some(event.event_id.clone())
    );
    assert!(!letter.redriven);
    assert_eq!(letters.mark, 0);

    handler.fixed.store(true, Ordering::SeqCst);
    dead_letters::redrive(
        &bus.config,
        &bus.topology,
        "catalog",
        &bus.region,
        &letters.letters,
        Some(letter.offset + 1),
    )
    .await
    .expect("replayed");
    harvest_testkit::eventually(WAIT, || {
        std::future::ready(
            handler
                .handled
                .lock()
                .expect("lock")
                .contains(&event.event_id)
                .then_some(()),
        )
    })
    .await
    .expect("the replayed event is handled");
    let after = read().await.expect("read");
    assert_eq!(after.mark, 1);
    assert_eq!(after.letters.len(), 1, "not dead-lettered again");
    assert!(after.letters[0].redriven);
    stop_in_time(&shutdown, consuming).await;
}
