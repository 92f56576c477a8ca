//! The connection's pipelines, scripts and transactions on one server and on
//! a Redis Cluster of three primaries, where a pipeline that mixes slots is
//! split by slot.

use harvest_kit::store::{REDIS_COMMANDS, REDIS_ROUND_TRIPS, Redis, connect};
use harvest_kit::{RedisConfig, Secret};
use harvest_stack::servers::{RedisCluster, RedisOptions, RedisServer};
use redis::{Pipeline, Script};

fn config(url: String, cluster: bool) -> RedisConfig {
    RedisConfig {
        url: Secret::new(url),
        cluster,
        ..RedisConfig::default()
    }
}

/// Writes and reads keys of four hash tags in one pipeline, some replies
/// ignored, a PUBLISH among them.
fn mixed_slots() -> Pipeline {
    let mut pipe = redis::pipe();
    for (index, tag) in ["a", "b", "c", "a", "d"].into_iter().enumerate() {
        pipe.set(format!("{{{tag}}}:{index}"), index).ignore();
    }
    pipe.publish("news", "written").ignore();
    for (index, tag) in ["a", "b", "c", "a", "d"].into_iter().enumerate() {
        pipe.get(format!("{{{tag}}}:{index}"));
    }
    pipe.incr("{b}:counter", 5);
    pipe
}

async fn replies_in_order(redis: &mut Redis) {
    let replies: (u32, u32, u32, u32, u32, u32) =
        mixed_slots().query_async(redis).await.expect("pipeline");
    assert_eq!(replies, (0, 1, 2, 3, 4, 5), "the GETs, then the INCR");
}

/// A script loaded nowhere yet: `invoke_async` loads it where its key lives.
async fn scripts_load_where_their_key_lives(redis: &mut Redis) {
    let script = Script::new("return redis.call('INCRBY', KEYS[1], ARGV[1])");
    for tag in ["a", "b", "c", "d"] {
        let value: i64 = script
            .key(format!("{{{tag}}}:scripted"))
            .arg(2)
            .invoke_async(redis)
            .await
            .expect("script");
        assert_eq!(value, 2);
    }
}

async fn one_slot_transactions_pass(redis: &mut Redis) {
    let (first, second): (i64, i64) = redis::pipe()
        .atomic()
        .incr("{t}:first", 1)
        .incr("{t}:second", 2)
        .query_async(redis)
        .await
        .expect("transaction");
    assert_eq!((first, second), (1, 2));
}

#[tokio::test]
async fn a_single_server_answers_pipelines_scripts_and_transactions() {
    let server = RedisServer::start(&RedisOptions::default()).expect("redis starts");
    let mut redis = connect(&config(server.url(), false))
        .await
        .expect("connects");
    assert!(!redis.is_cluster());
    replies_in_order(&mut redis).await;
    scripts_load_where_their_key_lives(&mut redis).await;
    one_slot_transactions_pass(&mut redis).await;
}

/// Reads a counter of the process's metrics recorder.
fn counter(name: &str) -> f64 {
    let text = harvest_kit::admin::prometheus().expect("recorder").render();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_cluster_splits_pipelines_by_slot_and_keeps_transactions_to_one() {
    harvest_kit::admin::prometheus().expect("recorder");
    let cluster = RedisCluster::start().expect("cluster starts");
    let mut redis = connect(&config(cluster.url(), true))
        .await
        .expect("connects");
    assert!(redis.is_cluster());

    let (round_trips, commands) = (counter(REDIS_ROUND_TRIPS), counter(REDIS_COMMANDS));
    replies_in_order(&mut redis).await;
    assert_eq!(
        counter(REDIS_ROUND_TRIPS) - round_trips,
        4.0,
        "one round trip per hash tag"
    );
    assert_eq!(counter(REDIS_COMMANDS) - commands, 12.0);

    scripts_load_where_their_key_lives(&mut redis).await;
    one_slot_transactions_pass(&mut redis).await;
    let crossed: redis::RedisResult<(i64, i64)> = redis::pipe()
        .atomic()
        .incr("{a}:x", 1)
        .incr("{b}:x", 1)
        .query_async(&mut redis)
        .await;
    assert!(crossed.is_err(), "a transaction across slots is refused");
}
