//! The payments gRPC API: what it accepts, and what it refuses without
//! changing anything.

use std::sync::Arc;
use std::time::Duration;

use harvest_bus::topology::Topology;
use harvest_bus::{Payload, Publisher, Stream};
use harvest_kit::audit::AuditLog;
use harvest_payments::api::PaymentsApi;
use harvest_payments::provider::{
    Decision, Operation, PaymentProvider, ProviderError, ProviderRequest,
};
use harvest_payments::sandbox::SandboxProvider;
use harvest_payments::steps::Payments;
use harvest_payments::store::PaymentStore;
use harvest_proto::payments::v1::payments_service_server::PaymentsService;
use harvest_proto::payments::v1::{
    GetPaymentRequest, LedgerEntryKind, ListPaymentsRequest, Payment, PaymentState, RefundRequest,
};
use tonic::Code;

use crate::helpers::{TestPayments, audit, count_entries};

fn assert_status<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, mentions: &str) {
    let status = result.expect_err("the request must fail");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(mentions),
        "message {:?} should mention {mentions:?}",
        status.message()
    );
}

fn refund(order_id: &str, amount_fen: i64, key: &str) -> RefundRequest {
    RefundRequest {
        order_id: order_id.to_owned(),
        amount_fen,
        reason: "bruised apples".to_owned(),
        idempotency_key: key.to_owned(),
    }
}

#[tokio::test]
async fn refunds_never_exceed_what_was_captured() {
    let payments = TestPayments::start().await;
    let mut client = payments.client.clone();
    let order = payments.paid_order(10_000, true).await;
    let order_id = order.order_id.as_str();

    let first = client
        .refund(refund(order_id, 3_000, "refund-1"))
        .await
        .expect("refunded")
        .into_inner();
    assert_eq!(first.state(), PaymentState::PartiallyRefunded);
    assert_eq!(first.refunded_fen, 3_000);

    // The same request again returns the same result and refunds nothing more.
    let again = client
        .refund(refund(order_id, 3_000, "refund-1"))
        .await
        .expect("same result")
        .into_inner();
    assert_eq!(again, first);
    // The same key for another request is refused.
    assert_status(
        client.refund(refund(order_id, 2_000, "refund-1")).await,
        Code::AlreadyExists,
        "idempotency_key",
    );

    // More than is left: refused, naming the amounts.
    assert_status(
        client.refund(refund(order_id, 8_000, "refund-2")).await,
        Code::FailedPrecondition,
        "refund of 8000 fen exceeds the 7000 fen left to refund (captured 10000 fen, refunded 3000 fen)",
    );
    // The rest (amount 0).
    let rest = client
        .refund(refund(order_id, 0, "refund-3"))
        .await
        .expect("refunded")
        .into_inner();
    assert_eq!(rest.state(), PaymentState::Refunded);
    assert_eq!(rest.refunded_fen, 10_000);
    assert_status(
        client.refund(refund(order_id, 0, "refund-4")).await,
        Code::FailedPrecondition,
        "nothing is left to refund",
    );
    assert_status(
        client.refund(refund(order_id, 1, "refund-5")).await,
        Code::FailedPrecondition,
        "exceeds the 0 fen left",
    );
    // A refused key was not kept: it can serve another request... on
    // another, captured order.
    let other = payments.paid_order(500, true).await;
    client
        .refund(refund(&other.order_id, 200, "refund-2"))
        .await
        .expect("refused keys stay free");

    let refunds = payments
        .wait_events(order_id, 2, |p| matches!(p, Payload::PaymentRefunded(_)))
        .await;
    let totals: Vec<(i64, i64)> = refunds
        .iter()
        .filter_map(|envelope| match &envelope.payload {
            Some(Payload::PaymentRefunded(event)) => {
                Some((event.amount_fen, event.total_refunded_fen))
            }
            _ => None,
        })
        .collect();
    assert!(totals.contains(&(3_000, 3_000)), "{totals:?}");
    assert!(totals.contains(&(7_000, 10_000)), "{totals:?}");

    let payment = payments.payment(order_id).await;
    assert_eq!(count_entries(&payment, LedgerEntryKind::Refund), 2);
    let reasons: Vec<&str> = payment
        .entries
        .iter()
        .filter(|entry| entry.kind() == LedgerEntryKind::Refund)
        .map(|entry| entry.reason.as_str())
        .collect();
    assert_eq!(reasons, vec!["bruised apples", "bruised apples"]);
    audit(&payment);
    for key in ["refund-1", "refund-3"] {
        let record = payments
            .provider_record(order_id, &format!("refund:api:{key}"))
            .await
            .expect("the provider saw the refund");
        assert_eq!(record.decision.as_deref(), Some("approved"));
        assert_eq!(record.calls, 1, "{key}: paid back once");
    }
}

