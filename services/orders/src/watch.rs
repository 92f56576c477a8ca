//! Telling watchers that an order changed.
//!
//! Whichever replica applies a change publishes the order id on a Redis
//! channel; each replica holds one pattern subscription and wakes only the
//! watchers of that order in its own process. A woken watcher reloads the
//! order and sends what it has not sent yet, so a missed or repeated wake-up
//! costs nothing but a read. Each transition is sent with the order as it
//! stood right after it ([`as_of`]).

use std::time::Duration;

use futures::StreamExt;
use harvest_kit::bells::{Bell, Bells};
use harvest_proto::common::v1::OrderState;
use harvest_proto::orders::v1::Order;
use tokio_util::sync::CancellationToken;

/// The order as it stood right after its `index`-th transition, from any
/// later read of it; `None` past its history.
///
/// A transition changes only the state, the time of the last change, the
/// history, when it cancels the reason, when it delivers the amount charged,
/// and when it records a failed shipment (from and to equal) the failed
/// shipments (`saga::Saga::step`); lines and total are priced once, on the
/// way to RESERVED, and never change again. So winding those fields back
/// gives the order exactly as it was, for every transition after the first
/// (to PLACED, which a watcher sees in its first message instead).
pub fn as_of(latest: &Order, index: usize) -> Option<Order> {
    let transition = latest.history.get(index)?;
    let mut order = latest.clone();
    order.state = transition.to;
    order.updated_at = transition.at;
    if transition.to() != OrderState::Cancelled {
        order.cancel_reason = 0;
        order.cancel_detail.clear();
    }
    if transition.to() != OrderState::Delivered {
        order.charged_fen = 0;
    }
    order.history.truncate(index + 1);
    let failed_by_then = order
        .history
        .iter()
        .filter(|step| step.from == step.to)
        .count();
    order.failed_shipments.truncate(failed_by_then);
    Some(order)
}

/// The watchers of this process, by order id.
#[derive(Clone, Default)]
pub struct WatchHub {
    orders: Bells<String>,
}

/// Wakes when the order changes (or the hub reconnects). Dropping it
/// unregisters the watcher.
pub type Wakeups = Bell<String>;

impl WatchHub {
    pub fn subscribe(&self, order_id: &str) -> Wakeups {
        self.orders.listen(order_id.to_owned())
    }

    /// Number of orders watched in this process.
    pub fn watched(&self) -> usize {
        self.orders.listened()
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
                        self.orders.ring_all();
                        let mut messages = pubsub.on_message();
                        loop {
                            tokio::select! {
                                () = shutdown.cancelled() => return Ok(()),
                                message = messages.next() => match message {
                                    Some(message) => {
                                        let channel = message.get_channel_name();
                                        if let Some(order_id) = channel.get(prefix_len..) {
                                            self.orders.ring(order_id);
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

#[cfg(test)]
mod tests {
    use harvest_proto::Timestamp;
    use harvest_proto::common::v1::CancelReason;
    use harvest_proto::orders::v1::Transition;

    use super::*;

    fn transition(from: OrderState, to: OrderState, second: i64) -> Transition {
        Transition {
            from: from.into(),
            to: to.into(),
            at: Some(Timestamp {
                seconds: second,
                nanos: 0,
            }),
            ..Transition::default()
        }
    }

    #[test]
    fn an_earlier_transition_gets_the_order_as_it_was_then() {
        let history = vec![
            transition(OrderState::Unspecified, OrderState::Placed, 1),
            transition(OrderState::Placed, OrderState::Reserved, 2),
            transition(OrderState::Reserved, OrderState::Cancelled, 3),
        ];
        let latest = Order {
            order_id: "ord_1".to_owned(),
            state: OrderState::Cancelled.into(),
            total_fen: 2_000,
            updated_at: history[2].at,
            cancel_reason: CancelReason::PaymentDeclined.into(),
            cancel_detail: "declined".to_owned(),
            history: history.clone(),
            ..Order::default()
        };

        let reserved = as_of(&latest, 1).expect("within the history");
        assert_eq!(reserved.state(), OrderState::Reserved);
        assert_eq!(reserved.updated_at, history[1].at);
        assert_eq!(reserved.history, history[..2]);
        assert_eq!(reserved.cancel_reason(), CancelReason::Unspecified);
        assert!(reserved.cancel_detail.is_empty());
        assert_eq!(reserved.total_fen, 2_000);

        assert_eq!(as_of(&latest, 2), Some(latest.clone()));
        assert_eq!(as_of(&latest, 3), None);
    }

    #[test]
    fn a_failed_shipment_shows_from_its_own_transition_on() {
        use harvest_proto::orders::v1::FailedShipment;
        let history = vec![
            transition(OrderState::Unspecified, OrderState::Placed, 1),
            transition(OrderState::Dispatching, OrderState::InTransit, 2),
            transition(OrderState::InTransit, OrderState::InTransit, 3),
            transition(OrderState::InTransit, OrderState::Delivered, 4),
        ];
        let latest = Order {
            state: OrderState::Delivered.into(),
            total_fen: 3_000,
            charged_fen: 2_000,
            updated_at: history[3].at,
            failed_shipments: vec![FailedShipment {
                shipment_id: "shp_2".to_owned(),
                lines_fen: 1_000,
                ..FailedShipment::default()
            }],
            history,
            ..Order::default()
        };
        let in_transit = as_of(&latest, 1).expect("within the history");
        assert!(in_transit.failed_shipments.is_empty());
        assert_eq!(in_transit.charged_fen, 0);
        let failed = as_of(&latest, 2).expect("within the history");
        assert_eq!(failed.state(), OrderState::InTransit);
        assert_eq!(failed.failed_shipments, latest.failed_shipments);
        assert_eq!(failed.charged_fen, 0, "charged once delivered");
        assert_eq!(as_of(&latest, 3), Some(latest.clone()));
    }
}
