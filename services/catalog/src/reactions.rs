//! How the catalog reacts to the saga: reserve stock when an order is placed,
//! release it when the order is cancelled (or one of its shipments fails
//! while the order goes on), commit it when the goods are picked up. Every reaction is idempotent; a redelivered event republishes
//! the event it caused the first time, with the same id.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use harvest_bus::event::types;
use harvest_bus::{
    Envelope, Handler, HandlerError, IncomingEvent, Payload, Publisher, new_envelope,
};
use harvest_domain::{Date, Fen, Id, Quantity, Region, deterministic_id};
use harvest_proto::common::v1::OrderLine;
use harvest_proto::events::v1::{
    LineShortfall, LotAllocation, OrderCancelled, OrderPlaced, OrderShipmentFailed, Pickup,
    ReservedLine, ShipmentPickedUp, ShortfallReason, StockCommitted, StockRejected, StockReleased,
    StockReserved,
};
use prost::Message;

use crate::config::ReservationConfig;
use crate::model::date_to_proto;
use crate::store::{CatalogStore, Reservation, ReserveResult, Settlement, StoreError};

/// Counter: orders whose stock was decided, by `outcome` (reserved, rejected).
pub const RESERVATIONS: &str = "harvest_catalog_reservations_total";
/// Counter: order lines that could not be reserved, by `reason`.
pub const LINES_REJECTED: &str = "harvest_catalog_lines_rejected_total";

pub struct StockReactions {
    store: CatalogStore,
    publisher: Publisher,
    settings: ReservationConfig,
}

