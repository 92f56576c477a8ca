//! Telling watchers that an order changed.
//!
//! Whichever replica applies a change publishes the order id on a Redis
//! channel; each replica holds one pattern subscription and wakes only the
//! watchers of that order in its own process. A woken watcher reloads the
//! order and sends what it has not sent yet, so a missed or repeated wake-up
//! costs nothing but a read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The watchers of this process, by order id.
#[derive(Clone, Default)]
pub struct WatchHub {
    orders: Arc<Mutex<HashMap<String, watch::Sender<u64>>>>,
}

/// Wakes when the order changes (or the hub reconnects). Dropping it
/// unregisters the watcher.
pub struct Wakeups {
    receiver: watch::Receiver<u64>,
    order_id: String,
    hub: WatchHub,
}

impl Wakeups {
    /// Waits for the next wake-up; `false` once the hub is gone.
    pub async fn changed(&mut self) -> bool {
        self.receiver.changed().await.is_ok()
    }
}

impl Drop for Wakeups {
    fn drop(&mut self) {
        let Ok(mut orders) = self.hub.orders.lock() else {
            return;
        };
        // This receiver still counts while it is being dropped.
        if orders
            .get(&self.order_id)
            .is_some_and(|sender| sender.receiver_count() <= 1)
        {
            orders.remove(&self.order_id);
        }
    }
}

impl WatchHub {
    pub fn subscribe(&self, order_id: &str) -> Wakeups {
        let receiver = match self.orders.lock() {
            Ok(mut orders) => orders
                .entry(order_id.to_owned())
                .or_insert_with(|| watch::channel(0).0)
                .subscribe(),
            // A poisoned lock only loses wake-ups; watchers still poll.
            Err(_) => watch::channel(0).1,
        };
        Wakeups {
            receiver,
            order_id: order_id.to_owned(),
            hub: self.clone(),
        }
    }

    fn wake(&self, order_id: &str) {
        if let Ok(orders) = self.orders.lock()
            && let Some(sender) = orders.get(order_id)
        {
            sender.send_modify(|count| *count += 1);
        }
    }

    fn wake_all(&self) {
        if let Ok(orders) = self.orders.lock() {
            for sender in orders.values() {
                sender.send_modify(|count| *count += 1);
            }
        }
    }

    /// Number of orders watched in this process.
    pub fn watched(&self) -> usize {
        self.orders.lock().map(|orders| orders.len()).unwrap_or(0)
    }

    /// Listens on `pattern` and wakes watchers until `shutdown`, reconnecting
    /// when the connection drops.
    pub async fn run(
        self,
        client: redis::Client,
        pattern: String,
        prefix_len: usize,
        shutdown: CancellationToken,
    ) -> Result<(), std::convert::Infallible> {
        while !shutdown.is_cancelled() {
            match client.get_async_pubsub().await {
                Ok(mut pubsub) => {
                    if let Err(error) = pubsub.psubscribe(&pattern).await {
                        tracing::warn!(error.cause_chain = ?error, "could not subscribe to order changes");
                    } else {
                        // Changes may have been missed while disconnected.
                        self.wake_all();
                        let mut messages = pubsub.on_message();
                        loop {
                            tokio::select! {
                                () = shutdown.cancelled() => return Ok(()),
                                message = messages.next() => match message {
                                    Some(message) => {
                                        let channel = message.get_channel_name();
                                        if let Some(order_id) = channel.get(prefix_len..) {
                                            self.wake(order_id);
                                        }
                                    }
                                    None => break,
                                },
                            }
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(error.cause_chain = ?error, "order change subscription lost")
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
        Ok(())
    }
}
