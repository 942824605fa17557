//! Health verdicts against the real API server, one test per difference from kstatus that
//! issue 21 fixed. The test cluster runs no kubelet and no workload controllers, so each test
//! plays the controller: it syncs the objects, then writes the status a controller would
//! write through the status subresource, and reads the verdict from `status -o json` (and,
//! where the waiting matters, from `sync --wait`).

use std::time::{Duration, Instant};

use serde_json::json;

use super::*;

/// A repository whose tag `v1` holds `manifests` under `app/`, synced into `ns`.
fn synced(ns: &str, manifests: &str) -> Repo {
    let repo = Repo::new();
    repo.write("app/objects.yaml", manifests);
    repo.tag("v1");
    ok(sync_app(repo.path.to_str().unwrap(), "v1", ns, &[]));
    repo
}

/// Writes `status` as the controller of `kind`/`name` would (a merge patch: lists such as
/// `conditions` are replaced whole).
fn write_status(ns: &str, kind: &str, name: &str, status: Value) {
    kubectl(&[
        "patch",
        kind,
        name,
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        &json!({ "status": status }).to_string(),
    ]);
}

fn generation(ns: &str, kind: &str, name: &str) -> i64 {
    kubectl_json(&["get", kind, name, "-n", ns])["metadata"]["generation"]
        .as_i64()
        .unwrap()
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

fn rolled_out_status(generation: i64, progressing_reason: &str) -> Value {
    json!({
        "observedGeneration": generation, "replicas": 1, "updatedReplicas": 1,
        "readyReplicas": 1, "availableReplicas": 1,
        "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
            {"type": "Progressing", "status": "True", "reason": progressing_reason,
             "message": "ReplicaSet \"web-5d9c\" is progressing."}]
    })
}

/// kstatus: a Deployment whose `Progressing` condition is not yet `NewReplicaSetAvailable` is
/// still rolling out, even when its replica counts look complete; `--wait` must not end there.
#[test]
fn a_deployment_mid_rollout_is_not_ready_until_new_replica_set_available() {
    let ns = cluster::cluster().fresh_namespace("midroll");
    let repo = synced(&ns, &deployment("web", "nginx:1.25"));
    let r = repo.path.to_str().unwrap();
    let web = format!("Deployment.apps/{ns}/web");
    let g = generation(&ns, "deployment", "web");
    write_status(
        &ns,
        "deployment",
        "web",
        rolled_out_status(g, "ReplicaSetUpdated"),
    );
    let h = health_of(&ns, &web);
    assert_health(&h, "in progress", "ReplicaSetNotAvailable");
    assert!(
        h["message"].as_str().unwrap().contains("ReplicaSetUpdated"),
        "{h}"
    );
    let o = sync_app(r, "v1", &ns, &["--wait", "--timeout", "3s"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains(&format!(
            "timed out after 3s waiting for 1 object: {web}: ReplicaSetNotAvailable"
        )),
        "{}",
        err(&o)
    );
    write_status(
        &ns,
        "deployment",
        "web",
        rolled_out_status(g, "NewReplicaSetAvailable"),
    );
    assert_health(&health_of(&ns, &web), "ready", "");
    ok(sync_app(r, "v1", &ns, &["--wait", "--timeout", "10s"]));
}

fn bare_pod(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n    - name: app\n      image: busybox:1.36\n"
    )
}

