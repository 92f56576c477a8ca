//! The money of one payment as a plain value. Every operation either keeps
//! the ledger's invariants or changes nothing and says why:
//!
//! - authorized ≥ captured ≥ refunded ≥ 0;
//! - at most one authorization (or decline) and at most one capture;
//! - a capture equals the sum of its seller payouts plus the commission;
//! - a voided authorization is never captured, and only captured money is
//!   refunded.
//!
//! The Redis scripts enforce the same rules atomically; this type states them
//! once in Rust, checks plans before they reach Redis, and audits stored
//! ledgers in tests.

use std::collections::BTreeMap;

use harvest_domain::{Fen, Id};
use harvest_proto::payments::v1::{LedgerEntry, LedgerEntryKind, PaymentState};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("the payment was already authorized or declined")]
    AlreadyDecided,
    #[error("the payment is not authorized")]
    NotAuthorized,
    #[error("the authorization was voided")]
    Voided,
    #[error("the payment was already captured")]
    AlreadyCaptured,
    #[error("the payment is not captured")]
    NotCaptured,
    #[error("amount must be positive")]
    ZeroAmount,
    #[error("capture of {capture} fen exceeds the authorized {authorized} fen")]
    CaptureExceedsAuthorization { capture: i64, authorized: i64 },
    #[error(
        "capture of {amount} fen is not payouts of {payouts} fen plus commission of {commission} fen"
    )]
    SplitMismatch {
        amount: i64,
        payouts: i64,
        commission: i64,
    },
    #[error(
        "refund of {requested} fen exceeds the {refundable} fen left to refund \
         (captured {captured} fen, refunded {refunded} fen)"
    )]
    RefundExceeds {
        requested: i64,
        refundable: i64,
        captured: i64,
        refunded: i64,
    },
    #[error("nothing is left to refund (captured {captured} fen, all of it refunded)")]
    NothingToRefund { captured: i64 },
    #[error("there are no order lines to split")]
    NoLines,
    #[error("amounts overflow")]
    Overflow,
    #[error("ledger entry {index} ({kind}) is out of place: {reason}")]
    Misplaced {
        index: usize,
        kind: String,
        reason: String,
    },
    #[error("invariant broken: {0}")]
    Broken(String),
}

/// What one seller is paid for an order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payout {
    pub seller_id: Id,
    pub amount: Fen,
}

/// Money taken from the buyer, split between the sellers and the platform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capture {
    pub amount: Fen,
    pub payouts: Vec<Payout>,
    pub commission: Fen,
}

impl Capture {
    /// Splits delivered lines (seller, line total) into one payout per seller,
    /// in seller order, and the platform's commission. The commission is taken
    /// per seller, rounded down, and the payout is the rest of that seller's
    /// share, so payouts plus commission are exactly the lines' total.
    pub fn split(
        lines: &[(Id, Fen)],
        commission_basis_points: u32,
    ) -> Result<Capture, LedgerError> {
        if lines.is_empty() {
            return Err(LedgerError::NoLines);
        }
        let mut shares: BTreeMap<&Id, Fen> = BTreeMap::new();
        for (seller_id, line_total) in lines {
            let share = shares.entry(seller_id).or_insert(Fen::ZERO);
            *share = share
                .checked_add(*line_total)
                .map_err(|_| LedgerError::Overflow)?;
        }
        let mut amount = Fen::ZERO;
        let mut commission = Fen::ZERO;
        let mut payouts = Vec::with_capacity(shares.len());
        for (seller_id, share) in shares {
            let fee = share.basis_points(commission_basis_points);
            let payout = share.checked_sub(fee).map_err(|_| LedgerError::Overflow)?;
            amount = amount
                .checked_add(share)
                .map_err(|_| LedgerError::Overflow)?;
            commission = commission
                .checked_add(fee)
                .map_err(|_| LedgerError::Overflow)?;
            payouts.push(Payout {
                seller_id: seller_id.clone(),
                amount: payout,
            });
        }
        let capture = Capture {
            amount,
            payouts,
            commission,
        };
        capture.check()?;
        Ok(capture)
    }

    pub fn payouts_total(&self) -> Result<Fen, LedgerError> {
        self.payouts.iter().try_fold(Fen::ZERO, |sum, payout| {
            sum.checked_add(payout.amount)
                .map_err(|_| LedgerError::Overflow)
        })
    }

