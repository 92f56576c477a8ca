//! The fault suite: steady traffic through a whole local system while what it
//! stands on fails, then the invariants. Each service is killed (SIGKILL) and
//! started again, several times; the broker is killed and restarted on its
//! data; Redis is killed and restarted from its append-only file, then frozen
//! (SIGSTOP) and let go; malformed and forged events are written onto the
//! streams. Afterwards every acknowledged order must have ended, no unit may
//! be oversold, no order charged twice or holding money after its
//! cancellation, and the dead-letter topics may hold the bad events only.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use harvest_bus::dead_letters;
use harvest_bus::topology::CONSUMING_SERVICES;
use harvest_bus::{Stream, new_envelope};
use harvest_domain::{Region, new_id};
use harvest_proto::events::v1::PaymentAuthorized;
use harvest_stack::{ServiceKind, Stack};
use prost::Message;
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

use crate::storefront::Traffic;
use crate::{Session, Setup, Summary, Target};

/// Every key of a bad event starts with this.
pub const BAD_EVENT_KEY: &str = "bad-event-";

/// What to do to the system, and how hard to drive it meanwhile.
#[derive(Clone, Debug)]
pub struct FaultPlan {
    /// Orders per second in each region, all along.
    pub rate_per_region: f64,
    /// Each round kills every service once, in turn.
    pub service_kill_rounds: u32,
    /// How long a killed service stays down.
    pub service_down: Duration,
    /// How long the broker stays down; zero leaves it alone.
    pub broker_down: Duration,
    /// Kill Redis and restart it from its append-only file.
    pub redis_crash: bool,
    /// How long Redis stays frozen; zero leaves it alone.
    pub redis_frozen: Duration,
    /// Malformed and forged events written onto the streams, half each.
    pub bad_events: usize,
    /// Calm traffic before the first fault, between faults and after the
    /// last.
    pub calm: Duration,
    /// After the traffic, how long every acknowledged order has to end.
    pub drain_timeout: Duration,
}

/// One fault, when it began and how long it took (down time and recovery
/// included).
#[derive(Clone, Debug)]
pub struct FaultDone {
    pub what: String,
    pub at: Duration,
    pub took: Duration,
}

/// Dead letters found after the run.
#[derive(Clone, Debug, Default)]
pub struct DeadLetters {
    /// Letters of the bad events, by service.
    pub of_bad_events: BTreeMap<String, usize>,
    /// Bad events no consumer dead-lettered (they may have been passed over
    /// by type, when no consumer of their stream acts on it).
    pub bad_events_sent: usize,
    /// Letters of anything else: each one a lost or wrongly refused event.
    pub others: Vec<String>,
}

/// What Redis holds at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    /// `used_memory` of `INFO memory`.
    pub used_bytes: u64,
    pub keys: u64,
    /// Keys with a time to live: those that go once their retention passes.
    pub expiring_keys: u64,
    /// The keys without a time to live, counted by [`key_shape`], as a scan
    /// of every key found them.
    pub lasting_by_shape: BTreeMap<String, u64>,
    /// Of those, the keys of one order (or of one of its shipments) whose
    /// order no longer lasts, by shape. An open order's keys last until it
    /// ends; once it has ended, each of them must expire with it.
    pub outliving_their_order: BTreeMap<String, u64>,
}

/// The shapes of the keys that may last: one per product, courier, region,
/// seller, courier partner, service or index, however many orders there
/// were. Any other key without a time to live is one that the orders grow.
const BOUNDED_SHAPES: [&str; 16] = [
    "catalog:{}:product",
    "catalog:{}:lots",
    "catalog:{}:lots-by-date",
    "catalog:{}:settled",
    "catalog:{}:reservations",
    "catalog:{}:buyers",
    "catalog:{}:buyers-by-time",
    "orders:deadlines:{}",
    "orders:outbox:{}",
    "payments:payouts:{}",
    "delivery:{}:courier",
    "delivery:{}:open",
    "delivery:couriers:{}",
    "delivery:cold-couriers:{}",
    "delivery:partner:{}:couriers",
    "delivery:pending:{}",
];

/// Indexes, per service: a key each, whatever they are named by.
const BOUNDED_PREFIXES: [&str; 3] = ["catalog:index:", "payments:index:", "audit:{}:"];

/// Whether keys of `shape` are bounded by what the deployment has (its
/// catalog, fleet and regions) rather than by its orders.
pub fn bounded_shape(shape: &str) -> bool {
    BOUNDED_SHAPES.contains(&shape)
        || BOUNDED_PREFIXES
            .iter()
            .any(|prefix| shape.starts_with(prefix))
}

