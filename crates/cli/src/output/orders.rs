//! Orders, their lines and their history.

use harvest_proto::common::v1::{CancelReason, OrderState};
use harvest_proto::orders::v1::{FailedShipment, Order, OrderUpdate, PricedLine, Transition};
use serde_json::{Value, json};

use super::{
    Align, Block, Table, address, json_address, json_time, money, money_if_known, present, section,
    time,
};
use crate::enums::short_name;

/// A state for people; the zero "from" of an order's first transition is
/// shown as `-`.
fn state(number: i32) -> String {
    if number == 0 {
        "-".to_owned()
    } else {
        short_name::<OrderState>(number)
    }
}

fn line_json(line: &PricedLine) -> Value {
    json!({
        "product_id": line.product_id,
        "quantity": line.quantity,
        "unit_price_fen": line.unit_price_fen,
        "line_total_fen": line.line_total_fen,
        "seller_id": line.seller_id,
    })
}

fn failed_shipment_json(failed: &FailedShipment) -> Value {
    json!({
        "shipment_id": failed.shipment_id,
        "pickup_point_id": failed.pickup_point_id,
        "pickup_point_name": failed.pickup_point_name,
        "reason": short_name::<CancelReason>(failed.reason),
        "detail": failed.detail,
        "lines": failed.lines.iter().map(line_json).collect::<Vec<_>>(),
        "lines_fen": failed.lines_fen,
        "failed_at": json_time(failed.failed_at.as_ref()),
    })
}

pub fn transition_json(transition: &Transition) -> Value {
    json!({
        "from": (transition.from != 0).then(|| short_name::<OrderState>(transition.from)),
        "to": short_name::<OrderState>(transition.to),
        "at": json_time(transition.at.as_ref()),
        "cause": transition.cause,
        "event_id": transition.event_id,
        "detail": transition.detail,
    })
}

pub fn order_json(order: &Order) -> Value {
    json!({
        "order_id": order.order_id,
        "buyer_id": order.buyer_id,
        "delivery_code": order.delivery_code,
        "region": order.region,
        "state": short_name::<OrderState>(order.state),
        "lines": order.lines.iter().map(line_json).collect::<Vec<_>>(),
        "total_fen": order.total_fen,
        "ship_to": json_address(order.ship_to.as_ref()),
        "created_at": json_time(order.created_at.as_ref()),
        "updated_at": json_time(order.updated_at.as_ref()),
        "cancel_reason": (order.cancel_reason != 0)
            .then(|| short_name::<CancelReason>(order.cancel_reason)),
        "cancel_detail": order.cancel_detail,
        "history": order.history.iter().map(transition_json).collect::<Vec<_>>(),
        "failed_shipments": order.failed_shipments.iter().map(failed_shipment_json).collect::<Vec<_>>(),
        "charged_fen": (order.state() == OrderState::Delivered).then_some(order.charged_fen),
    })
}

fn cancellation(order: &Order) -> Option<String> {
    if order.cancel_reason == 0 {
        return None;
    }
    let reason = short_name::<CancelReason>(order.cancel_reason);
    Some(match order.cancel_detail.as_str() {
        "" => reason,
        detail => format!("{reason}: {detail}"),
    })
}

/// The order's total, or why there is none yet.
fn total(order: &Order) -> String {
    if order.total_fen == 0 {
        "- (priced once stock is reserved)".to_owned()
    } else {
        money(order.total_fen)
    }
}

