//! Property test of the ledger rules as the Redis scripts enforce them:
//! random sequences of authorizing, declining, voiding, capturing and
//! refunding one payment, run by the real scripts, always agree with the pure
//! `Ledger` and never break authorized ≥ captured ≥ refunded ≥ 0, one
//! authorization, one capture, captured = payouts + commission.

use harvest_domain::{Fen, Id, new_id};
use harvest_payments::ledger::{Capture, Ledger, LedgerError};
use harvest_payments::store::{
    CapturePlan, NewPayment, PaymentStore, RefundStart, Settlement, Transition,
};
use harvest_proto::payments::v1::{LedgerEntry, LedgerEntryKind};
use harvest_testkit::{Redis, unique_name};
use proptest::prelude::*;
use prost::Message;

#[derive(Clone, Debug)]
enum Op {
    Authorize(i64),
    Decline,
    Void,
    Capture(Vec<(u8, i64)>, u32),
    /// A split whose payouts and commission do not add up to the capture.
    LopsidedCapture(i64),
    /// `None` refunds everything left.
    Refund(Option<i64>),
    /// A refund the provider refused: set aside, then given back.
    AbortedRefund(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1i64..20_000).prop_map(Op::Authorize),
        Just(Op::Decline),
        Just(Op::Void),
        (
            proptest::collection::vec((0u8..3, 0i64..9_000), 1..4),
            prop_oneof![Just(500u32), 0u32..=10_000]
        )
            .prop_map(|(lines, bp)| Op::Capture(lines, bp)),
        (1i64..20_000).prop_map(Op::LopsidedCapture),
        proptest::option::of(1i64..12_000).prop_map(Op::Refund),
        (1i64..12_000).prop_map(Op::AbortedRefund),
    ]
}

fn fen(amount: i64) -> Fen {
    Fen::parse(amount).expect("valid amount")
}

fn entry(kind: LedgerEntryKind, amount: i64, seller_id: &str) -> Vec<u8> {
    LedgerEntry {
        entry_id: new_id("led").to_string(),
        kind: kind.into(),
        amount_fen: amount,
        seller_id: seller_id.to_owned(),
        ..LedgerEntry::default()
    }
    .encode_to_vec()
}

fn fail(error: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(error.to_string())
}

async fn authorize(
    store: &PaymentStore,
    order: &Id,
    amount: i64,
    approved: bool,
) -> Result<bool, TestCaseError> {
    let opened = store
        .open(
            order,
            &NewPayment {
                payment_id: format!("pay_{order}"),
                buyer_id: "buyer-1".to_owned(),
                region: "east".to_owned(),
                payment_method: "approve".to_owned(),
                amount,
            },
        )
        .await
        .map_err(fail)?;
    let decided = store
        .decide(
            order,
            approved,
            "reference",
            b"event",
            &entry(LedgerEntryKind::Authorization, amount, ""),
        )
        .await
        .map_err(fail)?;
    Ok(matches!(opened, Transition::Changed(_)) && matches!(decided, Transition::Changed(_)))
}

async fn capture(
    store: &PaymentStore,
    order: &Id,
    capture: &Capture,
) -> Result<bool, TestCaseError> {
    let plan = CapturePlan {
        amount: capture.amount.get(),
        commission: capture.commission.get(),
        payouts: capture.payouts.iter().map(|p| p.amount.get()).collect(),
        encoded: b"plan".to_vec(),
    };
    let started = store
        .begin_settlement(order, Settlement::Capture, Some(&plan))
        .await
        .map_err(fail)?;
    if !matches!(started, Transition::Changed(_)) {
        return Ok(false);
    }
    let mut entries = vec![entry(LedgerEntryKind::Capture, plan.amount, "")];
    for payout in &capture.payouts {
        entries.push(entry(
            LedgerEntryKind::Payout,
            payout.amount.get(),
            payout.seller_id.as_str(),
        ));
    }
    entries.push(entry(LedgerEntryKind::Commission, plan.commission, ""));
    let settled = store
        .settle(order, Settlement::Capture, plan.amount, b"event", &entries)
        .await
        .map_err(fail)?;
    Ok(matches!(settled, Transition::Changed(_)))
}

