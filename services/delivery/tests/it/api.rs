//! The courier API: who may do what to a shipment, what is refused without
//! changing anything, and the assignment stream.

use std::time::Duration;

use harvest_bus::Payload;
use harvest_domain::Id;
use harvest_proto::common::v1::GeoPoint;
use harvest_proto::delivery::v1::{
    Assignment, ConfirmDeliveryRequest, ConfirmPickupRequest, GetShipmentRequest,
    ReportFailureRequest, Shipment, ShipmentState, StreamAssignmentsRequest,
    UpdateCourierStatusRequest,
};
use harvest_proto::events::v1::ShipmentFailureReason;
use tokio_stream::StreamExt;
use tonic::Code;

use crate::helpers::{
    DELIVERY_CODE, HANGZHOU, TestDelivery, WAIT, count_by_kind, courier_request, offset,
};

fn assert_status<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, mentions: &str) {
    let status = result.expect_err("the request must fail");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(mentions),
        "message {:?} should mention {mentions:?}",
        status.message()
    );
}

fn pick_up(courier: &str, shipment: &str) -> ConfirmPickupRequest {
    ConfirmPickupRequest {
        courier_id: courier.to_owned(),
        shipment_id: shipment.to_owned(),
    }
}

fn deliver(courier: &str, shipment: &str, recipient: &str) -> ConfirmDeliveryRequest {
    ConfirmDeliveryRequest {
        courier_id: courier.to_owned(),
        shipment_id: shipment.to_owned(),
        recipient_name: recipient.to_owned(),
        proof_reference: "photo-0001".to_owned(),
        delivery_code: DELIVERY_CODE.to_owned(),
        override_reason: String::new(),
    }
}

/// A running service with two couriers and one order assigned to "mine".
async fn one_assigned_shipment() -> (TestDelivery, Id, String) {
    let delivery = TestDelivery::start().await;
    delivery
        .courier("mine", "east", offset(HANGZHOU, 1.0, 0.0), 2, false)
        .await;
    delivery
        .courier("other", "east", offset(HANGZHOU, 9.0, 0.0), 2, false)
        .await;
    let order = delivery.confirm_at("tea", HANGZHOU, false).await;
    let assigned = delivery.assigned(&order).await;
    assert_eq!(assigned.courier_id, "mine");
    (delivery, order, assigned.shipment_id)
}

async fn shipment(delivery: &TestDelivery, shipment_id: &str) -> Shipment {
    delivery
        .client
        .clone()
        .get_shipment(GetShipmentRequest {
            shipment_id: shipment_id.to_owned(),
        })
        .await
        .expect("found")
        .into_inner()
}

