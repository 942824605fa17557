//! `sync --wait --rollback-on-failure` (issue 14) on the workload-running test cluster: the
//! failures are real (tests/cluster/README.md: image tag `broken` never pulls, `crash`
//! crash-loops, a Job Pod tagged `fail` exits 1), the rollback is a revert of the last
//! successful revision, and what happened is read back from the cluster and the records.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;

fn job(name: &str, image: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\nspec:\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: task\n          image: {image}\n"
    )
}

fn config_map(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  a: '1'\n")
}

/// A Deployment that is Available only `secs` after its Pod is Ready.
fn slow_deployment(name: &str, image: &str, secs: u32) -> String {
    deployment(name, image).replace(
        "  replicas: 1\n",
        &format!("  replicas: 1\n  minReadySeconds: {secs}\n"),
    )
}

fn image_of(ns: &str, name: &str) -> Value {
    kubectl_json(&["get", "deployment", name, "-n", ns])["spec"]["template"]["spec"]["containers"]
        [0]["image"]
        .clone()
}

pub(super) fn leases(ns: &str) -> usize {
    kubectl_json(&["get", "leases", "-n", ns])["items"]
        .as_array()
        .unwrap()
        .len()
}

fn is_available(ns: &str, name: &str) -> bool {
    let d = kubectl_json(&["get", "deployment", name, "-n", ns]);
    d["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Available" && c["status"] == "True")
}

/// Tag `good`: Deployment web on nginx:1.25; tag `bad`: the same on nginx:broken, plus a
/// ConfigMap only `bad` has (the rollback must prune it).
fn good_and_bad() -> Repo {
    let repo = Repo::new();
    repo.write("app/web.yaml", deployment("web", "nginx:1.25"));
    repo.tag("good");
    repo.write("app/web.yaml", deployment("web", "nginx:broken"));
    repo.write("app/extra.yaml", config_map("only-in-bad"));
    repo.tag("bad");
    repo
}

