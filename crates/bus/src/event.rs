//! Building and checking envelopes.

use std::time::SystemTime;

use harvest_domain::{Id, Region};
use harvest_proto::events::v1::Envelope;
pub use harvest_proto::events::v1::envelope::Payload;
use prost::Message;

use crate::topology::Stream;

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("not a protobuf envelope: {0}")]
    Undecodable(#[from] prost::DecodeError),
    #[error("envelope has no payload (unknown event type {event_type:?}?)")]
    MissingPayload { event_type: String },
    #[error("envelope has an invalid {field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
}

/// Every event type, as envelopes and the `event-type` header name them.
pub mod types {
    pub const ORDER_PLACED: &str = "harvest.events.v1.OrderPlaced";
    pub const ORDER_CONFIRMED: &str = "harvest.events.v1.OrderConfirmed";
    pub const ORDER_CANCELLED: &str = "harvest.events.v1.OrderCancelled";
    pub const ORDER_DELIVERED: &str = "harvest.events.v1.OrderDelivered";
    pub const ORDER_STATE_CHANGED: &str = "harvest.events.v1.OrderStateChanged";
    pub const ORDER_SHIPMENT_FAILED: &str = "harvest.events.v1.OrderShipmentFailed";
    pub const STOCK_RESERVED: &str = "harvest.events.v1.StockReserved";
    pub const STOCK_REJECTED: &str = "harvest.events.v1.StockRejected";
    pub const STOCK_RELEASED: &str = "harvest.events.v1.StockReleased";
    pub const STOCK_COMMITTED: &str = "harvest.events.v1.StockCommitted";
    pub const PAYMENT_AUTHORIZED: &str = "harvest.events.v1.PaymentAuthorized";
    pub const PAYMENT_DECLINED: &str = "harvest.events.v1.PaymentDeclined";
    pub const PAYMENT_CAPTURED: &str = "harvest.events.v1.PaymentCaptured";
    pub const PAYMENT_VOIDED: &str = "harvest.events.v1.PaymentVoided";
    pub const PAYMENT_REFUNDED: &str = "harvest.events.v1.PaymentRefunded";
    pub const SHIPMENT_CREATED: &str = "harvest.events.v1.ShipmentCreated";
    pub const COURIER_ASSIGNED: &str = "harvest.events.v1.CourierAssigned";
    pub const SHIPMENT_PICKED_UP: &str = "harvest.events.v1.ShipmentPickedUp";
    pub const SHIPMENT_DELIVERED: &str = "harvest.events.v1.ShipmentDelivered";
    pub const SHIPMENT_FAILED: &str = "harvest.events.v1.ShipmentFailed";
    pub const SHIPMENT_WITHDRAWN: &str = "harvest.events.v1.ShipmentWithdrawn";
    pub const COURIER_RELEASED: &str = "harvest.events.v1.CourierReleased";
    pub const SHIPMENT_OVERDUE: &str = "harvest.events.v1.ShipmentOverdue";
}

/// The fully qualified protobuf name of a payload, the envelope's event type.
pub fn event_type(payload: &Payload) -> &'static str {
    match payload {
        Payload::OrderPlaced(_) => types::ORDER_PLACED,
        Payload::OrderConfirmed(_) => types::ORDER_CONFIRMED,
        Payload::OrderCancelled(_) => types::ORDER_CANCELLED,
        Payload::OrderDelivered(_) => types::ORDER_DELIVERED,
        Payload::OrderStateChanged(_) => types::ORDER_STATE_CHANGED,
        Payload::OrderShipmentFailed(_) => types::ORDER_SHIPMENT_FAILED,
        Payload::StockReserved(_) => types::STOCK_RESERVED,
        Payload::StockRejected(_) => types::STOCK_REJECTED,
        Payload::StockReleased(_) => types::STOCK_RELEASED,
        Payload::StockCommitted(_) => types::STOCK_COMMITTED,
        Payload::PaymentAuthorized(_) => types::PAYMENT_AUTHORIZED,
        Payload::PaymentDeclined(_) => types::PAYMENT_DECLINED,
        Payload::PaymentCaptured(_) => types::PAYMENT_CAPTURED,
        Payload::PaymentVoided(_) => types::PAYMENT_VOIDED,
        Payload::PaymentRefunded(_) => types::PAYMENT_REFUNDED,
        Payload::ShipmentCreated(_) => types::SHIPMENT_CREATED,
        Payload::CourierAssigned(_) => types::COURIER_ASSIGNED,
        Payload::ShipmentPickedUp(_) => types::SHIPMENT_PICKED_UP,
        Payload::ShipmentDelivered(_) => types::SHIPMENT_DELIVERED,
        Payload::ShipmentFailed(_) => types::SHIPMENT_FAILED,
        Payload::ShipmentWithdrawn(_) => types::SHIPMENT_WITHDRAWN,
        Payload::CourierReleased(_) => types::COURIER_RELEASED,
        Payload::ShipmentOverdue(_) => types::SHIPMENT_OVERDUE,
    }
}

/// The stream of the only service that may emit this payload: an event read
/// from any other stream is forged or misrouted.
pub fn owning_stream(payload: &Payload) -> Stream {
    match payload {
        Payload::OrderPlaced(_)
        | Payload::OrderConfirmed(_)
        | Payload::OrderCancelled(_)
        | Payload::OrderDelivered(_)
        | Payload::OrderStateChanged(_)
        | Payload::OrderShipmentFailed(_) => Stream::Orders,
        Payload::StockReserved(_)
        | Payload::StockRejected(_)
        | Payload::StockReleased(_)
        | Payload::StockCommitted(_) => Stream::Catalog,
        Payload::PaymentAuthorized(_)
        | Payload::PaymentDeclined(_)
        | Payload::PaymentCaptured(_)
        | Payload::PaymentVoided(_)
        | Payload::PaymentRefunded(_) => Stream::Payments,
        Payload::ShipmentCreated(_)
        | Payload::CourierAssigned(_)
        | Payload::ShipmentPickedUp(_)
        | Payload::ShipmentDelivered(_)
        | Payload::ShipmentFailed(_)
        | Payload::ShipmentWithdrawn(_)
        | Payload::CourierReleased(_)
        | Payload::ShipmentOverdue(_) => Stream::Delivery,
    }
}