#[tokio::test]
async fn only_the_assigned_courier_picks_up_and_delivers() {
    let (delivery, order, shipment_id) = one_assigned_shipment().await;
    let mut client = delivery.client.clone();
    let before = shipment(&delivery, &shipment_id).await;
    assert_eq!(before.state(), ShipmentState::Assigned);
    assert_eq!(before.courier_id, "mine");
    assert_eq!(before.lines.len(), 1);

    // Someone else's shipment: refused, nothing changes.
    assert_status(
        client.confirm_pickup(pick_up("other", &shipment_id)).await,
        Code::PermissionDenied,
        "not assigned to courier other",
    );
    assert_status(
        client
            .confirm_delivery(deliver("mine", &shipment_id, "Li Na"))
            .await,
        Code::FailedPrecondition,
        "cannot be delivered",
    );
    assert_eq!(shipment(&delivery, &shipment_id).await, before);

    let picked_up = client
        .confirm_pickup(pick_up("mine", &shipment_id))
        .await
        .expect("picked up")
        .into_inner();
    assert_eq!(picked_up.state(), ShipmentState::PickedUp);
    let event = delivery
        .wait_event(&order, |payload| match payload {
            Payload::ShipmentPickedUp(picked_up) => Some(picked_up.clone()),
            _ => None,
        })
        .await;
    assert_eq!(event.courier_id, "mine");
    assert_eq!(event.lines, before.lines, "the catalog commits these lines");
    // Repeating it is harmless.
    let again = client
        .confirm_pickup(pick_up("mine", &shipment_id))
        .await
        .expect("idempotent")
        .into_inner();
    assert_eq!(again.state(), ShipmentState::PickedUp);

    let on_the_road = shipment(&delivery, &shipment_id).await;
    assert_status(
        client
            .confirm_delivery(deliver("other", &shipment_id, "Li Na"))
            .await,
        Code::PermissionDenied,
        "not assigned",
    );
    assert_status(
        client
            .confirm_delivery(deliver("mine", &shipment_id, "  "))
            .await,
        Code::InvalidArgument,
        "recipient_name",
    );
    assert_eq!(shipment(&delivery, &shipment_id).await, on_the_road);
    assert_eq!(delivery.load_of("mine").await, 1);

    let delivered = client
        .confirm_delivery(deliver("mine", &shipment_id, "Li Na"))
        .await
        .expect("delivered")
        .into_inner();
    assert_eq!(delivered.state(), ShipmentState::Delivered);
    let event = delivery
        .wait_event(&order, |payload| match payload {
            Payload::ShipmentDelivered(delivered) => Some(delivered.clone()),
            _ => None,
        })
        .await;
    assert_eq!(event.recipient_name, "Li Na");
    assert_eq!(event.proof_reference, "photo-0001");
    assert_eq!(delivery.load_of("mine").await, 0, "capacity given back");
    let again = client
        .confirm_delivery(deliver("mine", &shipment_id, "Li Na"))
        .await
        .expect("idempotent")
        .into_inner();
    assert_eq!(again.state(), ShipmentState::Delivered);
    assert_status(
        client
            .report_failure(ReportFailureRequest {
                courier_id: "mine".to_owned(),
                shipment_id: shipment_id.clone(),
                reason: "lost".to_owned(),
            })
            .await,
        Code::FailedPrecondition,
        "delivered",
    );

    // Each step was published once, in order, whatever was repeated.
    assert_eq!(
        delivery.event_types_of(&order),
        [
            "ShipmentCreated",
            "CourierAssigned",
            "ShipmentPickedUp",
            "ShipmentDelivered",
        ]
    );
}

/// A delivery is proven by the buyer's code: without it the request is
/// refused, a wrong one is counted and refused, five wrong ones lock the
/// shipment against codes, the right one then no longer helps; before
/// that, the right one delivers.
#[tokio::test]
async fn a_delivery_needs_the_buyers_code_and_wrong_ones_run_out() {
    let (delivery, _order, shipment_id) = one_assigned_shipment().await;
    let mut client = delivery.client.clone();
    client
        .confirm_pickup(pick_up("mine", &shipment_id))
        .await
        .expect("picked up");
    let with_code = |code: &str| ConfirmDeliveryRequest {
        delivery_code: code.to_owned(),
        ..deliver("mine", &shipment_id, "Li Na")
    };

    assert_status(
        client.confirm_delivery(with_code("")).await,
        Code::InvalidArgument,
        "delivery_code",
    );
    assert_status(
        client.confirm_delivery(with_code("111111")).await,
        Code::PermissionDenied,
        "4 tries left",
    );
    assert_eq!(
        shipment(&delivery, &shipment_id).await.state(),
        ShipmentState::PickedUp,
        "a wrong code changes nothing"
    );
    let delivered = client
        .confirm_delivery(with_code(DELIVERY_CODE))
        .await
        .expect("the buyer's code delivers")
        .into_inner();
    assert_eq!(delivered.state(), ShipmentState::Delivered);

    // Another order, whose courier keeps guessing.
    let order = delivery.confirm_at("honey", HANGZHOU, false).await;
    let assigned = delivery.assigned(&order).await;
    let courier = assigned.courier_id.clone();
    client
        .confirm_pickup(pick_up(&courier, &assigned.shipment_id))
        .await
        .expect("picked up");
    let guess = |code: &str| ConfirmDeliveryRequest {
        delivery_code: code.to_owned(),
        ..deliver(&courier, &assigned.shipment_id, "Li Na")
    };
    for tries_left in (0..5).rev() {
        assert_status(
            client.confirm_delivery(guess("000000")).await,
            Code::PermissionDenied,
            &format!("{tries_left} tries left"),
        );
    }
    assert_status(
        client.confirm_delivery(guess(DELIVERY_CODE)).await,
        Code::FailedPrecondition,
        "an operator must confirm",
    );
    assert_eq!(
        shipment(&delivery, &assigned.shipment_id).await.state(),
        ShipmentState::PickedUp
    );
}

