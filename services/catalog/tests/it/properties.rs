//! Property test of the stock arithmetic: random sequences of receiving,
//! reserving, releasing, rolling back and committing, by three buyers under a
//! per-buyer limit, run by the real Redis scripts, always agree with a simple
//! model and never break 0 ≤ reserved ≤ on hand.

use std::time::Duration;

use std::collections::BTreeMap;

use harvest_catalog::store::{BuyerLimit, CatalogStore, Reservation, ReserveResult, Settlement};
use harvest_domain::Date;
use harvest_testkit::{Redis, unique_name};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Receive {
        lot: u8,
        quantity: i64,
        days_left: i32,
    },
    Reserve {
        order: u8,
        quantity: i64,
    },
    Settle {
        order: u8,
        settlement: Settlement,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..4, 1i64..20, 0i32..8).prop_map(|(lot, quantity, days_left)| Op::Receive {
            lot,
            quantity,
            days_left
        }),
        (0u8..8, 1i64..15).prop_map(|(order, quantity)| Op::Reserve { order, quantity }),
        (
            0u8..8,
            prop_oneof![
                Just(Settlement::Release),
                Just(Settlement::Rollback),
                Just(Settlement::Commit)
            ]
        )
            .prop_map(|(order, settlement)| Op::Settle { order, settlement }),
    ]
}

#[derive(Clone, Debug, Default)]
struct ModelLot {
    on_hand: i64,
    reserved: i64,
    best_before: i32,
}

/// What the scripts are meant to do, written plainly.
#[derive(Default)]
struct Model {
    lots: BTreeMap<String, ModelLot>,
    /// order -> (state, allocations)
    orders: BTreeMap<String, (char, Vec<(String, i64)>)>,
}

const LEAD_DAYS: i32 = 2;
/// The per-buyer limit; a buyer's orders reserve up to 14 units each.
const LIMIT: i64 = 20;

/// The buyer of an order: three buyers share the orders.
fn buyer_of(order: u8) -> String {
    format!("buyer{}", order % 3)
}

/// What the model expects of a reservation.
#[derive(Debug)]
enum Expected {
    Reserved(Vec<(String, i64)>),
    Short,
    OverLimit { holds: i64 },
}

impl Model {
    /// Units the buyer's reserved and committed orders hold.
    fn holds(&self, buyer: &str) -> i64 {
        self.orders
            .iter()
            .filter(|(order, (state, _))| {
                matches!(state, 'R' | 'C')
                    && order
                        .trim_start_matches("ord")
                        .parse::<u8>()
                        .is_ok_and(|number| buyer_of(number) == buyer)
            })
            .flat_map(|(_, (_, allocations))| allocations.iter().map(|(_, quantity)| quantity))
            .sum()
    }

    fn reserve(
        &mut self,
        order: &str,
        buyer: &str,
        quantity: i64,
        earliest: i32,
    ) -> Option<Expected> {
        if self.orders.contains_key(order) {
            return None;
        }
        let holds = self.holds(buyer);
        if holds + quantity > LIMIT {
            self.orders.insert(order.to_owned(), ('L', Vec::new()));
            return Some(Expected::OverLimit { holds });
        }
        let mut usable: Vec<(&String, &ModelLot)> = self
            .lots
            .iter()
            .filter(|(_, lot)| lot.best_before >= earliest)
            .collect();
        usable.sort_by_key(|(id, lot)| (lot.best_before, (*id).clone()));
        let available: i64 = usable
            .iter()
            .map(|(_, lot)| lot.on_hand - lot.reserved)
            .sum();
        if available < quantity {
            self.orders.insert(order.to_owned(), ('N', Vec::new()));
            return Some(Expected::Short);
        }
        let mut remaining = quantity;
        let mut plan = Vec::new();
        for (id, lot) in usable {
            let take = (lot.on_hand - lot.reserved).min(remaining);
            if take > 0 {
                plan.push((id.clone(), take));
                remaining -= take;
            }
            if remaining == 0 {
                break;
            }
        }
        for (id, take) in &plan {
            if let Some(lot) = self.lots.get_mut(id) {
                lot.reserved += take;
            }
        }
        self.orders.insert(order.to_owned(), ('R', plan.clone()));
        Some(Expected::Reserved(plan))
    }