pub fn order_human(order: &Order) -> String {
    let summary = Block::new()
        .field("Order", order.order_id.as_str())
        .field("State", short_name::<OrderState>(order.state))
        .maybe("Cancelled", cancellation(order))
        .field("Buyer", order.buyer_id.as_str())
        .maybe("Delivery code", present(&order.delivery_code))
        .field("Region", order.region.as_str())
        .field("Total", total(order))
        .maybe(
            "Charged",
            (order.state() == OrderState::Delivered).then(|| money(order.charged_fen)),
        )
        .maybe("Ship to", address(order.ship_to.as_ref()))
        .field("Created", time(order.created_at.as_ref()))
        .field("Updated", time(order.updated_at.as_ref()))
        .render();

    let mut lines = Table::new(&[
        ("PRODUCT", Align::Left),
        ("QTY", Align::Right),
        ("UNIT PRICE", Align::Right),
        ("LINE TOTAL", Align::Right),
        ("SELLER", Align::Left),
    ]);
    for line in &order.lines {
        lines.row(vec![
            line.product_id.clone(),
            line.quantity.to_string(),
            money_if_known(line.unit_price_fen),
            money_if_known(line.line_total_fen),
            if line.seller_id.is_empty() {
                "-".to_owned()
            } else {
                line.seller_id.clone()
            },
        ]);
    }

    let mut history = Table::new(&[
        ("AT", Align::Left),
        ("FROM", Align::Left),
        ("TO", Align::Left),
        ("CAUSE", Align::Left),
        ("DETAIL", Align::Left),
    ]);
    for transition in &order.history {
        history.row(vec![
            time(transition.at.as_ref()),
            state(transition.from),
            state(transition.to),
            transition.cause.clone(),
            transition.detail.clone(),
        ]);
    }

    let mut failed = Table::new(&[
        ("SHIPMENT", Align::Left),
        ("PICKUP POINT", Align::Left),
        ("REASON", Align::Left),
        ("NOT CHARGED", Align::Right),
    ]);
    for shipment in &order.failed_shipments {
        failed.row(vec![
            shipment.shipment_id.clone(),
            if shipment.pickup_point_name.is_empty() {
                shipment.pickup_point_id.clone()
            } else {
                format!(
                    "{} ({})",
                    shipment.pickup_point_name, shipment.pickup_point_id
                )
            },
            short_name::<CancelReason>(shipment.reason),
            money(shipment.lines_fen),
        ]);
    }

    let mut text = summary + &section("LINES", &lines.render());
    if !failed.is_empty() {
        text += &section("FAILED SHIPMENTS", &failed.render());
    }
    if !history.is_empty() {
        text += &section("HISTORY", &history.render());
    }
    text
}

/// What `order place` prints: the order and the key to retry it with.
pub fn placed_human((order, key): &(Order, String)) -> String {
    Block::new()
        .field("Order", order.order_id.as_str())
        .field("State", short_name::<OrderState>(order.state))
        .field("Key", key.as_str())
        .render()
        + &format!(
            "\nretry safely with --key {key}; follow the order with `harvest order watch {}`\n",
            order.order_id
        )
}

pub fn placed_json((order, key): &(Order, String)) -> Value {
    json!({ "idempotency_key": key, "order": order_json(order) })
}

pub fn orders_json(orders: &[Order]) -> Value {
    json!({ "orders": orders.iter().map(order_json).collect::<Vec<_>>() })
}

pub fn orders_human(orders: &[Order]) -> String {
    if orders.is_empty() {
        return "no orders\n".to_owned();
    }
    let mut table = Table::new(&[
        ("ORDER", Align::Left),
        ("STATE", Align::Left),
        ("LINES", Align::Right),
        ("TOTAL", Align::Right),
        ("REGION", Align::Left),
        ("CREATED", Align::Left),
    ]);
    for order in orders {
        table.row(vec![
            order.order_id.clone(),
            short_name::<OrderState>(order.state),
            order.lines.len().to_string(),
            money_if_known(order.total_fen),
            order.region.clone(),
            time(order.created_at.as_ref()),
        ]);
    }
    table.render()
}

/// One line of `order watch`: the state at subscription, then one per
/// transition.
pub fn update_human(update: &OrderUpdate) -> String {
    let Some(order) = update.order.as_ref() else {
        return String::new();
    };
    let cancellation = cancellation(order);
    let mut text = match &update.transition {
        None => format!(
            "{}  {} is {}",
            time(order.updated_at.as_ref()),
            order.order_id,
            short_name::<OrderState>(order.state)
        ),
        Some(transition) => {
            let mut text = format!(
                "{}  {} -> {}  {}",
                time(transition.at.as_ref()),
                state(transition.from),
                state(transition.to),
                transition.cause
            );
            if !transition.detail.is_empty() {
                text.push_str(&format!(" ({})", transition.detail));
            }
            text
        }
    };
    if let Some(cancelled) = cancellation {
        // A transition line already shows the detail; the reason is news.
        let shown = match &update.transition {
            Some(transition) if transition.detail == order.cancel_detail => {
                short_name::<CancelReason>(order.cancel_reason)
            }
            _ => cancelled,
        };
        text.push_str(&format!("\n  cancelled: {shown}"));
    }
    text
}

