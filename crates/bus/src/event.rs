//! Building and checking envelopes.

use std::time::SystemTime;

use harvest_domain::{Id, Region};
use harvest_proto::events::v1::Envelope;
pub use harvest_proto::events::v1::envelope::Payload;
use prost::Message;

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("not a protobuf envelope: {0}")]
    Undecodable(#[from] prost::DecodeError),
    #[error("envelope has no payload (unknown event type {event_type:?}?)")]
    MissingPayload { event_type: String },
    #[error("envelope has an invalid {field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
}

/// The fully qualified protobuf name of a payload, the envelope's event type.
pub fn event_type(payload: &Payload) -> &'static str {
    match payload {
        Payload::OrderPlaced(_) => "harvest.events.v1.OrderPlaced",
        Payload::OrderConfirmed(_) => "harvest.events.v1.OrderConfirmed",
        Payload::OrderCancelled(_) => "harvest.events.v1.OrderCancelled",
        Payload::OrderDelivered(_) => "harvest.events.v1.OrderDelivered",
        Payload::OrderStateChanged(_) => "harvest.events.v1.OrderStateChanged",
        Payload::StockReserved(_) => "harvest.events.v1.StockReserved",
        Payload::StockRejected(_) => "harvest.events.v1.StockRejected",
        Payload::StockReleased(_) => "harvest.events.v1.StockReleased",
        Payload::StockCommitted(_) => "harvest.events.v1.StockCommitted",
        Payload::PaymentAuthorized(_) => "harvest.events.v1.PaymentAuthorized",
        Payload::PaymentDeclined(_) => "harvest.events.v1.PaymentDeclined",
        Payload::PaymentCaptured(_) => "harvest.events.v1.PaymentCaptured",
        Payload::PaymentVoided(_) => "harvest.events.v1.PaymentVoided",
        Payload::PaymentRefunded(_) => "harvest.events.v1.PaymentRefunded",
        Payload::ShipmentCreated(_) => "harvest.events.v1.ShipmentCreated",
        Payload::CourierAssigned(_) => "harvest.events.v1.CourierAssigned",
        Payload::ShipmentPickedUp(_) => "harvest.events.v1.ShipmentPickedUp",
        Payload::ShipmentDelivered(_) => "harvest.events.v1.ShipmentDelivered",
        Payload::ShipmentFailed(_) => "harvest.events.v1.ShipmentFailed",
        Payload::ShipmentWithdrawn(_) => "harvest.events.v1.ShipmentWithdrawn",
    }
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
}
