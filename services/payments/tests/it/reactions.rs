//! Payments' reactions to the saga, driven through the broker.

use std::sync::Arc;

use futures::future::join_all;
use harvest_bus::{Handler, IncomingEvent, Payload, Publisher, Stream};
use harvest_domain::{Fen, Id, new_id};
use harvest_payments::provider::{
    Decision, Operation, PaymentProvider, ProviderRequest, idempotency_key,
};
use harvest_payments::reactions::PaymentReactions;
use harvest_payments::steps::{Payments, payment_id};
use harvest_payments::store::{NewPayment, Stage};
use harvest_proto::events::v1::SellerPayout;
use harvest_proto::payments::v1::{LedgerEntryKind, PaymentState};
use tonic::Code;

use crate::helpers::{TestPayments, WAIT, audit, count_entries, order_delivered, stock_reserved};

fn is_authorized(payload: &Payload) -> bool {
    matches!(payload, Payload::PaymentAuthorized(_))
}

fn is_captured(payload: &Payload) -> bool {
    matches!(payload, Payload::PaymentCaptured(_))
}

#[tokio::test]
async fn authorizes_then_captures_and_pays_each_seller_less_commission() {
    let payments = TestPayments::start().await;
    let reserved = payments
        .reserve(
            "approve",
            &[
                ("coop-luochuan", 6_800),
                ("farmer-li", 4_501),
                ("coop-luochuan", 6_800),
            ],
        )
        .await;
    let order_id = reserved.order_id.as_str();

    let authorized = payments.wait_event(order_id, is_authorized).await;
    let Some(Payload::PaymentAuthorized(event)) = &authorized.payload else {
        unreachable!()
    };
    assert_eq!(event.amount_fen, 18_101);
    assert!(!event.provider_reference.is_empty());
    assert_eq!(authorized.source, "payments");
    assert_eq!(authorized.region, "east", "the order's region");
    let payment = payments.payment(order_id).await;
    assert_eq!(payment.state(), PaymentState::Authorized);
    assert_eq!(payment.authorized_fen, 18_101);
    assert_eq!(event.payment_id, payment.payment_id);
    audit(&payment);

    payments.deliver(&reserved).await;
    let captured = payments.wait_event(order_id, is_captured).await;
    let Some(Payload::PaymentCaptured(event)) = &captured.payload else {
        unreachable!()
    };
    assert_eq!(event.amount_fen, 18_101);
    // 5% per seller, rounded down: 13,600 → 680; 4,501 → 225.
    assert_eq!(event.commission_fen, 905);
    assert_eq!(
        event.payouts,
        vec![
            SellerPayout {
                seller_id: "coop-luochuan".to_owned(),
                amount_fen: 12_920
            },
            SellerPayout {
                seller_id: "farmer-li".to_owned(),
                amount_fen: 4_276
            },
        ]
    );
    let paid: i64 = event.payouts.iter().map(|p| p.amount_fen).sum();
    assert_eq!(paid + event.commission_fen, event.amount_fen);

    let payment = payments.payment(order_id).await;
    assert_eq!(payment.state(), PaymentState::Captured);
    assert_eq!(payment.captured_fen, 18_101);
    let kinds: Vec<LedgerEntryKind> = payment.entries.iter().map(|e| e.kind()).collect();
    assert_eq!(
        kinds,
        vec![
            LedgerEntryKind::Authorization,
            LedgerEntryKind::Capture,
            LedgerEntryKind::Payout,
            LedgerEntryKind::Payout,
            LedgerEntryKind::Commission,
        ]
    );
    let ledger = audit(&payment);
    let capture = ledger.capture().expect("captured");
    assert_eq!(capture.commission, Fen::parse(905).expect("valid"));

    let metrics = payments.metrics().await;
    for name in [
        harvest_payments::metrics::PAYMENTS,
        harvest_payments::metrics::AMOUNT_FEN,
        harvest_payments::metrics::PROVIDER_CALLS,
        harvest_payments::metrics::PROVIDER_SECONDS,
    ] {
        assert!(metrics.contains(name), "{name} is exported");
    }
    assert!(metrics.contains(r#"outcome="captured""#));
}

/// An order delivered in part (a shipment failed) is charged for what
/// arrived: the capture takes the delivered lines, pays only their sellers,
/// and releases the rest of the authorization.
#[tokio::test]
async fn a_partly_delivered_order_is_charged_for_what_arrived() {
    let payments = TestPayments::start().await;
    let reserved = payments
        .reserve("approve", &[("coop-luochuan", 6_000), ("farmer-li", 4_000)])
        .await;
    let order_id = reserved.order_id.as_str();
    payments.wait_event(order_id, is_authorized).await;

    payments.deliver_in_part(&reserved, 1).await;
    let captured = payments.wait_event(order_id, is_captured).await;
    let Some(Payload::PaymentCaptured(event)) = &captured.payload else {
        unreachable!()
    };
    assert_eq!(event.amount_fen, 6_000);
    assert_eq!(event.released_fen, 4_000, "the failed shipment's share");
    assert_eq!(
        event.payouts,
        vec![SellerPayout {
            seller_id: "coop-luochuan".to_owned(),
            amount_fen: 5_700
        }],
        "only the delivered lines' seller is paid"
    );
    assert_eq!(event.commission_fen, 300);
    let payment = payments.payment(order_id).await;
    assert_eq!(payment.state(), PaymentState::Captured);
    assert_eq!(
        (payment.authorized_fen, payment.captured_fen),
        (10_000, 6_000)
    );
    audit(&payment);
}

#[tokio::test]
async fn a_declined_payment_is_reported_with_its_reason() {
    let payments = TestPayments::start().await;
    let cases = [
        ("decline:insufficient funds", "insufficient funds"),
        ("decline", "card declined"),
        ("a-token-nobody-knows", "unknown payment method"),
    ];
    let mut orders = Vec::new();
    for (method, _) in cases {
        orders.push(payments.reserve(method, &[("farmer-li", 2_000)]).await);
    }
    for (order, (method, reason)) in orders.iter().zip(cases) {
        let declined = payments
            .wait_event(&order.order_id, |p| {
                matches!(p, Payload::PaymentDeclined(_))
            })
            .await;
        let Some(Payload::PaymentDeclined(event)) = declined.payload else {
            unreachable!()
        };
        assert_eq!(event.reason, reason, "{method}");
        let payment = payments.payment(&order.order_id).await;
        assert_eq!(payment.state(), PaymentState::Declined);
        assert_eq!(payment.decline_reason, reason);
        assert_eq!(payment.authorized_fen, 0);
        assert!(payment.entries.is_empty(), "a decline moves no money");
    }
}

#[tokio::test]
async fn temporary_provider_failures_are_retried_with_the_same_key() {
    let payments = TestPayments::start().await;
    // The provider fails twice (the default): within one handling.
    let quick = payments.reserve("transient", &[("farmer-li", 3_000)]).await;
    // Fails four times: more than the three calls one handling makes, so the
    // event bus retries the event.
    let stubborn = payments
        .reserve("transient:4", &[("farmer-li", 3_000)])
        .await;
    // A provider outage outlasting several handlings: the event bus keeps
    // retrying, and nothing is dead-lettered.
    let outage = payments
        .reserve("transient:13", &[("farmer-li", 3_000)])
        .await;

    for (order, failures) in [(&quick, 2), (&stubborn, 4), (&outage, 13)] {
        let authorized = payments.wait_event(&order.order_id, is_authorized).await;
        let record = payments
            .provider_record(&order.order_id, "authorize")
            .await
            .expect("the provider saw the key");
        assert_eq!(
            record.attempts,
            failures + 1,
            "failed {failures} times first"
        );
        assert_eq!(record.decision.as_deref(), Some("approved"));
        let Some(Payload::PaymentAuthorized(event)) = authorized.payload else {
            unreachable!()
        };
        assert_eq!(record.reference, Some(event.provider_reference));
        let payment = payments.payment(&order.order_id).await;
        assert_eq!(count_entries(&payment, LedgerEntryKind::Authorization), 1);
        audit(&payment);
    }

    // Every step of a `transient` payment fails first, the capture too.
    payments.deliver(&quick).await;
    payments.wait_event(&quick.order_id, is_captured).await;
    let record = payments
        .provider_record(&quick.order_id, "capture")
        .await
        .expect("the provider saw the capture");
    assert_eq!(
        (record.attempts, record.decision.as_deref()),
        (3, Some("approved"))
    );

    assert!(
        payments.dead_letters.messages().is_empty(),
        "a transient failure is never dead-lettered"
    );
}

#[tokio::test]
async fn cancelling_before_capture_voids_the_authorization() {
    let payments = TestPayments::start().await;
    let reserved = payments.reserve("approve", &[("farmer-li", 7_500)]).await;
    let order_id = reserved.order_id.as_str();
    payments.wait_event(order_id, is_authorized).await;

    payments.cancel(order_id).await;
    let voided = payments
        .wait_event(order_id, |p| matches!(p, Payload::PaymentVoided(_)))
        .await;
    let Some(Payload::PaymentVoided(event)) = voided.payload else {
        unreachable!()
    };
    assert_eq!(event.amount_fen, 7_500);
    let payment = payments.payment(order_id).await;
    assert_eq!(payment.state(), PaymentState::Voided);
    assert_eq!(count_entries(&payment, LedgerEntryKind::Void), 1);
    audit(&payment);
    let record = payments.provider_record(order_id, "void").await;
    assert_eq!(record.and_then(|r| r.decision).as_deref(), Some("approved"));

    // A delivery after the void captures nothing: it is dead-lettered.
    payments.deliver(&reserved).await;
    let dead = payments
        .dead_letters
        .wait_for(WAIT, |messages| messages.first().cloned())
        .await
        .expect("a dead letter");
    assert!(
        dead.header("dead-letter-reason")
            .is_some_and(|reason| reason.contains("voided")),
        "{:?}",
        dead.header("dead-letter-reason")
    );
    assert_eq!(payments.payment(order_id).await.captured_fen, 0);
    assert!(
        payments
            .provider_record(order_id, "capture")
            .await
            .is_none()
    );
}

#[tokio::test]
async fn cancelling_after_capture_refunds_everything() {
    let payments = TestPayments::start().await;
    let reserved = payments
        .reserve("approve", &[("farmer-li", 4_000), ("coop-a", 6_000)])
        .await;
    let order_id = reserved.order_id.as_str();
    payments.wait_event(order_id, is_authorized).await;
    payments.deliver(&reserved).await;
    payments.wait_event(order_id, is_captured).await;

    payments.cancel(order_id).await;
    let refunded = payments
        .wait_event(order_id, |p| matches!(p, Payload::PaymentRefunded(_)))
        .await;
    let Some(Payload::PaymentRefunded(event)) = refunded.payload else {
        unreachable!()
    };
    assert_eq!(
        (event.amount_fen, event.total_refunded_fen),
        (10_000, 10_000)
    );
    assert!(event.reason.contains("buyer cancelled"), "{}", event.reason);
    let payment = payments.payment(order_id).await;
    assert_eq!(payment.state(), PaymentState::Refunded);
    assert_eq!(payment.refunded_fen, 10_000);
    assert_eq!(count_entries(&payment, LedgerEntryKind::Refund), 1);
    assert_eq!(count_entries(&payment, LedgerEntryKind::Void), 0);
    audit(&payment);
}

#[tokio::test]
async fn an_order_cancelled_before_its_payment_is_never_charged() {
    let payments = TestPayments::start().await;
    // The cancellation overtakes the reservation (they travel on different
    // streams).
    let order = new_id("ord");
    let reserved = stock_reserved(&order, &payments.region, "approve", &[("farmer-li", 900)]);
    let cancelled = payments.cancel(order.as_str()).await;
    payments.wait_handled(&cancelled).await;
    payments
        .catalog
        .publish(reserved.clone())
        .await
        .expect("published");
    payments.wait_handled(&reserved).await;

    assert!(
        payments.events_of(order.as_str()).is_empty(),
        "nothing to announce"
    );
    assert!(
        payments
            .provider_record(order.as_str(), "authorize")
            .await
            .is_none(),
        "the provider was never asked"
    );
    let status = payments
        .client
        .clone()
        .get_payment(harvest_proto::payments::v1::GetPaymentRequest {
            order_id: order.to_string(),
        })
        .await
        .expect_err("no payment");
    assert_eq!(status.code(), Code::NotFound);
}

/// The mark that refuses a late authorization is kept for the retention,
/// then goes like a settled payment.
#[tokio::test]
async fn the_mark_of_an_order_cancelled_before_its_payment_is_kept_for_the_retention() {
    let payments = TestPayments::start().await;
    let order = new_id("ord");
    let cancelled = payments.cancel(order.as_str()).await;
    payments.wait_handled(&cancelled).await;
    let marked = payments
        .store
        .payment(order.as_str())
        .await
        .expect("redis")
        .expect("the order is marked cancelled");
    assert_eq!(marked.stage, Stage::Cancelled);
    let ttl = payments
        .pttl(&format!("payments:{{{order}}}:payment"))
        .await;
    assert!(
        payments.is_the_retention(ttl),
        "the mark goes with the retention, not kept for good: {ttl} ms"
    );
}

#[tokio::test]
async fn redelivered_events_authorize_and_capture_once() {
    let payments = TestPayments::start().await;
    let reserved = payments.reserve("approve", &[("farmer-li", 5_000)]).await;
    let order_id = reserved.order_id.as_str();
    // The same event again, as after a consumer crash before its commit.
    payments
        .catalog
        .publish(reserved.clone())
        .await
        .expect("published again");
    let authorized = payments.wait_events(order_id, 2, is_authorized).await;
    assert_eq!(
        authorized[0].event_id, authorized[1].event_id,
        "the recorded event, republished with its id"
    );

    let delivered = payments.deliver(&reserved).await;
    payments
        .orders
        .publish(delivered.clone())
        .await
        .expect("published again");
    let captured = payments.wait_events(order_id, 2, is_captured).await;
    assert_eq!(captured[0].event_id, captured[1].event_id);

    let payment = payments.payment(order_id).await;
    assert_eq!(count_entries(&payment, LedgerEntryKind::Authorization), 1);
    assert_eq!(count_entries(&payment, LedgerEntryKind::Capture), 1);
    assert_eq!(payment.captured_fen, 5_000);
    audit(&payment);
    for step in ["authorize", "capture"] {
        let record = payments
            .provider_record(order_id, step)
            .await
            .expect("the provider saw the step");
        assert_eq!(record.calls, 1, "{step}: a redelivery does not ask again");
        assert_eq!(record.decision.as_deref(), Some("approved"));
    }
}

/// Asks the sandbox for a step of `order`, as an earlier delivery would have.
async fn ask_provider(
    payments: &TestPayments,
    order: &Id,
    operation: Operation,
    step: &str,
) -> Decision {
    payments
        .sandbox
        .execute(&ProviderRequest {
            operation,
            idempotency_key: idempotency_key(order, step),
            order_id: order.clone(),
            amount: Fen::parse(5_000).expect("valid"),
            payment_method: "approve".to_owned(),
        })
        .await
        .expect("the provider answers")
}

#[tokio::test]
async fn a_step_that_reached_the_provider_before_a_crash_is_not_charged_twice() {
    let payments = TestPayments::start().await;
    let order = new_id("ord");
    let reserved = stock_reserved(&order, &payments.region, "approve", &[("farmer-li", 5_000)]);
    // As if an earlier delivery opened the payment and reached the provider,
    // then crashed before recording the answer.
    payments
        .store
        .open(
            &order,
            &NewPayment {
                payment_id: payment_id(&order).to_string(),
                buyer_id: "buyer-1".to_owned(),
                region: "east".to_owned(),
                payment_method: "approve".to_owned(),
                amount: 5_000,
            },
        )
        .await
        .expect("opened");
    let earlier = ask_provider(&payments, &order, Operation::Authorize, "authorize").await;
    let Decision::Approved { reference } = earlier else {
        panic!("expected approval, got {earlier:?}");
    };

    payments
        .catalog
        .publish(reserved.clone())
        .await
        .expect("published");
    let authorized = payments.wait_event(order.as_str(), is_authorized).await;
    let Some(Payload::PaymentAuthorized(event)) = authorized.payload else {
        unreachable!()
    };
    assert_eq!(
        event.provider_reference, reference,
        "the same authorization"
    );

    // The same for the capture: the provider took the money, the record did
    // not follow.
    let earlier = ask_provider(&payments, &order, Operation::Capture, "capture").await;
    payments.deliver(&reserved).await;
    payments.wait_event(order.as_str(), is_captured).await;

    let payment = payments.payment(order.as_str()).await;
    let capture_entry = payment
        .entries
        .iter()
        .find(|entry| entry.kind() == LedgerEntryKind::Capture)
        .expect("captured");
    assert_eq!(
        Decision::Approved {
            reference: capture_entry.provider_reference.clone()
        },
        earlier
    );
    assert_eq!(count_entries(&payment, LedgerEntryKind::Authorization), 1);
    assert_eq!(count_entries(&payment, LedgerEntryKind::Capture), 1);
    audit(&payment);
    for step in ["authorize", "capture"] {
        let record = payments
            .provider_record(order.as_str(), step)
            .await
            .expect("seen");
        assert_eq!(
            (record.calls, record.attempts),
            (2, 1),
            "{step}: decided once"
        );
    }
}

#[tokio::test]
async fn concurrent_deliveries_of_one_event_authorize_once() {
    let payments = TestPayments::start().await;
    let topology = payments.catalog.topology().clone();
    let publisher = Publisher::new(&payments.config.bus, topology.clone(), Stream::Payments)
        .expect("publisher");
    let steps = Arc::new(Payments::new(
        payments.store.clone(),
        publisher,
        Arc::new(payments.sandbox.clone()),
        payments.config.provider.clone(),
    ));
    let reactions = PaymentReactions::new(steps, 500);

    let order = new_id("ord");
    let event = IncomingEvent {
        envelope: stock_reserved(
            &order,
            &payments.region,
            "slow:100",
            &[("farmer-li", 2_500)],
        ),
        topic: topology.topic(Stream::Catalog, &payments.region),
        partition: 0,
        offset: 0,
    };
    let results = join_all((0..6).map(|_| reactions.handle(&event))).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");

    let payment = payments.payment(order.as_str()).await;
    assert_eq!(payment.state(), PaymentState::Authorized);
    assert_eq!(count_entries(&payment, LedgerEntryKind::Authorization), 1);
    audit(&payment);
    let record = payments
        .provider_record(order.as_str(), "authorize")
        .await
        .expect("seen");
    assert_eq!(record.attempts, 1, "decided once however many asked");
    let authorized = payments.wait_event(order.as_str(), is_authorized).await;
    let Some(Payload::PaymentAuthorized(event)) = authorized.payload else {
        unreachable!()
    };
    assert_eq!(Some(event.provider_reference), record.reference);
}

#[tokio::test]
async fn malformed_events_are_dead_lettered_with_the_reason() {
    let payments = TestPayments::start().await;
    let mut negative = stock_reserved(&new_id("ord"), &payments.region, "approve", &[("s1", 100)]);
    if let Some(Payload::StockReserved(stock)) = negative.payload.as_mut() {
        stock.total_fen = -100;
        stock.lines[0].line_total_fen = -100;
    }
    let mut lopsided = stock_reserved(&new_id("ord"), &payments.region, "approve", &[("s1", 100)]);
    if let Some(Payload::StockReserved(stock)) = lopsided.payload.as_mut() {
        stock.total_fen = 150;
    }
    let never_reserved = order_delivered(&stock_reserved(
        &new_id("ord"),
        &payments.region,
        "approve",
        &[("s1", 100)],
    ));
    let mut bad_seller =
        stock_reserved(&new_id("ord"), &payments.region, "approve", &[("s1", 100)]);
    if let Some(Payload::StockReserved(stock)) = bad_seller.payload.as_mut() {
        stock.lines[0].seller_id = "{not an id}".to_owned();
    }
    for envelope in [&negative, &lopsided, &bad_seller] {
        payments
            .catalog
            .publish(envelope.clone())
            .await
            .expect("published");
    }
    payments
        .orders
        .publish(never_reserved.clone())
        .await
        .expect("published");

    let dead = payments
        .dead_letters
        .wait_for(WAIT, |messages| {
            (messages.len() >= 4).then(|| messages.to_vec())
        })
        .await
        .expect("four dead letters");
    let reason_of = |order_id: &str| {
        dead.iter()
            .find(|message| message.key.as_deref() == Some(order_id.as_bytes()))
            .and_then(|message| message.header("dead-letter-reason"))
            .map(str::to_owned)
            .unwrap_or_default()
    };
    for (envelope, mentions) in [
        (&negative, "total_fen"),
        (&lopsided, "total_fen is 150"),
        (&bad_seller, "seller_id"),
        (&never_reserved, "no payment"),
    ] {
        let reason = reason_of(&envelope.order_id);
        assert!(
            reason.contains(mentions),
            "{reason:?} should mention {mentions:?}"
        );
        let order = Id::parse(&envelope.order_id).expect("valid");
        let stored = payments.store.payment(order.as_str()).await.expect("read");
        assert!(stored.is_none(), "nothing is stored for a malformed event");
    }
}