    /// The capture equals its payouts plus the commission.
    pub fn check(&self) -> Result<(), LedgerError> {
        let payouts = self.payouts_total()?;
        let split = payouts
            .checked_add(self.commission)
            .map_err(|_| LedgerError::Overflow)?;
        if split != self.amount {
            return Err(LedgerError::SplitMismatch {
                amount: self.amount.get(),
                payouts: payouts.get(),
                commission: self.commission.get(),
            });
        }
        Ok(())
    }
}

/// The money of one payment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    authorized: Option<Fen>,
    declined: bool,
    voided: bool,
    capture: Option<Capture>,
    refunded: Fen,
}

impl Ledger {
    pub fn authorized(&self) -> Fen {
        self.authorized.unwrap_or(Fen::ZERO)
    }

    pub fn captured(&self) -> Fen {
        self.capture
            .as_ref()
            .map_or(Fen::ZERO, |capture| capture.amount)
    }

    pub fn capture(&self) -> Option<&Capture> {
        self.capture.as_ref()
    }

    pub fn refunded(&self) -> Fen {
        self.refunded
    }

    /// Captured money not yet refunded.
    pub fn refundable(&self) -> Fen {
        self.captured()
            .checked_sub(self.refunded)
            .unwrap_or(Fen::ZERO)
    }

    /// The state the money is in; `None` before any decision.
    pub fn state(&self) -> Option<PaymentState> {
        if self.declined {
            return Some(PaymentState::Declined);
        }
        if self.voided {
            return Some(PaymentState::Voided);
        }
        if let Some(capture) = &self.capture {
            return Some(if self.refunded == Fen::ZERO {
                PaymentState::Captured
            } else if self.refunded == capture.amount {
                PaymentState::Refunded
            } else {
                PaymentState::PartiallyRefunded
            });
        }
        self.authorized.map(|_| PaymentState::Authorized)
    }

    pub fn authorize(&mut self, amount: Fen) -> Result<(), LedgerError> {
        if self.authorized.is_some() || self.declined {
            return Err(LedgerError::AlreadyDecided);
        }
        if amount == Fen::ZERO {
            return Err(LedgerError::ZeroAmount);
        }
        self.authorized = Some(amount);
        Ok(())
    }

    pub fn decline(&mut self) -> Result<(), LedgerError> {
        if self.authorized.is_some() || self.declined {
            return Err(LedgerError::AlreadyDecided);
        }
        self.declined = true;
        Ok(())
    }

    /// Releases the authorization; returns the amount released.
    pub fn void(&mut self) -> Result<Fen, LedgerError> {
        let authorized = self.authorized.ok_or(LedgerError::NotAuthorized)?;
        if self.voided {
            return Err(LedgerError::Voided);
        }
        if self.capture.is_some() {
            return Err(LedgerError::AlreadyCaptured);
        }
        self.voided = true;
        Ok(authorized)
    }

    pub fn capture_with(&mut self, capture: Capture) -> Result<(), LedgerError> {
        let authorized = self.authorized.ok_or(LedgerError::NotAuthorized)?;
        if self.voided {
            return Err(LedgerError::Voided);
        }
        if self.capture.is_some() {
            return Err(LedgerError::AlreadyCaptured);
        }
        if capture.amount == Fen::ZERO {
            return Err(LedgerError::ZeroAmount);
        }
        if capture.amount > authorized {
            return Err(LedgerError::CaptureExceedsAuthorization {
                capture: capture.amount.get(),
                authorized: authorized.get(),
            });
        }
        capture.check()?;
        self.capture = Some(capture);
        Ok(())
    }

    /// Refunds `requested`, or everything not yet refunded when `None`;
    /// returns the amount refunded.
    pub fn refund(&mut self, requested: Option<Fen>) -> Result<Fen, LedgerError> {
        let captured = self
            .capture
            .as_ref()
            .ok_or(LedgerError::NotCaptured)?
            .amount;
        let refundable = self.refundable();
        let amount = match requested {
            Some(amount) if amount == Fen::ZERO => return Err(LedgerError::ZeroAmount),
            Some(amount) => amount,
            None if refundable == Fen::ZERO => {
                return Err(LedgerError::NothingToRefund {
                    captured: captured.get(),
                });
            }
            None => refundable,
        };
        if amount > refundable {
            return Err(LedgerError::RefundExceeds {
                requested: amount.get(),
                refundable: refundable.get(),
                captured: captured.get(),
                refunded: self.refunded.get(),
            });
        }
        self.refunded = self
            .refunded
            .checked_add(amount)
            .map_err(|_| LedgerError::Overflow)?;
        Ok(amount)
    }

