//! The order's state machine: a plain function from (state, event) to the
//! next state, or a refusal. Nothing else decides an order's fate.
//!
//! ```text
//! PLACED ─(stock reserved)─▶ RESERVED ─(payment authorized)─▶ CONFIRMED
//!   ─(courier assigned)─▶ DISPATCHING ─(picked up)─▶ IN_TRANSIT ─(all delivered)─▶ DELIVERED
//! any state before pickup ─(out of stock | payment declined | buyer cancel
//!   | deadline)─▶ CANCELLED
//! ```
//!
//! An order has one shipment per pickup point, and each ends on its own. A
//! shipment that fails while another is delivered or still under way leaves
//! the order where it is ([`Outcome::ShipmentDropped`]); its lines are no
//! longer part of what the order delivers. The last shipment to end decides
//! the order's end: DELIVERED when any shipment was delivered, else
//! CANCELLED (no courier, or delivery failed).

use std::fmt;

use harvest_proto::common::v1::{CancelReason, OrderState as ProtoState};

/// Where an order stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    Placed,
    Reserved,
    Confirmed,
    Dispatching,
    InTransit,
    Delivered,
    Cancelled,
}

impl State {
    pub const ALL: [State; 7] = [
        State::Placed,
        State::Reserved,
        State::Confirmed,
        State::Dispatching,
        State::InTransit,
        State::Delivered,
        State::Cancelled,
    ];

    /// Position along the saga's path; terminal states come last.
    pub fn rank(self) -> u8 {
        match self {
            State::Placed => 0,
            State::Reserved => 1,
            State::Confirmed => 2,
            State::Dispatching => 3,
            State::InTransit => 4,
            State::Delivered | State::Cancelled => 5,
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, State::Delivered | State::Cancelled)
    }

    /// Whether the goods are still at their collection points.
    pub fn before_pickup(self) -> bool {
        matches!(
            self,
            State::Placed | State::Reserved | State::Confirmed | State::Dispatching
        )
    }

    pub fn to_proto(self) -> ProtoState {
        match self {
            State::Placed => ProtoState::Placed,
            State::Reserved => ProtoState::Reserved,
            State::Confirmed => ProtoState::Confirmed,
            State::Dispatching => ProtoState::Dispatching,
            State::InTransit => ProtoState::InTransit,
            State::Delivered => ProtoState::Delivered,
            State::Cancelled => ProtoState::Cancelled,
        }
    }

    pub fn from_proto(state: ProtoState) -> Option<State> {
        Some(match state {
            ProtoState::Unspecified => return None,
            ProtoState::Placed => State::Placed,
            ProtoState::Reserved => State::Reserved,
            ProtoState::Confirmed => State::Confirmed,
            ProtoState::Dispatching => State::Dispatching,
            ProtoState::InTransit => State::InTransit,
            ProtoState::Delivered => State::Delivered,
            ProtoState::Cancelled => State::Cancelled,
        })
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            self.to_proto()
                .as_str_name()
                .trim_start_matches("ORDER_STATE_"),
        )
    }
}

/// What can happen to an order, as the decider needs to know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    StockReserved,
    StockRejected(Rejection),
    PaymentAuthorized,
    PaymentDeclined,
    CourierAssigned,
    PickedUp,
    /// A shipment arrived; `last` when no other shipment is under way.
    ShipmentDelivered {
        last: bool,
    },
    ShipmentFailed {
        no_courier: bool,
        rest: Rest,
    },
    BuyerCancelled,
    PaymentDeadlinePassed,
    PickupWindowMissed,
    /// The catalog did not answer in time.
    PlacementDeadlinePassed,
}

impl Event {
    pub const ALL: [Event; 21] = [
        Event::StockReserved,
        Event::StockRejected(Rejection::OutOfStock),
        Event::StockRejected(Rejection::UnknownProduct),
        Event::StockRejected(Rejection::TotalTooLarge),
        Event::StockRejected(Rejection::PerBuyerLimit),
        Event::PaymentAuthorized,
        Event::PaymentDeclined,
        Event::CourierAssigned,
        Event::PickedUp,
        Event::ShipmentDelivered { last: false },
        Event::ShipmentDelivered { last: true },
        Event::ShipmentFailed {
            no_courier: false,
            rest: Rest::UnderWay,
        },
        Event::ShipmentFailed {
            no_courier: true,
            rest: Rest::UnderWay,
        },
        Event::ShipmentFailed {
            no_courier: false,
            rest: Rest::Delivered,
        },
        Event::ShipmentFailed {
            no_courier: true,
            rest: Rest::Delivered,
        },
        Event::ShipmentFailed {
            no_courier: false,
            rest: Rest::NoneDelivered,
        },
        Event::ShipmentFailed {
            no_courier: true,
            rest: Rest::NoneDelivered,
        },
        Event::BuyerCancelled,
        Event::PaymentDeadlinePassed,
        Event::PickupWindowMissed,
        Event::PlacementDeadlinePassed,
    ];
}

