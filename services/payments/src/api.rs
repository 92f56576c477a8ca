//! The payments gRPC API, for operators: look payments up, list them by
//! state, and refund captured ones.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use harvest_domain::{Fen, Id};
use harvest_kit::audit::{AuditLog, Change};
use harvest_kit::auth::{self, Identity, Role, Rule, caller};
use harvest_proto::common::v1::{AuditAction, ListAuditRecordsRequest, ListAuditRecordsResponse};
use harvest_proto::payments::v1::payments_service_server::PaymentsService;
use harvest_proto::payments::v1::{
    GetPaymentRequest, ListPaymentsRequest, ListPaymentsResponse, ListPayoutsRequest,
    ListPayoutsResponse, Payment, PaymentState, Payout, RefundRequest,
};
use tonic::{Request, Response, Status};

use crate::error::PaymentsError;
use crate::ledger::Ledger;
use crate::provider::PaymentProvider;
use crate::steps::{Payments, RefundKey, RefundOutcome};
use crate::store::{Stage, StoredPayment, state_index_name};

/// Who may call each method of the API, by role: one rule a method. A rule
/// does not say whose records the caller may touch (a buyer's own orders, a
/// seller's own products).
pub const RULES: &[Rule] = &[
    Rule {
        method: "/harvest.payments.v1.PaymentsService/GetPayment",
        roles: &[Role::Buyer, Role::Operator],
    },
    Rule {
        method: "/harvest.payments.v1.PaymentsService/ListPayments",
        roles: &[Role::Operator],
    },
    Rule {
        method: "/harvest.payments.v1.PaymentsService/Refund",
        roles: &[Role::Operator],
    },
    Rule {
        method: "/harvest.payments.v1.PaymentsService/ListAuditRecords",
        roles: &[Role::Operator],
    },
    Rule {
        method: "/harvest.payments.v1.PaymentsService/ListPayouts",
        roles: &[Role::Seller, Role::Operator],
    },
];

const DEFAULT_PAGE_SIZE: usize = 50;
const MAX_PAGE_SIZE: usize = 200;
const MAX_REASON_CHARS: usize = 200;

pub struct PaymentsApi<P> {
    payments: Arc<Payments<P>>,
    /// Refunds made over this API, for operators.
    audit: AuditLog,
}

fn parse_id(field: &str, value: &str) -> Result<Id, PaymentsError> {
    Id::parse(value).map_err(|error| PaymentsError::invalid(field, error))
}

fn timestamp(ms: i64) -> Option<harvest_proto::Timestamp> {
    (ms > 0).then(|| (UNIX_EPOCH + Duration::from_millis(ms as u64)).into())
}

fn state_name(stage: Stage) -> &'static str {
    stage
        .payment_state()
        .map_or("not a payment", state_index_name)
}

impl<P: PaymentProvider> PaymentsApi<P> {
    pub fn new(payments: Arc<Payments<P>>, audit: AuditLog) -> Self {
        PaymentsApi { payments, audit }
    }

    /// The order's payment; NOT_FOUND when the order has none.
    async fn existing(&self, order: &Id) -> Result<StoredPayment, PaymentsError> {
        self.payments
            .store()
            .payment(order.as_str())
            .await?
            .filter(|payment| payment.stage.payment_state().is_some())
            .ok_or_else(|| PaymentsError::NotFound(format!("order {order} has no payment")))
    }

    async fn with_entries(&self, payment: StoredPayment) -> Result<Payment, PaymentsError> {
        let entries = self.payments.store().entries(&payment.order_id).await?;
        Ok(Payment {
            payment_id: payment.payment_id,
            order_id: payment.order_id,
            buyer_id: payment.buyer_id,
            region: payment.region,
            state: payment
                .stage
                .payment_state()
                .unwrap_or(PaymentState::Unspecified)
                .into(),
            authorized_fen: payment.authorized,
            captured_fen: payment.captured,
            refunded_fen: payment.refunded,
            decline_reason: payment.decline_reason,
            entries,
            created_at: timestamp(payment.created_ms),
            updated_at: timestamp(payment.updated_ms),
        })
    }

