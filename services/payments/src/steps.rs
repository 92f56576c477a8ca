//! The payment steps: authorize, capture, void and refund, each driven to its
//! end whoever finds it half done.
//!
//! Every step follows one pattern: mark the payment as asking the provider
//! (an atomic script), ask the provider with the step's idempotency key,
//! record the answer together with the event it causes (another script),
//! then publish the recorded event. A step found half done, after a crash or
//! by a concurrent delivery, is finished the same way: the provider answers a
//! repeated key as it did the first time, and only the first recording
//! counts. A step found done publishes its recorded event again, with the
//! same id.

use std::sync::Arc;

use harvest_bus::{Envelope, Payload, PublishError, Publisher, new_envelope};
use harvest_domain::{Fen, Id, Region, Regions, deterministic_id};
use harvest_proto::events::v1::{
    PaymentAuthorized, PaymentCaptured, PaymentDeclined, PaymentRefunded, PaymentVoided,
    SellerPayout,
};
use harvest_proto::payments::v1::{LedgerEntry, LedgerEntryKind};
use prost::Message;

use crate::config::ProviderConfig;
use crate::ledger::{Capture, Ledger};
use crate::metrics;
use crate::provider::{
    Decision, Operation, PaymentProvider, ProviderError, ProviderRequest, execute_with_retries,
    idempotency_key,
};
use crate::store::{
    CapturePlan, NewPayment, PaymentStore, RefundRecord, RefundStart, Settlement, Stage,
    StoreError, StoredPayment, Transition,
};

/// How often one step may find the payment moved on by someone else before
/// it gives up for now (and the event is retried later).
const MAX_ROUNDS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("could not publish the payment event")]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error("stored payment event of order {0} is corrupt")]
    CorruptEvent(String, #[source] prost::DecodeError),
    #[error("stored payment of order {0} is corrupt: {1}")]
    Corrupt(String, String),
    /// The step breaks the saga's contract or a ledger rule; it never will
    /// succeed.
    #[error("{0}")]
    Refused(String),
    #[error("the payment of order {0} kept changing under this step")]
    Contended(String),
}

impl StepError {
    /// Whether trying the same step again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            StepError::Store(_) | StepError::Publish(_) | StepError::Contended(_) => true,
            StepError::Provider(error) => error.is_transient(),
            StepError::CorruptEvent(..) | StepError::Corrupt(..) | StepError::Refused(_) => false,
        }
    }
}

/// What to authorize for an order whose stock is reserved.
#[derive(Clone, Debug)]
pub struct AuthorizationRequest {
    pub buyer_id: Id,
    pub payment_method: String,
    pub amount: Fen,
    pub region: Region,
}

/// Names one refund of an order. A cancellation refunds once; each refund
/// asked over the API has the caller's idempotency key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefundKey {
    Cancellation,
    Request(Id),
}

impl RefundKey {
    /// The key in the payment's refund records.
    pub fn as_field(&self) -> String {
        match self {
            RefundKey::Cancellation => "cancellation".to_owned(),
            RefundKey::Request(key) => format!("api:{key}"),
        }
    }
}

fn refund_step(field: &str) -> String {
    format!("refund:{field}")
}

/// How a refund went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefundOutcome {
    Refunded(RefundRecord),
    NotCaptured(Option<Stage>),
    NothingLeft {
        captured: i64,
    },
    Exceeds {
        requested: i64,
        captured: i64,
        refunded: i64,
    },
}

/// The id of an order's payment.
pub fn payment_id(order: &Id) -> Id {
    deterministic_id("pay", &[order.as_str()])
}

fn event_id(order: &Id, parts: &[&str]) -> Id {
    let mut all = vec![order.as_str(), "payments"];
    all.extend_from_slice(parts);
    deterministic_id("evt", &all)
}

fn ledger_entry(order: &Id, kind: LedgerEntryKind, part: &str, amount: i64) -> LedgerEntry {
    LedgerEntry {
        entry_id: deterministic_id("led", &[order.as_str(), kind.as_str_name(), part]).to_string(),
        kind: kind.into(),
        amount_fen: amount,
        at: Some(harvest_kit::clock::now().into()),
        ..LedgerEntry::default()
    }
}

/// The payment steps, over a provider.
pub struct Payments<P> {
    store: PaymentStore,
    publisher: Publisher,
    provider: Arc<P>,
    settings: ProviderConfig,
}

impl<P: PaymentProvider> Payments<P> {
    pub fn new(
        store: PaymentStore,
        publisher: Publisher,
        provider: Arc<P>,
        settings: ProviderConfig,
    ) -> Self {
        Payments {
            store,
            publisher,
            provider,
            settings,
        }
    }

