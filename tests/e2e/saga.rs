//! Every way an order can end, across the four services.

use harvest_kit::auth::Role;
use harvest_kit::issuer::act_as;
use harvest_proto::common::v1::{CancelReason, OrderState};
use harvest_proto::delivery::v1::{ReportFailureRequest, ShipmentState};
use harvest_proto::orders::v1::CancelOrderRequest;
use harvest_proto::payments::v1::{LedgerEntryKind, PaymentState};
use tonic::Code;

use std::collections::HashSet;
use std::time::Duration;

use harvest_bus::{PartnerId, Topology};
use harvest_testkit::kafka::Probe;

use crate::helpers::{ANJI, FUPING, PARTNER, System};

const COURIER: &str = "courier-anji-1";

async fn pick_up(system: &System, shipment_id: &str) {
    system
        .pick_up(COURIER, shipment_id)
        .await
        .expect("picked up");
}

async fn deliver(system: &System, shipment_id: &str, proof_reference: &str) {
    system
        .deliver(COURIER, shipment_id, proof_reference)
        .await
        .expect("delivered");
}

#[tokio::test]
async fn every_way_an_order_ends() {
    let system = System::start().await;
    system.courier(COURIER, &ANJI, 10).await;
    let happy = system.product("Anji white tea, 250 g", &ANJI, 20).await;
    let regretted = system.product("Bamboo shoots, 1 kg", &ANJI, 20).await;
    let undelivered = system.product("Yunwu tea, 250 g", &ANJI, 20).await;
    let declined = system.product("Hickory nuts, 500 g", &ANJI, 20).await;
    let sold_out = system.product("Lotus seeds, 500 g", &ANJI, 0).await;
    let remote = system.product("Fuping jujubes, 1 kg", &FUPING, 10).await;
    let unpaid = system.product("Chestnuts, 1 kg", &ANJI, 20).await;
    let arrives = system.product("Anji bamboo vinegar", &ANJI, 20).await;
    let stranded = system.product("Fuping dried persimmons", &FUPING, 10).await;

    let delivered = async {
        let order = system.place(&[(&happy, 2)], "approve").await;
        let id = order.order_id.as_str();
        let shipment = system
            .wait_shipment(id, &happy, ShipmentState::Assigned)
            .await;
        assert_eq!(shipment.courier_id, COURIER);
        pick_up(&system, &shipment.shipment_id).await;
        system.wait_order(id, OrderState::InTransit).await;
        deliver(&system, &shipment.shipment_id, "photo-0001").await;
        let order = system.wait_order(id, OrderState::Delivered).await;
        assert_eq!(order.total_fen, 10_000);
        let payment = system.wait_payment(id, PaymentState::Captured).await;
        assert_eq!(payment.captured_fen, 10_000, "captured on delivery");
        let paid_out: i64 = payment
            .entries
            .iter()
            .filter(|e| {
                matches!(
                    e.kind(),
                    LedgerEntryKind::Payout | LedgerEntryKind::Commission
                )
            })
            .map(|e| e.amount_fen)
            .sum();
        assert_eq!(
            paid_out, 10_000,
            "payouts and commission add up to the capture"
        );
        assert!(
            payment
                .entries
                .iter()
                .any(|e| e.kind() == LedgerEntryKind::Payout && e.seller_id == "coop-anji")
        );
        // The courier's partner heard of the shipment on its own topic,
        // from the assignment on.
        let partner = PartnerId::parse(PARTNER).expect("valid");
        let bus = system.stack.bus_config();
        let topology = Topology::new(&bus, system.stack.options().regions.clone());
        let topic = topology.partner_topic(&partner);
        let probe = Probe::start(&system.stack.bootstrap(), &[topic]).expect("probe");
        let told = probe
            .wait_for(Duration::from_secs(30), |messages| {
                let mut seen = HashSet::new();
                let kinds: Vec<String> = harvest_testkit::kafka::envelopes(messages)
                    .into_iter()
                    .filter(|e| e.order_id == id && seen.insert(e.event_id.clone()))
                    .map(|e| e.event_type.replace("harvest.events.v1.", ""))
                    .collect();
                (kinds.len() >= 3).then_some(kinds)
            })
            .await
            .expect("the partner's copies");
        assert_eq!(
            told,
            ["CourierAssigned", "ShipmentPickedUp", "ShipmentDelivered"]
        );
        let stock = crate::helpers::poll(|| async {
            let stock = system.stock(&happy).await;
            (stock.on_hand == 18).then_some(stock)
        })
        .await
        .expect("picked-up stock is committed");
        assert_eq!((stock.reserved, stock.available), (0, 18));
    };

    let cancelled_by_buyer = async {
        let order = system.place(&[(&regretted, 3)], "approve").await;
        let id = order.order_id.as_str();
        let shipment = system
            .wait_shipment(id, &regretted, ShipmentState::Assigned)
            .await;
        system
            .clients
            .orders
            .clone()
            .cancel_order(act_as(
                Role::Buyer,
                &order.buyer_id,
                CancelOrderRequest {
                    order_id: id.to_owned(),
                    buyer_id: order.buyer_id.clone(),
                    reason: "found it cheaper".to_owned(),
                },
            ))
            .await
            .expect("cancelled");
        let order = system.wait_order(id, OrderState::Cancelled).await;
        assert_eq!(order.cancel_reason(), CancelReason::BuyerCancelled);
        system.wait_payment(id, PaymentState::Voided).await;
        system
            .wait_shipment(id, &regretted, ShipmentState::Withdrawn)
            .await;
        let stock = crate::helpers::poll(|| async {
            let stock = system.stock(&regretted).await;
            (stock.reserved == 0).then_some(stock)
        })
        .await
        .expect("stock released");
        assert_eq!((stock.on_hand, stock.available), (20, 20));
        // The courier cannot pick up a withdrawn shipment.
        let refused = system
            .pick_up(COURIER, &shipment.shipment_id)
            .await
            .expect_err("withdrawn");
        assert_eq!(refused.code(), Code::FailedPrecondition);
    };

    let failed_delivery = async {
        let order = system.place(&[(&undelivered, 1)], "approve").await;
        let id = order.order_id.as_str();
        let shipment = system
            .wait_shipment(id, &undelivered, ShipmentState::Assigned)
            .await;
        pick_up(&system, &shipment.shipment_id).await;
        system.wait_order(id, OrderState::InTransit).await;
        system
            .clients
            .delivery
            .clone()
            .report_failure(act_as(
                Role::Courier,
                COURIER,
                ReportFailureRequest {
                    courier_id: COURIER.to_owned(),
                    shipment_id: shipment.shipment_id.clone(),
                    reason: "address does not exist".to_owned(),
                },
            ))
            .await
            .expect("failure reported");
        let order = system.wait_order(id, OrderState::Cancelled).await;
        assert_eq!(order.cancel_reason(), CancelReason::DeliveryFailed);
        // Money is taken only on delivery: the buyer's authorization is
        // released in full.
        let payment = system.wait_payment(id, PaymentState::Voided).await;
        assert_eq!(payment.captured_fen, 0);
        let stock = system.stock(&undelivered).await;
        assert_eq!(stock.reserved, 0, "the goods left with the courier");
    };

    let out_of_stock = async {
        let order = system.place(&[(&sold_out, 1)], "approve").await;
        let order = system
            .wait_order(&order.order_id, OrderState::Cancelled)
            .await;
        assert_eq!(order.cancel_reason(), CancelReason::OutOfStock);
        assert!(
            system
                .payment(&order.order_id)
                .await
                .is_none_or(|p| p.authorized_fen == 0)
        );
    };

    let payment_declined = async {
        let order = system
            .place(&[(&declined, 4)], "decline:card expired")
            .await;
        let order = system
            .wait_order(&order.order_id, OrderState::Cancelled)
            .await;
        assert_eq!(order.cancel_reason(), CancelReason::PaymentDeclined);
        assert!(
            order.cancel_detail.contains("card expired"),
            "{}",
            order.cancel_detail
        );
        crate::helpers::poll(|| async {
            (system.stock(&declined).await.reserved == 0).then_some(())
        })
        .await
        .expect("stock released");
    };

    let no_courier = async {
        let order = system.place(&[(&remote, 1)], "approve").await;
        let id = order.order_id.as_str();
        let order = system.wait_order(id, OrderState::Cancelled).await;
        assert_eq!(order.cancel_reason(), CancelReason::NoCourier);
        system
            .wait_shipment(id, &remote, ShipmentState::Failed)
            .await;
        system.wait_payment(id, PaymentState::Voided).await;
        crate::helpers::poll(|| async {
            (system.stock(&remote).await.reserved == 0).then_some(())
        })
        .await
        .expect("stock released");
    };

    // Two pickup points; nobody carries from the second. The order is
    // delivered with what arrived and charged for that only.
    let delivered_in_part = async {
        let order = system
            .place(&[(&arrives, 1), (&stranded, 2)], "approve")
            .await;
        let id = order.order_id.as_str();
        let shipment = system
            .wait_shipment(id, &arrives, ShipmentState::Assigned)
            .await;
        pick_up(&system, &shipment.shipment_id).await;
        deliver(&system, &shipment.shipment_id, "photo-0002").await;
        let failed = system
            .wait_shipment(id, &stranded, ShipmentState::Failed)
            .await;
        let order = system.wait_order(id, OrderState::Delivered).await;
        assert_eq!((order.total_fen, order.charged_fen), (15_000, 5_000));
        assert_eq!(order.failed_shipments.len(), 1);
        assert_eq!(order.failed_shipments[0].shipment_id, failed.shipment_id);
        assert_eq!(order.failed_shipments[0].reason(), CancelReason::NoCourier);
        // Named for the buyer as the catalog names the collection point.
        let point = stranded.collection_point.as_ref().expect("point");
        assert_eq!(order.failed_shipments[0].pickup_point_name, point.name);
        assert!(!point.name.is_empty());
        let payment = system.wait_payment(id, PaymentState::Captured).await;
        assert_eq!(
            (payment.authorized_fen, payment.captured_fen),
            (15_000, 5_000),
            "the failed shipment's share is released"
        );
        assert!(
            payment
                .entries
                .iter()
                .filter(|e| e.kind() == LedgerEntryKind::Payout)
                .all(|e| e.seller_id == "coop-anji"),
            "only the seller whose goods arrived is paid"
        );
        let stock = crate::helpers::poll(|| async {
            let stock = system.stock(&stranded).await;
            (stock.reserved == 0).then_some(stock)
        })
        .await
        .expect("the failed shipment's stock is released");
        assert_eq!((stock.on_hand, stock.available), (10, 10));
    };

    let payment_deadline = async {
        // In the other region, so that the slow provider holds up nobody else.
        let key = uuid::Uuid::new_v4().simple().to_string();
        let mut request =
            system.order_request(&key, "buyer-beijing-1", &[(&unpaid, 1)], "slow:9000");
        request.region = "north".to_owned();
        let order = system
            .clients
            .orders
            .clone()
            .place_order(act_as(Role::Buyer, "buyer-beijing-1", request))
            .await
            .expect("placed")
            .into_inner();
        let id = order.order_id.as_str();
        let order = system.wait_order(id, OrderState::Cancelled).await;
        assert_eq!(order.cancel_reason(), CancelReason::PaymentDeadline);
        crate::helpers::poll(|| async {
            (system.stock(&unpaid).await.reserved == 0).then_some(())
        })
        .await
        .expect("stock released");
        // The late authorization is voided: no money held for a cancelled order.
        let payment = system.wait_payment(id, PaymentState::Voided).await;
        assert_eq!(payment.captured_fen, 0);
    };

    let one_key_one_order = async {
        let key = uuid::Uuid::new_v4().simple().to_string();
        let request = system.order_request(&key, "buyer-nanjing-2", &[(&declined, 1)], "decline");
        let attempts = (0..10).map(|_| {
            let mut orders = system.clients.orders.clone();
            let request = request.clone();
            async move {
                orders
                    .place_order(act_as(Role::Buyer, "buyer-nanjing-2", request))
                    .await
                    .expect("placed")
                    .into_inner()
                    .order_id
            }
        });
        let ids: std::collections::HashSet<String> = futures::future::join_all(attempts)
            .await
            .into_iter()
            .collect();
        assert_eq!(ids.len(), 1, "one order for one key: {ids:?}");
        let mut different = request.clone();
        different.lines[0].quantity = 2;
        let refused = system
            .clients
            .orders
            .clone()
            .place_order(act_as(Role::Buyer, "buyer-nanjing-2", different))
            .await
            .expect_err("refused");
        assert_eq!(refused.code(), Code::AlreadyExists);
        let id = ids.into_iter().next().expect("one");
        system.wait_order(&id, OrderState::Cancelled).await;
    };

    tokio::join!(
        delivered,
        cancelled_by_buyer,
        failed_delivery,
        out_of_stock,
        payment_declined,
        no_courier,
        payment_deadline,
        one_key_one_order,
        delivered_in_part,
    );
}
