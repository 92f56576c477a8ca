//! Courier partners' topics: each partner hears of the shipments its own
//! couriers carry, and of nothing else.

use harvest_bus::{Envelope, PartnerId, Payload, Topology};
use harvest_domain::Id;
use harvest_kit::auth::Role;
use harvest_kit::issuer::{Issuer, bearer};
use harvest_proto::delivery::v1::{
    ConfirmDeliveryRequest, ConfirmPickupRequest, ListCouriersRequest, ListCouriersResponse,
};
use harvest_testkit::kafka::Probe;
use tonic::Code;

use harvest_delivery::store::{Step, StepOutcome};

use crate::helpers::{
    HANGZHOU, SHIJIAZHUANG, TestDelivery, WAIT, courier_request, decode_all, offset, pickup,
};

/// A delivery service with authentication on, trusting a new issuer.
async fn with_issuer(
    adjust: impl FnOnce(&mut harvest_delivery::DeliveryConfig),
) -> (TestDelivery, Issuer, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(harvest_testkit::unique_name());
    let issuer = Issuer::in_dir(&dir, "https://id.harvest.test").expect("an issuer");
    let auth = issuer.config();
    let delivery = TestDelivery::start_with(move |config| {
        config.auth = auth;
        adjust(config);
    })
    .await;
    (delivery, issuer, dir)
}

/// Registers a courier of `partner` at `at` (east, capacity 2).
async fn register(
    delivery: &TestDelivery,
    issuer: &Issuer,
    partner: &str,
    courier: &str,
    at: (f64, f64),
) -> Result<(), tonic::Status> {
    let token = issuer.token(Role::Partner, partner);
    delivery
        .client
        .clone()
        .register_courier(bearer(
            courier_request(courier, "east", at, 2, false),
            Some(&token),
        ))
        .await
        .map(|_| ())
}

/// Reads a partner's topic from its start.
fn partner_probe(delivery: &TestDelivery, partner: &str) -> Probe {
    let topology = Topology::new(&delivery.config.bus, delivery.config.regions.all.clone());
    let partner = PartnerId::parse(partner).expect("valid");
    let bootstrap = delivery.config.bus.brokers.clone();
    Probe::start(&bootstrap, &[topology.partner_topic(&partner)]).expect("probe")
}

/// The distinct events (by id) of `order` among `messages`, in order.
fn distinct_of(envelopes: Vec<Envelope>, order: &Id) -> Vec<Envelope> {
    let mut seen = std::collections::HashSet::new();
    envelopes
        .into_iter()
        .filter(|envelope| envelope.order_id == order.as_str())
        .filter(|envelope| seen.insert(envelope.event_id.clone()))
        .collect()
}

fn kinds(envelopes: &[Envelope]) -> Vec<String> {
    envelopes
        .iter()
        .map(|envelope| envelope.event_type.replace("harvest.events.v1.", ""))
        .collect()
}