#[derive(Debug, thiserror::Error)]
enum ReactionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Publish(#[from] harvest_bus::PublishError),
    #[error("stored outcome is not an envelope")]
    CorruptOutcome(#[from] prost::DecodeError),
    #[error("{0}")]
    Malformed(String),
}

impl From<ReactionError> for HandlerError {
    fn from(error: ReactionError) -> Self {
        match error {
            ReactionError::Malformed(reason) => HandlerError::Rejected(reason),
            other => HandlerError::transient(other),
        }
    }
}

/// One line of an order, checked.
struct Line {
    product_id: Id,
    quantity: Quantity,
}

/// The catalog's reaction to a placed order, line by line.
enum LineResult {
    Reserved {
        line_index: usize,
        allocation: crate::store::Allocation,
    },
    Short(LineShortfall),
    /// An earlier attempt for this order already failed and gave it back.
    RolledBack,
    /// The order was cancelled before this attempt.
    AlreadyReleased,
}

impl Handler for StockReactions {
    fn wants(&self, event_type: &str) -> bool {
        matches!(
            event_type,
            types::ORDER_PLACED
                | types::ORDER_CANCELLED
                | types::ORDER_SHIPMENT_FAILED
                | types::SHIPMENT_PICKED_UP
        )
    }

    async fn handle(&self, event: &IncomingEvent) -> Result<(), HandlerError> {
        let envelope = &event.envelope;
        let order_id =
            Id::parse(&envelope.order_id).map_err(|e| HandlerError::Rejected(e.to_string()))?;
        let region =
            Region::parse(&envelope.region).map_err(|e| HandlerError::Rejected(e.to_string()))?;
        let result = match &envelope.payload {
            Some(Payload::OrderPlaced(placed)) => {
                self.on_order_placed(&order_id, &region, placed).await
            }
            Some(Payload::OrderCancelled(cancelled)) => {
                self.on_order_cancelled(&order_id, &region, cancelled).await
            }
            Some(Payload::OrderShipmentFailed(failed)) => {
                self.on_shipment_failed(&order_id, &region, failed).await
            }
            Some(Payload::ShipmentPickedUp(picked_up)) => {
                self.on_picked_up(&order_id, &region, picked_up).await
            }
            _ => Ok(()),
        };
        result.map_err(Into::into)
    }
}

fn parse_lines(lines: &[OrderLine]) -> Result<Vec<Line>, ReactionError> {
    if lines.is_empty() {
        return Err(ReactionError::Malformed("order has no lines".to_owned()));
    }
    let mut seen = HashSet::new();
    lines
        .iter()
        .enumerate()
        .map(|(index, line)| {
            let product_id = Id::parse(&line.product_id)
                .map_err(|e| ReactionError::Malformed(format!("lines[{index}].product_id: {e}")))?;
            let quantity = Quantity::parse(line.quantity)
                .map_err(|e| ReactionError::Malformed(format!("lines[{index}].quantity: {e}")))?;
            if !seen.insert(product_id.clone()) {
                return Err(ReactionError::Malformed(format!(
                    "lines[{index}]: product {product_id} appears twice"
                )));
            }
            Ok(Line {
                product_id,
                quantity,
            })
        })
        .collect()
}

/// The lines whose total, or the order's running total with them, is above
/// what one order may cost, at the current prices (`None`: no such product,
/// which the reservation reports itself).
fn too_large(lines: &[Line], prices: &[Option<i64>]) -> Vec<LineShortfall> {
    let mut total = Fen::ZERO;
    let mut shortfalls = Vec::new();
    for (line, price) in lines.iter().zip(prices) {
        let Some(price) = price.and_then(|fen| Fen::parse(fen).ok()) else {
            continue;
        };
        let fits = price
            .times(line.quantity.get())
            .and_then(|line_total| total.checked_add(line_total));
        match fits {
            Ok(sum) => total = sum,
            Err(_) => shortfalls.push(LineShortfall {
                product_id: line.product_id.to_string(),
                requested: line.quantity.get(),
                available: 0,
                reason: ShortfallReason::TotalTooLarge.into(),
                ..LineShortfall::default()
            }),
        }
    }
    shortfalls
}

/// A line refused because the buyer, holding `holds` units of the product
/// within the window, may not take `requested` more under `limit`.
fn over_limit(
    product_id: &Id,
    requested: i64,
    limit: i64,
    holds: i64,
    window_hours: u32,
) -> LineShortfall {
    LineShortfall {
        product_id: product_id.to_string(),
        requested,
        available: (limit - holds).max(0),
        reason: ShortfallReason::PerBuyerLimit.into(),
        per_buyer_limit: limit,
        buyer_holds: holds,
        per_buyer_window_hours: i32::try_from(window_hours).unwrap_or(i32::MAX),
    }
}

impl StockReactions {
    pub fn new(store: CatalogStore, publisher: Publisher, settings: ReservationConfig) -> Self {
        StockReactions {
            store,
            publisher,
            settings,
        }
    }

    #[tracing::instrument(skip_all, fields(order_id = %order_id))]
    async fn on_order_placed(
        &self,
        order_id: &Id,
        region: &Region,
        placed: &OrderPlaced,
    ) -> Result<(), ReactionError> {
        let lines = parse_lines(&placed.lines)?;
        let buyer_id = Id::parse(&placed.buyer_id)
            .map_err(|e| ReactionError::Malformed(format!("buyer_id: {e}")))?;
        let products: Vec<&str> = lines.iter().map(|line| line.product_id.as_str()).collect();
        let (decided, prices) = self
            .store
            .outcome_and_prices(order_id.as_str(), &products)
            .await?;
        if let Some(encoded) = decided {
            let outcome = Envelope::decode(encoded.as_slice())?;
            tracing::debug!("order already decided; publishing its outcome again");
            self.publisher.publish(outcome).await?;
            return Ok(());
        }
        // What the order would cost is checked before anything is reserved,
        // so that no total found too large later can strand stock.
        let too_large = too_large(&lines, &prices);
        if !too_large.is_empty() {
            metrics::counter!(LINES_REJECTED, "reason" => "total_too_large")
                .increment(too_large.len() as u64);
            return self
                .decide(
                    order_id,
                    region,
                    Payload::StockRejected(StockRejected {
                        shortfalls: too_large,
                    }),
                )
                .await;
        }
        let earliest = Date::today().plus_days(self.settings.delivery_lead_days as i32);

        let mut results = Vec::with_capacity(lines.len());
        for (line_index, line) in lines.iter().enumerate() {
            let reserved = self
                .store
                .reserve(
                    line.product_id.as_str(),
                    order_id.as_str(),
                    buyer_id.as_str(),
                    line.quantity.get(),
                    earliest,
                )
                .await?;
            results.push(match reserved {
                ReserveResult::UnknownProduct => LineResult::Short(LineShortfall {
                    product_id: line.product_id.to_string(),
                    requested: line.quantity.get(),
                    available: 0,
                    reason: ShortfallReason::UnknownProduct.into(),
                    ..LineShortfall::default()
                }),
                ReserveResult::Recorded { reservation, .. } => match reservation {
                    Reservation::Reserved(allocation) | Reservation::Committed(allocation) => {
                        LineResult::Reserved {
                            line_index,
                            allocation,
                        }
                    }
                    Reservation::Short {
                        requested,
                        available,
                    } => LineResult::Short(LineShortfall {
                        product_id: line.product_id.to_string(),
                        requested,
                        available,
                        reason: ShortfallReason::InsufficientStock.into(),
                        ..LineShortfall::default()
                    }),
                    Reservation::OverLimit {
                        requested,
                        limit,
                        holds,
                    } => LineResult::Short(over_limit(
                        &line.product_id,
                        requested,
                        limit,
                        holds,
                        self.settings.per_buyer_window_hours,
                    )),
                    Reservation::RolledBack(_) => LineResult::RolledBack,
                    Reservation::Released(_) | Reservation::ReleasedBeforeReserved => {
                        LineResult::AlreadyReleased
                    }
                },
            });
        }

        let all_reserved = results
            .iter()
            .all(|result| matches!(result, LineResult::Reserved { .. }));
        if !all_reserved {
            // All or nothing: give back every line this order holds.
            for result in &results {
                if let LineResult::Reserved { line_index, .. } = result {
                    let product = lines[*line_index].product_id.as_str();
                    self.store
                        .settle(product, order_id.as_str(), Settlement::Rollback)
                        .await?;
                }
            }
        }
        if results
            .iter()
            .any(|result| matches!(result, LineResult::AlreadyReleased))
        {
            tracing::info!("order was cancelled before its stock was reserved; nothing to reserve");
            return Ok(());
        }

        let payload = if all_reserved {
            Payload::StockReserved(self.reserved_event(placed, &lines, results).await?)
        } else {
            let shortfalls: Vec<LineShortfall> = results
                .into_iter()
                .filter_map(|result| match result {
                    LineResult::Short(shortfall) => Some(shortfall),
                    _ => None,
                })
                .collect();
            for shortfall in &shortfalls {
                let reason = match shortfall.reason() {
                    ShortfallReason::UnknownProduct => "unknown_product",
                    ShortfallReason::PerBuyerLimit => "per_buyer_limit",
                    _ => "insufficient_stock",
                };
                metrics::counter!(LINES_REJECTED, "reason" => reason).increment(1);
            }
            Payload::StockRejected(StockRejected { shortfalls })
        };
        self.decide(order_id, region, payload).await
    }

    /// Records the order's stock outcome, then publishes it.
    async fn decide(
        &self,
        order_id: &Id,
        region: &Region,
        payload: Payload,
    ) -> Result<(), ReactionError> {
        let outcome_label = match payload {
            Payload::StockReserved(_) => "reserved",
            _ => "rejected",
        };
        let outcome = new_envelope(
            &deterministic_id("evt", &[order_id.as_str(), "catalog", "stock-outcome"]),
            order_id,
            region,
            "catalog",
            payload,
        );
        self.store
            .save_outcome(order_id.as_str(), &outcome.encode_to_vec())
            .await?;
        self.publisher.publish(outcome).await?;
        metrics::counter!(RESERVATIONS, "outcome" => outcome_label).increment(1);
        tracing::info!(outcome = outcome_label, "stock decided");
        Ok(())
    }

    async fn reserved_event(
        &self,
        placed: &OrderPlaced,
        lines: &[Line],
        results: Vec<LineResult>,
    ) -> Result<StockReserved, ReactionError> {
        let now = harvest_kit::clock::now();
        let pickup_window =
            Duration::from_secs(u64::from(self.settings.perishable_pickup_hours) * 3600);
        let lead_days = self.settings.delivery_lead_days as i32;
        let mut reserved_lines = Vec::with_capacity(lines.len());
        let mut pickups: Vec<Pickup> = Vec::new();
        let mut total = Fen::ZERO;
        for result in results {
            let LineResult::Reserved {
                line_index,
                allocation,
            } = result
            else {
                continue;
            };
            let line = &lines[line_index];
            let product_id = line.product_id.as_str();
            let product = self.store.product(product_id).await?.ok_or_else(|| {
                ReactionError::Malformed(format!("product {product_id} vanished after reservation"))
            })?;
            let lots = self.store.lots(product_id).await?;
            let allocations: Vec<LotAllocation> = allocation
                .lots
                .iter()
                .map(|(lot_id, quantity)| LotAllocation {
                    lot_id: lot_id.clone(),
                    quantity: *quantity,
                    best_before: lots
                        .iter()
                        .find(|lot| &lot.lot_id == lot_id)
                        .map(|lot| date_to_proto(lot.best_before)),
                })
                .collect();
            let unit_price = Fen::parse(allocation.unit_price_fen)
                .map_err(|e| ReactionError::Malformed(format!("stored price: {e}")))?;
            let line_total = unit_price
                .times(line.quantity.get())
                .map_err(|e| ReactionError::Malformed(format!("line total: {e}")))?;
            total = total
                .checked_add(line_total)
                .map_err(|e| ReactionError::Malformed(format!("order total: {e}")))?;

            let point = product.collection_point.clone().unwrap_or_default();
            let seller_id = product
                .seller
                .as_ref()
                .map(|s| s.seller_id.clone())
                .unwrap_or_default();
            // A perishable must leave its collection point within the pickup
            // window, and early enough to arrive before its best-before date.
            let pickup_by = product.perishable.then(|| {
                let earliest_best_before = allocation
                    .lots
                    .iter()
                    .filter_map(|(lot_id, _)| lots.iter().find(|lot| &lot.lot_id == lot_id))
                    .map(|lot| lot.best_before)
                    .min()
                    .unwrap_or_else(Date::today);
                let last_day = earliest_best_before.plus_days(-lead_days);
                let by_date = SystemTime::UNIX_EPOCH
                    + Duration::from_secs(last_day.end_unix_seconds().max(0) as u64);
                by_date.min(now + pickup_window)
            });
            let order_line = OrderLine {
                product_id: product_id.to_owned(),
                quantity: line.quantity.get(),
            };
            match pickups.iter_mut().find(|pickup| {
                pickup.point.as_ref().map(|p| &p.pickup_point_id) == Some(&point.pickup_point_id)
            }) {
                Some(pickup) => {
                    pickup.lines.push(order_line);
                    pickup.cold_chain |= product.cold_chain;
                    if let Some(by) = pickup_by {
                        let current = pickup
                            .pickup_by
                            .and_then(|at| SystemTime::try_from(at).ok());
                        let earliest = current.map_or(by, |current| current.min(by));
                        pickup.pickup_by = Some(earliest.into());
                    }
                }
                None => pickups.push(Pickup {
                    point: Some(point.clone()),
                    lines: vec![order_line],
                    cold_chain: product.cold_chain,
                    pickup_by: pickup_by.map(Into::into),
                }),
            }
            reserved_lines.push(ReservedLine {
                product_id: product_id.to_owned(),
                seller_id,
                quantity: line.quantity.get(),
                unit_price_fen: unit_price.get(),
                line_total_fen: line_total.get(),
                allocations,
                pickup_point_id: point.pickup_point_id,
                perishable: product.perishable,
                cold_chain: product.cold_chain,
                product_name: product.name,
            });
        }
        Ok(StockReserved {
            buyer_id: placed.buyer_id.clone(),
            payment_method: placed.payment_method.clone(),
            lines: reserved_lines,
            total_fen: total.get(),
            pickups,
        })
    }

    #[tracing::instrument(skip_all, fields(order_id = %order_id))]
    async fn on_order_cancelled(
        &self,
        order_id: &Id,
        region: &Region,
        cancelled: &OrderCancelled,
    ) -> Result<(), ReactionError> {
        let products = cancelled.lines.iter().map(|line| line.product_id.as_str());
        let event_id = deterministic_id("evt", &[order_id.as_str(), "catalog", "stock-released"]);
        self.release(order_id, region, products, &event_id).await
    }

    /// The lines of a failed shipment leave the order: their stock goes back
    /// on sale unless it was picked up (then it stays committed).
    #[tracing::instrument(skip_all, fields(order_id = %order_id, shipment_id = %failed.shipment_id))]
    async fn on_shipment_failed(
        &self,
        order_id: &Id,
        region: &Region,
        failed: &OrderShipmentFailed,
    ) -> Result<(), ReactionError> {
        let products = failed.lines.iter().map(|line| line.product_id.as_str());
        let event_id = deterministic_id(
            "evt",
            &[
                order_id.as_str(),
                "catalog",
                "stock-released",
                &failed.shipment_id,
            ],
        );
        self.release(order_id, region, products, &event_id).await
    }

    /// Releases the order's reservations of `products` still held, and
    /// announces what is released under `event_id`.
    async fn release(
        &self,
        order_id: &Id,
        region: &Region,
        products: impl Iterator<Item = &str>,
        event_id: &Id,
    ) -> Result<(), ReactionError> {
        let mut released = Vec::new();
        for product in products {
            let Ok(product_id) = Id::parse(product) else {
                tracing::warn!(product_id = %product, "order event names an invalid product id");
                continue;
            };
            let (_, record) = self
                .store
                .settle(product_id.as_str(), order_id.as_str(), Settlement::Release)
                .await?;
            if let Some(Reservation::Released(allocation)) = record {
                released.push(OrderLine {
                    product_id: product_id.to_string(),
                    quantity: allocation.quantity(),
                });
            }
        }
        if released.is_empty() {
            return Ok(());
        }
        tracing::info!(lines = released.len(), "stock released");
        let event = new_envelope(
            event_id,
            order_id,
            region,
            "catalog",
            Payload::StockReleased(StockReleased { lines: released }),
        );
        self.publisher.publish(event).await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(order_id = %order_id, shipment_id = %picked_up.shipment_id))]
    async fn on_picked_up(
        &self,
        order_id: &Id,
        region: &Region,
        picked_up: &ShipmentPickedUp,
    ) -> Result<(), ReactionError> {
        let mut committed = Vec::new();
        for line in &picked_up.lines {
            let Ok(product_id) = Id::parse(&line.product_id) else {
                tracing::warn!(product_id = %line.product_id, "picked-up line names an invalid product id");
                continue;
            };
            let (_, record) = self
                .store
                .settle(product_id.as_str(), order_id.as_str(), Settlement::Commit)
                .await?;
            match record {
                Some(Reservation::Committed(allocation)) => committed.push(OrderLine {
                    product_id: product_id.to_string(),
                    quantity: allocation.quantity(),
                }),
                other => tracing::warn!(
                    product_id = %product_id,
                    reservation = ?other,
                    "picked-up goods had no live reservation",
                ),
            }
        }
        if committed.is_empty() {
            return Ok(());
        }
        let event = new_envelope(
            &deterministic_id(
                "evt",
                &[
                    order_id.as_str(),
                    "catalog",
                    "stock-committed",
                    &picked_up.shipment_id,
                ],
            ),
            order_id,
            region,
            "catalog",
            Payload::StockCommitted(StockCommitted {
                lines: committed,
                shipment_id: picked_up.shipment_id.clone(),
            }),
        );
        self.publisher.publish(event).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_over_the_limit_says_what_the_buyer_may_still_take() {
        let apples = Id::parse("prd_apples").expect("valid");
        let refused = over_limit(&apples, 2, 3, 2, 24);
        assert_eq!(refused.reason(), ShortfallReason::PerBuyerLimit);
        assert_eq!(refused.product_id, "prd_apples");
        assert_eq!(
            (
                refused.requested,
                refused.available,
                refused.per_buyer_limit,
                refused.buyer_holds,
                refused.per_buyer_window_hours
            ),
            (2, 1, 3, 2, 24)
        );
        // A buyer above a limit lowered since holds more than it allows.
        assert_eq!(over_limit(&apples, 1, 2, 5, 24).available, 0);
    }
}
