//! `./demo` end to end, as a new user runs it: it builds both tools, starts its own cluster,
//! walks the whole workflow — every sync waits until its Pods really run, a bad release is
//! caught by `--wait` and rolled back by `--rollback-on-failure` — and must leave nothing behind.

#[path = "common.rs"]
mod common;

use std::fs;
use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Generous: a warm run takes about a minute (30 s of it the bad release's Pod failing to pull
/// its image before that counts as failed), but it may have to build the cluster first.
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
        "kwok-node-3   Ready",
        "ready: environments dev -> staging -> prod",
        "synced dev to deploy/dev/",
        "promote dev -> staging:",
        "synced staging to deploy/staging/",
        "promote staging -> prod:",
        "synced production to deploy/prod/",
        // The bad release: --wait names the Deployment and why, then it is rolled back.
        "error: 1 object failed: Deployment.apps/dev/frontend: ImagePullBackOff",
        "rolling back namespace dev to revision",
        "failed: Deployment.apps/dev/frontend: ImagePullBackOff (rolled back to",
        "after failed revision",
        "rollback dev:",
        "demo finished",
    ] {
        assert!(out.contains(line), "./demo did not print {line:?}:\n{out}");
    }
    // Every Pod the first sync made runs (the Pods of a cluster that only stored objects would
    // not even exist), and after the rollback nothing is stuck any more.
    let first = section(&out, "== Tag what dev runs");
    assert!(first.contains("pod/frontend-"), "{first}");
    assert_all_running(first);
    let reverted = section(&out, "== Dev runs its last good revision");
    assert!(reverted.contains("pod/frontend-"), "{reverted}");
    assert_all_running(reverted);
    let last = section(&out, "== Roll dev's branch back");
    let health = last
        .lines()
        .rfind(|l| l.starts_with("health: "))
        .unwrap_or_else(|| panic!("no final health line:\n{last}"));
    let counts: Vec<&str> = health.split_whitespace().collect();
    assert_eq!(counts[1], counts[3], "the demo ends unhealthy: {health}");
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

/// The demo's output from the step headed `heading` to the next step.
fn section<'a>(out: &'a str, heading: &str) -> &'a str {
    let start = out
        .find(heading)
        .unwrap_or_else(|| panic!("no step {heading:?}:\n{out}"));
    let rest = &out[start + heading.len()..];
    &rest[..rest.find("\n== ").unwrap_or(rest.len())]
}

/// Every `kubectl get pods` line of `section` shows a Running, fully ready Pod, or a finished
/// Job Pod: podinfo's CronJobs (`warm-cache` runs every few minutes) may fire during the demo.
fn assert_all_running(section: &str) {
    for line in section.lines().filter(|l| l.starts_with("pod/")) {
        let columns: Vec<&str> = line.split_whitespace().collect();
        let ready: Vec<&str> = columns[1].split('/').collect();
        assert!(
            (columns[2] == "Running" && ready[0] == ready[1]) || columns[2] == "Completed",
            "a Pod that is not running: {line}\n{section}"
        );
    }
}