/// Keys asked about per scan step and per pipeline of `TTL`s.
const SCAN_BATCH: usize = 1_000;

impl Footprint {
    pub async fn read(redis_url: &str) -> anyhow::Result<Footprint> {
        let client = redis::Client::open(redis_url)?;
        let mut redis = client.get_multiplexed_async_connection().await?;
        let memory: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut redis)
            .await?;
        let keyspace: String = redis::cmd("INFO")
            .arg("keyspace")
            .query_async(&mut redis)
            .await?;
        let field = |text: &str, name: &str| -> u64 {
            text.split(['\n', ',', ':'])
                .find_map(|part| part.trim().strip_prefix(name)?.strip_prefix('='))
                .and_then(|value| value.trim().parse().ok())
                .unwrap_or(0)
        };
        let used_bytes = memory
            .lines()
            .find_map(|line| line.strip_prefix("used_memory:"))
            .and_then(|value| value.trim().parse().ok())
            .context("INFO memory has no used_memory")?;
        let census = lasting_keys(&mut redis).await?;
        Ok(Footprint {
            used_bytes,
            keys: field(&keyspace, "keys"),
            expiring_keys: field(&keyspace, "expires"),
            lasting_by_shape: census.by_shape,
            outliving_their_order: outliving_their_order(&mut redis, &census.per_order).await?,
        })
    }

    /// Keys that stay until something deletes them.
    pub fn lasting_keys(&self) -> u64 {
        self.keys.saturating_sub(self.expiring_keys)
    }

    /// The lasting keys of shapes that the orders grow (see
    /// [`bounded_shape`]), by shape: those of open orders, and any that
    /// outlive their order.
    pub fn lasting_per_order(&self) -> BTreeMap<&str, u64> {
        self.lasting_by_shape
            .iter()
            .filter(|(shape, _)| !bounded_shape(shape))
            .map(|(shape, count)| (shape.as_str(), *count))
            .collect()
    }
}

/// What a scan found of the keys without a time to live.
#[derive(Default)]
struct Census {
    by_shape: BTreeMap<String, u64>,
    /// Each lasting key of a shape the orders grow, with its shape.
    per_order: Vec<(String, String)>,
}

/// Scans every key, and counts those without a time to live by shape.
async fn lasting_keys(redis: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<Census> {
    let mut census = Census::default();
    let mut cursor = 0_u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(SCAN_BATCH)
            .query_async(redis)
            .await
            .context("scanning Redis's keys")?;
        if !keys.is_empty() {
            let mut ttls = redis::pipe();
            for key in &keys {
                ttls.cmd("TTL").arg(key);
            }
            let ttls: Vec<i64> = ttls.query_async(redis).await?;
            // -1: no time to live; -2: gone since the scan saw it.
            for (key, _) in keys.into_iter().zip(ttls).filter(|(_, ttl)| *ttl == -1) {
                let shape = key_shape(&key);
                *census.by_shape.entry(shape.clone()).or_insert(0) += 1;
                if !bounded_shape(&shape) {
                    census.per_order.push((shape, key));
                }
            }
        }
        if next == 0 {
            return Ok(census);
        }
        cursor = next;
    }
}

/// The first hash tag's contents of `key`.
fn hash_tag(key: &str) -> Option<&str> {
    let (_, tagged) = key.split_once('{')?;
    Some(tagged.split_once('}')?.0)
}

/// Of `per_order` (lasting keys with their shapes), those whose order does
/// not last itself, counted by shape. A key is an order's when its hash tag
/// is an order id, or when it is a shipment's (its hash names its order);
/// a key of neither kind belongs to no open order, so it is counted too.
async fn outliving_their_order(
    redis: &mut redis::aio::MultiplexedConnection,
    per_order: &[(String, String)],
) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut outliving = BTreeMap::new();
    for batch in per_order.chunks(SCAN_BATCH) {
        // Each key's order: its tag, or what its shipment's hash says.
        let mut shipments = redis::pipe();
        for (_, key) in batch {
            let tag = hash_tag(key).unwrap_or_default();
            shipments
                .cmd("HGET")
                .arg(format!("delivery:{{{tag}}}:shipment"))
                .arg("order_id");
        }
        let shipment_orders: Vec<Option<String>> = shipments.query_async(redis).await?;
        let orders: Vec<Option<String>> = batch
            .iter()
            .zip(shipment_orders)
            .map(|((_, key), of_shipment)| {
                let tag = hash_tag(key)?;
                if tag.starts_with("ord_") {
                    Some(tag.to_owned())
                } else {
                    of_shipment
                }
            })
            .collect();
        let mut ttls = redis::pipe();
        for order in &orders {
            let order = order.as_deref().unwrap_or_default();
            ttls.cmd("TTL").arg(format!("orders:{{{order}}}:order"));
        }
        let ttls: Vec<i64> = ttls.query_async(redis).await?;
        for ((shape, _), ttl) in batch.iter().zip(ttls) {
            if ttl != -1 {
                *outliving.entry(shape.clone()).or_insert(0) += 1;
            }
        }
    }
    Ok(outliving)
}