#[tokio::test]
async fn bad_requests_get_a_clear_status_and_change_nothing() {
    let payments = TestPayments::start().await;
    let mut client = payments.client.clone();
    let authorized = payments.paid_order(4_000, false).await;
    let captured = payments.paid_order(6_000, true).await;
    let before: Vec<Payment> = vec![
        payments.payment(&authorized.order_id).await,
        payments.payment(&captured.order_id).await,
    ];

    assert_status(
        client
            .get_payment(GetPaymentRequest {
                order_id: "{bad}".to_owned(),
            })
            .await,
        Code::InvalidArgument,
        "order_id",
    );
    assert_status(
        client
            .get_payment(GetPaymentRequest {
                order_id: "ord_unknown".to_owned(),
            })
            .await,
        Code::NotFound,
        "ord_unknown",
    );
    for (request, mentions) in [
        (
            ListPaymentsRequest {
                page_size: -1,
                ..Default::default()
            },
            "page_size",
        ),
        (
            ListPaymentsRequest {
                state: 99,
                ..Default::default()
            },
            "state",
        ),
        (
            ListPaymentsRequest {
                page_token: "not-a-token".to_owned(),
                ..Default::default()
            },
            "page_token",
        ),
    ] {
        assert_status(
            client.list_payments(request).await,
            Code::InvalidArgument,
            mentions,
        );
    }

    let captured_id = captured.order_id.as_str();
    let mut no_reason = refund(captured_id, 100, "k-1");
    no_reason.reason = "   ".to_owned();
    let mut no_key = refund(captured_id, 100, "");
    no_key.idempotency_key.clear();
    let mut bad_key = refund(captured_id, 100, "k 1");
    bad_key.idempotency_key = "k {1}".to_owned();
    for (request, code, mentions) in [
        (no_reason, Code::InvalidArgument, "reason"),
        (
            refund(captured_id, -5, "k-1"),
            Code::InvalidArgument,
            "amount_fen",
        ),
        (no_key, Code::InvalidArgument, "idempotency_key"),
        (bad_key, Code::InvalidArgument, "idempotency_key"),
        (
            refund("{bad}", 100, "k-1"),
            Code::InvalidArgument,
            "order_id",
        ),
        (
            refund("ord_unknown", 100, "k-1"),
            Code::NotFound,
            "ord_unknown",
        ),
        (
            refund(&authorized.order_id, 100, "k-1"),
            Code::FailedPrecondition,
            "only captured payments can be refunded",
        ),
        (
            refund(captured_id, 6_001, "k-1"),
            Code::FailedPrecondition,
            "exceeds the 6000 fen left",
        ),
    ] {
        assert_status(client.refund(request).await, code, mentions);
    }

    let after: Vec<Payment> = vec![
        payments.payment(&authorized.order_id).await,
        payments.payment(&captured.order_id).await,
    ];
    assert_eq!(before, after, "nothing changed");
    for payment in &after {
        audit(payment);
    }
    assert!(
        payments
            .provider_record(captured_id, "refund:api:k-1")
            .await
            .is_none(),
        "the provider was never asked"
    );
    // Every refused request left key k-1 free.
    let refunded = client
        .refund(refund(captured_id, 6_000, "k-1"))
        .await
        .expect("refunded")
        .into_inner();
    assert_eq!(refunded.state(), PaymentState::Refunded);
}

