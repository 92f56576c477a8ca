//! The Apache Kafka broker of a test run.
//!
//! A JVM takes seconds and hundreds of MB to start, so the tests of one run
//! share one broker: the first test that asks starts it, every later test
//! (in this process or another, as under nextest) finds it through a state
//! file, and each test keeps apart from the others with its own topic and
//! group prefix. The broker outlives the test that started it; a small
//! watchdog stops it once no test process has used it for
//! [`IDLE_SECS`] seconds, so a run leaves nothing behind.
//!
//! Bookkeeping lives in `$TMPDIR/harvest-test-kafka` (or
//! `HARVEST_TEST_KAFKA_DIR`):
//! - `start.lock`, held while a process looks for the broker or starts one,
//!   and by the watchdog while it decides to stop it;
//! - `users.lock`, held shared by every process that uses the broker, for as
//!   long as it lives (the OS drops it when a process ends, crashed or not);
//! - `broker`, the `host:port` of the running broker.
//!
//! Tests that stop or kill their broker start a private one instead.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context;
use harvest_stack::servers::{KafkaInstall, KafkaNode, answers, retry_on_port_clash};

/// Seconds without any test process before the shared broker stops.
pub const IDLE_SECS: u32 = 20;

/// Stops the broker once `users.lock` has been free for the idle limit.
/// Arguments: bookkeeping dir, node dir, idle limit, then the broker command.
const WATCHDOG: &str = r#"
dir=$1; node=$2; limit=$3; shift 3
"$@" >>"$node/broker.log" 2>&1 </dev/null &
broker=$!
idle=0
while kill -0 "$broker" 2>/dev/null; do
  sleep 1
  if flock -n -x "$dir/users.lock" true; then idle=$((idle + 1)); else idle=0; fi
  [ "$idle" -lt "$limit" ] && continue
  # Still unused while no test can be looking for the broker: forget it.
  if flock -x "$dir/start.lock" sh -c 'flock -n -x "$1/users.lock" true && rm -f "$1/broker"' _ "$dir"; then
    kill -TERM "$broker"
    break
  fi
  idle=0
done
wait "$broker"
rm -rf "$node"
"#;

static SHARED: OnceLock<Result<SharedBroker, String>> = OnceLock::new();

/// `host:port` of the broker shared by this test run, started if need be.
/// This process counts as one of its users until it ends.
pub fn shared_bootstrap() -> anyhow::Result<String> {
    let shared = SHARED.get_or_init(|| {
        SharedBroker::find_or_start(&bookkeeping_dir(), IDLE_SECS)
            .map_err(|error| format!("{error:#}"))
    });
    match shared {
        Ok(broker) => Ok(broker.bootstrap.clone()),
        Err(error) => anyhow::bail!("the shared test broker is not available: {error}"),
    }
}

/// One user's hold on a broker shared through a bookkeeping directory.
pub struct SharedBroker {
    bootstrap: String,
    /// Held shared while this user lives: the broker is in use.
    _users: File,
}

impl SharedBroker {
    /// The broker registered in `dir`, or a new one, started there, that
    /// stops itself once it has had no user for `idle_secs` seconds.
    pub fn find_or_start(dir: &Path, idle_secs: u32) -> anyhow::Result<SharedBroker> {
        find_or_start(dir, idle_secs)
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }
}

fn bookkeeping_dir() -> PathBuf {
    std::env::var_os("HARVEST_TEST_KAFKA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("harvest-test-kafka"))
}

fn open(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

fn find_or_start(dir: &Path, idle_secs: u32) -> anyhow::Result<SharedBroker> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let start_lock = open(&dir.join("start.lock"))?;
    start_lock.lock().context("locking start.lock")?;
    let users = open(&dir.join("users.lock"))?;
    users.lock_shared().context("locking users.lock")?;

    let state = dir.join("broker");
    if let Ok(bootstrap) = std::fs::read_to_string(&state) {
        let bootstrap = bootstrap.trim().to_owned();
        if answers(&bootstrap, Duration::from_secs(3)) {
            return Ok(SharedBroker {
                bootstrap,
                _users: users,
            });
        }
        // Its watchdog stops it, if it is alive at all.
        let _ = std::fs::remove_file(&state);
    }

    let install = KafkaInstall::find()?;
    let bootstrap = retry_on_port_clash(|| start(&install, dir, idle_secs))?;
    std::fs::write(&state, &bootstrap).with_context(|| format!("writing {}", state.display()))?;
    Ok(SharedBroker {
        bootstrap,
        _users: users,
    })
}

/// Starts a node under its watchdog and waits until it answers.
fn start(install: &KafkaInstall, dir: &Path, idle_secs: u32) -> anyhow::Result<String> {
    let node_dir = dir.join(format!("node-{}", uuid::Uuid::new_v4().simple()));
    let node = KafkaNode::prepare(install.clone(), &node_dir)?;
    let broker = node.command();
    let mut watchdog = Command::new("sh");
    watchdog
        .arg("-c")
        .arg(WATCHDOG)
        .arg("harvest-test-kafka")
        .arg(dir)
        .arg(&node_dir)
        .arg(idle_secs.to_string())
        .arg(broker.get_program())
        .args(broker.get_args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // Its own process group: a test runner that signals the test's group on
    // a timeout leaves the run's broker alone.
    std::os::unix::process::CommandExt::process_group(&mut watchdog, 0);
    let mut child = watchdog.spawn().context("starting the broker's watchdog")?;
    let ready = node.wait_ready(|| {
        child
            .try_wait()
            .ok()
            .flatten()
            .map(|status| format!("the broker exited: {status}"))
    });
    if let Err(error) = ready {
        // The watchdog and the broker are that process group.
        harvest_stack::servers::signal_group(child.id(), harvest_stack::servers::Signal::KILL);
        let _ = child.wait();
        let log = node_dir.join("broker.log");
        return Err(error.context(format!(
            "starting the shared test broker; see {}",
            log.display()
        )));
    }
    Ok(node.bootstrap())
}