    fn settle(&mut self, order: &str, settlement: Settlement) {
        match self.orders.get_mut(order) {
            None if settlement == Settlement::Release => {
                self.orders.insert(order.to_owned(), ('T', Vec::new()));
            }
            Some((state, allocations)) if *state == 'R' => {
                for (id, quantity) in allocations.iter() {
                    if let Some(lot) = self.lots.get_mut(id) {
                        lot.reserved -= quantity;
                        if settlement == Settlement::Commit {
                            lot.on_hand -= quantity;
                        }
                    }
                }
                *state = match settlement {
                    Settlement::Release => 'X',
                    Settlement::Rollback => 'B',
                    Settlement::Commit => 'C',
                };
            }
            _ => {}
        }
    }
}

async fn run(store: &CatalogStore, product: &str, ops: &[Op]) -> Result<(), TestCaseError> {
    let today = Date::today();
    let earliest = today.plus_days(LEAD_DAYS);
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Receive {
                lot,
                quantity,
                days_left,
            } => {
                let lot_id = format!("lot{lot}");
                let best_before = today.plus_days(*days_left);
                store
                    .receive_lot(product, &lot_id, *quantity, best_before, today)
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                model.lots.entry(lot_id).or_insert(ModelLot {
                    on_hand: *quantity,
                    reserved: 0,
                    best_before: best_before.days(),
                });
            }
            Op::Reserve { order, quantity } => {
                let order_id = format!("ord{order}");
                let buyer = buyer_of(*order);
                let result = store
                    .reserve(product, &order_id, &buyer, *quantity, earliest)
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let expected = model.reserve(&order_id, &buyer, *quantity, earliest.days());
                match (result, expected) {
                    (ReserveResult::Recorded { fresh: false, .. }, None) => {}
                    (
                        ReserveResult::Recorded {
                            reservation: Reservation::Reserved(a),
                            fresh: true,
                        },
                        Some(Expected::Reserved(plan)),
                    ) => {
                        prop_assert_eq!(a.lots, plan);
                    }
                    (
                        ReserveResult::Recorded {
                            reservation: Reservation::Short { requested, .. },
                            fresh: true,
                        },
                        Some(Expected::Short),
                    ) => {
                        prop_assert_eq!(requested, *quantity);
                    }
                    (
                        ReserveResult::Recorded {
                            reservation:
                                Reservation::OverLimit {
                                    requested,
                                    limit,
                                    holds,
                                },
                            fresh: true,
                        },
                        Some(Expected::OverLimit { holds: modelled }),
                    ) => {
                        prop_assert_eq!((requested, limit, holds), (*quantity, LIMIT, modelled));
                    }
                    (got, want) => prop_assert!(false, "store {got:?}, model {want:?}"),
                }
            }
            Op::Settle { order, settlement } => {
                let order_id = format!("ord{order}");
                store
                    .settle(product, &order_id, *settlement)
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                model.settle(&order_id, *settlement);
            }
        }
        let snapshot = store
            .snapshot(product)
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        if let Err(problem) = snapshot.audit() {
            prop_assert!(false, "after {op:?}: {problem}");
        }
        for lot in &snapshot.lots {
            let modelled = &model.lots[&lot.lot_id];
            prop_assert_eq!(
                (lot.on_hand, lot.reserved),
                (modelled.on_hand, modelled.reserved)
            );
        }
    }
    Ok(())
}

#[test]
fn stock_arithmetic_matches_the_model() {
    let redis = Redis::start().expect("redis starts");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let config = redis.config(&format!("{}:", unique_name()));
    let connection = runtime
        .block_on(harvest_kit::store::connect(&config))
        .expect("connects");
    let store =
        CatalogStore::new(connection.clone(), &config.key_prefix).with_buyer_limit(BuyerLimit {
            default_units: LIMIT,
            window: Duration::from_secs(24 * 3600),
        });
    // The scripts refuse to touch a product that does not exist.
    let product = |case: &str| format!("prd_{case}");

    proptest!(ProptestConfig::with_cases(64), |(ops in proptest::collection::vec(op(), 1..40))| {
        let product = product(&unique_name());
        runtime.block_on(async {
            let mut redis = connection.clone();
            let key = format!("{}catalog:{{{product}}}:product", config.key_prefix);
            let _: () = redis::cmd("HSET").arg(&key).arg("price_fen").arg(100)
                .query_async(&mut redis).await.expect("product stub");
            run(&store, &product, &ops).await
        })?;
    });
}
