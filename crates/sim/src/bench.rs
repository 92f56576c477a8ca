//! Measuring Harvest: the machine's own ceilings (raw broker and Redis
//! rates with the clients Harvest uses), and what each service process
//! costs in CPU time and memory.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use harvest_bus::BusConfig;
use harvest_bus::topology::TopicSpec;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Produces `messages` events of `size` bytes with the producer settings of
/// Harvest's publisher and consumes them with a consumer group like a
/// service's. Returns (produced per second, produced-and-consumed per
/// second).
pub async fn broker_ceiling(
    bus: &BusConfig,
    messages: usize,
    size: usize,
) -> anyhow::Result<(f64, f64)> {
    let topic = format!("harvest.ceiling.{}", uuid::Uuid::new_v4().simple());
    let spec = TopicSpec {
        name: topic.clone(),
        partitions: bus.partitions,
        replication_factor: bus.replication_factor,
        retention_ms: 3_600_000,
    };
    harvest_bus::admin::ensure_topics(bus, &[spec]).await?;
    let producer: FutureProducer = bus
        .client_config()
        .set("socket.nagle.disable", "true")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", bus.linger_ms.to_string())
        .set("message.timeout.ms", bus.publish_timeout_ms.to_string())
        .create()
        .context("ceiling producer")?;
    let consumer: StreamConsumer = bus
        .client_config()
        .set("socket.nagle.disable", "true")
        .set("group.id", format!("{topic}.group"))
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", bus.session_timeout_ms.to_string())
        .set("fetch.wait.max.ms", bus.fetch_wait_max_ms.to_string())
        .set("fetch.min.bytes", bus.fetch_min_bytes.to_string())
        .create()
        .context("ceiling consumer")?;
    consumer.subscribe(&[topic.as_str()])?;
    // The group forms before the clock starts: on a new broker the first
    // group waits seconds for the offsets topic, which is not the broker's
    // message rate. Polling drives the join; it reads from the start, so
    // nothing produced later is missed.
    let forming = Instant::now() + Duration::from_secs(30);
    while consumer.assignment().map_or(0, |assigned| assigned.count()) == 0 {
        anyhow::ensure!(
            Instant::now() < forming,
            "the ceiling consumer got no partitions within 30 s"
        );
        let _ = tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await;
    }

    let payload = vec![b'h'; size];
    let started = Instant::now();
    let consuming = async {
        let mut received = 0;
        while received < messages {
            match tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await {
                Ok(Ok(message)) => {
                    let _ = consumer.store_offset_from_message(&message);
                    received += 1;
                }
                Ok(Err(_)) => {}
                Err(_) => break,
            }
        }
        (received, started.elapsed())
    };
    let producing = async {
        futures::stream::iter(0..messages)
            .map(|index| {
                let key = format!("ord_{index}");
                let producer = &producer;
                let payload = &payload;
                let topic = &topic;
                async move {
                    producer
                        .send(
                            FutureRecord::to(topic).key(&key).payload(payload),
                            Duration::from_secs(30),
                        )
                        .await
                        .is_ok()
                }
            })
            .buffer_unordered(5_000)
            .filter(|sent| std::future::ready(*sent))
            .count()
            .await;
        started.elapsed()
    };
    let (produced_in, (received, consumed_in)) = tokio::join!(producing, consuming);
    anyhow::ensure!(
        received == messages,
        "only {received} of {messages} messages came back"
    );
    Ok((
        messages as f64 / produced_in.as_secs_f64(),
        messages as f64 / consumed_in.as_secs_f64(),
    ))
}

/// Lua calls per second a Redis server answers: `clients` concurrent callers
/// of a one-hash script (a counter step, like a reservation's), for `length`.
pub async fn redis_ceiling(url: &str, clients: usize, length: Duration) -> anyhow::Result<f64> {
    let client = redis::Client::open(url)?;
    let connection = client.get_multiplexed_async_connection().await?;
    let script = redis::Script::new(
        "local v = redis.call('HINCRBY', KEYS[1], 'reserved', 1) \
         if v > tonumber(redis.call('HGET', KEYS[1], 'on_hand') or '1000000000') then return 0 end \
         return v",
    );
    let deadline = Instant::now() + length;
    let started = Instant::now();
    let calls = futures::future::join_all((0..clients).map(|index| {
        let mut connection = connection.clone();
        let script = script.clone();
        async move {
            let key = format!("ceiling:{{p{}}}:lots", index % 64);
            let mut calls = 0u64;
            while Instant::now() < deadline {
                let called: redis::RedisResult<i64> =
                    script.key(&key).invoke_async(&mut connection).await;
                if called.is_err() {
                    break;
                }
                calls += 1;
            }
            calls
        }
    }))
    .await;
    Ok(calls.iter().sum::<u64>() as f64 / started.elapsed().as_secs_f64())
}

/// CPU time (user + system) a process has used so far.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields count from after its ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64(
        (user + system) as f64 / clock_ticks() as f64,
    ))
}

fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100)
}

/// The most resident memory a process has used, in bytes.
pub fn peak_memory(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kilobytes: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kilobytes * 1024)
}

/// CPU time of several processes, by name.
pub fn cpu_times(pids: &BTreeMap<String, u32>) -> BTreeMap<String, Duration> {
    pids.iter()
        .filter_map(|(name, pid)| Some((name.clone(), cpu_time(*pid)?)))
        .collect()
}

/// The work done so far, counted where it happens: the commands Redis ran by
/// name (`INFO commandstats`) and, per service (from its `/metrics`), the
/// requests it sent Redis (round trips, and the commands in them) and the
/// events it handled by outcome and published.
#[derive(Clone, Debug, Default)]
pub struct WorkCounts {
    /// Commands Redis ran, by name; the commands a script runs count too.
    pub redis_commands: BTreeMap<String, u64>,