#[tokio::test]
async fn a_reported_failure_ends_the_shipment_and_frees_the_courier() {
    let (delivery, order, shipment_id) = one_assigned_shipment().await;
    let mut client = delivery.client.clone();
    let report = |courier: &str, reason: &str| ReportFailureRequest {
        courier_id: courier.to_owned(),
        shipment_id: shipment_id.clone(),
        reason: reason.to_owned(),
    };
    assert_status(
        client.report_failure(report("mine", "")).await,
        Code::InvalidArgument,
        "reason",
    );
    assert_status(
        client.report_failure(report("other", "flat tyre")).await,
        Code::PermissionDenied,
        "not assigned",
    );
    assert_eq!(delivery.load_of("mine").await, 1);

    let failed = client
        .report_failure(report("mine", "bridge washed out"))
        .await
        .expect("reported")
        .into_inner();
    assert_eq!(failed.state(), ShipmentState::Failed);
    assert_eq!(failed.failure_reason, "bridge washed out");
    let event = delivery.failed(&order).await;
    assert_eq!(event.reason(), ShipmentFailureReason::DeliveryFailed);
    assert_eq!(event.courier_id, "mine");
    assert_eq!(event.detail, "bridge washed out");
    assert_eq!(delivery.load_of("mine").await, 0);

    client
        .report_failure(report("mine", "bridge washed out"))
        .await
        .expect("idempotent");
    assert_status(
        client.confirm_pickup(pick_up("mine", &shipment_id)).await,
        Code::FailedPrecondition,
        "is failed",
    );
    assert_eq!(
        count_by_kind(&delivery.events_of(&order)).get("failed"),
        Some(&1)
    );
}

#[tokio::test]
async fn a_withdrawn_shipment_cannot_be_picked_up() {
    let (delivery, order, shipment_id) = one_assigned_shipment().await;
    delivery.cancel(&order).await;
    delivery
        .wait_event(&order, |payload| {
            matches!(payload, Payload::ShipmentWithdrawn(_)).then_some(())
        })
        .await;
    assert_status(
        delivery
            .client
            .clone()
            .confirm_pickup(pick_up("mine", &shipment_id))
            .await,
        Code::FailedPrecondition,
        "withdrawn",
    );
    assert_eq!(
        shipment(&delivery, &shipment_id).await.state(),
        ShipmentState::Withdrawn
    );
    assert_eq!(delivery.load_of("mine").await, 0);
}

