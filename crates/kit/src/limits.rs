//! Per-caller limits on the roles of end users' apps, buyers and couriers:
//! how fast each may call (a token bucket per caller) and how many streams
//! (`WatchOrder`, `StreamAssignments`) each may hold open. Sellers, partners
//! and operators are accounts Harvest knows by contract, and are not limited
//! here. A call over a limit is `RESOURCE_EXHAUSTED` and does nothing.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tonic::Status;

use crate::auth::{Identity, Role};

/// The limits, as configured (`auth.requests_per_second`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallerLimits {
    /// Requests a second each caller may make on average; 0: no limit.
    pub requests_per_second: u32,
    /// Requests a caller may make at once above that rate.
    pub request_burst: u32,
    /// Streams each caller may hold open at once; 0: no limit.
    pub streams_per_caller: u32,
}

/// Buckets idle this long are forgotten when the map grows.
const FORGET_AFTER_SECS: f64 = 60.0;
const PRUNE_ABOVE: usize = 10_000;

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The limits' state, shared by every call of a server.
pub struct Limiter {
    limits: CallerLimits,
    /// Paths of the server-streaming methods.
    streaming: HashSet<String>,
    buckets: Mutex<HashMap<String, Bucket>>,
    open: Arc<Mutex<HashMap<String, u32>>>,
}

/// Held for as long as a stream is open; gives its place back when dropped.
pub struct StreamPlace {
    key: String,
    open: Arc<Mutex<HashMap<String, u32>>>,
}

impl Drop for StreamPlace {
    fn drop(&mut self) {
        if let Ok(mut open) = self.open.lock()
            && let Some(count) = open.get_mut(&self.key)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

fn limited(identity: &Identity) -> Option<String> {
    matches!(identity.role, Role::Buyer | Role::Courier)
        .then(|| format!("{} {}", identity.role.as_str(), identity.subject))
}

impl Limiter {
    pub fn new(limits: CallerLimits, streaming: HashSet<String>) -> Limiter {
        Limiter {
            limits,
            streaming,
            buckets: Mutex::default(),
            open: Arc::default(),
        }
    }

    /// Whether `identity` may call `path` now; for a stream, its place,
    /// to hold while the stream is open.
    pub fn admit(&self, identity: &Identity, path: &str) -> Result<Option<StreamPlace>, Status> {
        let Some(key) = limited(identity) else {
            return Ok(None);
        };
        self.take_token(&key)?;
        if !self.streaming.contains(path) || self.limits.streams_per_caller == 0 {
            return Ok(None);
        }
        let mut open = self
            .open
            .lock()
            .map_err(|_| Status::internal("stream counts unavailable"))?;
        let count = open.entry(key.clone()).or_default();
        if *count >= self.limits.streams_per_caller {
            return Err(Status::resource_exhausted(format!(
                "{key} holds {count} streams open already, the most a caller may; close one first"
            )));
        }
        *count += 1;
        Ok(Some(StreamPlace {
            key,
            open: self.open.clone(),
        }))
    }

    fn take_token(&self, key: &str) -> Result<(), Status> {
        let rate = f64::from(self.limits.requests_per_second);
        if rate == 0.0 {
            return Ok(());
        }
        let burst = f64::from(self.limits.request_burst.max(1));
        let now = Instant::now();
        let mut buckets = self
            .buckets
            .lock()
            .map_err(|_| Status::internal("request counts unavailable"))?;
        if buckets.len() > PRUNE_ABOVE {
            buckets.retain(|_, bucket| {
                now.duration_since(bucket.at).as_secs_f64() < FORGET_AFTER_SECS
            });
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * rate;
        bucket.tokens = (bucket.tokens + refill).min(burst);
        bucket.at = now;
        if bucket.tokens < 1.0 {
            return Err(Status::resource_exhausted(format!(
                "{key} calls faster than {} requests a second; slow down and retry",
                self.limits.requests_per_second
            )));
        }
        bucket.tokens -= 1.0;
        Ok(())
    }
}

/// The server-streaming methods of every Harvest service, by path.
pub fn streaming_methods() -> HashSet<String> {
    use prost::Message;
    let Ok(set) = prost_types::FileDescriptorSet::decode(harvest_proto::FILE_DESCRIPTOR_SET) else {
        return HashSet::new();
    };
    let mut paths = HashSet::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                if method.server_streaming() {
                    paths.insert(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role, subject: &str) -> Identity {
        Identity {
            subject: subject.to_owned(),
            role,
        }
    }

    const WATCH: &str = "/harvest.orders.v1.OrdersService/WatchOrder";
    const GET: &str = "/harvest.orders.v1.OrdersService/GetOrder";

    fn limiter(rate: u32, burst: u32, streams: u32) -> Limiter {
        Limiter::new(
            CallerLimits {
                requests_per_second: rate,
                request_burst: burst,
                streams_per_caller: streams,
            },
            streaming_methods(),
        )
    }

    #[test]
    fn the_streaming_methods_are_found_in_the_descriptors() {
        let streaming = streaming_methods();
        assert!(streaming.contains(WATCH), "{streaming:?}");
        assert!(streaming.contains("/harvest.delivery.v1.DeliveryService/StreamAssignments"));
        assert!(!streaming.contains(GET));
    }

    #[test]
    fn a_buyer_over_the_burst_is_refused_and_others_are_not() {
        let limiter = limiter(1, 3, 0);
        let buyer = caller(Role::Buyer, "buyer-1");
        for _ in 0..3 {
            limiter.admit(&buyer, GET).expect("within the burst");
        }
        let refused = limiter.admit(&buyer, GET).err().expect("over it");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(refused.message().contains("buyer buyer-1"), "{refused:?}");
        // Another buyer has a bucket of their own; an operator none.
        limiter
            .admit(&caller(Role::Buyer, "buyer-2"), GET)
            .expect("another buyer");
        let operator = caller(Role::Operator, "ops");
        for _ in 0..10 {
            limiter
                .admit(&operator, GET)
                .expect("operators are not limited");
        }
    }

    #[test]
    fn a_caller_holds_at_most_its_streams_and_a_closed_one_frees_a_place() {
        let limiter = limiter(0, 0, 2);
        let courier = caller(Role::Courier, "courier-1");
        let first = limiter.admit(&courier, WATCH).expect("first");
        let _second = limiter.admit(&courier, WATCH).expect("second");
        let refused = limiter.admit(&courier, WATCH).err().expect("third");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        // Unary calls are not streams.
        assert!(limiter.admit(&courier, GET).expect("unary").is_none());
        drop(first);
        limiter.admit(&courier, WATCH).expect("a place again");
    }
}