/// Where an order's other shipments stand when one of them fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rest {
    /// Another shipment is still under way.
    UnderWay,
    /// Every other shipment ended, and at least one was delivered.
    Delivered,
    /// Every other shipment failed, or there is no other.
    NoneDelivered,
}

/// Why the catalog could not serve an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rejection {
    OutOfStock,
    UnknownProduct,
    TotalTooLarge,
    /// A line would take the buyer above the product's per-buyer limit.
    PerBuyerLimit,
}

/// The decider's answer to an event it accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The order moves to another state.
    Moved(State),
    /// The order moves to CANCELLED for this reason.
    Cancelled(CancelReason),
    /// Accepted without a change of state: progress of one shipment among
    /// several.
    Progressed,
    /// One shipment failed while another is still under way: the order
    /// stays where it is without that shipment's lines.
    ShipmentDropped,
}

/// An event that cannot apply to an order in its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{event:?} cannot happen to an order that is {state}")]
pub struct Refused {
    pub state: State,
    pub event: Event,
}

impl Refused {
    /// Whether the event may still apply later: the order has not yet
    /// reached the first state that accepts it. Events of different streams
    /// can arrive out of causal order (a payment authorization before the
    /// reservation it answers, when the catalog stream lags); such an event is
    /// early, not impossible.
    pub fn is_early(&self) -> bool {
        !self.state.is_terminal()
            && earliest_state(self.event)
                .is_some_and(|earliest| self.state.rank() < earliest.rank())
    }
}

/// The first state in which `event` can be accepted.
fn earliest_state(event: Event) -> Option<State> {
    match event {
        Event::PaymentAuthorized | Event::PaymentDeclined => Some(State::Reserved),
        Event::CourierAssigned | Event::ShipmentFailed { .. } => Some(State::Confirmed),
        Event::PickedUp => Some(State::Dispatching),
        Event::ShipmentDelivered { .. } => Some(State::InTransit),
        // Caused by the order's own placement or by its own clock and
        // buyer: never ahead of the order.
        Event::StockReserved
        | Event::StockRejected(_)
        | Event::BuyerCancelled
        | Event::PaymentDeadlinePassed
        | Event::PickupWindowMissed
        | Event::PlacementDeadlinePassed => None,
    }
}

/// The transition for `event` in `state`.
pub fn decide(state: State, event: Event) -> Result<Outcome, Refused> {
    use Event as E;
    use State as S;
    let refused = Err(Refused { state, event });
    match (state, event) {
        (S::Delivered | S::Cancelled, _) => refused,

        (S::Placed, E::StockReserved) => Ok(Outcome::Moved(S::Reserved)),
        (S::Placed, E::StockRejected(rejection)) => Ok(Outcome::Cancelled(match rejection {
            Rejection::OutOfStock => CancelReason::OutOfStock,
            Rejection::UnknownProduct => CancelReason::UnknownProduct,
            Rejection::TotalTooLarge => CancelReason::TotalTooLarge,
            Rejection::PerBuyerLimit => CancelReason::PerBuyerLimit,
        })),

        (S::Placed, E::PlacementDeadlinePassed) => {
            Ok(Outcome::Cancelled(CancelReason::PlacementDeadline))
        }

        (S::Reserved, E::PaymentAuthorized) => Ok(Outcome::Moved(S::Confirmed)),
        (S::Reserved, E::PaymentDeclined) => Ok(Outcome::Cancelled(CancelReason::PaymentDeclined)),
        (S::Reserved, E::PaymentDeadlinePassed) => {
            Ok(Outcome::Cancelled(CancelReason::PaymentDeadline))
        }

        (S::Confirmed, E::CourierAssigned) => Ok(Outcome::Moved(S::Dispatching)),
        (S::Dispatching | S::InTransit, E::CourierAssigned) => Ok(Outcome::Progressed),
        (S::Dispatching, E::PickedUp) => Ok(Outcome::Moved(S::InTransit)),
        (S::InTransit, E::PickedUp) => Ok(Outcome::Progressed),
        (S::InTransit, E::ShipmentDelivered { last: true }) => Ok(Outcome::Moved(S::Delivered)),
        (S::InTransit, E::ShipmentDelivered { last: false }) => Ok(Outcome::Progressed),

        (
            S::Confirmed | S::Dispatching | S::InTransit,
            E::ShipmentFailed {
                rest: Rest::UnderWay,
                ..
            },
        ) => Ok(Outcome::ShipmentDropped),
        // Something was delivered, which only happens once the order is in
        // transit: it ends with what arrived.
        (
            S::InTransit,
            E::ShipmentFailed {
                rest: Rest::Delivered,
                ..
            },
        ) => Ok(Outcome::Moved(S::Delivered)),
        (
            S::Confirmed | S::Dispatching | S::InTransit,
            E::ShipmentFailed {
                rest: Rest::NoneDelivered,
                no_courier,
            },
        ) => Ok(Outcome::Cancelled(if no_courier {
            CancelReason::NoCourier
        } else {
            CancelReason::DeliveryFailed
        })),
        (S::Confirmed | S::Dispatching, E::PickupWindowMissed) => {
            Ok(Outcome::Cancelled(CancelReason::PickupWindowMissed))
        }

        (S::Placed | S::Reserved | S::Confirmed | S::Dispatching, E::BuyerCancelled) => {
            Ok(Outcome::Cancelled(CancelReason::BuyerCancelled))
        }

        _ => refused,
    }
}