    /// Checks every invariant; the operations above never break one, so a
    /// failure here means a ledger was built some other way (or stored wrong).
    pub fn check(&self) -> Result<(), LedgerError> {
        let broken = |what: String| Err(LedgerError::Broken(what));
        if self.declined && self.authorized.is_some() {
            return broken("both declined and authorized".to_owned());
        }
        let (authorized, captured) = (self.authorized(), self.captured());
        if !(authorized >= captured && captured >= self.refunded) {
            return broken(format!(
                "authorized {} ≥ captured {} ≥ refunded {} does not hold",
                authorized.get(),
                captured.get(),
                self.refunded.get()
            ));
        }
        if self.voided && self.capture.is_some() {
            return broken("both voided and captured".to_owned());
        }
        if let Some(capture) = &self.capture {
            capture.check()?;
        }
        Ok(())
    }

    /// Replays stored ledger entries, oldest first, checking each step.
    pub fn from_entries(entries: &[LedgerEntry]) -> Result<Ledger, LedgerError> {
        let mut ledger = Ledger::default();
        let mut index = 0;
        while index < entries.len() {
            let entry = &entries[index];
            let at = index;
            let misplaced = |reason: &str| LedgerError::Misplaced {
                index: at,
                kind: entry.kind().as_str_name().to_owned(),
                reason: reason.to_owned(),
            };
            let amount = Fen::parse(entry.amount_fen).map_err(|e| misplaced(&e.to_string()))?;
            match entry.kind() {
                LedgerEntryKind::Authorization => ledger.authorize(amount)?,
                LedgerEntryKind::Void => {
                    if ledger.void()? != amount {
                        return Err(misplaced("voids another amount than was authorized"));
                    }
                }
                LedgerEntryKind::Capture => {
                    let mut capture = Capture {
                        amount,
                        payouts: Vec::new(),
                        commission: Fen::ZERO,
                    };
                    let mut commissions = 0;
                    while let Some(next) = entries.get(index + 1) {
                        let share =
                            Fen::parse(next.amount_fen).map_err(|e| misplaced(&e.to_string()))?;
                        match next.kind() {
                            LedgerEntryKind::Payout => capture.payouts.push(Payout {
                                seller_id: Id::parse(&next.seller_id)
                                    .map_err(|e| misplaced(&e.to_string()))?,
                                amount: share,
                            }),
                            LedgerEntryKind::Commission => {
                                capture.commission = share;
                                commissions += 1;
                            }
                            _ => break,
                        }
                        index += 1;
                    }
                    if commissions != 1 {
                        return Err(misplaced("a capture needs exactly one commission entry"));
                    }
                    ledger.capture_with(capture)?;
                }
                LedgerEntryKind::Refund => {
                    ledger.refund(Some(amount))?;
                }
                _ => return Err(misplaced("payouts and commission follow their capture")),
            }
            index += 1;
        }
        ledger.check()?;
        Ok(ledger)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn fen(amount: i64) -> Fen {
        Fen::parse(amount).expect("valid amount")
    }

    fn seller(name: &str) -> Id {
        Id::parse(name).expect("valid id")
    }

    #[test]
    fn splits_per_seller_rounding_the_commission_down() {
        let lines = [
            (seller("farmer-li"), fen(999)),
            (seller("coop-a"), fen(10_000)),
            (seller("farmer-li"), fen(1)),
        ];
        let capture = Capture::split(&lines, 500).expect("splits");
        assert_eq!(capture.amount, fen(11_000));
        // coop-a: 500 commission; farmer-li: 1000 → 50.
        assert_eq!(capture.commission, fen(550));
        assert_eq!(
            capture.payouts,
            vec![
                Payout {
                    seller_id: seller("coop-a"),
                    amount: fen(9_500)
                },
                Payout {
                    seller_id: seller("farmer-li"),
                    amount: fen(950)
                },
            ]
        );
        let odd = Capture::split(&[(seller("s"), fen(19))], 500).expect("splits");
        assert_eq!((odd.commission, odd.payouts[0].amount), (fen(0), fen(19)));
        assert_eq!(Capture::split(&[], 500), Err(LedgerError::NoLines));
    }

    #[test]
    fn walks_the_happy_path_and_refuses_the_rest() {
        let mut ledger = Ledger::default();
        assert_eq!(ledger.void(), Err(LedgerError::NotAuthorized));
        ledger.authorize(fen(10_000)).expect("authorized");
        assert_eq!(
            ledger.authorize(fen(10_000)),
            Err(LedgerError::AlreadyDecided)
        );
        assert_eq!(ledger.refund(None), Err(LedgerError::NotCaptured));
        let capture = Capture::split(&[(seller("s"), fen(10_000))], 500).expect("splits");
        ledger.capture_with(capture.clone()).expect("captured");
        assert_eq!(
            ledger.capture_with(capture),
            Err(LedgerError::AlreadyCaptured)
        );
        assert_eq!(ledger.void(), Err(LedgerError::AlreadyCaptured));
        assert_eq!(ledger.refund(Some(fen(4_000))), Ok(fen(4_000)));
        assert_eq!(ledger.state(), Some(PaymentState::PartiallyRefunded));
        assert_eq!(
            ledger.refund(Some(fen(6_001))),
            Err(LedgerError::RefundExceeds {
                requested: 6_001,
                refundable: 6_000,
                captured: 10_000,
                refunded: 4_000
            })
        );
        assert_eq!(ledger.refund(None), Ok(fen(6_000)));
        assert_eq!(ledger.state(), Some(PaymentState::Refunded));
        assert_eq!(
            ledger.refund(None),
            Err(LedgerError::NothingToRefund { captured: 10_000 })
        );
        ledger.check().expect("consistent");
    }

    #[test]
    fn a_capture_above_the_authorization_or_with_a_bad_split_is_refused() {
        let mut ledger = Ledger::default();
        ledger.authorize(fen(100)).expect("authorized");
        let too_much = Capture::split(&[(seller("s"), fen(101))], 0).expect("splits");
        assert!(matches!(
            ledger.capture_with(too_much),
            Err(LedgerError::CaptureExceedsAuthorization { .. })
        ));
        let lopsided = Capture {
            amount: fen(100),
            payouts: vec![Payout {
                seller_id: seller("s"),
                amount: fen(90),
            }],
            commission: fen(5),
        };
        assert!(matches!(
            ledger.capture_with(lopsided),
            Err(LedgerError::SplitMismatch { .. })
        ));
        assert_eq!(ledger.state(), Some(PaymentState::Authorized));
    }

    #[derive(Clone, Debug)]
    enum Op {
        Authorize(i64),
        Decline,
        Void,
        Capture(Vec<(u8, i64)>, u32),
        Refund(Option<i64>),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0i64..20_000).prop_map(Op::Authorize),
            Just(Op::Decline),
            Just(Op::Void),
            (
                proptest::collection::vec((0u8..4, 0i64..8_000), 0..5),
                prop_oneof![Just(0u32), Just(500), 0u32..=10_000]
            )
                .prop_map(|(lines, bp)| Op::Capture(lines, bp)),
            proptest::option::of(0i64..15_000).prop_map(Op::Refund),
        ]
    }

    proptest! {
        #[test]
        fn random_operations_never_break_the_invariants(ops in proptest::collection::vec(op(), 1..30)) {
            let mut ledger = Ledger::default();
            let (mut authorizations, mut captures) = (0, 0);
            for op in &ops {
                let before = ledger.clone();
                let result = match op {
                    Op::Authorize(amount) => ledger.authorize(fen(*amount)).map(|()| authorizations += 1),
                    Op::Decline => ledger.decline(),
                    Op::Void => ledger.void().map(|_| ()),
                    Op::Capture(lines, bp) => {
                        let lines: Vec<(Id, Fen)> = lines
                            .iter()
                            .map(|(s, amount)| (seller(&format!("seller-{s}")), fen(*amount)))
                            .collect();
                        match Capture::split(&lines, *bp) {
                            Ok(capture) => {
                                let split = capture.payouts_total().map(|p| p.get() + capture.commission.get());
                                prop_assert_eq!(split, Ok(capture.amount.get()));
                                ledger.capture_with(capture).map(|()| captures += 1)
                            }
                            Err(error) => Err(error),
                        }
                    }
                    Op::Refund(amount) => ledger.refund(amount.map(fen)).map(|_| ()),
                };
                if result.is_err() {
                    prop_assert_eq!(&ledger, &before, "a refused {:?} changed the ledger", op);
                }
                prop_assert!(ledger.check().is_ok(), "after {:?}: {:?}", op, ledger.check());
                prop_assert!(ledger.authorized() >= ledger.captured());
                prop_assert!(ledger.captured() >= ledger.refunded());
                prop_assert!(authorizations <= 1 && captures <= 1);
            }
        }
    }
}
