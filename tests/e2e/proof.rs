//! Proof of delivery: the buyer's one-time code, seen by the buyer alone,
//! proves a courier's delivery; an operator may confirm one without it,
//! with a reason; nothing is captured before.

use harvest_kit::auth::Role;
use harvest_kit::issuer::act_as;
use harvest_proto::common::v1::OrderState;
use harvest_proto::delivery::v1::{ConfirmDeliveryRequest, GetShipmentRequest, ShipmentState};
use harvest_proto::orders::v1::GetOrderRequest;
use harvest_proto::payments::v1::PaymentState;
use tonic::Code;

use crate::helpers::{ANJI, System};

const COURIER: &str = "courier-anji-proof";

#[tokio::test]
async fn only_the_buyers_code_or_an_operator_with_a_reason_confirms_a_delivery() {
    let system = System::start().await;
    system.courier(COURIER, &ANJI, 5).await;
    let tea = system.product("Anji white tea, 250 g", &ANJI, 10).await;

    // The buyer sees the code; an operator, and the order's other readers,
    // do not.
    let order = system.place(&[(&tea, 1)], "approve").await;
    let id = order.order_id.clone();
    assert_eq!(order.delivery_code.len(), 6, "{order:?}");
    let as_operator = system.order(&id).await;
    assert_eq!(as_operator.delivery_code, "", "an operator sees no code");
    assert_eq!(system.delivery_code(&id).await, order.delivery_code);

    let shipment = system
        .wait_shipment(&id, &tea, ShipmentState::Assigned)
        .await;
    system
        .pick_up(COURIER, &shipment.shipment_id)
        .await
        .expect("picked up");
    let mut delivery = system.clients.delivery.clone();
    let confirm = |code: &str, reason: &str| ConfirmDeliveryRequest {
        courier_id: COURIER.to_owned(),
        shipment_id: shipment.shipment_id.clone(),
        recipient_name: "Chen Jing".to_owned(),
        proof_reference: String::new(),
        delivery_code: code.to_owned(),
        override_reason: reason.to_owned(),
    };
    let wrong = if order.delivery_code == "000000" {
        "000001"
    } else {
        "000000"
    };
    let refused = delivery
        .confirm_delivery(act_as(Role::Courier, COURIER, confirm(wrong, "")))
        .await
        .expect_err("a wrong code");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    // An operator without a reason: refused; with one: delivered, for the
    // shipment's courier.
    let refused = delivery
        .confirm_delivery(act_as(Role::Operator, "ops-li", confirm("", "")))
        .await
        .expect_err("no reason");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("override_reason"), "{refused:?}");
    let still = delivery
        .get_shipment(GetShipmentRequest {
            shipment_id: shipment.shipment_id.clone(),
        })
        .await
        .expect("read")
        .into_inner();
    assert_eq!(still.state(), ShipmentState::PickedUp, "nothing changed");

    let reason = "the buyer's phone is broken; delivery confirmed by phone with the village head";
    let delivered = delivery
        .confirm_delivery(act_as(Role::Operator, "ops-li", confirm("", reason)))
        .await
        .expect("an operator confirms it")
        .into_inner();
    assert_eq!(delivered.state(), ShipmentState::Delivered);
    assert_eq!(delivered.courier_id, COURIER);
    system.wait_order(&id, OrderState::Delivered).await;
    system.wait_payment(&id, PaymentState::Captured).await;

    // Another order, delivered by its courier with the buyer's code.
    let order = system.place(&[(&tea, 2)], "approve").await;
    let delivered = system.carry(COURIER, &order.order_id, &tea).await;
    assert_eq!(delivered.state(), OrderState::Delivered);

    // Another buyer cannot read the code (or the order).
    let refused = system
        .clients
        .orders
        .clone()
        .get_order(act_as(
            Role::Buyer,
            "buyer-hangzhou-9",
            GetOrderRequest {
                order_id: order.order_id.clone(),
            },
        ))
        .await
        .expect_err("another buyer's order");
    assert_eq!(refused.code(), Code::PermissionDenied);
}