#[tokio::test]
async fn lists_payments_by_state_in_pages() {
    let payments = TestPayments::start().await;
    let mut client = payments.client.clone();
    let mut authorized = Vec::new();
    for _ in 0..5 {
        authorized.push(payments.paid_order(1_000, false).await.order_id);
    }
    let declined = payments.reserve("decline", &[("farmer-li", 1_000)]).await;
    payments
        .wait_event(&declined.order_id, |p| {
            matches!(p, Payload::PaymentDeclined(_))
        })
        .await;

    let list_all = |state: PaymentState, page_size: i32| {
        let mut client = payments.client.clone();
        async move {
            let mut seen = Vec::new();
            let mut page_token = String::new();
            loop {
                let page = client
                    .list_payments(ListPaymentsRequest {
                        state: state.into(),
                        page_size,
                        page_token: page_token.clone(),
                    })
                    .await
                    .expect("page")
                    .into_inner();
                assert!(page.payments.len() <= page_size as usize);
                seen.extend(page.payments.into_iter().map(|p| p.order_id));
                if page.next_page_token.is_empty() {
                    return seen;
                }
                page_token = page.next_page_token;
            }
        }
    };
    let mut expected = authorized.clone();
    expected.sort();
    assert_eq!(list_all(PaymentState::Authorized, 2).await, expected);
    assert_eq!(
        list_all(PaymentState::Declined, 2).await,
        vec![declined.order_id.clone()]
    );
    let mut everything = expected.clone();
    everything.push(declined.order_id.clone());
    everything.sort();
    assert_eq!(list_all(PaymentState::Unspecified, 4).await, everything);

    // A token of one listing is no good for another.
    let page = client
        .list_payments(ListPaymentsRequest {
            state: PaymentState::Authorized.into(),
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .expect("page")
        .into_inner();
    let status = client
        .list_payments(ListPaymentsRequest {
            state: PaymentState::Declined.into(),
            page_size: 2,
            page_token: page.next_page_token,
        })
        .await;
    assert_status(status, Code::InvalidArgument, "page_token");

    // A captured payment moves from one listing to the other.
    let first = authorized[0].clone();
    let reserved = crate::helpers::stock_reserved(
        &harvest_domain::Id::parse(&first).expect("valid"),
        &payments.region,
        "approve",
        &[("farmer-li", 1_000)],
    );
    payments.deliver(&reserved).await;
    payments
        .wait_event(&first, |p| matches!(p, Payload::PaymentCaptured(_)))
        .await;
    assert_eq!(
        list_all(PaymentState::Captured, 10).await,
        vec![first.clone()]
    );
    assert!(
        !list_all(PaymentState::Authorized, 10)
            .await
            .contains(&first)
    );
}

#[tokio::test]
async fn a_request_over_the_size_limit_is_refused_and_changes_nothing() {
    let payments = TestPayments::start().await;
    let mut client = payments.client.clone();
    let captured = payments.paid_order(6_000, true).await;
    let before = payments.payment(&captured.order_id).await;
    let mut huge = refund(&captured.order_id, 1_000, "refund-huge");
    huge.reason = "x".repeat(4 * 1024 * 1024);
    assert_status(
        client.refund(huge).await,
        Code::ResourceExhausted,
        "the limit is 16384 bytes (16 KiB)",
    );
    assert_eq!(payments.payment(&captured.order_id).await, before);
}

/// The sandbox, but every refund is declined, as a real provider may.
struct DecliningRefunds(SandboxProvider);

impl PaymentProvider for DecliningRefunds {
    async fn execute(&self, request: &ProviderRequest) -> Result<Decision, ProviderError> {
        if request.operation == Operation::Refund {
            return Ok(Decision::Declined {
                reason: "refunds are closed today".to_owned(),
            });
        }
        self.0.execute(request).await
    }
}

/// A refund the provider declines refunds nothing, and its idempotency key
/// is not kept: another request may use it.
#[tokio::test]
async fn a_declined_refund_leaves_its_key_free() {
    let payments = TestPayments::start().await;
    let order = payments.paid_order(1_000, true).await;
    let config = &payments.config;
    let redis = harvest_kit::store::connect(&config.redis)
        .await
        .expect("redis connects");
    let topology = Topology::new(&config.bus, config.regions.all.clone());
    let publisher = Publisher::new(&config.bus, topology, Stream::Payments).expect("publisher");
    let steps = Payments::new(
        PaymentStore::new(redis.clone(), &config.redis.key_prefix),
        publisher,
        Arc::new(DecliningRefunds(payments.sandbox.clone())),
        config.provider.clone(),
    );
    let audit_log = AuditLog::new(
        redis,
        &config.redis.key_prefix,
        "payments",
        config.redis.retention(),
    );
    let api = PaymentsApi::new(Arc::new(steps), audit_log);

    let declined = PaymentsService::refund(
        &api,
        tonic::Request::new(refund(&order.order_id, 400, "refund-declined")),
    )
    .await
    .expect_err("declined");
    assert_eq!(declined.code(), Code::FailedPrecondition, "{declined:?}");
    assert!(
        declined.message().contains("refunds are closed today"),
        "{declined:?}"
    );
    assert_eq!(
        payments
            .store
            .refund_key_claim("refund-declined")
            .await
            .expect("redis"),
        None,
        "the key is not kept"
    );
    let payment = payments.payment(&order.order_id).await;
    assert_eq!(payment.state(), PaymentState::Captured);
    assert_eq!(payment.refunded_fen, 0);

    // The key serves another request, here through the service itself.
    let refunded = payments
        .client
        .clone()
        .refund(refund(&order.order_id, 300, "refund-declined"))
        .await
        .expect("the key is free")
        .into_inner();
    assert_eq!(refunded.refunded_fen, 300);
    audit(&refunded);
}

/// A refund's idempotency key is remembered for the retention, then goes.
#[tokio::test]
async fn a_refunds_idempotency_key_is_kept_for_the_retention() {
    let payments = TestPayments::start().await;
    let order = payments.paid_order(1_000, true).await;
    payments
        .client
        .clone()
        .refund(refund(&order.order_id, 400, "refund-kept"))
        .await
        .expect("refunded");
    let claim = payments
        .store
        .refund_key_claim("refund-kept")
        .await
        .expect("redis");
    assert!(claim.is_some(), "the key is claimed");
    let ttl = payments.pttl("payments:refund-key:{refund-kept}").await;
    assert!(
        payments.is_the_retention(ttl),
        "the key goes with the retention, not kept for good: {ttl} ms"
    );
}

/// A payment that moves no more money but by refund (captured, voided,
/// declined) is kept for the retention from its last step, then GetPayment
/// answers NOT_FOUND and the lists forget it; an authorized payment stays.
#[tokio::test]
async fn settled_payments_expire_after_the_retention() {
    let payments = TestPayments::start_with(|config| config.redis.retention_secs = 1).await;
    let voided = payments.reserve("approve", &[("farmer-li", 2_000)]).await;
    let authorized = |p: &Payload| matches!(p, Payload::PaymentAuthorized(_));
    payments.wait_event(&voided.order_id, authorized).await;
    let held = payments.reserve("approve", &[("farmer-li", 3_000)]).await;
    payments.wait_event(&held.order_id, authorized).await;
    payments.cancel(&voided.order_id).await;
    payments
        .wait_event(&voided.order_id, |p| matches!(p, Payload::PaymentVoided(_)))
        .await;

    assert!(
        payments
            .provider_record(&voided.order_id, "void")
            .await
            .is_some()
    );
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(
        payments
            .provider_record(&voided.order_id, "void")
            .await
            .is_none(),
        "the sandbox forgets a key the retention after its last call"
    );
    let gone = payments
        .client
        .clone()
        .get_payment(GetPaymentRequest {
            order_id: voided.order_id.clone(),
        })
        .await
        .expect_err("expired");
    assert_eq!(gone.code(), Code::NotFound);
    let listed = payments
        .client
        .clone()
        .list_payments(ListPaymentsRequest::default())
        .await
        .expect("listed")
        .into_inner();
    let ids: Vec<String> = listed.payments.into_iter().map(|p| p.order_id).collect();
    assert_eq!(ids, vec![held.order_id.clone()]);
    assert_eq!(
        payments.payment(&held.order_id).await.state(),
        PaymentState::Authorized
    );
}
