//! How delivery reacts to the saga: a confirmed order gets one shipment per
//! pickup point and a courier for each; a cancelled order's shipments that
//! are not yet on the road are withdrawn. Every reaction is idempotent; a
//! redelivered event creates nothing new and republishes the events it caused
//! with the same ids.

use std::collections::HashSet;
use std::sync::Arc;

use harvest_bus::event::types;
use harvest_bus::{Handler, HandlerError, IncomingEvent, Payload};
use harvest_domain::{Id, Quantity, Region};
use harvest_proto::common::v1::PickupPoint;
use harvest_proto::delivery::v1::Shipment;
use harvest_proto::events::v1::{OrderConfirmed, Pickup};

use crate::dispatch::{DispatchError, Dispatcher};
use crate::metrics;
use crate::model::{self, State, now_ms};
use crate::store::{NewShipment, Step, StoreError};

pub struct ShipmentReactions {
    dispatcher: Arc<Dispatcher>,
}

#[derive(Debug, thiserror::Error)]
enum ReactionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Dispatch(#[from] DispatchError),
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

/// The id of the one shipment of an order's pickup point.
pub fn shipment_id(order_id: &Id, pickup_point_id: &str) -> Id {
    harvest_domain::shipment_id(order_id.as_str(), pickup_point_id)
}

impl Handler for ShipmentReactions {
    fn wants(&self, event_type: &str) -> bool {
        matches!(event_type, types::ORDER_CONFIRMED | types::ORDER_CANCELLED)
    }

    async fn handle(&self, event: &IncomingEvent) -> Result<(), HandlerError> {
        let envelope = &event.envelope;
        let result = match &envelope.payload {
            Some(Payload::OrderConfirmed(confirmed)) => {
                let (order_id, region) = self.order_of(envelope)?;
                self.on_order_confirmed(&order_id, &region, confirmed).await
            }
            Some(Payload::OrderCancelled(_)) => {
                let (order_id, _) = self.order_of(envelope)?;
                self.on_order_cancelled(&order_id).await
            }
            _ => Ok(()),
        };
        result.map_err(|error| {
            if let ReactionError::Malformed(reason) = &error {
                tracing::warn!(
                    topic = %event.topic,
                    partition = event.partition,
                    offset = event.offset,
                    %reason,
                    "malformed order event",
                );
            }
            error.into()
        })
    }
}

impl ShipmentReactions {
    pub fn new(dispatcher: Arc<Dispatcher>) -> Self {
        ShipmentReactions { dispatcher }
    }

    fn order_of(&self, envelope: &harvest_bus::Envelope) -> Result<(Id, Region), HandlerError> {
        let order_id = Id::parse(&envelope.order_id)
            .map_err(|e| HandlerError::Rejected(format!("order_id: {e}")))?;
        let region = self
            .dispatcher
            .regions()
            .resolve(&envelope.region)
            .map_err(|e| HandlerError::Rejected(format!("region: {e}")))?;
        Ok((order_id, region))
    }

    #[tracing::instrument(skip_all, fields(order_id = %order_id))]
    async fn on_order_confirmed(
        &self,
        order_id: &Id,
        region: &Region,
        confirmed: &OrderConfirmed,
    ) -> Result<(), ReactionError> {
        let store = self.dispatcher.store();
        if store.is_cancelled(order_id).await? {
            tracing::info!("order was cancelled before it was confirmed; no shipment");
            return Ok(());
        }
        let pickups = checked_pickups(&confirmed.pickups)?;
        let digest = &confirmed.delivery_code_digest;
        let well_formed = digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit());
        if !digest.is_empty() && !well_formed {
            return Err(ReactionError::Malformed(
                "delivery_code_digest: not a SHA-256 digest in hex".to_owned(),
            ));
        }
        let settings = self.dispatcher.settings();
        let mut shipment_ids = Vec::with_capacity(pickups.len());
        for (pickup, point) in pickups {
            let shipment_id = shipment_id(order_id, &point.pickup_point_id);
            let province = point
                .origin
                .as_ref()
                .map(|origin| origin.province.as_str())
                .unwrap_or_default();
            let pool = model::courier_pool(province, region, self.dispatcher.regions());
            let contents = Shipment {
                shipment_id: shipment_id.to_string(),
                order_id: order_id.to_string(),
                region: region.to_string(),
                pickup_point: Some(point.clone()),
                ship_to: confirmed.ship_to.clone(),
                lines: pickup.lines.clone(),
                cold_chain: pickup.cold_chain,
                pickup_by: pickup.pickup_by,
                ..Shipment::default()
            };
            // In line first: should this handler stop half-way, the sweeper
            // carries the shipment on.
            self.dispatcher.hold(region, &shipment_id).await?;
            let now = now_ms();
            let created = store
                .create_shipment(&NewShipment {
                    contents: &contents,
                    shipment_id: &shipment_id,
                    order_id,
                    region,
                    pool: &pool,
                    now_ms: now,
                    assign_by_ms: now + settings.deadline().as_millis() as i64,
                    code_digest: digest,
                })
                .await?;
            if created {
                ::metrics::counter!(metrics::SHIPMENTS_CREATED, "region" => region.to_string())
                    .increment(1);
                tracing::info!(shipment_id = %shipment_id, %pool, cold_chain = pickup.cold_chain, "shipment created");
            }
            shipment_ids.push(shipment_id);
        }
        for shipment_id in &shipment_ids {
            self.dispatcher.advance(shipment_id).await?;
        }
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(order_id = %order_id))]
    async fn on_order_cancelled(&self, order_id: &Id) -> Result<(), ReactionError> {
        let store = self.dispatcher.store();
        // A late confirmation of this order must not create shipments.
        store.mark_cancelled(order_id).await?;
        for shipment_id in store.order_shipments(order_id).await? {
            let Some(shipment) = store.shipment(&shipment_id).await? else {
                continue;
            };
            if !matches!(
                shipment.state,
                State::Awaiting | State::Assigned | State::Withdrawn
            ) {
                tracing::info!(shipment_id = %shipment_id, state = shipment.state.as_str(), "shipment left as it is");
                continue;
            }
            self.dispatcher.hold(&shipment.region, &shipment_id).await?;
            self.dispatcher.step(&shipment_id, Step::Withdraw).await?;
            if let Some(shipment) = self.dispatcher.advance(&shipment_id).await? {
                tracing::info!(shipment_id = %shipment_id, state = shipment.state.as_str(), "shipment withdrawn");
            }
        }
        Ok(())
    }
}