    async fn get_payment(
        &self,
        caller: Option<&Identity>,
        request: GetPaymentRequest,
    ) -> Result<Payment, PaymentsError> {
        let order = parse_id("order_id", &request.order_id)?;
        let payment = self.with_entries(self.existing(&order).await?).await?;
        // A buyer sees only the payments of their own orders.
        auth::owned_by(
            caller,
            Role::Buyer,
            &payment.buyer_id,
            format_args!("the payment of order {order}"),
        )?;
        Ok(payment)
    }

    async fn list_payments(
        &self,
        request: ListPaymentsRequest,
    ) -> Result<ListPaymentsResponse, PaymentsError> {
        let page_size =
            harvest_domain::page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
                .map_err(|reason| PaymentsError::invalid("page_size", reason))?;
        let state = PaymentState::try_from(request.state).map_err(|_| {
            PaymentsError::invalid(
                "state",
                "must be a known payment state (or unspecified for every state)",
            )
        })?;
        let after = match request.page_token.as_str() {
            "" => None,
            token => Some(decode_page_token(token, state)?),
        };
        let (payments, more) = self
            .payments
            .store()
            .list(state, after.as_ref().map(Id::as_str), page_size)
            .await?;
        let next_page_token = match payments.last() {
            Some(last) if more => encode_page_token(state, &last.order_id),
            _ => String::new(),
        };
        let mut listed = Vec::with_capacity(payments.len());
        for payment in payments {
            listed.push(self.with_entries(payment).await?);
        }
        Ok(ListPaymentsResponse {
            payments: listed,
            next_page_token,
        })
    }

    async fn list_payouts(
        &self,
        caller: Option<&Identity>,
        mut request: ListPayoutsRequest,
    ) -> Result<ListPayoutsResponse, PaymentsError> {
        auth::act_as(caller, Role::Seller, "seller_id", &mut request.seller_id)?;
        let seller = parse_id("seller_id", &request.seller_id)?;
        let page_size =
            harvest_domain::page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
                .map_err(|reason| PaymentsError::invalid("page_size", reason))?;
        let after = match request.page_token.as_str() {
            "" => None,
            token => Some(harvest_domain::decode_id_page_token(token).ok_or_else(|| {
                PaymentsError::invalid("page_token", harvest_domain::NOT_A_PAGE_TOKEN)
            })?),
        };
        let (found, next) = self
            .payments
            .store()
            .payouts(seller.as_str(), after.as_deref(), page_size)
            .await?;
        let payouts = found
            .into_iter()
            .map(|(order_id, entry)| Payout {
                order_id,
                seller_id: entry.seller_id,
                amount_fen: entry.amount_fen,
                entry_id: entry.entry_id,
                at: entry.at,
            })
            .collect();
        Ok(ListPayoutsResponse {
            payouts,
            next_page_token: next
                .as_deref()
                .map(harvest_domain::encode_page_token)
                .unwrap_or_default(),
        })
    }