/// A key with what names one thing left out: each hash tag's contents
/// become `{}` and each other part with a digit in it `*`, so that
/// `orders:{ord_01J…}:order` is `orders:{}:order` and a product's, a
/// region's or an index's keys each keep a shape of their own kind.
pub fn key_shape(key: &str) -> String {
    let mut shape = String::with_capacity(key.len());
    let mut rest = key;
    while !rest.is_empty() {
        if let Some(tagged) = rest.strip_prefix('{')
            && let Some(end) = tagged.find('}')
        {
            shape.push_str("{}");
            rest = &tagged[end + 1..];
            continue;
        }
        let end = rest
            .char_indices()
            .skip(1)
            .find(|(_, c)| *c == ':' || *c == '{')
            .map_or(rest.len(), |(at, _)| at);
        let (part, after) = rest.split_at(end);
        let (colon, name) = match part.strip_prefix(':') {
            Some(name) => (":", name),
            None => ("", part),
        };
        shape.push_str(colon);
        if name.chars().any(|c| c.is_ascii_digit()) {
            shape.push('*');
        } else {
            shape.push_str(name);
        }
        rest = after;
    }
    shape
}

/// What a fault run found.
#[derive(Clone, Debug)]
pub struct FaultReport {
    pub faults: Vec<FaultDone>,
    pub summary: Summary,
    pub dead_letters: DeadLetters,
    /// Redis once the catalog and the couriers were set up, before any
    /// order.
    pub redis_before: Footprint,
    /// Redis once every order ended: what the run's orders left behind
    /// within their retention.
    pub redis_after: Footprint,
    /// Where the first unfinished orders stand, as the orders service has
    /// them: `id: STATE after CAUSE`.
    pub unfinished: Vec<String>,
}

impl FaultReport {
    /// Every invariant held, and only bad events were dead-lettered.
    pub fn passed(&self) -> bool {
        self.summary.findings.all_clear()
            && self.dead_letters.others.is_empty()
            && self.summary.placed() > 0
            && self.redis_after.outliving_their_order.is_empty()
    }
}

/// Runs `plan` against `stack` (durable, with a broker of its own), telling
/// `progress` what it does.
pub async fn run(
    stack: &mut Stack,
    setup: &Setup,
    plan: &FaultPlan,
    stop: &CancellationToken,
    mut progress: impl FnMut(&str),
) -> anyhow::Result<FaultReport> {
    let target = Target::of(stack).await?;
    let session = Session::open(&target, setup).await?;
    let redis_before = Footprint::read(&stack.redis_url()).await?;
    let regions: Vec<Region> = target.topology.regions().iter().cloned().collect();
    let traffic = Traffic {
        regions: regions.clone(),
        rate_per_region: plan.rate_per_region,
        // Ended by the fault script, once it is done.
        duration: Duration::from_secs(24 * 3600),
        spike: None,
        declined: 0.05,
        flaky_payment: 0.05,
        buyer_cancels: 0.05,
        max_in_flight: 20_000,
        // A buyer whose call got no answer in a fault places it again with
        // the same key: the orders placed meanwhile are acknowledged then,
        // and checked like the rest.
        retry_unanswered: true,
    };
    let traffic_stop = stop.child_token();
    let started = Instant::now();
    let script = async {
        let result = faults(stack, &target, plan, stop, started, &mut progress).await;
        traffic_stop.cancel();
        result
    };
    let mut no_ticks = |_: &crate::Tick| {};
    let (faults, ()) = tokio::join!(
        script,
        session.traffic(&traffic, &traffic_stop, &mut no_ticks)
    );
    let faults = faults?;
    progress(&format!(
        "traffic stopped after {:.0} s; waiting up to {} s for every order to end",
        started.elapsed().as_secs_f64(),
        plan.drain_timeout.as_secs()
    ));
    session.drain(plan.drain_timeout, stop, &mut no_ticks).await;
    // What the streams said about the orders not seen ending, before the
    // session (and its reader of the streams) goes.
    let not_seen_ending = session.observer().unfinished(&session.placed_orders());
    let tracks = session.observer().tracks(not_seen_ending.iter());
    let summary = session.finish().await?;
    let redis_after = Footprint::read(&stack.redis_url()).await?;
    let dead_letters = count_dead_letters(&target, &regions, plan.bad_events).await?;
    let mut unfinished = Vec::new();
    for order_id in summary.findings.unfinished_orders.iter().take(50) {
        let request = harvest_proto::orders::v1::GetOrderRequest {
            order_id: order_id.clone(),
        };
        let line = match target.clients.orders.clone().get_order(request).await {
            Ok(order) => {
                let order = order.into_inner();
                let last = order.history.last();
                let seen = tracks.get(order_id).map_or_else(
                    || "nothing".to_owned(),
                    |track| {
                        format!(
                            "assigned {}, picked up {}, delivered {}, failed {}",
                            track.assigned_at.is_some(),
                            track.shipments_picked_up,
                            track.shipments_delivered,
                            track.shipments_failed
                        )
                    },
                );
                format!(
                    "{order_id}: {:?} after {} ({} s after placing); streams saw {seen}",
                    order.state(),
                    last.map_or("placing", |t| t.cause.as_str()),
                    match (order.created_at, order.updated_at) {
                        (Some(created), Some(updated)) => updated.seconds - created.seconds,
                        _ => 0,
                    }
                )
            }
            Err(status) => format!("{order_id}: {status}"),
        };
        unfinished.push(line);
    }
    Ok(FaultReport {
        faults,
        summary,
        dead_letters,
        redis_before,
        redis_after,
        unfinished,
    })
}

