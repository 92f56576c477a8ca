//! The README's walk through one order with the `harvest` client, run line by
//! line against a running system, each step checked.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use harvest_domain::Regions;
use harvest_stack::ServiceKind;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::helpers::System;

/// The shell lines between the walkthrough markers of README.md.
fn walkthrough() -> Vec<String> {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let text = std::fs::read_to_string(&readme).expect("README.md");
    let start = text
        .find("<!-- walkthrough:start -->")
        .expect("start marker");
    let end = text.find("<!-- walkthrough:end -->").expect("end marker");
    text[start..end]
        .lines()
        .filter(|line| !line.starts_with("```") && !line.starts_with("<!--"))
        .filter(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// A bash session that keeps its variables between lines.
struct Shell {
    child: Child,
    stdin: ChildStdin,
    stdout: tokio::io::Lines<BufReader<ChildStdout>>,
}

impl Shell {
    fn start(dir: &Path, env: &[(String, String)]) -> Shell {
        let mut child = Command::new("bash")
            .args(["--noprofile", "--norc"])
            .current_dir(dir)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("bash starts");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Shell {
            child,
            stdin,
            stdout,
        }
    }

    /// Runs one line; returns its output (stdout and stderr) and exit code.
    async fn run(&mut self, line: &str) -> (String, i32) {
        let script = format!("{{ {line}\n}} 2>&1; echo \"::done $?::\"\n");
        self.stdin
            .write_all(script.as_bytes())
            .await
            .expect("write");
        let mut output = String::new();
        let read = async {
            while let Some(next) = self.stdout.next_line().await.expect("read") {
                if let Some(code) = next
                    .strip_prefix("::done ")
                    .and_then(|r| r.strip_suffix("::"))
                {
                    return code.parse().unwrap_or(-1);
                }
                output.push_str(&next);
                output.push('\n');
            }
            -1
        };
        let code = tokio::time::timeout(Duration::from_secs(90), read)
            .await
            .unwrap_or_else(|_| panic!("`{line}` did not finish"));
        (output, code)
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// What each line must show. The README and this list must go together: a
/// changed walkthrough fails here until its checks are updated.
struct Step {
    /// Text the README line contains.
    command: &'static str,
    /// A variable the line sets, and what its value starts with.
    sets: Option<(&'static str, &'static str)>,
    check: fn(&str) -> bool,
    /// The effect follows the command within moments: try again a while.
    eventually: bool,
}

fn on_hand(output: &str, units: i64) -> bool {
    output.lines().any(|line| {
        line.starts_with("On hand") && line.split_whitespace().last() == Some(&units.to_string())
    })
}

const STEPS: &[Step] = &[
    Step {
        command: "export PATH=",
        sets: None,
        check: |_| true,
        eventually: false,
    },
    Step {
        command: "harvest products --province Jiangxi",
        sets: None,
        check: |o| o.contains("Gannan navel oranges"),
        eventually: false,
    },
    Step {
        command: "ORANGES=$(harvest -q products",
        sets: Some(("ORANGES", "prd_")),
        check: |_| true,
        eventually: false,
    },
    Step {
        command: "harvest stock \"$ORANGES\"",
        sets: None,
        check: |o| on_hand(o, 350),
        eventually: false,
    },
    Step {
        command: "harvest courier register --id courier-anxi-1",
        sets: None,
        check: |o| o.contains("courier-anxi-1"),
        eventually: false,
    },
    Step {
        command: "ORDER=$(harvest -q order place",
        sets: Some(("ORDER", "ord_")),
        check: |o| o.contains("idempotency key"),
        eventually: false,
    },
    Step {
        command: "harvest order watch \"$ORDER\" --until dispatching",
        sets: None,
        check: |o| o.contains("DISPATCHING"),
        eventually: false,
    },
    Step {
        command: "SHIPMENT=$(harvest -q courier assignments",
        sets: Some(("SHIPMENT", "shp_")),
        check: |_| true,
        eventually: true,
    },
    Step {
        command: "harvest shipment pickup",
        sets: None,
        check: |o| o.contains("PICKED_UP"),
        eventually: false,
    },
    Step {
        command: "CODE=$(harvest -q order code \"$ORDER\" --buyer buyer-hangzhou-1)",
        sets: Some(("CODE", "")),
        check: |_| true,
        eventually: false,
    },
    Step {
        command: "harvest shipment deliver",
        sets: None,
        check: |o| o.contains("DELIVERED"),
        eventually: false,
    },
    Step {
        command: "harvest order watch \"$ORDER\"",
        sets: None,
        check: |o| o.contains("DELIVERED"),
        eventually: false,
    },
    Step {
        command: "harvest order show",
        sets: None,
        check: |o| o.contains("DELIVERED") && o.contains("¥116.00"),
        eventually: false,
    },
    Step {
        command: "harvest payment show",
        sets: None,
        check: |o| o.contains("CAPTURED"),
        eventually: true,
    },
    Step {
        command: "harvest payment payouts --seller farmer-chen-oranges",
        sets: None,
        check: |o| o.contains("ord_") && o.contains("total ¥"),
        eventually: false,
    },
    Step {
        command: "harvest courier list",
        sets: None,
        check: |o| o.contains("courier-anxi-1") && o.contains("yes"),
        eventually: false,
    },
    Step {
        command: "harvest stock \"$ORANGES\"",
        sets: None,
        check: |o| on_hand(o, 348),
        eventually: false,
    },
];

#[tokio::test]
async fn the_readme_walkthrough_works_step_by_step() {
    let lines = walkthrough();
    assert_eq!(
        lines.len(),
        STEPS.len(),
        "one check per README line: {lines:#?}"
    );

    // The README's regions, on the services' default ports if free.
    let system = System::start_with(|options| {
        options.regions = Regions::try_from(
            ["north", "east", "south", "southwest"]
                .map(str::to_owned)
                .to_vec(),
        )
        .expect("valid");
    })
    .await;
    let mut catalog = system.clients.catalog.clone();
    harvest_sim::seed::seed_catalog(&mut catalog)
        .await
        .expect("seeded");

    // `$PWD/target/debug` must hold the harvest binary the tests were built
    // with, wherever the build directory is.
    let bin_dir = test_bin_dir();
    assert!(
        bin_dir.join("harvest").is_file(),
        "build the workspace's binaries first"
    );
    let work = std::env::temp_dir().join(format!("harvest-walk-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(work.join("target")).expect("work dir");
    std::os::unix::fs::symlink(&bin_dir, work.join("target/debug")).expect("link");
    // Where `make run` keeps its token issuer, which `harvest` signs with.
    let issuer = system.stack.issuer().expect("authentication is on");
    let auth_dir = issuer.jwks_file().parent().expect("the issuer's directory");
    std::fs::create_dir_all(work.join("target/harvest")).expect("state dir");
    std::os::unix::fs::symlink(auth_dir, work.join("target/harvest/auth")).expect("link");
    let mut env = vec![("PATH".to_owned(), std::env::var("PATH").unwrap_or_default())];
    for kind in ServiceKind::ALL {
        let variable = format!("HARVEST_{}_URL", kind.name().to_uppercase());
        env.push((variable, system.stack.endpoint(kind).expect("running")));
    }
    let mut shell = Shell::start(&work, &env);

    for (line, step) in lines.iter().zip(STEPS) {
        assert!(
            line.contains(step.command),
            "README line `{line}` is not `{}`",
            step.command
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (output, code) = shell.run(line).await;
            let value = match step.sets {
                Some((variable, _)) => shell
                    .run(&format!("echo \"${variable}\""))
                    .await
                    .0
                    .trim()
                    .to_owned(),
                None => String::new(),
            };
            let set_ok = step.sets.is_none_or(|(_, prefix)| {
                !value.is_empty() && value.starts_with(prefix) && !value.contains('\n')
            });
            if code == 0 && set_ok && (step.check)(&output) {
                break;
            }
            assert!(
                step.eventually && tokio::time::Instant::now() < deadline,
                "step `{line}` exited {code}, set {value:?}, printed:\n{output}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let _ = std::fs::remove_dir_all(&work);
}

/// Where the workspace's binaries are: next to this test's `deps/`.
fn test_bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    let dir = exe.parent().expect("dir");
    if dir.file_name().is_some_and(|name| name == "deps") {
        return dir.parent().unwrap_or(dir).to_path_buf();
    }
    dir.to_path_buf()
}