    async fn refund(
        &self,
        caller: Option<&Identity>,
        request: RefundRequest,
    ) -> Result<Payment, PaymentsError> {
        let order = parse_id("order_id", &request.order_id)?;
        if request.amount_fen < 0 {
            return Err(PaymentsError::invalid(
                "amount_fen",
                "must not be negative (0 refunds everything not yet refunded)",
            ));
        }
        let amount =
            Fen::parse(request.amount_fen).map_err(|e| PaymentsError::invalid("amount_fen", e))?;
        let reason = reason_text(&request.reason)?;
        let key = match request.idempotency_key.as_str() {
            "" => {
                return Err(PaymentsError::invalid(
                    "idempotency_key",
                    "is required, so that a retried refund is not paid twice",
                ));
            }
            key => parse_id("idempotency_key", key)?,
        };
        let fingerprint = format!("{order}|{}|{reason}", amount.get());
        let store = self.payments.store();
        let conflict = || {
            PaymentsError::AlreadyExists(format!(
                "idempotency_key {key} was already used for a different refund"
            ))
        };
        let claimed_before = match store.refund_key_claim(key.as_str()).await? {
            Some(earlier) if earlier != fingerprint => return Err(conflict()),
            Some(_) => true,
            None => false,
        };
        if !claimed_before {
            // Checked before claiming the key, so a refused request leaves
            // nothing behind.
            let payment = self.existing(&order).await?;
            self.check_refundable(&order, &payment, amount).await?;
            if let Some(earlier) = store.claim_refund_key(key.as_str(), &fingerprint).await?
                && earlier != fingerprint
            {
                return Err(conflict());
            }
        }
        let requested = (amount != Fen::ZERO).then_some(amount);
        let refunded = match self
            .payments
            .refund(&order, &RefundKey::Request(key.clone()), requested, &reason)
            .await
            .map_err(PaymentsError::from)
        {
            Ok(RefundOutcome::Refunded(record)) => Ok(record),
            Ok(RefundOutcome::NotCaptured(stage)) => Err(PaymentsError::FailedPrecondition(
                not_captured(&order, stage),
            )),
            Ok(RefundOutcome::NothingLeft { captured }) => {
                Err(PaymentsError::FailedPrecondition(format!(
                    "nothing is left to refund for order {order}: all {captured} fen captured were refunded"
                )))
            }
            Ok(RefundOutcome::Exceeds {
                requested,
                captured,
                refunded,
            }) => Err(PaymentsError::FailedPrecondition(exceeds(
                &order, requested, captured, refunded,
            ))),
            Err(error) => Err(error),
        };
        let record = match refunded {
            Ok(record) => record,
            Err(error) => {
                // Refused or declined: no refund is pending under the key (a
                // declined one is dropped), so the key this call claimed is
                // free again.
                if !claimed_before && matches!(error, PaymentsError::FailedPrecondition(_)) {
                    store.release_refund_key(key.as_str(), &fingerprint).await?;
                }
                return Err(error);
            }
        };
        tracing::info!(order_id = %order, amount_fen = record.amount, "refund requested");
        let payment = self.existing(&order).await?;
        // Once per idempotency key: a retry of a refund whose record could not
        // be written writes it, one whose record is there adds none.
        let change = Change {
            action: AuditAction::PaymentRefunded,
            subject: order.as_str(),
            detail: format!(
                "refunded {} fen of {} fen captured ({} fen refunded in all)",
                record.amount, payment.captured, record.total_after
            ),
            reason: &record.reason,
            cause: &[order.as_str(), key.as_str()],
        };
        self.audit.record(caller, change).await;
        self.with_entries(payment).await
    }

    /// Refuses, naming the amounts, a refund the ledger would refuse.
    async fn check_refundable(
        &self,
        order: &Id,
        payment: &StoredPayment,
        amount: Fen,
    ) -> Result<(), PaymentsError> {
        if !matches!(
            payment.stage,
            Stage::Captured | Stage::PartiallyRefunded | Stage::Refunded
        ) {
            return Err(PaymentsError::FailedPrecondition(not_captured(
                order,
                Some(payment.stage),
            )));
        }
        let entries = self.payments.store().entries(order.as_str()).await?;
        let mut ledger = Ledger::from_entries(&entries).map_err(|e| {
            PaymentsError::Store(crate::store::StoreError::Corrupt(
                order.to_string(),
                e.to_string(),
            ))
        })?;
        let requested = (amount != Fen::ZERO).then_some(amount);
        ledger.refund(requested).map_err(|e| {
            PaymentsError::FailedPrecondition(format!("cannot refund order {order}: {e}"))
        })?;
        Ok(())
    }
}

fn not_captured(order: &Id, stage: Option<Stage>) -> String {
    format!(
        "the payment of order {order} is {}; only captured payments can be refunded",
        stage.map_or("missing", state_name)
    )
}

fn exceeds(order: &Id, requested: i64, captured: i64, refunded: i64) -> String {
    format!(
        "cannot refund order {order}: refund of {requested} fen exceeds the {} fen left to refund \
         (captured {captured} fen, refunded {refunded} fen)",
        captured - refunded
    )
}