async fn faults(
    stack: &mut Stack,
    target: &Target,
    plan: &FaultPlan,
    stop: &CancellationToken,
    started: Instant,
    progress: &mut impl FnMut(&str),
) -> anyhow::Result<Vec<FaultDone>> {
    let mut done = Vec::new();
    let mut record = |what: String, began: Instant, progress: &mut dyn FnMut(&str)| {
        let fault = FaultDone {
            what,
            at: began - started,
            took: began.elapsed(),
        };
        progress(&format!(
            "{:>6.1} s  {} ({:.1} s)",
            fault.at.as_secs_f64(),
            fault.what,
            fault.took.as_secs_f64()
        ));
        done.push(fault);
    };
    calm(plan.calm, stop).await;
    for round in 1..=plan.service_kill_rounds {
        for kind in ServiceKind::ALL {
            if stop.is_cancelled() {
                return Ok(done);
            }
            let began = Instant::now();
            stack.kill_service(kind);
            calm(plan.service_down, stop).await;
            stack
                .start_service(kind)
                .await
                .with_context(|| format!("restarting {kind} after killing it"))?;
            record(
                format!("SIGKILL {kind} (round {round}), started again"),
                began,
                progress,
            );
            calm(plan.calm / 4, stop).await;
        }
    }
    calm(plan.calm, stop).await;

    if !plan.broker_down.is_zero() && !stop.is_cancelled() {
        let began = Instant::now();
        stack.crash_broker();
        calm(plan.broker_down, stop).await;
        tokio::task::block_in_place(|| stack.restart_broker()).context("restarting the broker")?;
        record(
            "SIGKILL Kafka, restarted on its data".to_owned(),
            began,
            progress,
        );
        calm(plan.calm, stop).await;
    }
    if plan.redis_crash && !stop.is_cancelled() {
        let began = Instant::now();
        stack.crash_redis();
        tokio::task::block_in_place(|| stack.restart_redis()).context("restarting Redis")?;
        record(
            "SIGKILL Redis, restarted from its append-only file".to_owned(),
            began,
            progress,
        );
        calm(plan.calm, stop).await;
    }
    if !plan.redis_frozen.is_zero() && !stop.is_cancelled() {
        let began = Instant::now();
        stack.pause_redis();
        calm(plan.redis_frozen, stop).await;
        stack.resume_redis();
        record("SIGSTOP Redis, then SIGCONT".to_owned(), began, progress);
        calm(plan.calm, stop).await;
    }
    if plan.bad_events > 0 && !stop.is_cancelled() {
        let began = Instant::now();
        send_bad_events(target, plan.bad_events).await?;
        record(
            format!("{} malformed and forged events written", plan.bad_events),
            began,
            progress,
        );
        calm(plan.calm, stop).await;
    }
    Ok(done)
}

async fn calm(length: Duration, stop: &CancellationToken) {
    tokio::select! {
        () = stop.cancelled() => {}
        () = tokio::time::sleep(length) => {}
    }
}