/// Why an envelope read from `stream` in `region` cannot be trusted, if it
/// cannot: its payload belongs to another service's stream, its declared
/// type is not its payload's, or it names another region than its topic's.
pub fn untrusted(envelope: &Envelope, stream: Stream, region: &Region) -> Option<String> {
    let payload = envelope.payload.as_ref()?;
    let owner = owning_stream(payload);
    let actual = event_type(payload);
    if owner != stream {
        return Some(format!(
            "{actual} belongs to the {owner} stream but was read from the {stream} stream"
        ));
    }
    if envelope.event_type != actual {
        return Some(format!(
            "event_type says {:?} but the payload is {actual}",
            envelope.event_type
        ));
    }
    if envelope.region != region.as_str() {
        return Some(format!(
            "region {:?} read from the {region} topic",
            envelope.region
        ));
    }
    None
}

/// A new envelope stamped with the current time. The trace context is filled
/// in when it is published.
pub fn new_envelope(
    event_id: &Id,
    order_id: &Id,
    region: &Region,
    source: &str,
    payload: Payload,
) -> Envelope {
    Envelope {
        event_id: event_id.to_string(),
        event_type: event_type(&payload).to_owned(),
        order_id: order_id.to_string(),
        region: region.to_string(),
        occurred_at: Some(SystemTime::now().into()),
        traceparent: String::new(),
        tracestate: String::new(),
        source: source.to_owned(),
        payload: Some(payload),
    }
}

/// Decodes an envelope and checks the fields every handler relies on.
pub fn decode(bytes: &[u8]) -> Result<Envelope, EventError> {
    let envelope = Envelope::decode(bytes)?;
    if envelope.payload.is_none() {
        return Err(EventError::MissingPayload {
            event_type: envelope.event_type,
        });
    }
    Id::parse(&envelope.event_id).map_err(|e| EventError::InvalidField {
        field: "event_id",
        reason: e.to_string(),
    })?;
    Id::parse(&envelope.order_id).map_err(|e| EventError::InvalidField {
        field: "order_id",
        reason: e.to_string(),
    })?;
    Region::parse(&envelope.region).map_err(|e| EventError::InvalidField {
        field: "region",
        reason: e.to_string(),
    })?;
    Ok(envelope)
}

#[cfg(test)]
mod tests {
    use harvest_proto::events::v1::OrderDelivered;

    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let id = harvest_domain::new_id("ord");
        let region = Region::parse("east").expect("valid");
        let envelope = new_envelope(
            &harvest_domain::deterministic_id("evt", &["x"]),
            &id,
            &region,
            "orders",
            Payload::OrderDelivered(OrderDelivered::default()),
        );
        assert_eq!(envelope.event_type, "harvest.events.v1.OrderDelivered");
        let decoded = decode(&envelope.encode_to_vec()).expect("valid envelope");
        assert_eq!(decoded, envelope);

        assert!(matches!(
            decode(b"\xff\xff\xff"),
            Err(EventError::Undecodable(_))
        ));
        let no_payload = Envelope {
            payload: None,
            ..envelope
        };
        assert!(matches!(
            decode(&no_payload.encode_to_vec()),
            Err(EventError::MissingPayload { .. })
        ));
    }

    #[test]
    fn events_are_trusted_only_on_their_owners_stream_and_region() {
        let east = Region::parse("east").expect("valid");
        let north = Region::parse("north").expect("valid");
        let delivered = new_envelope(
            &harvest_domain::deterministic_id("evt", &["y"]),
            &harvest_domain::new_id("ord"),
            &east,
            "orders",
            Payload::OrderDelivered(OrderDelivered::default()),
        );
        assert_eq!(untrusted(&delivered, Stream::Orders, &east), None);
        let forged = untrusted(&delivered, Stream::Payments, &east).expect("refused");
        assert!(
            forged.contains("belongs to the orders stream") && forged.contains("payments"),
            "{forged}"
        );
        let elsewhere = untrusted(&delivered, Stream::Orders, &north).expect("refused");
        assert!(elsewhere.contains("\"east\""), "{elsewhere}");
        let mislabelled = Envelope {
            event_type: "harvest.events.v1.OrderPlaced".to_owned(),
            ..delivered
        };
        let reason = untrusted(&mislabelled, Stream::Orders, &east).expect("refused");
        assert!(reason.contains("event_type"), "{reason}");
    }

    #[test]
    fn each_stream_owns_its_services_payloads() {
        // A payload of each stream, checked against the owner its name says.
        let owners = [
            (Payload::OrderPlaced(Default::default()), Stream::Orders),
            (Payload::StockReserved(Default::default()), Stream::Catalog),
            (
                Payload::PaymentAuthorized(Default::default()),
                Stream::Payments,
            ),
            (
                Payload::ShipmentDelivered(Default::default()),
                Stream::Delivery,
            ),
            (
                Payload::CourierReleased(Default::default()),
                Stream::Delivery,
            ),
            (
                Payload::ShipmentOverdue(Default::default()),
                Stream::Delivery,
            ),
        ];
        for (payload, owner) in owners {
            assert_eq!(owning_stream(&payload), owner, "{}", event_type(&payload));
        }
    }
}