fn reason_text(reason: &str) -> Result<String, PaymentsError> {
    let trimmed = reason.trim();
    if trimmed.is_empty() {
        return Err(PaymentsError::invalid("reason", "is required"));
    }
    if trimmed.chars().count() > MAX_REASON_CHARS {
        return Err(PaymentsError::invalid(
            "reason",
            format!("must be at most {MAX_REASON_CHARS} characters"),
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(PaymentsError::invalid(
            "reason",
            "must not contain control characters",
        ));
    }
    Ok(trimmed.to_owned())
}

/// Page tokens name the listed state and the last order id, hex-encoded so
/// that clients treat them as opaque.
fn encode_page_token(state: PaymentState, order_id: &str) -> String {
    let raw = format!("p1|{}|{order_id}", state_index_name(state));
    raw.bytes().map(|byte| format!("{byte:02x}")).collect()
}

fn decode_page_token(token: &str, state: PaymentState) -> Result<Id, PaymentsError> {
    let invalid = || {
        PaymentsError::invalid(
            "page_token",
            "is not a token from an earlier page of this listing",
        )
    };
    if token.len() > 512 || !token.is_ascii() || !token.len().is_multiple_of(2) {
        return Err(invalid());
    }
    let bytes = token
        .as_bytes()
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(invalid)?;
    let raw = String::from_utf8(bytes).map_err(|_| invalid())?;
    let mut parts = raw.splitn(3, '|');
    let (Some("p1"), Some(listed), Some(order_id)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    if listed != state_index_name(state) {
        return Err(invalid());
    }
    Id::parse(order_id).map_err(|_| invalid())
}

#[tonic::async_trait]
impl<P: PaymentProvider> PaymentsService for PaymentsApi<P> {
    async fn get_payment(
        &self,
        request: Request<GetPaymentRequest>,
    ) -> Result<Response<Payment>, Status> {
        let caller = caller(&request);
        Ok(Response::new(
            self.get_payment(caller.as_ref(), request.into_inner())
                .await?,
        ))
    }

    async fn list_payments(
        &self,
        request: Request<ListPaymentsRequest>,
    ) -> Result<Response<ListPaymentsResponse>, Status> {
        Ok(Response::new(
            self.list_payments(request.into_inner()).await?,
        ))
    }

    async fn list_payouts(
        &self,
        request: Request<ListPayoutsRequest>,
    ) -> Result<Response<ListPayoutsResponse>, Status> {
        let caller = caller(&request);
        Ok(Response::new(
            self.list_payouts(caller.as_ref(), request.into_inner())
                .await?,
        ))
    }

    async fn refund(&self, request: Request<RefundRequest>) -> Result<Response<Payment>, Status> {
        let caller = caller(&request);
        Ok(Response::new(
            self.refund(caller.as_ref(), request.into_inner()).await?,
        ))
    }

    async fn list_audit_records(
        &self,
        request: Request<ListAuditRecordsRequest>,
    ) -> Result<Response<ListAuditRecordsResponse>, Status> {
        Ok(Response::new(self.audit.list(request.into_inner()).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_only_for_their_state() {
        let token = encode_page_token(PaymentState::Captured, "ord_0190abc");
        assert_eq!(
            decode_page_token(&token, PaymentState::Captured)
                .ok()
                .map(String::from),
            Some("ord_0190abc".to_owned())
        );
        assert!(decode_page_token(&token, PaymentState::Voided).is_err());
        for bad in [
            "zz",
            "abc",
            "00",
            "é1",
            &encode_page_token(PaymentState::Captured, "{x}"),
        ] {
            assert!(
                decode_page_token(bad, PaymentState::Captured).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn reasons_are_required_and_bounded() {
        assert!(reason_text("  bruised apples ").is_ok_and(|r| r == "bruised apples"));
        for bad in ["", "   ", "a\u{7}b", &"x".repeat(201)] {
            assert!(reason_text(bad).is_err(), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod access_rules {
    #[test]
    fn every_method_has_one_rule() {
        harvest_kit::auth::check_rules("harvest.payments.v1.PaymentsService", super::RULES)
            .expect("one rule a method");
    }
}