/// Writes `count` bad events onto the orders streams, by-passing every
/// check a publisher makes: half are bytes that are no event at all, half
/// are payments' events passed off as orders' (a forged authorization under
/// an order-placed header).
async fn send_bad_events(target: &Target, count: usize) -> anyhow::Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &target.bootstrap)
        .create()
        .context("creating a producer for bad events")?;
    let regions: Vec<Region> = target.topology.regions().iter().cloned().collect();
    for index in 0..count {
        let region = &regions[index % regions.len()];
        let topic = target.topology.topic(Stream::Orders, region);
        let key = format!("{BAD_EVENT_KEY}{index}");
        let (payload, event_type) = if index % 2 == 0 {
            (b"\xff\x00not an event".to_vec(), None)
        } else {
            let order_id = new_id("ord");
            let mut forged = new_envelope(
                &new_id("evt"),
                &order_id,
                region,
                "orders",
                harvest_bus::Payload::PaymentAuthorized(PaymentAuthorized {
                    payment_id: "pay-forged".to_owned(),
                    amount_fen: 1,
                    provider_reference: "forged".to_owned(),
                }),
            );
            forged.event_type = harvest_bus::event::types::ORDER_PLACED.to_owned();
            (forged.encode_to_vec(), Some(forged.event_type))
        };
        let mut headers = OwnedHeaders::new();
        if let Some(event_type) = &event_type {
            headers = headers.insert(Header {
                key: "event-type",
                value: Some(event_type.as_bytes()),
            });
        }
        producer
            .send(
                FutureRecord::to(&topic)
                    .key(&key)
                    .payload(&payload)
                    .headers(headers),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(error, _)| error)
            .with_context(|| format!("writing a bad event to {topic}"))?;
    }
    Ok(())
}

/// Reads every dead-letter topic and sorts its letters into those of the
/// bad events and the rest.
async fn count_dead_letters(
    target: &Target,
    regions: &[Region],
    bad_events: usize,
) -> anyhow::Result<DeadLetters> {
    let bus = harvest_bus::BusConfig {
        brokers: target.bootstrap.clone(),
        ..harvest_bus::BusConfig::default()
    };
    let mut found = DeadLetters {
        bad_events_sent: bad_events,
        ..DeadLetters::default()
    };
    for service in CONSUMING_SERVICES {
        for region in regions {
            let letters = dead_letters::read(&bus, &target.topology, service, region)
                .await
                .with_context(|| format!("reading {service}'s dead letters of {region}"))?;
            for letter in &letters.letters {
                let key = letter
                    .key
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                if key.starts_with(BAD_EVENT_KEY) {
                    *found.of_bad_events.entry(service.to_owned()).or_default() += 1;
                } else {
                    found.others.push(format!(
                        "{service}/{region} offset {}: order {key}: {}",
                        letter.offset,
                        letter.reason()
                    ));
                }
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::{bounded_shape, key_shape};

    #[test]
    fn a_keys_shape_leaves_out_what_names_one_thing() {
        for (key, shape) in [
            ("orders:{ord_01JD8Q}:order", "orders:{}:order"),
            ("run7:orders:{ord_01JD8Q}:order", "*:orders:{}:order"),
            ("orders:placement:{buyer-3/key-9}", "orders:placement:{}"),
            ("delivery:open:{east}", "delivery:open:{}"),
            ("catalog:index:province", "catalog:index:province"),
            ("orders:watch:ord_01JD8Q", "orders:watch:*"),
            ("payments:{ord_1}:entries", "payments:{}:entries"),
            ("plain", "plain"),
            ("odd:{unclosed", "odd:{unclosed"),
        ] {
            assert_eq!(key_shape(key), shape, "{key}");
        }
    }

    #[test]
    fn what_a_deployment_has_may_last_and_what_an_order_has_may_not() {
        for key in [
            "catalog:{apples}:product",
            "catalog:index:province:Gansu",
            "payments:index:captured",
            "delivery:{rider-7}:courier",
            "delivery:couriers:{east}",
            "orders:deadlines:{east}",
            "audit:{delivery}:ids",
        ] {
            assert!(bounded_shape(&key_shape(key)), "{key}");
        }
        for key in [
            "payments:{ord_01J}:payment",
            "orders:{ord_01J}:order",
            "orders:buyer:{buyer-1}",
            "delivery:{shp_01J}:shipment",
            "catalog:{ord_01J}:outcome",
        ] {
            assert!(!bounded_shape(&key_shape(key)), "{key}");
        }
    }
}