    pub fn store(&self) -> &PaymentStore {
        &self.store
    }

    /// The regions events may be published for.
    pub fn regions(&self) -> &Regions {
        self.publisher.topology().regions()
    }

    async fn load(&self, order: &Id) -> Result<StoredPayment, StepError> {
        self.store
            .payment(order.as_str())
            .await?
            .ok_or_else(|| StepError::Corrupt(order.to_string(), "payment vanished".to_owned()))
    }

    async fn ask(
        &self,
        payment: &StoredPayment,
        operation: Operation,
        step: &str,
        amount: i64,
    ) -> Result<(Id, Region, Decision), StepError> {
        let corrupt = |what: String| StepError::Corrupt(payment.order_id.clone(), what);
        let order = Id::parse(&payment.order_id).map_err(|e| corrupt(e.to_string()))?;
        let region = Region::parse(&payment.region).map_err(|e| corrupt(e.to_string()))?;
        let request = ProviderRequest {
            operation,
            idempotency_key: idempotency_key(&order, step),
            order_id: order.clone(),
            amount: Fen::parse(amount).map_err(|e| corrupt(e.to_string()))?,
            payment_method: payment.payment_method.clone(),
        };
        let decision = execute_with_retries(&*self.provider, &self.settings, &request).await?;
        Ok((order, region, decision))
    }

    /// Files the payment under its current state and publishes the event
    /// recorded for `step` (again, with the same id).
    #[tracing::instrument(skip_all, fields(order_id = %order, step))]
    pub async fn announce(&self, order: &Id, step: &str) -> Result<(), StepError> {
        let Some(payment) = self.store.payment(order.as_str()).await? else {
            return Ok(());
        };
        let envelope = payment
            .event(step)
            .map(|encoded| {
                Envelope::decode(encoded).map_err(|e| StepError::CorruptEvent(order.to_string(), e))
            })
            .transpose()?;
        // Each seller a capture paid out finds the order among its payouts,
        // in the same round trip; a repeat repairs what a crash left undone.
        let paid: Vec<&str> = match envelope.as_ref().and_then(|e| e.payload.as_ref()) {
            Some(Payload::PaymentCaptured(captured)) => captured
                .payouts
                .iter()
                .map(|payout| payout.seller_id.as_str())
                .collect(),
            _ => Vec::new(),
        };
        self.store
            .reindex(order.as_str(), payment.stage.payment_state(), &paid)
            .await?;
        if let Some(envelope) = envelope {
            self.publisher.publish(envelope).await?;
        }
        Ok(())
    }

    /// Authorizes the order's total, once.
    #[tracing::instrument(skip_all, fields(order_id = %order))]
    pub async fn authorize(
        &self,
        order: &Id,
        request: &AuthorizationRequest,
    ) -> Result<Vec<String>, StepError> {
        let new = NewPayment {
            payment_id: payment_id(order).to_string(),
            buyer_id: request.buyer_id.to_string(),
            region: request.region.to_string(),
            payment_method: request.payment_method.clone(),
            amount: request.amount.get(),
        };
        match self.store.open(order, &new).await? {
            Transition::Changed(_) | Transition::Unchanged(Some(Stage::Authorizing)) => {
                // Listed as pending while the provider is asked, so that one
                // whose provider never answers can be found.
                self.store
                    .reindex(order.as_str(), Stage::Authorizing.payment_state(), &[])
                    .await?;
                let payment = self.load(order).await?;
                self.complete_authorization(&payment).await?;
            }
            Transition::Unchanged(Some(Stage::Cancelled)) => {
                tracing::info!("order was cancelled before its payment; not authorizing");
                return Ok(Vec::new());
            }
            Transition::Unchanged(_) => self.announce(order, "authorization").await?,
            Transition::Refused(reason) => return Err(StepError::Refused(reason)),
        }
        Ok(vec!["authorization".to_owned()])
    }