/// A shipment taken back from partner A's courier and delivered by partner
/// B's: A hears of its courier's assignment and release only, B of its
/// courier's assignment, pickup and delivery; neither of the shipment's
/// creation. The copies keep the delivery stream's event ids, and B's copy
/// of an operator's delivery leaves out who the operator was.
#[tokio::test]
async fn each_partner_hears_only_of_the_shipments_its_couriers_carry() {
    let (delivery, issuer, dir) =
        with_issuer(|config| config.assignment.pickup_deadline_secs = 2).await;
    register(
        &delivery,
        &issuer,
        "partner-a",
        "a-dawdler",
        offset(HANGZHOU, 1.0, 0.0),
    )
    .await
    .expect("partner A registers its courier");
    register(
        &delivery,
        &issuer,
        "partner-b",
        "b-runner",
        offset(HANGZHOU, 6.0, 0.0),
    )
    .await
    .expect("partner B registers its courier");
    // Registration made each partner's topic.
    let partner_a = partner_probe(&delivery, "partner-a");
    let partner_b = partner_probe(&delivery, "partner-b");

    let order = delivery.confirm_at("tea", HANGZHOU, false).await;
    let first = delivery.assigned(&order).await;
    assert_eq!(first.courier_id, "a-dawdler", "the nearest first");
    let shipment_id = first.shipment_id.clone();
    // The dawdler never picks it up; it goes to B's courier, who does.
    let second = delivery
        .wait_event(&order, |payload| match payload {
            Payload::CourierAssigned(assigned) if assigned.courier_id == "b-runner" => {
                Some(assigned.clone())
            }
            _ => None,
        })
        .await;
    assert_eq!(second.shipment_id, shipment_id);
    let runner = issuer.token(Role::Courier, "b-runner");
    delivery
        .client
        .clone()
        .confirm_pickup(bearer(
            ConfirmPickupRequest {
                courier_id: "b-runner".to_owned(),
                shipment_id: shipment_id.clone(),
            },
            Some(&runner),
        ))
        .await
        .expect("B's courier picks it up");
    let operator = issuer.token(Role::Operator, "ops-wang");
    delivery
        .client
        .clone()
        .confirm_delivery(bearer(
            ConfirmDeliveryRequest {
                shipment_id: shipment_id.clone(),
                recipient_name: "Li Na".to_owned(),
                override_reason: "the buyer's phone is broken".to_owned(),
                ..ConfirmDeliveryRequest::default()
            },
            Some(&operator),
        ))
        .await
        .expect("an operator confirms the delivery");

    let on_stream = delivery
        .wait_event(&order, |payload| match payload {
            Payload::ShipmentDelivered(delivered) => Some(delivered.clone()),
            _ => None,
        })
        .await;
    assert_eq!(on_stream.overridden_by, "ops-wang");

    let b_events = partner_b
        .wait_for(WAIT, |messages| {
            let events = distinct_of(decode_all(messages), &order);
            (events.len() >= 3).then_some(events)
        })
        .await
        .expect("B's copies arrive");
    assert_eq!(
        kinds(&b_events),
        ["CourierAssigned", "ShipmentPickedUp", "ShipmentDelivered"]
    );
    match &b_events[0].payload {
        Some(Payload::CourierAssigned(assigned)) => {
            assert_eq!(assigned.courier_id, "b-runner");
            let ship_to = assigned.ship_to.as_ref().expect("where to deliver");
            assert_eq!(ship_to.recipient, "Li Na");
            assert!(!ship_to.phone.is_empty() && !ship_to.street.is_empty());
        }
        other => panic!("unexpected payload {other:?}"),
    }
    match &b_events[2].payload {
        Some(Payload::ShipmentDelivered(delivered)) => {
            assert_eq!(delivered.courier_id, "b-runner");
            assert_eq!(delivered.overridden_by, "", "the operator is left out");
            assert_eq!(delivered.override_reason, "the buyer's phone is broken");
        }
        other => panic!("unexpected payload {other:?}"),
    }

    // B's last copy went out after A's; A has had time to get everything.
    let a_events = distinct_of(decode_all(&partner_a.messages()), &order);
    assert_eq!(kinds(&a_events), ["CourierAssigned", "CourierReleased"]);
    for envelope in &a_events {
        let courier = match &envelope.payload {
            Some(Payload::CourierAssigned(event)) => &event.courier_id,
            Some(Payload::CourierReleased(event)) => &event.courier_id,
            other => panic!("unexpected payload {other:?}"),
        };
        assert_eq!(courier, "a-dawdler");
    }

    // Each copy is the delivery stream's event, id and all.
    let stream_ids: std::collections::HashSet<String> = delivery
        .events_of(&order)
        .into_iter()
        .map(|envelope| envelope.event_id)
        .collect();
    for copy in a_events.iter().chain(&b_events) {
        assert!(stream_ids.contains(&copy.event_id), "{copy:?}");
        assert_eq!(copy.region, "east");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A partner whose id cannot name a topic registers no courier, and a
/// partner's topic exists before its first courier is given anything.
#[tokio::test]
async fn a_partners_topic_is_ready_when_its_first_courier_is_registered() {
    let (delivery, issuer, dir) = with_issuer(|_| {}).await;
    let refused = register(&delivery, &issuer, "partner:colon", "c-1", HANGZHOU)
        .await
        .expect_err("no topic can be named after it");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("partner"), "{refused:?}");
    let c1 = Id::parse("c-1").expect("valid");
    assert!(
        delivery.store.courier(&c1).await.expect("redis").is_none(),
        "nothing was registered"
    );

    register(&delivery, &issuer, "partner-c", "c-1", HANGZHOU)
        .await
        .expect("registered");
    let topology = Topology::new(&delivery.config.bus, delivery.config.regions.all.clone());
    let partner = PartnerId::parse("partner-c").expect("valid");
    let created = harvest_bus::admin::ensure_topics(
        &delivery.config.bus,
        &[topology.partner_topic_spec(&partner)],
    )
    .await
    .expect("the broker answers");
    assert!(
        created.is_empty(),
        "the topic was there already: {created:?}"
    );
    let stored = delivery
        .store
        .courier(&c1)
        .await
        .expect("redis")
        .expect("registered");
    assert_eq!(stored.partner_id, "partner-c");
    let _ = std::fs::remove_dir_all(dir);
}

/// A partner lists the couriers it registered, a page at a time, and no
/// other partner's; an operator names the partner.
#[tokio::test]
async fn a_partner_lists_its_own_couriers_only() {
    let (delivery, issuer, dir) = with_issuer(|_| {}).await;
    for courier in ["a-2", "a-1", "a-3"] {
        register(&delivery, &issuer, "partner-a", courier, HANGZHOU)
            .await
            .expect("registered");
    }
    register(&delivery, &issuer, "partner-b", "b-1", HANGZHOU)
        .await
        .expect("registered");
    let list = |token: String, partner_id: &str, page_size: i32, page_token: String| {
        let mut client = delivery.client.clone();
        let request = ListCouriersRequest {
            partner_id: partner_id.to_owned(),
            page_size,
            page_token,
        };
        async move {
            client
                .list_couriers(bearer(request, Some(&token)))
                .await
                .map(tonic::Response::into_inner)
        }
    };
    let ids = |page: &ListCouriersResponse| -> Vec<String> {
        page.couriers.iter().map(|c| c.courier_id.clone()).collect()
    };
    let partner_a = issuer.token(Role::Partner, "partner-a");

    let first = list(partner_a.clone(), "", 2, String::new())
        .await
        .expect("its own");
    assert_eq!(ids(&first), ["a-1", "a-2"]);
    assert!(first.couriers.iter().all(|c| c.partner_id == "partner-a"));
    assert!(!first.next_page_token.is_empty());
    let second = list(partner_a.clone(), "partner-a", 2, first.next_page_token)
        .await
        .expect("the next page");
    assert_eq!(ids(&second), ["a-3"]);
    assert_eq!(second.next_page_token, "");

    let refused = list(partner_a.clone(), "partner-b", 0, String::new())
        .await
        .expect_err("another partner's");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let bad_token = list(partner_a, "", 0, "zz".to_owned())
        .await
        .expect_err("a made-up token");
    assert_eq!(bad_token.code(), Code::InvalidArgument, "{bad_token:?}");

    let operator = issuer.token(Role::Operator, "ops-wang");
    let of_b = list(operator.clone(), "partner-b", 0, String::new())
        .await
        .expect("an operator reads any partner's");
    assert_eq!(ids(&of_b), ["b-1"]);
    let unnamed = list(operator, "", 0, String::new())
        .await
        .expect_err("whose?");
    assert_eq!(unnamed.code(), Code::InvalidArgument, "{unnamed:?}");
    let malformed = list(
        issuer.token(Role::Operator, "ops-wang"),
        "partner:{x}",
        0,
        String::new(),
    )
    .await
    .expect_err("no partner has such an id");
    assert_eq!(malformed.code(), Code::InvalidArgument, "{malformed:?}");
    let courier = issuer.token(Role::Courier, "a-1");
    let not_allowed = list(courier, "partner-a", 0, String::new())
        .await
        .expect_err("not a courier's to read");
    assert_eq!(
        not_allowed.code(),
        Code::PermissionDenied,
        "{not_allowed:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A partner whose topic is missing (one the deployment was to create and
/// did not): the delivery stream goes on, and a day after the shipment
/// ended its copies are given up instead of tried for as long as the
/// shipment is kept.
#[tokio::test]
async fn copies_for_a_missing_topic_never_hold_the_stream_and_are_given_up_a_day_after() {
    let mut delivery = TestDelivery::start_with(|config| {
        config.partner_topics.create = false;
        config.bus.publish_timeout_ms = 2_000;
    })
    .await;
    // Goods in Hebei and no north courier: the shipment waits.
    let order = delivery
        .confirm(vec![pickup("millet", "Hebei", SHIJIAZHUANG, false)])
        .await;
    let shipment = harvest_testkit::eventually(WAIT, || async {
        delivery
            .store
            .order_shipments(&order)
            .await
            .ok()?
            .into_iter()
            .next()
    })
    .await
    .expect("shipment created");
    delivery.kill();

    // Two days ago a courier of a partner without a topic carried it.
    let ghost = PartnerId::parse("partner-without-topic").expect("valid");
    let courier = Id::parse("ghost-1").expect("valid");
    let store = &delivery.store;
    let then = harvest_delivery::model::now_ms() - 2 * 24 * 3600 * 1_000;
    let steps = [
        Step::Assign {
            courier: &courier,
            distance_meters: 500,
            partner: Some(&ghost),
        },
        Step::PickUp { courier: &courier },
        Step::Deliver {
            courier: &courier,
            recipient_name: "Zhao Lei",
            proof_reference: "photo-1",
            overridden: None,
        },
    ];
    for (n, step) in steps.into_iter().enumerate() {
        let outcome = store
            .step(&shipment, step, then + n as i64)
            .await
            .expect("redis");
        assert_eq!(outcome, StepOutcome::Changed, "{step:?}");
    }
    store
        .schedule(
            &delivery.region,
            &shipment,
            harvest_delivery::model::now_ms(),
        )
        .await
        .expect("redis");
    delivery.start_again().await;

    // The delivery stream gets every event; the copies are given up and
    // the shipment leaves the sweeper's set.
    delivery
        .wait_event(&order, |payload| {
            matches!(payload, Payload::ShipmentDelivered(_)).then_some(())
        })
        .await;
    let left = harvest_testkit::eventually(WAIT, || async {
        let pending = delivery.store.pending_count(&delivery.region).await.ok()?;
        (pending == 0).then_some(())
    })
    .await;
    assert!(left.is_some(), "the shipment is swept no more");
    let stored = delivery
        .store
        .shipment(&shipment)
        .await
        .expect("redis")
        .expect("kept");
    assert!(stored.announced.contains("delivered"));
    assert!(
        !stored.announced.contains("partner:assigned"),
        "never acknowledged"
    );
}
