//! The orders service's consumer: catalog, payments and delivery events,
//! turned into inputs of the saga.

use harvest_bus::event::types;
use harvest_bus::{Handler, HandlerError, IncomingEvent};

use crate::saga::{Applied, Input, Saga, SagaError};

pub struct SagaReactions {
    saga: Saga,
}

impl SagaReactions {
    pub fn new(saga: Saga) -> Self {
        SagaReactions { saga }
    }
}

impl Handler for SagaReactions {
    /// The facts that move an order; the rest of the other services'
    /// streams (stock released or committed, payments captured, voided or
    /// refunded, shipments created or withdrawn) follow from the order's own
    /// decisions.
    fn wants(&self, event_type: &str) -> bool {
        matches!(
            event_type,
            types::STOCK_RESERVED
                | types::STOCK_REJECTED
                | types::PAYMENT_AUTHORIZED
                | types::PAYMENT_DECLINED
                | types::COURIER_ASSIGNED
                | types::SHIPMENT_PICKED_UP
                | types::SHIPMENT_DELIVERED
                | types::SHIPMENT_FAILED
        )
    }

    async fn handle(&self, event: &IncomingEvent) -> Result<(), HandlerError> {
        let order_id = event.envelope.order_id.clone();
        let applied = self
            .saga
            .apply(&order_id, &Input::Event(Box::new(event.envelope.clone())))
            .await
            .map_err(|error| match error {
                SagaError::Corrupt(order) => {
                    HandlerError::Rejected(format!("order {order} is corrupt"))
                }
                other => HandlerError::transient(other),
            })?;
        match applied {
            Applied::UnknownOrder => tracing::warn!(
                %order_id,
                event_type = %event.envelope.event_type,
                topic = %event.topic,
                partition = event.partition,
                offset = event.offset,
                "event for an unknown order ignored",
            ),
            Applied::Refused(order, refused) => tracing::warn!(
                %order_id,
                event_type = %event.envelope.event_type,
                event_id = %event.envelope.event_id,
                state = %refused.state,
                history = order.history.len(),
                "event refused: impossible in the order's state; not applied",
            ),
            Applied::Duplicate(_) => tracing::debug!(%order_id, "event already applied"),
            Applied::Accepted(_) | Applied::Parked(_) | Applied::Ignored => {}
        }
        Ok(())
    }
}