    async fn complete_authorization(&self, payment: &StoredPayment) -> Result<(), StepError> {
        let (order, region, decision) = self
            .ask(payment, Operation::Authorize, "authorize", payment.amount)
            .await?;
        let (approved, detail, payload, entry) = match decision {
            Decision::Approved { reference } => {
                let entry = LedgerEntry {
                    provider_reference: reference.clone(),
                    ..ledger_entry(&order, LedgerEntryKind::Authorization, "", payment.amount)
                };
                let payload = Payload::PaymentAuthorized(PaymentAuthorized {
                    payment_id: payment.payment_id.clone(),
                    amount_fen: payment.amount,
                    provider_reference: reference.clone(),
                });
                (true, reference, payload, entry.encode_to_vec())
            }
            Decision::Declined { reason } => {
                let payload = Payload::PaymentDeclined(PaymentDeclined {
                    payment_id: payment.payment_id.clone(),
                    reason: reason.clone(),
                });
                (false, reason, payload, Vec::new())
            }
        };
        let outcome = if approved { "authorized" } else { "declined" };
        let event = new_envelope(
            &event_id(&order, &[outcome]),
            &order,
            &region,
            crate::SERVICE,
            payload,
        );
        let recorded = self
            .store
            .decide(&order, approved, &detail, &event.encode_to_vec(), &entry)
            .await?;
        if matches!(recorded, Transition::Changed(_)) {
            ::metrics::counter!(metrics::PAYMENTS, "outcome" => outcome).increment(1);
            if approved {
                ::metrics::counter!(metrics::AMOUNT_FEN, "kind" => "authorized")
                    .increment(payment.amount.unsigned_abs());
            }
            tracing::info!(
                outcome,
                amount_fen = payment.amount,
                "authorization decided"
            );
        }
        self.announce(&order, "authorization").await
    }

    /// Captures the delivered lines of an order from its authorization and
    /// splits them between the sellers and the platform, once. What the
    /// order's failed shipments held of the authorization is released with
    /// the capture.
    #[tracing::instrument(skip_all, fields(order_id = %order))]
    pub async fn capture(&self, order: &Id, delivered: &Capture) -> Result<Vec<String>, StepError> {
        let refuse = |why: &str| {
            Err(StepError::Refused(format!(
                "order {order} was delivered, {why}"
            )))
        };
        for _ in 0..MAX_ROUNDS {
            let Some(payment) = self.store.payment(order.as_str()).await? else {
                return refuse("but it has no payment to capture");
            };
            match payment.stage {
                Stage::Cancelled => return refuse("but it was cancelled before any payment"),
                Stage::Declined => return refuse("but its payment was declined"),
                Stage::Voiding | Stage::Voided => {
                    return refuse("but its authorization was voided");
                }
                Stage::Authorizing => self.complete_authorization(&payment).await?,
                Stage::Authorized => {
                    // Less when some shipments failed: the capture releases
                    // the rest of the authorization.
                    if delivered.amount.get() > payment.authorized {
                        return refuse(&format!(
                            "its delivered lines total {} fen, more than the {} fen authorized",
                            delivered.amount.get(),
                            payment.authorized
                        ));
                    }
                    let entries = self.store.entries(order.as_str()).await?;
                    let mut ledger = Ledger::from_entries(&entries)
                        .map_err(|e| StepError::Corrupt(order.to_string(), e.to_string()))?;
                    ledger.capture_with(delivered.clone()).map_err(|e| {
                        StepError::Refused(format!("capture of order {order}: {e}"))
                    })?;
                    let plan = capture_plan(&payment, delivered);
                    if let Transition::Refused(reason) = self
                        .store
                        .begin_settlement(order, Settlement::Capture, Some(&plan))
                        .await?
                    {
                        return Err(StepError::Refused(reason));
                    }
                }
                Stage::Capturing => {
                    self.complete_capture(&payment).await?;
                    return Ok(vec!["capture".to_owned()]);
                }
                Stage::Captured | Stage::PartiallyRefunded | Stage::Refunded => {
                    self.announce(order, "capture").await?;
                    return Ok(vec!["capture".to_owned()]);
                }
            }
        }
        Err(StepError::Contended(order.to_string()))
    }