/// The state after an accepted outcome.
pub fn next_state(current: State, outcome: Outcome) -> State {
    match outcome {
        Outcome::Moved(next) => next,
        Outcome::Cancelled(_) => State::Cancelled,
        Outcome::Progressed | Outcome::ShipmentDropped => current,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;

    fn all_events() -> Vec<Event> {
        Event::ALL.to_vec()
    }

    /// The whole table, written out: every (state, event) pair and what it
    /// must give. A pair missing here is refused.
    fn expected(state: State, event: Event) -> Option<State> {
        use Event as E;
        use State as S;
        Some(match (state, event) {
            (S::Placed, E::StockReserved) => S::Reserved,
            (S::Placed, E::StockRejected(_)) => S::Cancelled,
            (S::Placed, E::BuyerCancelled) => S::Cancelled,
            (S::Placed, E::PlacementDeadlinePassed) => S::Cancelled,
            (S::Reserved, E::PaymentAuthorized) => S::Confirmed,
            (S::Reserved, E::PaymentDeclined) => S::Cancelled,
            (S::Reserved, E::PaymentDeadlinePassed) => S::Cancelled,
            (S::Reserved, E::BuyerCancelled) => S::Cancelled,
            (S::Confirmed, E::CourierAssigned) => S::Dispatching,
            (
                S::Confirmed,
                E::ShipmentFailed {
                    rest: Rest::UnderWay,
                    ..
                },
            ) => S::Confirmed,
            (
                S::Confirmed,
                E::ShipmentFailed {
                    rest: Rest::NoneDelivered,
                    ..
                },
            ) => S::Cancelled,
            (S::Confirmed, E::PickupWindowMissed) => S::Cancelled,
            (S::Confirmed, E::BuyerCancelled) => S::Cancelled,
            (S::Dispatching, E::CourierAssigned) => S::Dispatching,
            (S::Dispatching, E::PickedUp) => S::InTransit,
            (
                S::Dispatching,
                E::ShipmentFailed {
                    rest: Rest::UnderWay,
                    ..
                },
            ) => S::Dispatching,
            (
                S::Dispatching,
                E::ShipmentFailed {
                    rest: Rest::NoneDelivered,
                    ..
                },
            ) => S::Cancelled,
            (S::Dispatching, E::PickupWindowMissed) => S::Cancelled,
            (S::Dispatching, E::BuyerCancelled) => S::Cancelled,
            (S::InTransit, E::CourierAssigned) => S::InTransit,
            (S::InTransit, E::PickedUp) => S::InTransit,
            (S::InTransit, E::ShipmentDelivered { last: true }) => S::Delivered,
            (S::InTransit, E::ShipmentDelivered { last: false }) => S::InTransit,
            (S::InTransit, E::ShipmentFailed { rest, .. }) => match rest {
                Rest::UnderWay => S::InTransit,
                Rest::Delivered => S::Delivered,
                Rest::NoneDelivered => S::Cancelled,
            },
            _ => return None,
        })
    }

    #[test]
    fn every_pair_matches_the_table() {
        let events = all_events();
        let unique: HashSet<Event> = events.iter().copied().collect();
        assert_eq!(unique.len(), events.len(), "each event once");
        for state in State::ALL {
            for &event in &events {
                let decided = decide(state, event)
                    .map(|outcome| next_state(state, outcome))
                    .ok();
                assert_eq!(decided, expected(state, event), "{state} + {event:?}");
            }
        }
    }

    #[test]
    fn cancellations_carry_their_reason() {
        use CancelReason as R;
        let cases = [
            (
                State::Placed,
                Event::StockRejected(Rejection::OutOfStock),
                R::OutOfStock,
            ),
            (
                State::Placed,
                Event::StockRejected(Rejection::UnknownProduct),
                R::UnknownProduct,
            ),
            (
                State::Placed,
                Event::StockRejected(Rejection::TotalTooLarge),
                R::TotalTooLarge,
            ),
            (
                State::Placed,
                Event::StockRejected(Rejection::PerBuyerLimit),
                R::PerBuyerLimit,
            ),
            (
                State::Placed,
                Event::PlacementDeadlinePassed,
                R::PlacementDeadline,
            ),
            (State::Reserved, Event::PaymentDeclined, R::PaymentDeclined),
            (
                State::Reserved,
                Event::PaymentDeadlinePassed,
                R::PaymentDeadline,
            ),
            (State::Dispatching, Event::BuyerCancelled, R::BuyerCancelled),
            (
                State::Dispatching,
                Event::ShipmentFailed {
                    no_courier: true,
                    rest: Rest::NoneDelivered,
                },
                R::NoCourier,
            ),
            (
                State::InTransit,
                Event::ShipmentFailed {
                    no_courier: true,
                    rest: Rest::NoneDelivered,
                },
                R::NoCourier,
            ),
            (
                State::Confirmed,
                Event::PickupWindowMissed,
                R::PickupWindowMissed,
            ),
            (
                State::InTransit,
                Event::ShipmentFailed {
                    no_courier: false,
                    rest: Rest::NoneDelivered,
                },
                R::DeliveryFailed,
            ),
        ];
        for (state, event, reason) in cases {
            assert_eq!(
                decide(state, event),
                Ok(Outcome::Cancelled(reason)),
                "{state} + {event:?}"
            );
        }
    }

    #[test]
    fn the_last_shipment_to_end_decides_how_the_order_ends() {
        let failed = |rest| Event::ShipmentFailed {
            no_courier: false,
            rest,
        };
        for state in [State::Confirmed, State::Dispatching, State::InTransit] {
            assert_eq!(
                decide(state, failed(Rest::UnderWay)),
                Ok(Outcome::ShipmentDropped),
                "{state}: the others go on"
            );
        }
        assert_eq!(
            decide(State::InTransit, failed(Rest::Delivered)),
            Ok(Outcome::Moved(State::Delivered)),
            "delivered with what arrived"
        );
        assert!(
            decide(State::Dispatching, failed(Rest::Delivered)).is_err(),
            "nothing is delivered before the order is in transit"
        );
        assert_eq!(
            decide(State::InTransit, failed(Rest::NoneDelivered)),
            Ok(Outcome::Cancelled(CancelReason::DeliveryFailed))
        );
    }

    #[test]
    fn nothing_leaves_a_terminal_state_and_buyers_cannot_cancel_after_pickup() {
        for event in all_events() {
            assert!(decide(State::Delivered, event).is_err());
            assert!(decide(State::Cancelled, event).is_err());
        }
        assert!(decide(State::InTransit, Event::BuyerCancelled).is_err());
    }

    #[test]
    fn events_ahead_of_the_order_are_early_not_impossible() {
        let early = |state, event| decide(state, event).expect_err("refused").is_early();
        assert!(early(State::Placed, Event::PaymentAuthorized));
        assert!(early(State::Placed, Event::PaymentDeclined));
        assert!(early(State::Reserved, Event::CourierAssigned));
        assert!(early(State::Confirmed, Event::PickedUp));
        assert!(early(
            State::Dispatching,
            Event::ShipmentDelivered { last: true }
        ));
        assert!(
            !early(State::Confirmed, Event::PaymentAuthorized),
            "behind the order"
        );
        assert!(
            !early(State::Cancelled, Event::PaymentAuthorized),
            "terminal"
        );
        assert!(!early(State::InTransit, Event::BuyerCancelled));
        assert!(!early(State::Reserved, Event::StockReserved));
    }

    fn event() -> impl Strategy<Value = Event> {
        proptest::sample::select(all_events())
    }

    proptest! {
        /// Any sequence of events, applied where accepted, keeps the order on
        /// the saga's path: states only move forward, a terminal state is
        /// final, and DELIVERED is reached only through IN_TRANSIT.
        #[test]
        fn random_sequences_stay_on_the_saga_path(events in proptest::collection::vec(event(), 0..60)) {
            let rank = State::rank;
            let mut state = State::Placed;
            let mut passed_in_transit = false;
            for event in events {
                match decide(state, event) {
                    Ok(outcome) => {
                        let next = next_state(state, outcome);
                        prop_assert!(rank(next) >= rank(state), "{state} -> {next}");
                        prop_assert!(!state.is_terminal());
                        if next == State::Delivered {
                            prop_assert!(passed_in_transit);
                        }
                        if next == State::Cancelled && outcome == Outcome::Cancelled(CancelReason::BuyerCancelled) {
                            prop_assert!(state.before_pickup());
                        }
                        state = next;
                        passed_in_transit |= state == State::InTransit;
                    }
                    Err(refused) => prop_assert_eq!(refused.state, state),
                }
            }
        }
    }
}