    /// Service → counter (`handled`, `skipped`, `dead_letter`, `published`,
    /// `redis_round_trips`, `redis_commands`).
    pub events: BTreeMap<String, BTreeMap<String, f64>>,
}

impl WorkCounts {
    pub async fn read(
        redis_url: &str,
        admins: &BTreeMap<String, SocketAddr>,
    ) -> anyhow::Result<WorkCounts> {
        let client = redis::Client::open(redis_url)?;
        let mut redis = client.get_multiplexed_async_connection().await?;
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut redis)
            .await?;
        let redis_commands = info
            .lines()
            .filter_map(|line| {
                let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
                Some((name.to_owned(), calls.parse().ok()?))
            })
            .collect();
        let mut events = BTreeMap::new();
        for (service, admin) in admins {
            let text = http_get(*admin, "/metrics").await?;
            events.insert(service.clone(), event_counters(&text));
        }
        Ok(WorkCounts {
            redis_commands,
            events,
        })
    }

    /// What happened between `before` and this count, per order placed.
    pub fn per_order(&self, before: &WorkCounts, orders: u64) -> Value {
        let orders = orders.max(1) as f64;
        let round = |value: f64| (value / orders * 100.0).round() / 100.0;
        let commands: Vec<(String, f64)> = self
            .redis_commands
            .iter()
            .map(|(name, calls)| {
                let earlier = before.redis_commands.get(name).copied().unwrap_or(0);
                (name.clone(), round(calls.saturating_sub(earlier) as f64))
            })
            .filter(|(name, calls)| *calls > 0.0 && name != "info")
            .collect();
        let total: f64 = commands.iter().map(|(_, calls)| calls).sum();
        let events: serde_json::Map<String, Value> = self
            .events
            .iter()
            .map(|(service, counters)| {
                let counted: serde_json::Map<String, Value> = counters
                    .iter()
                    .map(|(counter, value)| {
                        let earlier = before
                            .events
                            .get(service)
                            .and_then(|c| c.get(counter))
                            .copied()
                            .unwrap_or(0.0);
                        (counter.clone(), json!(round(value - earlier)))
                    })
                    .collect();
                (service.clone(), Value::Object(counted))
            })
            .collect();
        let sum = |counter: &str| -> f64 {
            let total: f64 = events
                .values()
                .filter_map(|counters| counters[counter].as_f64())
                .sum();
            (total * 100.0).round() / 100.0
        };
        json!({
            "redis_round_trips": sum("redis_round_trips"),
            "redis_commands_sent": sum("redis_commands"),
            "redis_commands_run": (total * 100.0).round() / 100.0,
            "redis_commands_run_by_name": commands
                .into_iter()
                .map(|(name, calls)| (name, json!(calls)))
                .collect::<serde_json::Map<String, Value>>(),
            "events_published": sum("published"),
            "events_handled": sum("handled"),
            "events_skipped": sum("skipped"),
            "events_by_service": events,
        })
    }
}

/// Sums a service's event and Redis counters from its Prometheus text.
fn event_counters(text: &str) -> BTreeMap<String, f64> {
    let mut counters = BTreeMap::new();
    for line in text.lines() {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let counter = if series.starts_with(harvest_bus::metrics::EVENTS_PUBLISHED) {
            "published"
        } else if series.starts_with("harvest_redis_round_trips_total") {
            "redis_round_trips"
        } else if series.starts_with("harvest_redis_commands_total") {
            "redis_commands"
        } else if series.starts_with(harvest_bus::metrics::EVENTS_HANDLED) {
            if series.contains("outcome=\"ok\"") {
                "handled"
            } else if series.contains("outcome=\"skipped\"") {
                "skipped"
            } else {
                "dead_letter"
            }
        } else {
            continue;
        };
        *counters.entry(counter.to_owned()).or_insert(0.0) += value;
    }
    counters
}

/// The body of a plain HTTP GET.
async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (_, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("no HTTP response from {addr}{path}"))?;
    Ok(body.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_counters_sum_each_outcome_over_topics() {
        let text = "\
# TYPE harvest_events_handled_total counter
harvest_events_handled_total{outcome=\"ok\",service=\"orders\",topic=\"harvest.catalog.east\"} 3
harvest_events_handled_total{outcome=\"ok\",service=\"orders\",topic=\"harvest.payments.east\"} 4
harvest_events_handled_total{outcome=\"skipped\",service=\"orders\",topic=\"harvest.payments.east\"} 5
harvest_events_handled_total{outcome=\"dead_letter\",service=\"orders\",topic=\"harvest.payments.east\"} 1
harvest_events_published_total{topic=\"harvest.orders.east\"} 6
harvest_redis_round_trips_total 9
harvest_redis_commands_total 15
harvest_event_publish_seconds_count 6
";
        let counters = event_counters(text);
        assert_eq!(counters["handled"], 7.0);
        assert_eq!(counters["skipped"], 5.0);
        assert_eq!(counters["dead_letter"], 1.0);
        assert_eq!(counters["published"], 6.0);
        assert_eq!(counters["redis_round_trips"], 9.0);
        assert_eq!(counters["redis_commands"], 15.0);
        assert_eq!(counters.len(), 6);
    }

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        let spent = cpu_time(pid).expect("cpu time");
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        assert!(cpu_time(pid).expect("cpu time") >= spent);
        assert!(peak_memory(pid).expect("memory") > 1024 * 1024);
    }
}