#[tokio::test]
async fn bad_requests_get_clear_statuses() {
    let (delivery, _order, shipment_id) = one_assigned_shipment().await;
    let mut client = delivery.client.clone();

    assert_status(
        client
            .get_shipment(GetShipmentRequest {
                shipment_id: "{bad}".to_owned(),
            })
            .await,
        Code::InvalidArgument,
        "shipment_id",
    );
    assert_status(
        client
            .get_shipment(GetShipmentRequest {
                shipment_id: "shp_missing".to_owned(),
            })
            .await,
        Code::NotFound,
        "shp_missing",
    );
    assert_status(
        client.confirm_pickup(pick_up("", &shipment_id)).await,
        Code::InvalidArgument,
        "courier_id",
    );
    assert_status(
        client.confirm_pickup(pick_up("nobody", &shipment_id)).await,
        Code::NotFound,
        "courier nobody",
    );
    assert_status(
        client.confirm_pickup(pick_up("mine", "shp_missing")).await,
        Code::NotFound,
        "shp_missing",
    );

    let mut request = courier_request("new", "atlantis", HANGZHOU, 2, false);
    assert_status(
        client.register_courier(request.clone()).await,
        Code::InvalidArgument,
        "region",
    );
    request.region = "east".to_owned();
    request.capacity = 0;
    assert_status(
        client.register_courier(request.clone()).await,
        Code::InvalidArgument,
        "capacity",
    );
    request.capacity = 2;
    request.vehicle = 0;
    assert_status(
        client.register_courier(request.clone()).await,
        Code::InvalidArgument,
        "vehicle",
    );
    assert_status(
        client
            .update_courier_status(UpdateCourierStatusRequest {
                courier_id: "nobody".to_owned(),
                location: None,
                available: true,
            })
            .await,
        Code::NotFound,
        "nobody",
    );
    assert_status(
        client
            .update_courier_status(UpdateCourierStatusRequest {
                courier_id: "mine".to_owned(),
                location: Some(GeoPoint {
                    latitude: 30.0,
                    longitude: 200.0,
                }),
                available: true,
            })
            .await,
        Code::InvalidArgument,
        "location.longitude",
    );
    assert_status(
        client
            .stream_assignments(StreamAssignmentsRequest {
                courier_id: "nobody".to_owned(),
            })
            .await,
        Code::NotFound,
        "nobody",
    );
    // None of it touched the shipment or the courier.
    assert_eq!(
        shipment(&delivery, &shipment_id).await.state(),
        ShipmentState::Assigned
    );
    assert_eq!(delivery.load_of("mine").await, 1);
}

#[tokio::test]
async fn registering_again_updates_the_courier_and_keeps_its_load() {
    let (delivery, _order, _shipment_id) = one_assigned_shipment().await;
    let mut client = delivery.client.clone();
    let mut request = courier_request("mine", "east", offset(HANGZHOU, 1.0, 0.0), 5, true);
    request.name = "Wang Lei".to_owned();
    let updated = client
        .register_courier(request)
        .await
        .expect("registered again")
        .into_inner();
    assert_eq!(updated.name, "Wang Lei");
    assert_eq!(updated.capacity, 5);
    assert!(updated.cold_chain);
    assert_eq!(updated.load, 1, "its shipment is still on it");
    assert!(updated.available);

    let resting = client
        .update_courier_status(UpdateCourierStatusRequest {
            courier_id: "mine".to_owned(),
            location: Some(GeoPoint {
                latitude: 30.5,
                longitude: 120.5,
            }),
            available: false,
        })
        .await
        .expect("updated")
        .into_inner();
    assert!(!resting.available);
    assert_eq!(
        resting.location.map(|point| point.latitude),
        Some(30.5),
        "location updated"
    );

    // A courier without an id gets one.
    let anonymous = courier_request("", "north", HANGZHOU, 1, false);
    let registered = client
        .register_courier(anonymous)
        .await
        .expect("registered")
        .into_inner();
    assert!(registered.courier_id.starts_with("cou_"));
    assert_eq!(registered.region, "north");
}