pub fn update_json(update: &OrderUpdate) -> Value {
    json!({
        "order": update.order.as_ref().map(order_json),
        "transition": update.transition.as_ref().map(transition_json),
    })
}

#[cfg(test)]
mod tests {
    use harvest_proto::Timestamp;
    use harvest_proto::common::v1::Address;

    use super::*;

    fn at(seconds: i64) -> Option<Timestamp> {
        Some(Timestamp {
            seconds: 1_748_764_800 + seconds,
            nanos: 0,
        })
    }

    fn transition(from: OrderState, to: OrderState, seconds: i64, cause: &str) -> Transition {
        Transition {
            from: from.into(),
            to: to.into(),
            at: at(seconds),
            cause: cause.to_owned(),
            event_id: format!("evt_{seconds}"),
            detail: String::new(),
        }
    }

    fn cancelled_order() -> Order {
        let mut cancel = transition(
            OrderState::Reserved,
            OrderState::Cancelled,
            95,
            "harvest.orders.v1.OrdersService/CancelOrder",
        );
        cancel.detail = "changed my mind".to_owned();
        Order {
            order_id: "ord_1".to_owned(),
            buyer_id: "buyer-1".to_owned(),
            region: "east".to_owned(),
            state: OrderState::Cancelled.into(),
            lines: vec![
                PricedLine {
                    product_id: "prd_apples".to_owned(),
                    quantity: 3,
                    unit_price_fen: 6_800,
                    line_total_fen: 20_400,
                    seller_id: "coop-luochuan".to_owned(),
                },
                PricedLine {
                    product_id: "prd_honey".to_owned(),
                    quantity: 1,
                    unit_price_fen: 8_800,
                    line_total_fen: 8_800,
                    seller_id: "coop-qinling".to_owned(),
                },
            ],
            total_fen: 29_200,
            ship_to: Some(Address {
                recipient: "Zhang Wei".to_owned(),
                phone: "+86 138 0000 0000".to_owned(),
                province: "Zhejiang".to_owned(),
                county: "Xihu".to_owned(),
                street: "1 Wensan Road".to_owned(),
                location: None,
            }),
            created_at: at(0),
            updated_at: at(95),
            cancel_reason: CancelReason::BuyerCancelled.into(),
            cancel_detail: "changed my mind".to_owned(),
            history: vec![
                transition(
                    OrderState::Unspecified,
                    OrderState::Placed,
                    0,
                    "harvest.orders.v1.OrdersService/PlaceOrder",
                ),
                transition(
                    OrderState::Placed,
                    OrderState::Reserved,
                    2,
                    "stock reserved",
                ),
                cancel,
            ],
            failed_shipments: Vec::new(),
            charged_fen: 0,
            delivery_code: String::new(),
        }
    }

    #[test]
    fn a_partly_delivered_order_shows_what_was_charged_and_what_failed() {
        let mut order = cancelled_order();
        order.state = OrderState::Delivered.into();
        order.cancel_reason = 0;
        order.charged_fen = 20_400;
        order.failed_shipments = vec![FailedShipment {
            shipment_id: "shp_2".to_owned(),
            pickup_point_id: "pp_qinling".to_owned(),
            pickup_point_name: "Qinling hives".to_owned(),
            reason: CancelReason::NoCourier.into(),
            detail: "no courier could take it".to_owned(),
            lines: vec![order.lines[1].clone()],
            lines_fen: 8_800,
            failed_at: at(90),
        }];
        let text = order_human(&order);
        assert!(
            text.contains("Total    ¥292.00\nCharged  ¥204.00\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "FAILED SHIPMENTS\nSHIPMENT  PICKUP POINT                REASON      NOT CHARGED\n\
                 shp_2     Qinling hives (pp_qinling)  NO_COURIER       ¥88.00\n"
            ),
            "{text}"
        );
        let json = order_json(&order);
        assert_eq!(json["charged_fen"], 20_400);
        assert_eq!(json["failed_shipments"][0]["reason"], "NO_COURIER");
        assert_eq!(
            json["failed_shipments"][0]["pickup_point_name"],
            "Qinling hives"
        );
        assert_eq!(json["failed_shipments"][0]["lines_fen"], 8_800);
        assert_eq!(order_json(&cancelled_order())["charged_fen"], Value::Null);
    }