/// The pickups of a confirmed order with their points, checked: a shipment
/// can only be made of a pickup point with an id and a location, and at least
/// one valid line; each point at most once.
fn checked_pickups(pickups: &[Pickup]) -> Result<Vec<(&Pickup, &PickupPoint)>, ReactionError> {
    if pickups.is_empty() {
        return Err(ReactionError::Malformed(
            "confirmed order has no pickups".to_owned(),
        ));
    }
    let malformed = |index: usize, problem: String| {
        ReactionError::Malformed(format!("pickups[{index}].{problem}"))
    };
    let mut seen = HashSet::new();
    pickups
        .iter()
        .enumerate()
        .map(|(index, pickup)| {
            let point = pickup
                .point
                .as_ref()
                .ok_or_else(|| malformed(index, "point: is missing".to_owned()))?;
            let point_id = Id::parse(&point.pickup_point_id)
                .map_err(|e| malformed(index, format!("point.pickup_point_id: {e}")))?;
            model::location("point.location", point.location.as_ref())
                .map_err(|e| malformed(index, e.to_string()))?
                .ok_or_else(|| malformed(index, "point.location: is missing".to_owned()))?;
            if !seen.insert(point_id.clone()) {
                return Err(malformed(
                    index,
                    format!("point: pickup point {point_id} appears twice"),
                ));
            }
            if pickup.lines.is_empty() {
                return Err(malformed(index, "lines: is empty".to_owned()));
            }
            for (line_index, line) in pickup.lines.iter().enumerate() {
                Id::parse(&line.product_id).map_err(|e| {
                    malformed(index, format!("lines[{line_index}].product_id: {e}"))
                })?;
                Quantity::parse(line.quantity)
                    .map_err(|e| malformed(index, format!("lines[{line_index}].quantity: {e}")))?;
            }
            Ok((pickup, point))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use harvest_proto::common::v1::{GeoPoint, OrderLine};

    use super::*;

    fn pickup(point_id: &str) -> Pickup {
        Pickup {
            point: Some(PickupPoint {
                pickup_point_id: point_id.to_owned(),
                name: "village square".to_owned(),
                location: Some(GeoPoint {
                    latitude: 30.0,
                    longitude: 120.0,
                }),
                seller_id: "coop-1".to_owned(),
                origin: None,
            }),
            lines: vec![OrderLine {
                product_id: "prd_1".to_owned(),
                quantity: 1,
            }],
            cold_chain: false,
            pickup_by: None,
        }
    }

    fn problem(pickups: &[Pickup]) -> String {
        match checked_pickups(pickups) {
            Err(ReactionError::Malformed(reason)) => reason,
            other => panic!("expected malformed, got {:?}", other.map(|p| p.len())),
        }
    }

    #[test]
    fn shipment_ids_are_one_per_order_and_point() {
        let order = Id::parse("ord_1").expect("valid");
        assert_eq!(shipment_id(&order, "pp_a"), shipment_id(&order, "pp_a"));
        assert_ne!(shipment_id(&order, "pp_a"), shipment_id(&order, "pp_b"));
        assert!(shipment_id(&order, "pp_a").as_str().starts_with("shp_"));
    }

    #[test]
    fn pickups_that_cannot_be_shipped_are_named() {
        assert!(checked_pickups(&[pickup("pp_a"), pickup("pp_b")]).is_ok());
        assert!(problem(&[]).contains("no pickups"));
        assert!(problem(&[pickup("pp_a"), pickup("pp_a")]).contains("appears twice"));
        let mut no_location = pickup("pp_a");
        if let Some(point) = no_location.point.as_mut() {
            point.location = None;
        }
        assert!(problem(&[no_location]).contains("pickups[0].point.location"));
        let mut bad_quantity = pickup("pp_a");
        bad_quantity.lines[0].quantity = 0;
        assert!(problem(&[bad_quantity]).contains("lines[0].quantity"));
        let mut no_point = pickup("pp_a");
        no_point.point = None;
        assert!(problem(&[no_point]).contains("pickups[0].point"));
    }
}