#[tokio::test]
async fn a_new_courier_needs_a_location_and_an_update_without_one_keeps_it() {
    let delivery = TestDelivery::start().await;
    let mut client = delivery.client.clone();
    for courier_id in ["walker", ""] {
        let mut unlocated = courier_request(courier_id, "east", HANGZHOU, 2, false);
        unlocated.location = None;
        let status = client
            .register_courier(unlocated)
            .await
            .expect_err("a new courier needs a location");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().starts_with("location: "),
            "{}",
            status.message()
        );
    }
    // Nothing was written: the courier is still unknown.
    assert_status(
        client
            .update_courier_status(UpdateCourierStatusRequest {
                courier_id: "walker".to_owned(),
                location: None,
                available: true,
            })
            .await,
        Code::NotFound,
        "walker",
    );

    let at = offset(HANGZHOU, 2.0, 3.0);
    delivery.courier("walker", "east", at, 2, false).await;
    let mut update = courier_request("walker", "east", HANGZHOU, 4, false);
    update.location = None;
    let updated = client
        .register_courier(update)
        .await
        .expect("an update may leave the location out")
        .into_inner();
    assert_eq!(updated.capacity, 4);
    assert_eq!(
        updated
            .location
            .map(|point| (point.latitude, point.longitude)),
        Some(at),
        "the last location is kept"
    );
}

async fn next(stream: &mut tonic::Streaming<Assignment>) -> Assignment {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("an assignment in time")
        .expect("stream open")
        .expect("no error")
}

#[tokio::test]
async fn streams_send_open_assignments_then_new_ones() {
    let delivery = TestDelivery::start().await;
    delivery
        .courier("streamer", "east", offset(HANGZHOU, 1.0, 0.0), 5, false)
        .await;
    delivery
        .courier("bystander", "east", offset(HANGZHOU, -60.0, 0.0), 5, false)
        .await;
    let first = delivery.confirm_at("tea", HANGZHOU, false).await;
    let first_shipment = delivery.assigned(&first).await.shipment_id;

    let mut client = delivery.client.clone();
    let open = |courier: &str| StreamAssignmentsRequest {
        courier_id: courier.to_owned(),
    };
    let mut stream = client
        .stream_assignments(open("streamer"))
        .await
        .expect("stream opens")
        .into_inner();
    let mut bystander_stream = client
        .stream_assignments(open("bystander"))
        .await
        .expect("stream opens")
        .into_inner();
    // A third stream that goes away at once must not disturb the others.
    drop(
        client
            .stream_assignments(open("streamer"))
            .await
            .expect("stream opens"),
    );

    let opened = next(&mut stream).await;
    let opened_shipment = opened.shipment.expect("shipment");
    assert_eq!(opened_shipment.shipment_id, first_shipment);
    assert_eq!(opened_shipment.state(), ShipmentState::Assigned);
    assert!(opened.assigned_at.is_some());

    let second = delivery
        .confirm_at("tea", offset(HANGZHOU, 0.5, 0.5), false)
        .await;
    let second_shipment = delivery.assigned(&second).await.shipment_id;
    let arrived = next(&mut stream).await;
    assert_eq!(
        arrived.shipment.expect("shipment").shipment_id,
        second_shipment
    );

    // The bystander has nothing, until something near it comes in.
    let quiet = tokio::time::timeout(Duration::from_millis(700), bystander_stream.next()).await;
    assert!(quiet.is_err(), "nothing for the bystander yet");
    let far_order = delivery
        .confirm_at("rice", offset(HANGZHOU, -60.0, 0.5), false)
        .await;
    let far_shipment = delivery.assigned(&far_order).await.shipment_id;
    let bystanders = next(&mut bystander_stream).await;
    assert_eq!(
        bystanders.shipment.expect("shipment").shipment_id,
        far_shipment
    );
}

#[tokio::test]
async fn a_request_over_the_size_limit_is_refused_and_changes_nothing() {
    let delivery = TestDelivery::start().await;
    let mut client = delivery.client.clone();
    let mut huge = courier_request("huge", "east", HANGZHOU, 2, false);
    huge.name = "x".repeat(4 * 1024 * 1024);
    assert_status(
        client.register_courier(huge).await,
        Code::ResourceExhausted,
        "the limit is 16384 bytes (16 KiB)",
    );
    // The courier was not registered.
    assert_status(
        client
            .update_courier_status(UpdateCourierStatusRequest {
                courier_id: "huge".to_owned(),
                location: None,
                available: true,
            })
            .await,
        Code::NotFound,
        "huge",
    );
}