/// kstatus: a running Pod with a container in CrashLoopBackOff has failed. `--wait` says so
/// with the reason, long before its timeout.
#[test]
fn a_running_pod_crash_looping_fails_with_its_reason() {
    let ns = cluster::cluster().fresh_namespace("crashpod");
    let repo = synced(&ns, &bare_pod("worker"));
    let worker = format!("Pod/{ns}/worker");
    // The API server creates every Pod Pending.
    assert_health(&health_of(&ns, &worker), "in progress", "PodPending");
    write_status(
        &ns,
        "pod",
        "worker",
        json!({
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
            "containerStatuses": [{"name": "app", "image": "busybox:1.36", "imageID": "",
                "ready": false, "restartCount": 1,
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
                "state": {"waiting": {"reason": "CrashLoopBackOff",
                    "message": "back-off 10s restarting failed container=app"}}}]
        }),
    );
    let h = health_of(&ns, &worker);
    assert_health(&h, "failed", "CrashLoopBackOff");
    assert_eq!(
        h["message"],
        "container app keeps crashing (1 restart, last exit code 1 (Error)): \
         back-off 10s restarting failed container=app"
    );
    let started = Instant::now();
    let o = sync_app(
        repo.path.to_str().unwrap(),
        "v1",
        &ns,
        &["--wait", "--timeout", "5m"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains(&format!("1 object failed: {worker}: CrashLoopBackOff")),
        "{}",
        err(&o)
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

/// kstatus: a Pod the scheduler cannot place is given a 15 s window, then it has failed.
#[test]
fn an_unschedulable_pod_fails_after_the_schedule_window() {
    let ns = cluster::cluster().fresh_namespace("unsched");
    let repo = synced(&ns, &bare_pod("pinned"));
    let pinned = format!("Pod/{ns}/pinned");
    let message = "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.";
    write_status(
        &ns,
        "pod",
        "pinned",
        json!({
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                            "message": message}]
        }),
    );
    let created: jiff::Timestamp =
        kubectl_json(&["get", "pod", "pinned", "-n", &ns])["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
    let age = || jiff::Timestamp::now().duration_since(created);
    // The API server runs on this machine: its clock is ours.
    let h = health_of(&ns, &pinned);
    if age() < jiff::SignedDuration::from_secs(14) {
        assert_health(&h, "in progress", "PodNotScheduled");
    }
    let o = sync_app(
        repo.path.to_str().unwrap(),
        "v1",
        &ns,
        &["--wait", "--timeout", "2m"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains(&format!(
            "1 object failed: {pinned}: Unschedulable: {message}"
        )),
        "{}",
        err(&o)
    );
    let waited = age();
    assert!(
        waited >= jiff::SignedDuration::from_secs(15)
            && waited < jiff::SignedDuration::from_secs(90),
        "failed {waited:?} after creation"
    );
    assert_health(&health_of(&ns, &pinned), "failed", "Unschedulable");
}

fn job(suspend: bool) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: nightly\nspec:\n  suspend: {suspend}\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: run\n          image: busybox:1.36\n"
    )
}

/// kstatus (since cli-utils#668): a Job suspended on purpose is ready, so `--wait` does not
/// hang on it; once resumed it is in progress and says so (not "suspended").
#[test]
fn a_suspended_job_is_ready_and_a_resumed_one_is_not() {
    let ns = cluster::cluster().fresh_namespace("suspend");
    let repo = synced(&ns, &job(true));
    let r = repo.path.to_str().unwrap();
    let nightly = format!("Job.batch/{ns}/nightly");
    assert_health(&health_of(&ns, &nightly), "in progress", "JobNotStarted");
    let suspended = json!({"conditions": [{"type": "Suspended", "status": "True",
        "reason": "JobSuspended", "message": "Job suspended",
        "lastProbeTime": "2025-01-01T00:00:00Z", "lastTransitionTime": "2025-01-01T00:00:00Z"}]});
    write_status(&ns, "job", "nightly", suspended);
    assert_health(&health_of(&ns, &nightly), "ready", "Suspended");
    ok(sync_app(r, "v1", &ns, &["--wait", "--timeout", "10s"]));
    // Resumed in git; the Job controller has not acted on it yet.
    repo.write("app/objects.yaml", job(false));
    repo.tag("v2");
    ok(sync_app(r, "v2", &ns, &[]));
    let h = health_of(&ns, &nightly);
    assert_health(&h, "in progress", "Resuming");
    assert_eq!(
        h["message"],
        "spec.suspend is false: waiting for the Job controller to resume it"
    );
}

/// kstatus reads the standard `Stalled` and `Reconciling` conditions on every kind before the
/// kind's own rules, built-in kinds included.
#[test]
fn stalled_and_reconciling_count_on_built_in_kinds() {
    let ns = cluster::cluster().fresh_namespace("stalled");
    let repo = synced(&ns, &deployment("web", "nginx:1.25"));
    let web = format!("Deployment.apps/{ns}/web");
    let g = generation(&ns, "deployment", "web");
    let mut status = rolled_out_status(g, "NewReplicaSetAvailable");
    let with = |status: &mut Value, c: Value| status["conditions"].as_array_mut().unwrap().push(c);
    with(
        &mut status,
        json!({"type": "Reconciling", "status": "True", "reason": "Migrating",
        "message": "moving Pods to the new node pool"}),
    );
    write_status(&ns, "deployment", "web", status.clone());
    let h = health_of(&ns, &web);
    assert_health(&h, "in progress", "Migrating");
    assert_eq!(h["message"], "moving Pods to the new node pool");
    let mut status = rolled_out_status(g, "NewReplicaSetAvailable");
    with(
        &mut status,
        json!({"type": "Stalled", "status": "True", "reason": "PolicyDenied",
        "message": "admission policy refused the new Pods"}),
    );
    write_status(&ns, "deployment", "web", status);
    assert_health(&health_of(&ns, &web), "failed", "PolicyDenied");
    let o = sync_app(
        repo.path.to_str().unwrap(),
        "v1",
        &ns,
        &["--wait", "--timeout", "5m"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains(&format!(
            "{web}: PolicyDenied: admission policy refused the new Pods"
        )),
        "{}",
        err(&o)
    );
}

/// kstatus: a StatefulSet with more Pods than `spec.replicas` (a scale-down under way) is not
/// ready yet.
#[test]
fn a_stateful_set_with_extra_pods_is_not_ready() {
    let ns = cluster::cluster().fresh_namespace("stsextra");
    synced(
        &ns,
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: db\nspec:\n  replicas: 2\n  serviceName: db\n  selector:\n    matchLabels:\n      app: db\n  template:\n    metadata:\n      labels:\n        app: db\n    spec:\n      containers:\n        - name: db\n          image: postgres:17\n",
    );
    let db = format!("StatefulSet.apps/{ns}/db");
    let g = generation(&ns, "statefulset", "db");
    let status = |replicas: i64| {
        json!({"observedGeneration": g, "replicas": replicas, "readyReplicas": 2,
            "currentReplicas": 2, "updatedReplicas": 2, "availableReplicas": 2,
            "currentRevision": "db-7c9d", "updateRevision": "db-7c9d"})
    };
    write_status(&ns, "statefulset", "db", status(3));
    let h = health_of(&ns, &db);
    assert_health(&h, "in progress", "ExtraPods");
    assert_eq!(h["message"], "1 extra replica pending termination");
    write_status(&ns, "statefulset", "db", status(2));
    assert_health(&health_of(&ns, &db), "ready", "");
}

/// A Deployment whose own status only says "rolling out" is named with the reason of its new
/// ReplicaSet's Pods once they show the rollout cannot succeed. Here the test creates the
/// ReplicaSet and Pod the Deployment controller would have created.
#[test]
fn a_deployment_fails_with_the_reason_of_its_crash_looping_pods() {
    let ns = cluster::cluster().fresh_namespace("deppods");
    let repo = synced(&ns, &deployment("web", "registry.example/web:broken"));
    let web = format!("Deployment.apps/{ns}/web");
    kubectl(&[
        "annotate",
        "deployment",
        "web",
        "-n",
        &ns,
        "deployment.kubernetes.io/revision=2",
    ]);
    let d = kubectl_json(&["get", "deployment", "web", "-n", &ns]);
    let owner = |kind: &str, name: &str, uid: &Value| {
        json!([{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": uid,
                "controller": true}])
    };
    let template = &d["spec"]["template"];
    let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-7d9c", "labels": {"app": "web"},
            "annotations": {"deployment.kubernetes.io/revision": "2"},
            "ownerReferences": owner("Deployment", "web", &d["metadata"]["uid"])},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": template}});
    kubectl_create(&ns, &rs);
    let rs = kubectl_json(&["get", "replicaset", "web-7d9c", "-n", &ns]);
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-7d9c-x2l", "labels": {"app": "web"},
            "ownerReferences": owner("ReplicaSet", "web-7d9c", &rs["metadata"]["uid"])},
        "spec": template["spec"]});
    kubectl_create(&ns, &pod);
    write_status(
        &ns,
        "pod",
        "web-7d9c-x2l",
        json!({
            "phase": "Running",
            "containerStatuses": [{"name": "app", "image": "registry.example/web:broken",
                "imageID": "", "ready": false, "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff",
                    "message": "back-off 1m20s restarting failed container=app"}}}]
        }),
    );
    let g = generation(&ns, "deployment", "web");
    write_status(
        &ns,
        "deployment",
        "web",
        json!({
            "observedGeneration": g, "replicas": 1, "updatedReplicas": 1, "unavailableReplicas": 1,
            "conditions": [{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}]
        }),
    );
    let h = health_of(&ns, &web);
    assert_health(&h, "failed", "CrashLoopBackOff");
    assert_eq!(
        h["message"],
        "pod web-7d9c-x2l: container app keeps crashing (4 restarts): \
         back-off 1m20s restarting failed container=app"
    );
    let o = sync_app(
        repo.path.to_str().unwrap(),
        "v1",
        &ns,
        &["--wait", "--timeout", "5m"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains(&format!("{web}: CrashLoopBackOff: pod web-7d9c-x2l")),
        "{}",
        err(&o)
    );
}

fn kubectl_create(ns: &str, obj: &Value) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("obj.json");
    std::fs::write(&f, obj.to_string()).unwrap();
    kubectl(&["create", "-n", ns, "-f", f.to_str().unwrap()]);
}