    #[test]
    fn order_shows_summary_lines_and_history() {
        assert_eq!(
            order_human(&cancelled_order()),
            "\
Order      ord_1
State      CANCELLED
Cancelled  BUYER_CANCELLED: changed my mind
Buyer      buyer-1
Region     east
Total      ¥292.00
Ship to    Zhang Wei, +86 138 0000 0000
           1 Wensan Road, Xihu, Zhejiang
Created    2025-06-01T08:00:00Z
Updated    2025-06-01T08:01:35Z

LINES
PRODUCT     QTY  UNIT PRICE  LINE TOTAL  SELLER
prd_apples    3      ¥68.00     ¥204.00  coop-luochuan
prd_honey     1      ¥88.00      ¥88.00  coop-qinling

HISTORY
AT                    FROM      TO         CAUSE                                        DETAIL
2025-06-01T08:00:00Z  -         PLACED     harvest.orders.v1.OrdersService/PlaceOrder
2025-06-01T08:00:02Z  PLACED    RESERVED   stock reserved
2025-06-01T08:01:35Z  RESERVED  CANCELLED  harvest.orders.v1.OrdersService/CancelOrder  changed my mind
"
        );
    }

    #[test]
    fn unpriced_lines_show_dashes() {
        let mut order = cancelled_order();
        order.state = OrderState::Placed.into();
        order.total_fen = 0;
        order.cancel_reason = 0;
        for line in &mut order.lines {
            line.unit_price_fen = 0;
            line.line_total_fen = 0;
            line.seller_id.clear();
        }
        let text = order_human(&order);
        assert!(
            text.contains("Total    - (priced once stock is reserved)\n"),
            "{text}"
        );
        assert!(
            text.contains("prd_apples    3           -           -  -\n"),
            "{text}"
        );
        assert!(!text.contains("Cancelled"), "{text}");
    }

    #[test]
    fn order_json_uses_short_names_fen_and_rfc3339() {
        let json = order_json(&cancelled_order());
        assert_eq!(json["state"], "CANCELLED");
        assert_eq!(json["cancel_reason"], "BUYER_CANCELLED");
        assert_eq!(json["total_fen"], 29_200);
        assert_eq!(json["lines"][0]["line_total_fen"], 20_400);
        assert_eq!(json["ship_to"]["county"], "Xihu");
        assert_eq!(json["history"][0]["from"], Value::Null);
        assert_eq!(json["history"][0]["to"], "PLACED");
        assert_eq!(json["history"][2]["at"], "2025-06-01T08:01:35Z");
        let mut placed = cancelled_order();
        placed.cancel_reason = 0;
        assert_eq!(order_json(&placed)["cancel_reason"], Value::Null);
    }

    #[test]
    fn watch_lines_show_the_start_then_each_transition() {
        let order = cancelled_order();
        let first = OrderUpdate {
            order: Some(Order {
                state: OrderState::Reserved.into(),
                cancel_reason: 0,
                ..order.clone()
            }),
            transition: None,
        };
        assert_eq!(
            update_human(&first),
            "2025-06-01T08:01:35Z  ord_1 is RESERVED"
        );
        let last = OrderUpdate {
            transition: order.history.last().cloned(),
            order: Some(order),
        };
        assert_eq!(
            update_human(&last),
            "2025-06-01T08:01:35Z  RESERVED -> CANCELLED  harvest.orders.v1.OrdersService/CancelOrder (changed my mind)\n  cancelled: BUYER_CANCELLED"
        );
        let already = OrderUpdate {
            order: Some(cancelled_order()),
            transition: None,
        };
        assert_eq!(
            update_human(&already),
            "2025-06-01T08:01:35Z  ord_1 is CANCELLED\n  cancelled: BUYER_CANCELLED: changed my mind"
        );
        let json = update_json(&last);
        assert_eq!(json["transition"]["to"], "CANCELLED");
        assert_eq!(json["order"]["state"], "CANCELLED");
        assert_eq!(update_json(&first)["transition"], Value::Null);
    }

    #[test]
    fn placing_prints_the_key_to_retry_with() {
        let placed = (cancelled_order(), "key_42".to_owned());
        let text = placed_human(&placed);
        assert!(text.starts_with("Order  ord_1\n"), "{text}");
        assert!(text.contains("Key    key_42\n"), "{text}");
        assert!(text.contains("--key key_42"), "{text}");
        assert_eq!(placed_json(&placed)["idempotency_key"], "key_42");
        assert_eq!(placed_json(&placed)["order"]["order_id"], "ord_1");
    }
}
