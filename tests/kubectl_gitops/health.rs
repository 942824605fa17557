//! Health verdicts on situations the test cluster's real controllers, scheduler and KWOK nodes
//! produce, one test per case of issue 21 that a live cluster can show: nothing here writes a
//! status. Failures use the cluster's convention (tests/cluster/README.md): image tag `broken`
//! never pulls, `crash` crash-loops with a restart every 5 s.
//!
//! Covered elsewhere: a Job whose Pod fails (`BackoffLimitExceeded`) and a Deployment past its
//! `progressDeadlineSeconds` (`ProgressDeadlineExceeded`) in rollouts.rs. Cases no controller
//! of a real cluster produces — `Stalled` or `Reconciling` conditions on a built-in kind — are
//! unit tests of the rules only (kubectl-gitops/src/health/rules/tests.rs and the kstatus table
//! beside it).
//!
//! The grace periods are the product's (kubectl-gitops/src/health/rules/mod.rs): a Pod
//! unschedulable for 15 s, a container waiting on its image for 30 s, a Deployment's Pod
//! through 3 restarts. There are no flags to shorten them, so these tests take that long; they
//! wait on the cluster, not the CPU, and run beside the others.

use std::time::{Duration, Instant};

use serde_json::json;

use super::*;

/// A repository with one tag per `(tag, manifests)`, each holding its manifests as
/// `app/objects.yaml`.
fn tagged(tags: &[(&str, String)]) -> Repo {
    let repo = Repo::new();
    for (tag, manifests) in tags {
        repo.write("app/objects.yaml", manifests);
        repo.tag(tag);
    }
    repo
}

/// `status -o json`'s health entry for `object` (`Kind.group/ns/name`).
fn health_of(ns: &str, object: &str) -> Value {
    let s: Value =
        serde_json::from_slice(&ok(run(&["status", "-n", ns, "-o", "json"])).stdout).unwrap();
    s["health"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["object"] == object)
        .unwrap_or_else(|| panic!("no health entry for {object}: {s}"))
        .clone()
}

#[track_caller]
fn assert_health(h: &Value, status: &str, reason: &str) {
    assert_eq!(
        (h["status"].as_str(), h["reason"].as_str()),
        (Some(status), Some(reason)),
        "{h}"
    );
}

#[track_caller]
fn assert_contains(haystack: &str, needle: &str) {
    assert!(haystack.contains(needle), "{needle:?} not in:\n{haystack}");
}

fn condition<'a>(obj: &'a Value, kind: &str) -> &'a Value {
    obj["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} condition: {obj}"))
}

/// How long ago `obj` was created. The API server runs on this machine: its clock is ours.
fn age(obj: &Value) -> Duration {
    let created: jiff::Timestamp = obj["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    jiff::Timestamp::now()
        .duration_since(created)
        .try_into()
        .unwrap_or_default()
}

/// Deployment `web`: 3 replicas replaced one at a time (a new Pod must be available for 2 s
/// before an old one goes), so a rollout takes the controller several seconds.
fn web(image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 3\n  minReadySeconds: 2\n  strategy:\n    rollingUpdate:\n      maxSurge: 1\n      maxUnavailable: 0\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n        - name: app\n          image: {image}\n"
    )
}

