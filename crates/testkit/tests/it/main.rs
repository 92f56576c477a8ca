//! The test run's shared broker: found again by every user, and stopped by
//! its watchdog once nobody has used it for the idle limit.

use std::path::Path;
use std::time::Duration;

use harvest_stack::servers::answers;
use harvest_testkit::broker::SharedBroker;

fn node_dirs(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with("node-"))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn users_share_one_broker_which_stops_once_idle() {
    let dir =
        std::env::temp_dir().join(format!("harvest-shared-{}", harvest_testkit::unique_name()));
    let idle_secs = 2;

    let first = SharedBroker::find_or_start(&dir, idle_secs).expect("a broker starts");
    let second = SharedBroker::find_or_start(&dir, idle_secs).expect("the broker is found");
    assert_eq!(first.bootstrap(), second.bootstrap(), "one broker for both");
    assert_eq!(node_dirs(&dir).len(), 1);

    // Still in use by `second` well past the idle limit.
    drop(first);
    tokio::time::sleep(Duration::from_secs(u64::from(idle_secs) * 2 + 1)).await;
    assert!(
        answers(second.bootstrap(), Duration::from_secs(5)),
        "the broker stopped while in use"
    );

    let bootstrap = second.bootstrap().to_owned();
    drop(second);
    let stopped = harvest_testkit::eventually(Duration::from_secs(40), || {
        let gone = !answers(&bootstrap, Duration::from_millis(500)) && node_dirs(&dir).is_empty();
        std::future::ready(gone.then_some(()))
    })
    .await;
    assert!(
        stopped.is_some(),
        "the idle broker was not stopped and removed"
    );
    assert!(
        !dir.join("broker").exists(),
        "the stopped broker is still registered"
    );

    // The next user starts a new one.
    let third = SharedBroker::find_or_start(&dir, idle_secs).expect("a new broker starts");
    assert!(answers(third.bootstrap(), Duration::from_secs(5)));
    drop(third);
    let _ = harvest_testkit::eventually(Duration::from_secs(40), || {
        std::future::ready(node_dirs(&dir).is_empty().then_some(()))
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}
