//! `./demo` end to end, as a new user runs it: it builds both tools, starts its own cluster,
//! walks the whole workflow and must leave nothing behind.

#[path = "common.rs"]
mod common;

use std::fs;
use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Generous: a warm run takes ~10-30 s, but it may have to link both binaries first.
const TIMEOUT: Duration = Duration::from_secs(900);

#[test]
fn demo_walks_the_workflow_and_cleans_up() {
    // A TMPDIR of our own: the demo's work directory (config repository, cluster state) is
    // created in it, so it must be empty again afterwards.
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join("demo-tmp");
    if tmp.exists() {
        fs::remove_dir_all(&tmp).unwrap();
    }
    fs::create_dir_all(&tmp).unwrap();
    let log = tmp.with_extension("log");
    // The tools report progress on stderr, so both streams go to one file, interleaved as a
    // user sees them.
    let stdout = fs::File::create(&log).unwrap();
    let stderr = stdout.try_clone().unwrap();
    let mut child = Command::new(common::root().join("demo"))
        .current_dir(common::root())
        .env("NO_COLOR", "1")
        .env("TMPDIR", &tmp)
        // The binaries under test, so the demo does not rebuild them mid-run.
        .env(
            "GITOPS_DEMO_BIN_DIR",
            common::git_deploy().parent().unwrap(),
        )
        .env_remove("KEEP")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("running ./demo");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > TIMEOUT {
            // SIGKILL skips the demo's cleanup trap; its cluster stops when its stdin closes.
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "./demo ran longer than {TIMEOUT:?}; output in {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut out = String::new();
    fs::File::open(&log)
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(status.success(), "./demo failed ({status}):\n{out}");
    for line in [
        "ready: environments dev -> staging -> prod",
        "synced dev to deploy/dev/",
        "promote dev -> staging:",
        "synced staging to deploy/staging/",
        "promote staging -> prod:",
        "synced production to deploy/prod/",
        "rollback dev:",
        "demo finished",
    ] {
        assert!(out.contains(line), "./demo did not print {line:?}:\n{out}");
    }
    assert!(
        !out.contains('\x1b'),
        "NO_COLOR=1 still printed escape codes:\n{out}"
    );
    let left: Vec<_> = fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "./demo left {left:?} behind");
    fs::remove_dir(&tmp).unwrap();
    fs::remove_file(&log).unwrap();
}