/// kstatus: a Deployment is rolled out only once its controller says `Progressing=True` with
/// reason `NewReplicaSetAvailable`. `--wait` returns no earlier: when it does, every replica
/// runs the new image and the old ReplicaSet is scaled to zero. The controller writes that
/// condition in the same update as the final replica counts, so a rollout alone cannot tell
/// the condition from the counts; a paused Deployment can: complete counts, Progressing
/// Unknown, not ready.
#[test]
fn wait_returns_only_once_the_deployment_controller_has_finished_the_rollout() {
    let ns = cluster::cluster().fresh_namespace("midroll");
    let repo = tagged(&[("v1", web("nginx:1.25")), ("v2", web("nginx:1.27"))]);
    let r = repo.path.to_str().unwrap();
    ok(sync_app(r, "v1", &ns, &["--wait", "--timeout", "60s"]));
    ok(sync_app(r, "v2", &ns, &["--wait", "--timeout", "60s"]));

    let d = kubectl_json(&["get", "deployment", "web", "-n", &ns]);
    let st = &d["status"];
    assert_eq!(st["observedGeneration"], d["metadata"]["generation"], "{d}");
    let progressing = condition(&d, "Progressing");
    assert_eq!(
        (&progressing["status"], &progressing["reason"]),
        (&json!("True"), &json!("NewReplicaSetAvailable")),
        "{d}"
    );
    for count in [
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
    ] {
        assert_eq!(st[count], 3, "{count}: {d}");
    }
    let pods = live_pods(&ns, "web");
    let images: Vec<&Value> = pods
        .iter()
        .map(|p| &p["spec"]["containers"][0]["image"])
        .collect();
    assert_eq!(images, [&json!("nginx:1.27"); 3], "{pods:?}");
    let old: Vec<Value> = kubectl_json(&["get", "replicasets", "-n", &ns])["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|rs| rs["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.25")
        .cloned()
        .collect();
    assert_eq!(old.len(), 1, "{old:?}");
    assert_eq!(old[0]["spec"]["replicas"], 0, "{old:?}");
    let object = format!("Deployment.apps/{ns}/web");
    assert_health(&health_of(&ns, &object), "ready", "");

    // Paused by hand, its rollout cannot go on: every replica is updated and available, but
    // the controller now says Progressing=Unknown (DeploymentPaused).
    kubectl(&["rollout", "pause", "deployment/web", "-n", &ns]);
    let h = wait_for(
        "the controller to see the pause",
        Duration::from_secs(20),
        || {
            let h = health_of(&ns, &object);
            (h["status"] != "ready").then_some(h)
        },
    );
    assert_health(&h, "in progress", "ReplicaSetNotAvailable");
    assert_eq!(
        h["message"],
        "waiting for the rollout to finish (Progressing is Unknown with reason DeploymentPaused)"
    );
    let d = kubectl_json(&["get", "deployment", "web", "-n", &ns]);
    assert_eq!(d["status"]["availableReplicas"], 3, "{d}");
    let o = sync_app(r, "v2", &ns, &["--wait", "--timeout", "3s"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert_contains(
        &err(&o),
        &format!("timed out after 3s waiting for 1 object: {object}: ReplicaSetNotAvailable"),
    );
    kubectl(&["rollout", "resume", "deployment/web", "-n", &ns]);
    ok(sync_app(r, "v2", &ns, &["--wait", "--timeout", "30s"]));
}

/// A rollout held up by a new Pod that cannot pull its image: `status` says it is in
/// progress and names the Pod and why, while the old replicas keep serving; once the Pod has
/// waited out the 30 s grace period, `--wait` fails with `ImagePullBackOff` instead of running
/// to its timeout.
#[test]
fn a_rollout_blocked_on_an_image_pull_is_in_progress_then_fails_after_the_grace_period() {
    let ns = cluster::cluster().fresh_namespace("pullblock");
    let repo = tagged(&[("v1", web("nginx:1.25")), ("v2", web("nginx:broken"))]);
    let r = repo.path.to_str().unwrap();
    let object = format!("Deployment.apps/{ns}/web");
    ok(sync_app(r, "v1", &ns, &["--wait", "--timeout", "60s"]));
    ok(sync_app(r, "v2", &ns, &[]));

    let h = wait_for(
        "status to name the Pod that cannot pull",
        Duration::from_secs(20),
        || {
            let h = health_of(&ns, &object);
            h["message"]
                .as_str()?
                .contains("ImagePullBackOff")
                .then_some(h)
        },
    );
    let new_pod = live_pods(&ns, "web")
        .into_iter()
        .find(|p| p["spec"]["containers"][0]["image"] == "nginx:broken")
        .expect("the new ReplicaSet's Pod");
    let name = new_pod["metadata"]["name"].as_str().unwrap();
    if age(&new_pod) < Duration::from_secs(28) {
        assert_health(&h, "in progress", "LessUpdated");
        assert_contains(
            h["message"].as_str().unwrap(),
            &format!("1 of 3 replicas updated; pod {name}: container app: ImagePullBackOff: "),
        );
    }
    let d = kubectl_json(&["get", "deployment", "web", "-n", &ns]);
    assert_eq!(d["status"]["availableReplicas"], 3, "{d}");

    let started = Instant::now();
    let o = sync_app(r, "v2", &ns, &["--wait", "--timeout", "2m"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert_contains(
        &err(&o),
        &format!(
            "1 object failed: {object}: ImagePullBackOff: pod {name}: container app: \
             ImagePullBackOff: Back-off pulling image \"nginx:broken\""
        ),
    );
    assert!(
        age(&new_pod) >= Duration::from_secs(30),
        "failed before the grace period: the Pod is {:?} old",
        age(&new_pod)
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    assert_health(&health_of(&ns, &object), "failed", "ImagePullBackOff");
}

/// A Deployment whose new Pods crash-loop fails `--wait` with `CrashLoopBackOff`, naming the
/// Pod, once a container has restarted 3 times (10 s on this cluster), long before the
/// timeout.
#[test]
fn a_crash_looping_deployment_fails_the_wait_after_a_few_restarts() {
    let ns = cluster::cluster().fresh_namespace("crashdep");
    let repo = tagged(&[("v1", deployment("web", "nginx:crash"))]);
    let started = Instant::now();
    let o = sync_app(
        repo.path.to_str().unwrap(),
        "v1",
        &ns,
        &["--wait", "--timeout", "5m"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    let pod = live_pods(&ns, "web").remove(0);
    let name = pod["metadata"]["name"].as_str().unwrap();
    let e = err(&o);
    let prefix = format!(
        "1 object failed: Deployment.apps/{ns}/web: CrashLoopBackOff: pod {name}: \
         container app keeps crashing ("
    );
    assert_contains(&e, &prefix);
    let rest = &e[e.find(&prefix).unwrap() + prefix.len()..];
    let restarts: i64 = rest
        .split_once(" restarts, last exit code 1 (Error))")
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no restart count in {rest}"));
    assert!(restarts >= 3, "failed after {restarts} restarts: {e}");
}

fn bare_pod(name: &str, image: &str, spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n{spec}  containers:\n    - name: app\n      image: {image}\n"
    )
}

/// kstatus: a running Pod with a container in CrashLoopBackOff has failed, at the first
/// crash. `--wait` says so with the reason and the exit code.
#[test]
fn a_running_pod_crash_looping_fails_with_its_reason() {
    let ns = cluster::cluster().fresh_namespace("crashpod");
    let repo = tagged(&[("v1", bare_pod("worker", "busybox:crash", ""))]);
    let worker = format!("Pod/{ns}/worker");
    let started = Instant::now();
    let o = sync_app(
        repo.path.to_str().unwrap(),
        "v1",
        &ns,
        &["--wait", "--timeout", "5m"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert_contains(
        &err(&o),
        &format!("1 object failed: {worker}: CrashLoopBackOff: container app keeps crashing ("),
    );
    assert_contains(
        &err(&o),
        "last exit code 1 (Error)): back-off 5s restarting failed",
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_health(&health_of(&ns, &worker), "failed", "CrashLoopBackOff");
}

/// kstatus: a Pod the scheduler cannot place (here: a nodeSelector no Node matches) is given
/// the 15 s schedule window, then it has failed with the scheduler's reason and message.
#[test]
fn an_unschedulable_pod_fails_after_the_schedule_window() {
    let ns = cluster::cluster().fresh_namespace("unsched");
    let selector = "  nodeSelector:\n    gitops-tools.test/no-such-node: \"true\"\n";
    let repo = tagged(&[("v1", bare_pod("pinned", "busybox:1.36", selector))]);
    let r = repo.path.to_str().unwrap();
    let pinned = format!("Pod/{ns}/pinned");
    let why = "didn't match Pod's node affinity/selector";
    ok(sync_app(r, "v1", &ns, &[]));

    let h = wait_for("the scheduler's verdict", Duration::from_secs(20), || {
        let h = health_of(&ns, &pinned);
        h["message"].as_str()?.contains(why).then_some(h)
    });
    let pod = kubectl_json(&["get", "pod", "pinned", "-n", &ns]);
    if age(&pod) < Duration::from_secs(14) {
        assert_health(&h, "in progress", "PodNotScheduled");
    }
    let o = sync_app(r, "v1", &ns, &["--wait", "--timeout", "2m"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let e = err(&o);
    assert_contains(&e, &format!("1 object failed: {pinned}: Unschedulable: 0/"));
    assert_contains(&e, why);
    let waited = age(&pod);
    assert!(
        waited >= Duration::from_secs(15) && waited < Duration::from_secs(90),
        "failed {waited:?} after creation"
    );
    assert_health(&health_of(&ns, &pinned), "failed", "Unschedulable");
}

fn job(suspend: bool) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: nightly\nspec:\n  suspend: {suspend}\n  completions: 3\n  parallelism: 1\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: run\n          image: busybox:1.36\n"
    )
}

/// kstatus (since cli-utils#668): a Job suspended on purpose is ready, so `--wait` does not
/// hang on it. Resumed, it is ready only once Complete (our deliberate difference: kstatus
/// calls a started Job ready), so `--wait` returns after the last of its 3 Pods succeeded.
#[test]
fn a_suspended_job_is_ready_and_a_resumed_one_only_once_complete() {
    let ns = cluster::cluster().fresh_namespace("suspend");
    let repo = tagged(&[("v1", job(true)), ("v2", job(false))]);
    let r = repo.path.to_str().unwrap();
    let nightly = format!("Job.batch/{ns}/nightly");

    let o = ok(sync_app(r, "v1", &ns, &["--wait", "--timeout", "30s"]));
    assert_contains(&err(&o), "suspended (spec.suspend)");
    let j = kubectl_json(&["get", "job", "nightly", "-n", &ns]);
    assert_eq!(condition(&j, "Suspended")["status"], "True", "{j}");
    let pods = kubectl_json(&["get", "pods", "-n", &ns, "-l", "job-name=nightly"]);
    assert_eq!(pods["items"], json!([]), "a suspended Job runs nothing");
    assert_health(&health_of(&ns, &nightly), "ready", "Suspended");

    ok(sync_app(r, "v2", &ns, &["--wait", "--timeout", "60s"]));
    let j = kubectl_json(&["get", "job", "nightly", "-n", &ns]);
    assert_eq!(condition(&j, "Complete")["status"], "True", "{j}");
    assert_eq!(j["status"]["succeeded"], 3, "{j}");
    let h = health_of(&ns, &nightly);
    assert_health(&h, "ready", "Complete");
    assert_eq!(h["message"], "3 of 3 completions");
}

fn stateful_set(replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: db\nspec:\n  replicas: {replicas}\n  serviceName: db\n  selector:\n    matchLabels:\n      app: db\n  template:\n    metadata:\n      labels:\n        app: db\n    spec:\n      containers:\n        - name: db\n          image: postgres:17\n"
    )
}

/// Holds a Pod in Terminating with a finalizer of ours, and lets it go when dropped (also when
/// the test fails, so a shared cluster can delete the namespace).
struct HeldPod {
    ns: String,
    name: String,
}

impl HeldPod {
    fn hold(ns: &str, name: &str) -> HeldPod {
        kubectl(&[
            "patch",
            "pod",
            name,
            "-n",
            ns,
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":["gitops-tools.test/hold"]}}"#,
        ]);
        HeldPod {
            ns: ns.to_string(),
            name: name.to_string(),
        }
    }
}

impl Drop for HeldPod {
    fn drop(&mut self) {
        let _ = cluster::cluster()
            .kubectl()
            .args(["patch", "pod", &self.name, "-n", &self.ns, "--type=json"])
            .args(["-p", r#"[{"op":"remove","path":"/metadata/finalizers"}]"#])
            .output();
    }
}

/// kstatus: a StatefulSet with more Pods than `spec.replicas` is still scaling down. The
/// controller counts a Pod until it is gone, so a Pod that takes its time to terminate (here
/// held by a finalizer) keeps the scale-down, and `--wait`, in progress.
#[test]
fn a_stateful_set_scaling_down_is_not_ready_while_a_pod_terminates() {
    let ns = cluster::cluster().fresh_namespace("stsdown");
    let repo = tagged(&[("v1", stateful_set(3)), ("v2", stateful_set(2))]);
    let r = repo.path.to_str().unwrap();
    let db = format!("StatefulSet.apps/{ns}/db");
    ok(sync_app(r, "v1", &ns, &["--wait", "--timeout", "60s"]));
    let held = HeldPod::hold(&ns, "db-2");
    ok(sync_app(r, "v2", &ns, &[]));

    let h = wait_for("the scale-down to start", Duration::from_secs(20), || {
        let h = health_of(&ns, &db);
        (h["reason"] == "ExtraPods").then_some(h)
    });
    assert_health(&h, "in progress", "ExtraPods");
    assert_eq!(h["message"], "1 extra replica pending termination");
    let o = sync_app(r, "v2", &ns, &["--wait", "--timeout", "3s"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert_contains(
        &err(&o),
        &format!(
            "timed out after 3s waiting for 1 object: {db}: ExtraPods: 1 extra replica pending \
             termination"
        ),
    );

    drop(held);
    ok(sync_app(r, "v2", &ns, &["--wait", "--timeout", "30s"]));
    let s = kubectl_json(&["get", "statefulset", "db", "-n", &ns]);
    assert_eq!(s["status"]["replicas"], 2, "{s}");
}
