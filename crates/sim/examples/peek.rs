use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

#[tokio::main]
async fn main() {
    let broker = std::env::args().nth(1).expect("broker");
    let topic = std::env::args().nth(2).expect("topic");
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker)
        .set("group.id", "peek")
        .set("enable.auto.commit", "false")
        .set("debug", "fetch")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..2 {
        tpl.add_partition_offset(&topic, p, Offset::Beginning).expect("add");
    }
    consumer.assign(&tpl).expect("assign");
    let mut count = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(2), consumer.recv()).await {
            Ok(Ok(m)) => { count += 1; if count % 100 == 0 { println!("{count} at p{} o{}", m.partition(), m.offset()); } }
            Ok(Err(e)) => println!("error {e}"),
            Err(_) => println!("idle; {count} so far"),
        }
    }
    println!("total {count}");
}