    async fn complete_capture(&self, payment: &StoredPayment) -> Result<(), StepError> {
        let plan = payment
            .capture_plan
            .as_deref()
            .ok_or_else(|| StepError::Corrupt(payment.order_id.clone(), "no capture plan".into()))
            .and_then(|encoded| {
                PaymentCaptured::decode(encoded)
                    .map_err(|e| StepError::CorruptEvent(payment.order_id.clone(), e))
            })?;
        let (order, region, decision) = self
            .ask(payment, Operation::Capture, "capture", plan.amount_fen)
            .await?;
        let reference = decision
            .into_reference()
            .map_err(|reason| declined("capture", &order, &reason))?;
        let mut entries = vec![LedgerEntry {
            provider_reference: reference.clone(),
            ..ledger_entry(&order, LedgerEntryKind::Capture, "", plan.amount_fen)
        }];
        for payout in &plan.payouts {
            entries.push(LedgerEntry {
                seller_id: payout.seller_id.clone(),
                ..ledger_entry(
                    &order,
                    LedgerEntryKind::Payout,
                    &payout.seller_id,
                    payout.amount_fen,
                )
            });
        }
        entries.push(ledger_entry(
            &order,
            LedgerEntryKind::Commission,
            "",
            plan.commission_fen,
        ));
        let encoded: Vec<Vec<u8>> = entries.iter().map(Message::encode_to_vec).collect();
        let event = new_envelope(
            &event_id(&order, &["captured"]),
            &order,
            &region,
            crate::SERVICE,
            Payload::PaymentCaptured(plan.clone()),
        );
        let recorded = self
            .store
            .settle(
                &order,
                Settlement::Capture,
                plan.amount_fen,
                &event.encode_to_vec(),
                &encoded,
            )
            .await?;
        if matches!(recorded, Transition::Changed(_)) {
            ::metrics::counter!(metrics::PAYMENTS, "outcome" => "captured").increment(1);
            for (kind, amount) in [
                ("captured", plan.amount_fen),
                ("commission", plan.commission_fen),
                (
                    "payout",
                    plan.payouts.iter().map(|payout| payout.amount_fen).sum(),
                ),
            ] {
                ::metrics::counter!(metrics::AMOUNT_FEN, "kind" => kind)
                    .increment(amount.unsigned_abs());
            }
            tracing::info!(
                amount_fen = plan.amount_fen,
                released_fen = plan.released_fen,
                commission_fen = plan.commission_fen,
                sellers = plan.payouts.len(),
                "payment captured",
            );
        }
        self.announce(&order, "capture").await
    }

    /// Lets go of whatever the order's payment holds: voids an open
    /// authorization, refunds a capture, and makes sure that no payment is
    /// made for an order cancelled before one.
    #[tracing::instrument(skip_all, fields(order_id = %order))]
    pub async fn cancel(&self, order: &Id, reason: &str) -> Result<Vec<String>, StepError> {
        let mut steps = Vec::new();
        for _ in 0..MAX_ROUNDS {
            let Some(payment) = self.store.payment(order.as_str()).await? else {
                if let Transition::Changed(_) = self.store.close_unpaid(order).await? {
                    tracing::info!("order cancelled before any payment");
                    return Ok(steps);
                }
                continue;
            };
            match payment.stage {
                Stage::Cancelled | Stage::Declined => return Ok(steps),
                Stage::Authorizing => {
                    self.complete_authorization(&payment).await?;
                    steps.push("authorization".to_owned());
                }
                Stage::Authorized => {
                    if let Transition::Refused(reason) = self
                        .store
                        .begin_settlement(order, Settlement::Void, None)
                        .await?
                    {
                        return Err(StepError::Refused(reason));
                    }
                }
                Stage::Voiding => {
                    self.complete_void(&payment).await?;
                    steps.push("void".to_owned());
                    return Ok(steps);
                }
                Stage::Voided => {
                    self.announce(order, "void").await?;
                    steps.push("void".to_owned());
                    return Ok(steps);
                }
                Stage::Capturing => {
                    self.complete_capture(&payment).await?;
                    steps.push("capture".to_owned());
                }
                Stage::Captured | Stage::PartiallyRefunded | Stage::Refunded => {
                    let key = RefundKey::Cancellation;
                    match self.refund(order, &key, None, reason).await? {
                        RefundOutcome::Refunded(_) => steps.push(refund_step(&key.as_field())),
                        other => tracing::info!(outcome = ?other, "nothing to refund"),
                    }
                    return Ok(steps);
                }
            }
        }
        Err(StepError::Contended(order.to_string()))
    }

    async fn complete_void(&self, payment: &StoredPayment) -> Result<(), StepError> {
        let (order, region, decision) = self
            .ask(payment, Operation::Void, "void", payment.authorized)
            .await?;
        let reference = decision
            .into_reference()
            .map_err(|reason| declined("void", &order, &reason))?;
        let entry = LedgerEntry {
            provider_reference: reference,
            ..ledger_entry(&order, LedgerEntryKind::Void, "", payment.authorized)
        };
        let event = new_envelope(
            &event_id(&order, &["voided"]),
            &order,
            &region,
            crate::SERVICE,
            Payload::PaymentVoided(PaymentVoided {
                payment_id: payment.payment_id.clone(),
                amount_fen: payment.authorized,
            }),
        );
        let recorded = self
            .store
            .settle(
                &order,
                Settlement::Void,
                payment.authorized,
                &event.encode_to_vec(),
                &[entry.encode_to_vec()],
            )
            .await?;
        if matches!(recorded, Transition::Changed(_)) {
            ::metrics::counter!(metrics::PAYMENTS, "outcome" => "voided").increment(1);
            ::metrics::counter!(metrics::AMOUNT_FEN, "kind" => "voided")
                .increment(payment.authorized.unsigned_abs());
            tracing::info!(amount_fen = payment.authorized, "authorization voided");
        }
        self.announce(&order, "void").await
    }

