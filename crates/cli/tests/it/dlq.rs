use harvest_bus::{Publisher, Stream, Topology, new_envelope};
use harvest_domain::{Region, Regions, new_id};
use harvest_proto::events::v1::{OrderPlaced, PaymentAuthorized};
use serde_json::Value;

use crate::helpers::{WAIT, World};

impl World {
    /// `harvest dlq …` for the catalog's consumer of region east.
    async fn dlq(&self, args: &[&str]) -> crate::helpers::Run {
        let mut line = vec!["dlq"];
        line.extend_from_slice(args);
        line.extend_from_slice(&["--service", "catalog", "--region", "east"]);
        let mut command = self.command(&line);
        command
            .env("HARVEST_BUS__BROKERS", &self.bus.brokers)
            .env("HARVEST_BUS__TOPIC_PREFIX", &self.bus.topic_prefix);
        crate::helpers::Run::of(command).await
    }

    async fn letters(&self) -> Vec<Value> {
        let listed = self.dlq(&["list", "--json"]).await.json();
        listed["letters"].as_array().cloned().unwrap_or_default()
    }

    async fn wait_for_letters(&self, count: usize) -> Vec<Value> {
        harvest_testkit::eventually(WAIT, || async {
            let letters = self.letters().await;
            (letters.len() >= count).then_some(letters)
        })
        .await
        .unwrap_or_else(|| panic!("{count} dead letters"))
    }
}

/// The catalog dead-letters an order placed with no lines (its handler
/// rejects it) and a payment event forged onto the orders stream. An
/// operator lists and reads them, and replays what can go differently: the
/// rejected event reaches the catalog again (and, its cause not fixed, is
/// dead-lettered again, naming the letter it was replayed from); the forged
/// one is skipped, and refused when asked for by offset.
#[tokio::test]
async fn dead_letters_are_listed_shown_and_replayed() {
    let world = World::start().await;
    let east = Region::parse("east").expect("valid");
    let topology = Topology::new(
        &world.bus,
        Regions::new(vec![east.clone(), Region::parse("north").expect("valid")]).expect("valid"),
    );
    let publisher =
        Publisher::new(&world.bus, topology.clone(), Stream::Orders).expect("publisher");
    let empty_order = new_id("ord");
    publisher
        .publish(new_envelope(
            &new_id("evt"),
            &empty_order,
            &east,
            "orders",
            harvest_bus::Payload::OrderPlaced(OrderPlaced::default()),
        ))
        .await
        .expect("published");
    let forged_order = new_id("ord");
    // A payment authorized, passed off as an order placed.
    let mut forged = new_envelope(
        &new_id("evt"),
        &forged_order,
        &east,
        "orders",
        harvest_bus::Payload::PaymentAuthorized(PaymentAuthorized::default()),
    );
    forged.event_type = harvest_bus::event::types::ORDER_PLACED.to_owned();
    harvest_testkit::kafka::send_raw(
        &world.bus.brokers,
        &topology.topic(Stream::Orders, &east),
        forged_order.as_str().as_bytes(),
        &prost::Message::encode_to_vec(&forged),
        &[("event-type", forged.event_type.as_str())],
    )
    .await
    .expect("forged event written");

    let letters = world.wait_for_letters(2).await;
    let of = |order: &str| {
        letters
            .iter()
            .find(|letter| letter["key"] == order)
            .unwrap_or_else(|| panic!("a letter of {order}: {letters:#?}"))
            .clone()
    };
    let rejected = of(empty_order.as_str());
    let untrusted = of(forged_order.as_str());
    assert_eq!(rejected["state"], "waiting");
    assert_eq!(rejected["reason"], "rejected: order has no lines");
    assert_eq!(rejected["replayable"], true);
    assert!(
        untrusted["reason"]
            .as_str()
            .is_some_and(|reason| reason.starts_with("untrusted:")),
        "{untrusted:#?}"
    );
    assert_eq!(untrusted["replayable"], false);

    let table = world.dlq(&["list"]).await;
    assert!(table.ok().contains("2 dead letters in"), "{table:#?}");
    let offset = rejected["offset"].to_string();
    let shown = world.dlq(&["show", &offset]).await;
    let shown = shown.ok();
    assert!(shown.contains("order has no lines"), "{shown}");
    assert!(shown.contains("OrderPlaced"), "{shown}");

    let refused = world
        .dlq(&["redrive", "--offset", &untrusted["offset"].to_string()])
        .await;
    assert!(
        refused
            .failed(1)
            .contains("could only be dead-lettered again"),
        "{refused:#?}"
    );

    let dry = world
        .dlq(&["redrive", "--all", "--dry-run", "--json"])
        .await
        .json();
    assert_eq!(dry["replayed"], serde_json::json!([rejected["offset"]]));
    assert_eq!(world.letters().await.len(), 2, "a dry run replays nothing");

    let done = world.dlq(&["redrive", "--all", "--json"]).await.json();
    assert_eq!(done["replayed"], serde_json::json!([rejected["offset"]]));
    assert_eq!(done["skipped"][0]["offset"], untrusted["offset"]);
    assert_eq!(done["mark"], 2);

    // The replayed event went through the catalog's consumer again.
    let letters = world.wait_for_letters(3).await;
    assert_eq!(letters[0]["state"], "redriven");
    assert_eq!(letters[1]["state"], "redriven");
    assert_eq!(letters[2]["state"], "waiting");
    assert_eq!(letters[2]["key"], empty_order.as_str());
    let dead_letter_topic = topology.dead_letter_topic("catalog", &east);
    assert_eq!(
        letters[2]["headers"]["redriven-from"],
        format!("{dead_letter_topic}@{offset}").as_str()
    );

    let nothing_more = world.dlq(&["redrive", "--all", "--json"]).await.json();
    assert_eq!(
        nothing_more["replayed"],
        serde_json::json!([2]),
        "only the new letter"
    );

    let wrong = world
        .command(&[
            "dlq",
            "list",
            "--service",
            "catalog",
            "--region",
            "east",
            "--brokers",
            &world.bus.brokers,
            "--topic-prefix",
            "nobody.",
        ])
        .output()
        .await
        .expect("runs");
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("does not exist"),
        "{wrong:?}"
    );
}