async fn run(store: &PaymentStore, ops: &[Op]) -> Result<(), TestCaseError> {
    let order = new_id("ord");
    let mut model = Ledger::default();
    for (step, op) in ops.iter().enumerate() {
        let before = model.clone();
        match op {
            Op::Authorize(amount) => {
                let stored = authorize(store, &order, *amount, true).await?;
                let modelled = model.authorize(fen(*amount)).is_ok();
                prop_assert_eq!(stored, modelled, "authorize");
            }
            Op::Decline => {
                let stored = authorize(store, &order, 1, false).await?;
                let modelled = model.decline().is_ok();
                prop_assert_eq!(stored, modelled, "decline");
            }
            Op::Void => {
                let started = store
                    .begin_settlement(&order, Settlement::Void, None)
                    .await
                    .map_err(fail)?;
                let stored = if matches!(started, Transition::Changed(_)) {
                    let amount = model.authorized().get();
                    let settled = store
                        .settle(
                            &order,
                            Settlement::Void,
                            amount,
                            b"event",
                            &[entry(LedgerEntryKind::Void, amount, "")],
                        )
                        .await
                        .map_err(fail)?;
                    matches!(settled, Transition::Changed(_))
                } else {
                    false
                };
                let modelled = model.void().is_ok();
                prop_assert_eq!(stored, modelled, "void");
            }
            Op::Capture(lines, bp) => {
                let lines: Vec<(Id, Fen)> = lines
                    .iter()
                    .map(|(seller, amount)| {
                        (
                            Id::parse(&format!("seller-{seller}")).expect("valid"),
                            fen(*amount),
                        )
                    })
                    .collect();
                let split = Capture::split(&lines, *bp).map_err(fail)?;
                let stored = capture(store, &order, &split).await?;
                let modelled = model.capture_with(split).is_ok();
                prop_assert_eq!(stored, modelled, "capture");
            }
            Op::LopsidedCapture(amount) => {
                let lopsided = Capture {
                    amount: fen(*amount),
                    payouts: Vec::new(),
                    commission: fen(amount - 1),
                };
                let stored = capture(store, &order, &lopsided).await?;
                let modelled = model.capture_with(lopsided);
                prop_assert!(!stored, "a lopsided capture is refused by the scripts");
                prop_assert!(modelled.is_err(), "and by the ledger");
            }
            Op::Refund(amount) => {
                let key = format!("r{step}");
                let started = store
                    .begin_refund(&order, &key, amount.unwrap_or(0), "reason")
                    .await
                    .map_err(fail)?;
                let modelled = model.refund(amount.map(fen));
                match (&started, &modelled) {
                    (RefundStart::Started(record), Ok(refunded)) => {
                        prop_assert_eq!(record.amount, refunded.get());
                        prop_assert_eq!(record.total_after, model.refunded().get());
                        let finished = store
                            .finish_refund(
                                &order,
                                &key,
                                Some((
                                    b"event",
                                    &entry(LedgerEntryKind::Refund, record.amount, ""),
                                )),
                            )
                            .await
                            .map_err(fail)?;
                        prop_assert!(matches!(finished, Transition::Changed(_)));
                    }
                    (RefundStart::NotCaptured(_), Err(LedgerError::NotCaptured))
                    | (RefundStart::NothingLeft { .. }, Err(LedgerError::NothingToRefund { .. }))
                    | (RefundStart::Exceeds { .. }, Err(LedgerError::RefundExceeds { .. })) => {}
                    (stored, modelled) => {
                        prop_assert!(false, "refund: store {:?}, ledger {:?}", stored, modelled);
                    }
                }
            }
            Op::AbortedRefund(amount) => {
                let key = format!("r{step}");
                let started = store
                    .begin_refund(&order, &key, *amount, "reason")
                    .await
                    .map_err(fail)?;
                if matches!(started, RefundStart::Started(_)) {
                    store
                        .finish_refund(&order, &key, None)
                        .await
                        .map_err(fail)?;
                }
            }
        }
        if matches!(op, Op::AbortedRefund(_)) {
            prop_assert_eq!(&model, &before);
        }
        model.check().map_err(fail)?;

        let stored = store.payment(order.as_str()).await.map_err(fail)?;
        let Some(stored) = stored else {
            prop_assert_eq!(model.state(), None);
            continue;
        };
        prop_assert_eq!(
            stored.stage.payment_state(),
            model.state(),
            "after {:?}",
            op
        );
        prop_assert_eq!(
            (stored.authorized, stored.captured, stored.refunded),
            (
                model.authorized().get(),
                model.captured().get(),
                model.refunded().get()
            ),
            "after {:?}",
            op
        );
        prop_assert!(stored.authorized >= stored.captured);
        prop_assert!(stored.captured >= stored.refunded && stored.refunded >= 0);
        prop_assert_eq!(stored.refund_pending, None);
        let entries = store.entries(order.as_str()).await.map_err(fail)?;
        let replayed = Ledger::from_entries(&entries).map_err(fail)?;
        prop_assert_eq!(replayed.capture(), model.capture());
        prop_assert_eq!(replayed.refunded(), model.refunded());
        prop_assert_eq!(replayed.authorized(), model.authorized());
    }
    Ok(())
}

#[test]
fn the_scripts_keep_the_ledger_rules() {
    let redis = Redis::start().expect("redis starts");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let config = redis.config(&format!("{}:", unique_name()));
    let connection = runtime
        .block_on(harvest_kit::store::connect(&config))
        .expect("connects");
    let store = PaymentStore::new(connection, &config.key_prefix);

    proptest!(ProptestConfig::with_cases(96), |(ops in proptest::collection::vec(op(), 1..24))| {
        runtime.block_on(run(&store, &ops))?;
    });
}
