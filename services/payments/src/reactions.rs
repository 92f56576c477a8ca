//! How payments react to the saga: authorize when stock is reserved, capture
//! and pay sellers out when the order is delivered, void or refund when it is
//! cancelled. Every other event is ignored.
//!
//! Reactions are idempotent by event id (an event handled before republishes
//! the events it caused, with the same ids) and by order (the payment's state
//! machine allows one authorization and one capture, ever).

use std::sync::Arc;

use harvest_bus::event::types;
use harvest_bus::{Handler, HandlerError, IncomingEvent, Payload};
use harvest_domain::{Fen, Id, Region};
use harvest_proto::events::v1::{OrderCancelled, OrderDelivered, ReservedLine, StockReserved};

use crate::ledger::Capture;
use crate::provider::PaymentProvider;
use crate::steps::{AuthorizationRequest, Payments, StepError};

/// Payment method tokens longer than this are not tokens.
const MAX_PAYMENT_METHOD_CHARS: usize = 256;

pub struct PaymentReactions<P> {
    payments: Arc<Payments<P>>,
    commission_basis_points: u32,
}

fn rejected(reason: impl Into<String>) -> HandlerError {
    HandlerError::Rejected(reason.into())
}

impl From<StepError> for HandlerError {
    fn from(error: StepError) -> Self {
        if error.is_transient() {
            HandlerError::transient(error)
        } else {
            HandlerError::Rejected(error.to_string())
        }
    }
}

/// The lines' total, each line checked.
fn lines_total(lines: &[ReservedLine], total_fen: i64) -> Result<Vec<(Id, Fen)>, HandlerError> {
    if lines.is_empty() {
        return Err(rejected("the order has no lines"));
    }
    let total = Fen::parse(total_fen).map_err(|e| rejected(format!("total_fen: {e}")))?;
    let mut sum = Fen::ZERO;
    let mut checked = Vec::with_capacity(lines.len());
    for (index, line) in lines.iter().enumerate() {
        let seller_id = Id::parse(&line.seller_id)
            .map_err(|e| rejected(format!("lines[{index}].seller_id: {e}")))?;
        let line_total = Fen::parse(line.line_total_fen)
            .map_err(|e| rejected(format!("lines[{index}].line_total_fen: {e}")))?;
        sum = sum
            .checked_add(line_total)
            .map_err(|e| rejected(format!("lines total: {e}")))?;
        checked.push((seller_id, line_total));
    }
    if sum != total {
        return Err(rejected(format!(
            "the lines total {} fen but total_fen is {} fen",
            sum.get(),
            total.get()
        )));
    }
    if total == Fen::ZERO {
        return Err(rejected("total_fen must be positive"));
    }
    Ok(checked)
}

impl<P: PaymentProvider> Handler for PaymentReactions<P> {
    fn wants(&self, event_type: &str) -> bool {
        matches!(
            event_type,
            types::STOCK_RESERVED | types::ORDER_CANCELLED | types::ORDER_DELIVERED
        )
    }

    async fn handle(&self, event: &IncomingEvent) -> Result<(), HandlerError> {
        let envelope = &event.envelope;
        let Some(
            payload @ (Payload::StockReserved(_)
            | Payload::OrderCancelled(_)
            | Payload::OrderDelivered(_)),
        ) = &envelope.payload
        else {
            return Ok(());
        };
        let order_id =
            Id::parse(&envelope.order_id).map_err(|e| rejected(format!("order_id: {e}")))?;
        let region = self
            .payments
            .regions()
            .resolve(&envelope.region)
            .map_err(|e| rejected(format!("region: {e}")))?;
        let store = self.payments.store();
        let earlier = store
            .payment(order_id.as_str())
            .await
            .map_err(HandlerError::transient)?;
        if let Some(steps) = earlier.and_then(|payment| payment.seen(&envelope.event_id)) {
            tracing::debug!(order_id = %order_id, "event handled before; publishing its outcome again");
            for step in &steps {
                self.payments.announce(&order_id, step).await?;
            }
            return Ok(());
        }
        let steps = match payload {
            Payload::StockReserved(reserved) => {
                self.on_stock_reserved(&order_id, region, reserved).await?
            }
            Payload::OrderCancelled(cancelled) => {
                self.on_order_cancelled(&order_id, cancelled).await?
            }
            Payload::OrderDelivered(delivered) => {
                self.on_order_delivered(&order_id, delivered).await?
            }
            _ => return Ok(()),
        };
        store
            .mark_seen(&order_id, &envelope.event_id, &steps)
            .await
            .map_err(HandlerError::transient)?;
        Ok(())
    }
}

impl<P: PaymentProvider> PaymentReactions<P> {
    pub fn new(payments: Arc<Payments<P>>, commission_basis_points: u32) -> Self {
        PaymentReactions {
            payments,
            commission_basis_points,
        }
    }

    async fn on_stock_reserved(
        &self,
        order_id: &Id,
        region: Region,
        reserved: &StockReserved,
    ) -> Result<Vec<String>, HandlerError> {
        let buyer_id =
            Id::parse(&reserved.buyer_id).map_err(|e| rejected(format!("buyer_id: {e}")))?;
        if reserved.payment_method.chars().count() > MAX_PAYMENT_METHOD_CHARS {
            return Err(rejected(format!(
                "payment_method is longer than {MAX_PAYMENT_METHOD_CHARS} characters"
            )));
        }
        lines_total(&reserved.lines, reserved.total_fen)?;
        let request = AuthorizationRequest {
            buyer_id,
            payment_method: reserved.payment_method.clone(),
            amount: Fen::parse(reserved.total_fen)
                .map_err(|e| rejected(format!("total_fen: {e}")))?,
            region,
        };
        Ok(self.payments.authorize(order_id, &request).await?)
    }

    async fn on_order_cancelled(
        &self,
        order_id: &Id,
        cancelled: &OrderCancelled,
    ) -> Result<Vec<String>, HandlerError> {
        let mut reason = format!(
            "order cancelled: {}",
            cancel_reason_text(cancelled.reason())
        );
        let detail = cancelled.detail.trim();
        if !detail.is_empty() {
            reason = format!(
                "{reason} ({})",
                detail.chars().take(200).collect::<String>()
            );
        }
        Ok(self.payments.cancel(order_id, &reason).await?)
    }

    async fn on_order_delivered(
        &self,
        order_id: &Id,
        delivered: &OrderDelivered,
    ) -> Result<Vec<String>, HandlerError> {
        let lines = lines_total(&delivered.lines, delivered.total_fen)?;
        let capture = Capture::split(&lines, self.commission_basis_points)
            .map_err(|e| rejected(format!("payout split: {e}")))?;
        Ok(self.payments.capture(order_id, &capture).await?)
    }
}

fn cancel_reason_text(reason: harvest_proto::common::v1::CancelReason) -> String {
    reason
        .as_str_name()
        .trim_start_matches("CANCEL_REASON_")
        .to_lowercase()
        .replace('_', " ")
}