#[test]
fn a_broken_image_is_rolled_back_to_the_last_good_revision() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("rollback");
    let repo = good_and_bad();
    let r = repo.path.to_str().unwrap();
    ok(sync_app(r, "good", &ns, &["--wait", "--timeout", "60s"]));

    let o = sync_app(
        r,
        "bad",
        &ns,
        &["--wait", "--timeout", "60s", "--rollback-on-failure"],
    );
    let e = err(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    // In order: what failed and why, that it rolls back and where to, whether that is ready.
    let failed = e
        .find(&format!("Deployment.apps/{ns}/web: ImagePullBackOff"))
        .unwrap_or_else(|| panic!("{e}"));
    let rolling = e
        .find(&format!(
            "rolling back namespace {ns} to revision 1 (tag good) after failed revision 2"
        ))
        .unwrap_or_else(|| panic!("{e}"));
    let done = e
        .find("rolled back to revision 1 (tag good): 1 applied, 1 pruned, ready, recorded as revision 3")
        .unwrap_or_else(|| panic!("{e}"));
    assert!(failed < rolling && rolling < done, "{e}");

    assert_eq!(image_of(&ns, "web"), "nginx:1.25");
    assert!(is_available(&ns, "web"));
    assert!(
        kubectl_json(&["get", "configmaps", "-n", &ns])["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|cm| cm["metadata"]["name"] != "only-in-bad"),
        "the rollback pruned what only the failed revision had"
    );
    assert_eq!(leases(&ns), 0, "the lease is released");
    let h = history(&ns);
    let revs = h["revisions"].as_array().unwrap();
    let rev = |n: u64| revs.iter().find(|r| r["revision"] == n).unwrap();
    assert_eq!(
        rev(2)["outcome"],
        format!("failed: Deployment.apps/{ns}/web: ImagePullBackOff"),
        "{h}"
    );
    assert_eq!(rev(2)["rolled_back_to"], 1, "{h}");
    assert_eq!(
        rev(3)["outcome"],
        "rolled back to revision 1 (tag good) after failed revision 2",
        "{h}"
    );
    assert_eq!(rev(3)["tag"], "good");
    let text = out(&ok(run(&["history", "-n", &ns])));
    assert!(
        text.contains("ImagePullBackOff (rolled back to 1)"),
        "{text}"
    );
    let diff = diff_app(r, "good", &ns, &[]);
    assert_eq!(diff.status.code(), Some(0), "{}", out(&diff));

    // A later sync of the rolled-back tag says it failed before, in one line; --force not.
    let again = ok(sync_app(r, "bad", &ns, &["--dry-run"]));
    let warnings: Vec<String> = err(&again)
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .map(str::to_string)
        .collect();
    assert_eq!(
        warnings,
        [format!(
            "warning: tag bad was synced before as revision 2 (failed: Deployment.apps/{ns}/web: \
             ImagePullBackOff) and rolled back to revision 1; syncing it again (--force: without \
             this warning)"
        )]
    );
    let forced = ok(sync_app(r, "bad", &ns, &["--dry-run", "--force"]));
    assert!(!err(&forced).contains("warning:"), "{}", err(&forced));
}

/// `progressDeadlineSeconds: 10` and a crash-looping image: the failure is known from the
/// cluster's own signals long before a 5-minute --timeout.
#[test]
fn a_crash_loop_is_caught_early_and_rolled_back() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("rollback-crash");
    let repo = Repo::new();
    repo.write("app/web.yaml", deployment("web", "nginx:1.25"));
    repo.tag("good");
    repo.write(
        "app/web.yaml",
        deployment("web", "nginx:crash").replace(
            "  replicas: 1\n",
            "  replicas: 1\n  progressDeadlineSeconds: 10\n",
        ),
    );
    repo.tag("crash");
    let r = repo.path.to_str().unwrap();
    ok(sync_app(r, "good", &ns, &["--wait", "--timeout", "60s"]));
    let started = Instant::now();
    let o = sync_app(
        r,
        "crash",
        &ns,
        &["--wait", "--timeout", "5m", "--rollback-on-failure"],
    );
    let took = started.elapsed();
    let e = err(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(took < Duration::from_secs(60), "took {took:?}: {e}");
    assert!(
        e.contains("ProgressDeadlineExceeded") || e.contains("CrashLoopBackOff"),
        "{e}"
    );
    assert!(
        e.contains("rolled back to revision 1 (tag good): 1 applied, 0 pruned, ready"),
        "{e}"
    );
    assert_eq!(image_of(&ns, "web"), "nginx:1.25");
    assert!(is_available(&ns, "web"));
}

/// A Job that fails (image tag `fail`, backoffLimit 0) in the failed revision: the rollback
/// prunes it, as the previous revision never had it.
#[test]
fn a_failed_job_is_rolled_back_and_pruned() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("rollback-job");
    let repo = Repo::new();
    repo.write("app/web.yaml", deployment("web", "nginx:1.25"));
    repo.tag("good");
    repo.write("app/web.yaml", deployment("web", "nginx:1.27"));
    repo.write("app/migrate.yaml", job("migrate", "busybox:fail"));
    repo.tag("bad");
    let r = repo.path.to_str().unwrap();
    ok(sync_app(r, "good", &ns, &["--wait", "--timeout", "60s"]));
    let o = sync_app(
        r,
        "bad",
        &ns,
        &[
            "--wait",
            "--timeout",
            "90s",
            "--rollback-on-failure",
            "-o",
            "json",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    // -o json tells the same story.
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["result"]["outcome"]
            .as_str()
            .unwrap()
            .starts_with(&format!(
                "failed: Job.batch/{ns}/migrate: BackoffLimitExceeded"
            )),
        "{v}"
    );
    assert_eq!(
        v["result"]["failed"][0]["object"],
        format!("Job.batch/{ns}/migrate")
    );
    assert_eq!(v["result"]["failed"][0]["reason"], "BackoffLimitExceeded");
    assert_eq!(v["rollback"]["to_revision"], 1, "{v}");
    assert_eq!(v["rollback"]["tag"], "good", "{v}");
    assert_eq!(v["rollback"]["failed_revision"], 2, "{v}");
    assert_eq!(v["rollback"]["ready"], true, "{v}");
    assert_eq!(
        v["rollback"]["result"]["outcome"],
        "rolled back to revision 1 (tag good) after failed revision 2"
    );
    assert!(
        v["rollback"]["result"]["pruned"]
            .as_array()
            .unwrap()
            .contains(&json!(format!("Job.batch/{ns}/migrate"))),
        "{v}"
    );
    assert_eq!(
        kubectl_json(&["get", "jobs", "-n", &ns])["items"],
        Value::Array(vec![])
    );
    assert_eq!(image_of(&ns, "web"), "nginx:1.25");
}

/// A first sync has no earlier revision: nothing is rolled back, what was applied stays.
#[test]
fn a_first_sync_that_fails_has_nothing_to_roll_back_to() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("rollback-first");
    let repo = Repo::new();
    repo.write("app/migrate.yaml", job("migrate", "busybox:fail"));
    repo.tag("bad");
    let r = repo.path.to_str().unwrap();
    let o = sync_app(
        r,
        "bad",
        &ns,
        &["--wait", "--timeout", "60s", "--rollback-on-failure"],
    );
    let e = err(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains(&format!("Job.batch/{ns}/migrate: BackoffLimitExceeded")),
        "{e}"
    );
    assert!(
        e.contains(&format!(
            "nothing to roll back to: namespace {ns} has no successful revision before this \
             one, so what was applied stays as it is"
        )),
        "{e}"
    );
    assert!(!e.contains("rolling back"), "{e}");
    let h = history(&ns);
    assert_eq!(h["revisions"].as_array().unwrap().len(), 1, "{h}");
    assert!(h["revisions"][0]["rolled_back_to"].is_null(), "{h}");
    assert_eq!(
        names(&kubectl_json(&["get", "jobs", "-n", &ns])),
        ["migrate"]
    );
    assert_eq!(leases(&ns), 0);
}

