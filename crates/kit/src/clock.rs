//! One clock for every replica: Redis's.
//!
//! Deadlines, leases and the times Harvest records are taken from this
//! process's clock corrected by its offset from Redis's `TIME`, measured at
//! start-up and again every [`RESYNC_EVERY`]. Replicas whose own clocks
//! drift apart still agree on when a deadline is due and when a lease is
//! over, to within a round trip to Redis.

use std::convert::Infallible;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionLike;
use tokio_util::sync::CancellationToken;

/// How often the offset is measured again.
pub const RESYNC_EVERY: Duration = Duration::from_secs(30);
/// An offset beyond this is logged: the machine's clock is off.
const WORTH_A_WARNING_MS: i64 = 1_000;

/// A measurement whose round trip took longer than this is dropped: the
/// moment Redis answered is known only to within half the round trip (a
/// frozen or overloaded Redis answers `TIME` seconds late).
const MAX_ROUND_TRIP_MS: i64 = 200;

/// Redis's clock minus this process's, in milliseconds.
static OFFSET_MS: AtomicI64 = AtomicI64::new(0);
/// The latest time [`now`] returned, in milliseconds since the epoch.
static LATEST_MS: AtomicI64 = AtomicI64::new(0);

/// A step back of the clock up to this long (a new measurement of the
/// offset, the machine's clock slewed) is held: the clock stands still until
/// it has caught up. A longer one is a correction worth taking at once.
const MAX_HELD_BACK_MS: i64 = 1_000;

/// The time now, by Redis's clock. After a small step back (see
/// [`MAX_HELD_BACK_MS`]) it is never earlier than a time it returned before
/// in this process, so that times taken one after the other order what
/// happened: a note made later never looks older than one made before.
pub fn now() -> SystemTime {
    let corrected = corrected(SystemTime::now(), OFFSET_MS.load(Ordering::Relaxed));
    let ms = unix_ms(corrected);
    let latest = LATEST_MS.fetch_max(ms, Ordering::Relaxed);
    if latest > ms && latest - ms <= MAX_HELD_BACK_MS {
        UNIX_EPOCH + Duration::from_millis(latest as u64)
    } else {
        corrected
    }
}

/// Milliseconds since the Unix epoch, by Redis's clock.
pub fn now_ms() -> i64 {
    unix_ms(now())
}

/// Redis's clock minus this process's, as last measured.
pub fn offset_ms() -> i64 {
    OFFSET_MS.load(Ordering::Relaxed)
}

fn corrected(local: SystemTime, offset_ms: i64) -> SystemTime {
    let offset = Duration::from_millis(offset_ms.unsigned_abs());
    if offset_ms >= 0 {
        local + offset
    } else {
        local - offset
    }
}

fn unix_ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64)
}

/// Measures the offset from Redis's `TIME` (taking the middle of the round
/// trip as the moment Redis answered), keeps it, and returns it. A
/// measurement whose round trip was too long to trust keeps the last offset
/// and returns it.
pub async fn sync(redis: &mut impl ConnectionLike) -> Result<i64, redis::RedisError> {
    let before = unix_ms(SystemTime::now());
    let (seconds, micros): (i64, i64) = redis::cmd("TIME").query_async(redis).await?;
    let after = unix_ms(SystemTime::now());
    if after - before > MAX_ROUND_TRIP_MS {
        tracing::debug!(
            round_trip_ms = after - before,
            "Redis's clock answered too late to measure the offset"
        );
        return Ok(OFFSET_MS.load(Ordering::Relaxed));
    }
    let offset = seconds * 1_000 + micros / 1_000 - (before + after) / 2;
    let previous = OFFSET_MS.swap(offset, Ordering::Relaxed);
    if offset.abs() > WORTH_A_WARNING_MS && (offset - previous).abs() > WORTH_A_WARNING_MS / 10 {
        tracing::warn!(
            offset_ms = offset,
            "this machine's clock is off Redis's; deadlines and leases follow Redis's"
        );
    }
    Ok(offset)
}

/// Measures the offset every [`RESYNC_EVERY`] until `stop`. A failed
/// measurement keeps the last offset.
pub async fn keep_in_sync<C: ConnectionLike + Send>(
    mut redis: C,
    stop: CancellationToken,
) -> Result<(), Infallible> {
    loop {
        if let Err(error) = sync(&mut redis).await {
            tracing::debug!(error.cause_chain = ?error, "could not read Redis's clock");
        }
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = tokio::time::sleep(RESYNC_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use redis::{Cmd, Pipeline, RedisFuture, Value};

    use super::*;

    /// Answers `TIME`, after `delay`, as a Redis whose clock reads
    /// 1,000,000.5 s after the epoch.
    struct FarBehind {
        delay: Duration,
    }

    impl ConnectionLike for FarBehind {
        fn req_packed_command<'a>(&'a mut self, _cmd: &'a Cmd) -> RedisFuture<'a, Value> {
            let delay = self.delay;
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                Ok(Value::Array(vec![
                    Value::BulkString(b"1000000".to_vec()),
                    Value::BulkString(b"500000".to_vec()),
                ]))
            })
        }

        fn req_packed_commands<'a>(
            &'a mut self,
            _pipeline: &'a Pipeline,
            _offset: usize,
            _count: usize,
        ) -> RedisFuture<'a, Vec<Value>> {
            Box::pin(async { Ok(Vec::new()) })
        }

        fn get_db(&self) -> i64 {
            0
        }
    }

    #[tokio::test]
    async fn after_a_sync_the_time_is_redis_time() {
        let offset = sync(&mut FarBehind {
            delay: Duration::ZERO,
        })
        .await
        .expect("synced");
        assert!(offset < 0, "{offset}");
        let reads = now_ms();
        assert!(
            (1_000_000_500..1_000_001_500).contains(&reads),
            "reads {reads} ms, Redis said 1000000500 ms"
        );
        OFFSET_MS.store(0, Ordering::Relaxed);
    }

    #[test]
    fn a_small_step_back_is_held_and_a_large_one_taken() {
        let ahead = |ms: i64| {
            let base = unix_ms(corrected(
                SystemTime::now(),
                OFFSET_MS.load(Ordering::Relaxed),
            ));
            LATEST_MS.store(base + ms, Ordering::Relaxed);
            base + ms
        };
        let held = ahead(500);
        assert!(now_ms() >= held, "half a second back is held");
        let jumped = ahead(60_000);
        assert!(now_ms() < jumped - 50_000, "a minute back is a correction");
    }

    #[tokio::test]
    async fn a_late_answer_leaves_the_offset_as_it_was() {
        OFFSET_MS.store(7, Ordering::Relaxed);
        let mut late = FarBehind {
            delay: Duration::from_millis(300),
        };
        assert_eq!(sync(&mut late).await.expect("answered"), 7);
        assert_eq!(offset_ms(), 7);
    }

    #[test]
    fn the_offset_moves_the_clock_either_way() {
        let local = UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(
            corrected(local, 1_500),
            UNIX_EPOCH + Duration::from_millis(1_001_500)
        );
        assert_eq!(
            corrected(local, -2_000),
            UNIX_EPOCH + Duration::from_secs(998)
        );
        assert_eq!(corrected(local, 0), local);
    }
}