    /// Refunds `amount` (everything not yet refunded when `None`) of a
    /// captured payment, once per key.
    #[tracing::instrument(skip_all, fields(order_id = %order))]
    pub async fn refund(
        &self,
        order: &Id,
        key: &RefundKey,
        amount: Option<Fen>,
        reason: &str,
    ) -> Result<RefundOutcome, StepError> {
        let field = key.as_field();
        let requested = amount.map_or(0, Fen::get);
        for _ in 0..MAX_ROUNDS {
            match self
                .store
                .begin_refund(order, &field, requested, reason)
                .await?
            {
                RefundStart::Started(record) | RefundStart::Existing(record) => {
                    if record.done {
                        self.announce(order, &refund_step(&field)).await?;
                    } else {
                        self.complete_refund(order, &field, &record).await?;
                    }
                    return Ok(RefundOutcome::Refunded(record));
                }
                RefundStart::Busy(other) => {
                    // Finish the refund in the way first: its caller may never
                    // come back for it.
                    let payment = self.load(order).await?;
                    if let Some(record) = payment.refunds.get(&other).filter(|r| !r.done) {
                        self.complete_refund(order, &other, record).await?;
                    }
                }
                RefundStart::NotCaptured(stage) => return Ok(RefundOutcome::NotCaptured(stage)),
                RefundStart::NothingLeft { captured } => {
                    return Ok(RefundOutcome::NothingLeft { captured });
                }
                RefundStart::Exceeds { captured, refunded } => {
                    return Ok(RefundOutcome::Exceeds {
                        requested,
                        captured,
                        refunded,
                    });
                }
            }
        }
        Err(StepError::Contended(order.to_string()))
    }

    async fn complete_refund(
        &self,
        order: &Id,
        field: &str,
        record: &RefundRecord,
    ) -> Result<(), StepError> {
        let payment = self.load(order).await?;
        let step = refund_step(field);
        let (order, region, decision) = self
            .ask(&payment, Operation::Refund, &step, record.amount)
            .await?;
        let reference = match decision.into_reference() {
            Ok(reference) => reference,
            Err(reason) => {
                self.store.finish_refund(&order, field, None).await?;
                return Err(declined("refund", &order, &reason));
            }
        };
        let entry = LedgerEntry {
            provider_reference: reference,
            reason: record.reason.clone(),
            ..ledger_entry(&order, LedgerEntryKind::Refund, field, record.amount)
        };
        let event = new_envelope(
            &event_id(&order, &["refunded", field]),
            &order,
            &region,
            crate::SERVICE,
            Payload::PaymentRefunded(PaymentRefunded {
                payment_id: payment.payment_id.clone(),
                amount_fen: record.amount,
                reason: record.reason.clone(),
                total_refunded_fen: record.total_after,
            }),
        );
        let recorded = self
            .store
            .finish_refund(
                &order,
                field,
                Some((&event.encode_to_vec(), &entry.encode_to_vec())),
            )
            .await?;
        if matches!(recorded, Transition::Changed(_)) {
            ::metrics::counter!(metrics::PAYMENTS, "outcome" => "refunded").increment(1);
            ::metrics::counter!(metrics::AMOUNT_FEN, "kind" => "refunded")
                .increment(record.amount.unsigned_abs());
            tracing::info!(
                amount_fen = record.amount,
                total_refunded_fen = record.total_after,
                refund = field,
                "payment refunded",
            );
        }
        self.announce(&order, &step).await
    }
}

fn declined(step: &str, order: &Id, reason: &str) -> StepError {
    StepError::Refused(format!(
        "the provider declined the {step} of order {order}: {reason}"
    ))
}

fn capture_plan(payment: &StoredPayment, capture: &Capture) -> CapturePlan {
    let captured = PaymentCaptured {
        payment_id: payment.payment_id.clone(),
        amount_fen: capture.amount.get(),
        payouts: capture
            .payouts
            .iter()
            .map(|payout| SellerPayout {
                seller_id: payout.seller_id.to_string(),
                amount_fen: payout.amount.get(),
            })
            .collect(),
        commission_fen: capture.commission.get(),
        released_fen: payment.authorized - capture.amount.get(),
    };
    CapturePlan {
        amount: captured.amount_fen,
        commission: captured.commission_fen,
        payouts: captured.payouts.iter().map(|p| p.amount_fen).collect(),
        encoded: captured.encode_to_vec(),
    }
}