/// A sync running in the background, its stderr collected as it comes.
pub(super) struct Running {
    child: Child,
    stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    pub(super) fn start(repo: &str, tag: &str, ns: &str, extra: &[&str]) -> Running {
        let c = cluster::cluster();
        let mut child = std::process::Command::new(BIN)
            .args([
                "sync", "--repo", repo, "--tag", tag, "--path", "app", "-n", ns, "--yes",
            ])
            .args(extra)
            .arg("--kubeconfig")
            .arg(c.kubeconfig())
            .env_remove("KUBECONFIG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe)
                .lines()
                .map_while(std::result::Result::ok)
            {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Running {
            child,
            stderr,
            reader: Some(reader),
        }
    }

    pub(super) fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub(super) fn ctrl_c(&self) {
        let status = std::process::Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub(super) fn wait_for_stderr(&self, needle: &str, limit: Duration) {
        wait_for(&format!("{needle:?} on stderr"), limit, || {
            self.stderr().contains(needle).then_some(())
        });
    }

    pub(super) fn finish(mut self) -> (Option<i32>, String) {
        let status = self.child.wait().unwrap();
        self.reader.take().unwrap().join().unwrap();
        (status.code(), self.stderr())
    }
}

/// Ctrl-C during the wait of `--rollback-on-failure` rolls back, as a careful human would:
/// the failed revision is recorded as interrupted, the rollback as a new revision, and the
/// lease is released.
#[test]
fn ctrl_c_during_the_wait_rolls_back() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("rollback-sigint");
    let repo = good_and_bad();
    let r = repo.path.to_str().unwrap();
    ok(sync_app(r, "good", &ns, &["--wait", "--timeout", "60s"]));
    let run = Running::start(
        r,
        "bad",
        &ns,
        &["--wait", "--timeout", "300s", "--rollback-on-failure"],
    );
    wait_for("the broken Pod", Duration::from_secs(30), || {
        live_pods(&ns, "web")
            .iter()
            .any(|p| p["spec"]["containers"][0]["image"] == "nginx:broken")
            .then_some(())
    });
    // Waiting, not still applying or recording: a loaded machine can take longer than a
    // fixed pause between the Pod appearing and the wait starting.
    run.wait_for_stderr("waiting for 2 objects", Duration::from_secs(30));
    let interrupted = Instant::now();
    run.ctrl_c();
    let (code, e) = run.finish();
    assert_eq!(code, Some(1), "{e}");
    assert!(interrupted.elapsed() < Duration::from_secs(30), "{e}");
    assert!(e.contains("interrupted (Ctrl-C) while waiting"), "{e}");
    assert!(
        e.contains(
            "rolled back to revision 1 (tag good): 1 applied, 1 pruned, ready, recorded as revision 3"
        ),
        "{e}"
    );
    let h = history(&ns);
    let revs = h["revisions"].as_array().unwrap();
    let rev = |n: u64| revs.iter().find(|r| r["revision"] == n).unwrap();
    assert_eq!(rev(2)["outcome"], "interrupted", "{h}");
    assert_eq!(rev(2)["rolled_back_to"], 1, "{h}");
    assert_eq!(
        rev(3)["outcome"],
        "rolled back to revision 1 (tag good) after failed revision 2"
    );
    assert_eq!(image_of(&ns, "web"), "nginx:1.25");
    assert_eq!(leases(&ns), 0, "the lease is released");
}

/// A second Ctrl-C stops the rollback itself: recorded as interrupted, lease released.
#[test]
fn a_second_ctrl_c_stops_the_rollback() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("rollback-sigint2");
    let repo = Repo::new();
    // The good revision takes 60 s to become Available after a change, so the rollback is
    // still waiting when the second Ctrl-C comes.
    repo.write("app/web.yaml", slow_deployment("web", "nginx:1.25", 60));
    repo.tag("good");
    repo.write("app/web.yaml", slow_deployment("web", "nginx:broken", 60));
    repo.tag("bad");
    let r = repo.path.to_str().unwrap();
    ok(sync_app(r, "good", &ns, &["--timeout", "5s"]));
    // Recorded as succeeded without waiting; the rollback goes back to it.
    let run = Running::start(
        r,
        "bad",
        &ns,
        &["--wait", "--timeout", "300s", "--rollback-on-failure"],
    );
    wait_for("the broken Pod", Duration::from_secs(30), || {
        live_pods(&ns, "web")
            .iter()
            .any(|p| p["spec"]["containers"][0]["image"] == "nginx:broken")
            .then_some(())
    });
    run.wait_for_stderr("waiting for 1 object", Duration::from_secs(30));
    run.ctrl_c();
    run.wait_for_stderr("rolling back namespace", Duration::from_secs(30));
    // The rollback's own wait has begun: its "waiting for" line is the second one.
    wait_for("the rollback's wait", Duration::from_secs(30), || {
        (run.stderr().matches("waiting for 1 object").count() >= 2).then_some(())
    });
    let second = Instant::now();
    run.ctrl_c();
    let (code, e) = run.finish();
    assert_eq!(code, Some(1), "{e}");
    assert!(second.elapsed() < Duration::from_secs(15), "{e}");
    assert!(
        e.contains(
            "the rollback to revision 1 (tag good) did not become ready (recorded as revision 3)"
        ),
        "{e}"
    );
    let h = history(&ns);
    let revs = h["revisions"].as_array().unwrap();
    let rev = |n: u64| revs.iter().find(|r| r["revision"] == n).unwrap();
    assert_eq!(rev(2)["outcome"], "interrupted", "{h}");
    assert_eq!(rev(3)["outcome"], "interrupted", "{h}");
    assert_eq!(leases(&ns), 0, "the lease is released");
}

/// `revert --rollback-on-failure`: a revert that fails goes back to the revision that was
/// current before it.
#[test]
fn a_failed_revert_rolls_back_to_what_was_current() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("rollback-revert");
    let repo = Repo::new();
    repo.write("app/web.yaml", deployment("web", "nginx:1.25"));
    repo.write("app/migrate.yaml", job("migrate", "busybox:fail"));
    repo.tag("bad");
    std::fs::remove_file(repo.path.join("app/migrate.yaml")).unwrap();
    repo.write("app/web.yaml", deployment("web", "nginx:1.27"));
    repo.tag("good");
    let r = repo.path.to_str().unwrap();
    ok(sync_app(r, "good", &ns, &["--wait", "--timeout", "60s"]));
    let o = run(&[
        "revert",
        "-n",
        &ns,
        "-C",
        r,
        "--to-tag",
        "bad",
        "--path",
        "app",
        "--yes",
        "--wait",
        "--timeout",
        "60s",
        "--rollback-on-failure",
        "--rollback-timeout",
        "45s",
    ]);
    let e = err(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains(&format!(
            "rolling back namespace {ns} to revision 1 (tag good) after failed revision 2 (at most 45s)"
        )),
        "{e}"
    );
    assert!(
        e.contains("rolled back to revision 1 (tag good): 1 applied, 1 pruned, ready"),
        "{e}"
    );
    assert_eq!(image_of(&ns, "web"), "nginx:1.27");
    let h = history(&ns);
    let revs = h["revisions"].as_array().unwrap();
    assert!(
        revs.iter().any(|r| r["revision"] == 2
            && r["outcome"]
                .as_str()
                .unwrap()
                .starts_with(&format!("failed: Job.batch/{ns}/migrate"))),
        "{h}"
    );
    assert_eq!(leases(&ns), 0);
}
