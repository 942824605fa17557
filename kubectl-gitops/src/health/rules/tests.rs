//! Our rules beyond kstatus's table: the messages and reasons people read, the fixes of
//! issue 21 one by one, the early failure signals, and a Deployment judged with its Pods.

use serde_json::{Value, json};

use super::judge;
use crate::health::verdict::{Context, Related, Status, Verdict};

const CREATED: &str = "2025-01-01T00:00:00Z";

/// The verdict `secs` seconds after [`CREATED`].
fn at(obj: &Value, secs: i64) -> Verdict {
    with(obj, secs, None)
}

fn with(obj: &Value, secs: i64, related: Option<&Related>) -> Verdict {
    let created: jiff::Timestamp = CREATED.parse().unwrap();
    let now = created + jiff::SignedDuration::from_secs(secs);
    judge(obj, &Context { now, related })
}

fn now(obj: &Value) -> Verdict {
    at(obj, 3600)
}

#[track_caller]
fn is(v: Verdict, status: Status, reason: &str, message: &str) {
    assert_eq!(
        (v.status, v.reason.as_str(), v.message.as_str()),
        (status, reason, message)
    );
}

#[track_caller]
fn ready(v: Verdict) {
    assert_eq!(v.status, Status::Ready, "{v:?}");
}

// ---- Deployments ----

fn deployment(status: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "generation": 2, "uid": "d-uid",
                     "annotations": {"deployment.kubernetes.io/revision": "2"}},
        "spec": {"replicas": 3, "progressDeadlineSeconds": 600,
                 "selector": {"matchLabels": {"app": "web"}}},
        "status": status,
    })
}

fn available(status: &str) -> Value {
    json!({"type": "Available", "status": status, "reason": "MinimumReplicasAvailable",
           "message": "Deployment has minimum availability."})
}

fn progressing(status: &str, reason: &str) -> Value {
    json!({"type": "Progressing", "status": status, "reason": reason,
           "message": format!("ReplicaSet \"web-5d9c\": {reason}")})
}

fn rolled_out() -> Value {
    deployment(json!({
        "observedGeneration": 2, "replicas": 3, "updatedReplicas": 3,
        "readyReplicas": 3, "availableReplicas": 3,
        "conditions": [available("True"), progressing("True", "NewReplicaSetAvailable")],
    }))
}

#[test]
fn deployment_rolled_out_is_ready() {
    ready(now(&rolled_out()));
    let mut one = rolled_out();
    one["spec"].as_object_mut().unwrap().remove("replicas");
    one["status"]["availableReplicas"] = json!(0);
    // spec.replicas defaults to 1, as in the controller.
    is(
        now(&one),
        Status::InProgress,
        "ExtraPods",
        "2 old replicas pending termination",
    );
}

/// Issue 21, difference 1: the counts look complete while the controller still replaces old
/// Pods; only `NewReplicaSetAvailable` says the rollout is over.
#[test]
fn deployment_mid_rollout_is_not_ready_until_new_replica_set_available() {
    let mut d = rolled_out();
    d["status"]["conditions"] =
        json!([available("True"), progressing("True", "ReplicaSetUpdated")]);
    is(
        now(&d),
        Status::InProgress,
        "ReplicaSetNotAvailable",
        "waiting for the rollout to finish (Progressing is True with reason ReplicaSetUpdated)",
    );
    d["status"]["conditions"] = json!([available("True")]);
    is(
        now(&d),
        Status::InProgress,
        "ReplicaSetNotAvailable",
        "waiting for the Progressing condition",
    );
    // Without a progress deadline the controller never writes Progressing.
    d["spec"]
        .as_object_mut()
        .unwrap()
        .remove("progressDeadlineSeconds");
    ready(now(&d));
    d["spec"]["progressDeadlineSeconds"] = json!(i32::MAX);
    ready(now(&d));
}

#[test]
fn deployment_counts_are_checked_in_kstatus_order() {
    let mut d = rolled_out();
    let st = |d: &mut Value, k: &str, v: i64| d["status"][k] = json!(v);
    st(&mut d, "replicas", 2);
    is(
        now(&d),
        Status::InProgress,
        "LessReplicas",
        "2 of 3 replicas created",
    );
    st(&mut d, "replicas", 4);
    st(&mut d, "updatedReplicas", 2);
    is(
        now(&d),
        Status::InProgress,
        "LessUpdated",
        "2 of 3 replicas updated",
    );
    st(&mut d, "updatedReplicas", 3);
    is(
        now(&d),
        Status::InProgress,
        "ExtraPods",
        "1 old replica pending termination",
    );
    st(&mut d, "replicas", 3);
    st(&mut d, "availableReplicas", 1);
    is(
        now(&d),
        Status::InProgress,
        "LessAvailable",
        "1 of 3 updated replicas available",
    );
    st(&mut d, "availableReplicas", 3);
    st(&mut d, "readyReplicas", 2);
    is(
        now(&d),
        Status::InProgress,
        "LessReady",
        "2 of 3 replicas ready",
    );
    st(&mut d, "readyReplicas", 3);
    d["status"]["conditions"] = json!([{"type": "Available", "status": "False",
        "reason": "MinimumReplicasUnavailable",
        "message": "Deployment does not have minimum availability."},
        progressing("True", "NewReplicaSetAvailable")]);
    is(
        now(&d),
        Status::InProgress,
        "DeploymentNotAvailable",
        "Deployment does not have minimum availability.",
    );
}

#[test]
fn deployment_unobserved_generation_waits() {
    let mut d = rolled_out();
    d["status"]["observedGeneration"] = json!(1);
    is(
        now(&d),
        Status::InProgress,
        "LatestGenerationNotObserved",
        "waiting for the controller to observe generation 2",
    );
}

#[test]
fn deployment_progress_deadline_exceeded_fails() {
    let d = deployment(json!({
        "observedGeneration": 2, "replicas": 3, "updatedReplicas": 1,
        "readyReplicas": 0, "availableReplicas": 0, "unavailableReplicas": 3,
        "conditions": [available("False"), {"type": "Progressing", "status": "False",
            "reason": "ProgressDeadlineExceeded",
            "message": "ReplicaSet \"web-7f8b\" has timed out progressing."}],
    }));
    is(
        now(&d),
        Status::Failed,
        "ProgressDeadlineExceeded",
        "ReplicaSet \"web-7f8b\" has timed out progressing.",
    );
}

/// Issue 21, difference 5: kstatus reads the standard conditions on every kind. Tested here
/// only: no built-in controller writes them, so no live cluster shows them on a Deployment.
#[test]
fn stalled_and_reconciling_count_on_built_in_kinds() {
    let mut d = rolled_out();
    let conditions = d["status"]["conditions"].as_array_mut().unwrap();
    conditions.push(
        json!({"type": "Stalled", "status": "True", "reason": "PolicyDenied",
        "message": "admission policy refused the new Pods"}),
    );
    is(
        now(&d),
        Status::Failed,
        "PolicyDenied",
        "admission policy refused the new Pods",
    );
    let mut d = rolled_out();
    let conditions = d["status"]["conditions"].as_array_mut().unwrap();
    conditions.push(json!({"type": "Reconciling", "status": "True", "reason": "Migrating"}));
    is(now(&d), Status::InProgress, "Migrating", "Migrating");
    let mut d = rolled_out();
    d["status"]["conditions"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "Stalled", "status": "False", "reason": "Fine"}));
    ready(now(&d));
}

// ---- a Deployment with its Pods ----

fn replica_set(name: &str, uid: &str, revision: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "uid": uid,
            "annotations": {"deployment.kubernetes.io/revision": revision},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                 "uid": "d-uid", "controller": true}]}})
}

fn pod_of(name: &str, rs_uid: &str, container: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "creationTimestamp": CREATED,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs",
                                 "uid": rs_uid, "controller": true}]},
        "status": {"phase": "Pending", "containerStatuses": [container]}})
}

fn waiting(reason: &str, message: &str, restarts: i64) -> Value {
    json!({"name": "web", "ready": false, "restartCount": restarts,
           "state": {"waiting": {"reason": reason, "message": message}}})
}

fn rolling() -> Value {
    deployment(json!({
        "observedGeneration": 2, "replicas": 4, "updatedReplicas": 1,
        "readyReplicas": 3, "availableReplicas": 3,
        "conditions": [available("True"), progressing("True", "ReplicaSetUpdated")],
    }))
}

fn related(pods: Vec<Value>) -> Related {
    Related {
        replica_sets: vec![
            replica_set("web-old", "rs-old", "1"),
            replica_set("web-new", "rs-new", "2"),
        ],
        pods,
    }
}

#[test]
fn a_new_pod_that_cannot_pull_its_image_fails_the_rollout_after_the_grace_period() {
    let pulling = waiting("ImagePullBackOff", "Back-off pulling image \"web:typo\"", 0);
    let r = related(vec![pod_of("web-new-1", "rs-new", pulling)]);
    is(
        with(&rolling(), 10, Some(&r)),
        Status::InProgress,
        "LessUpdated",
        "1 of 3 replicas updated; pod web-new-1: container web: ImagePullBackOff: \
         Back-off pulling image \"web:typo\"",
    );
    is(
        with(&rolling(), 30, Some(&r)),
        Status::Failed,
        "ImagePullBackOff",
        "pod web-new-1: container web: ImagePullBackOff: Back-off pulling image \"web:typo\"",
    );
    // Without the Pods, the Deployment's own status is all there is.
    is(
        with(&rolling(), 30, None),
        Status::InProgress,
        "LessUpdated",
        "1 of 3 replicas updated",
    );
}

#[test]
fn a_new_pod_crash_looping_fails_the_rollout_after_a_few_restarts() {
    let crash = |restarts| {
        let mut c = waiting(
            "CrashLoopBackOff",
            "back-off 40s restarting failed container",
            restarts,
        );
        c["lastState"] = json!({"terminated": {"exitCode": 1, "reason": "Error"}});
        related(vec![pod_of("web-new-1", "rs-new", c)])
    };
    assert_eq!(
        with(&rolling(), 5, Some(&crash(2))).status,
        Status::InProgress
    );
    is(
        with(&rolling(), 5, Some(&crash(3))),
        Status::Failed,
        "CrashLoopBackOff",
        "pod web-new-1: container web keeps crashing (3 restarts, last exit code 1 (Error)): \
         back-off 40s restarting failed container",
    );
}

#[test]
fn only_the_new_replica_sets_pods_count() {
    let broken = waiting("ErrImagePull", "not found", 0);
    // An old ReplicaSet's Pod, and a Pod no ReplicaSet of ours controls.
    let r = related(vec![
        pod_of("web-old-1", "rs-old", broken.clone()),
        pod_of("stray", "someone-else", broken.clone()),
    ]);
    assert_eq!(with(&rolling(), 300, Some(&r)).status, Status::InProgress);
    // A ReplicaSet with the right revision that another Deployment controls.
    let mut foreign = related(vec![pod_of("web-new-1", "rs-new", broken)]);
    foreign.replica_sets[1]["metadata"]["ownerReferences"][0]["uid"] = json!("other");
    assert_eq!(
        with(&rolling(), 300, Some(&foreign)).status,
        Status::InProgress
    );
}

#[test]
fn pods_never_overrule_a_deployment_that_is_ready_or_failed() {
    let r = related(vec![pod_of(
        "web-new-1",
        "rs-new",
        waiting("ErrImagePull", "x", 0),
    )]);
    ready(with(&rolled_out(), 300, Some(&r)));
    let mut d = rolling();
    d["status"]["conditions"] = json!([progressing("False", "ProgressDeadlineExceeded")]);
    assert_eq!(with(&d, 300, Some(&r)).reason, "ProgressDeadlineExceeded");
}

// ---- ReplicaSets, StatefulSets, DaemonSets ----

#[test]
fn replica_set_rules() {
    let mut rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-5d9c", "generation": 1}, "spec": {"replicas": 2},
        "status": {"observedGeneration": 1, "replicas": 2, "fullyLabeledReplicas": 2,
                   "readyReplicas": 2, "availableReplicas": 2}});
    ready(now(&rs));
    rs["status"]["replicas"] = json!(3);
    is(
        now(&rs),
        Status::InProgress,
        "ExtraPods",
        "1 extra replica pending termination",
    );
    rs["status"]["availableReplicas"] = json!(1);
    is(
        now(&rs),
        Status::InProgress,
        "LessAvailable",
        "1 of 2 replicas available",
    );
    rs["status"]["fullyLabeledReplicas"] = json!(1);
    is(
        now(&rs),
        Status::InProgress,
        "LessLabelled",
        "1 of 2 replicas created with the template's labels",
    );
    rs["status"]["conditions"] = json!([{"type": "ReplicaFailure", "status": "True",
        "reason": "FailedCreate",
        "message": "pods \"web-5d9c-x\" is forbidden: exceeded quota: compute"}]);
    is(
        now(&rs),
        Status::InProgress,
        "ReplicaFailure",
        "pods \"web-5d9c-x\" is forbidden: exceeded quota: compute",
    );
}

fn stateful_set(strategy: Value, status: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "shop", "generation": 3},
        "spec": {"replicas": 3, "serviceName": "db", "updateStrategy": strategy},
        "status": status})
}

fn sts_status() -> Value {
    json!({"observedGeneration": 3, "replicas": 3, "readyReplicas": 3,
           "currentReplicas": 3, "updatedReplicas": 3, "availableReplicas": 3,
           "currentRevision": "db-6c9f", "updateRevision": "db-6c9f"})
}

#[test]
fn stateful_set_rules() {
    let mut ss = stateful_set(json!({"type": "RollingUpdate"}), sts_status());
    ready(now(&ss));
    ss["status"]["currentRevision"] = json!("db-5b8e");
    is(
        now(&ss),
        Status::InProgress,
        "RevisionMismatch",
        "waiting for revision db-6c9f to replace db-5b8e",
    );
    ss["status"]["currentReplicas"] = json!(1);
    is(
        now(&ss),
        Status::InProgress,
        "LessCurrent",
        "1 of 3 replicas at the current revision",
    );
    // Issue 21: more Pods than spec.replicas (a scale-down in progress) is not done.
    ss["status"]["replicas"] = json!(5);
    is(
        now(&ss),
        Status::InProgress,
        "ExtraPods",
        "2 extra replicas pending termination",
    );
    ss["status"]["readyReplicas"] = json!(2);
    is(
        now(&ss),
        Status::InProgress,
        "LessReady",
        "2 of 3 replicas ready",
    );
    ss["status"]["replicas"] = json!(2);
    is(
        now(&ss),
        Status::InProgress,
        "LessReplicas",
        "2 of 3 replicas created",
    );
}

#[test]
fn stateful_set_partition_and_on_delete() {
    let mut status = sts_status();
    status["updatedReplicas"] = json!(1);
    status["currentRevision"] = json!("db-5b8e");
    let partitioned = |p: i64| {
        stateful_set(
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": p}}),
            status.clone(),
        )
    };
    ready(now(&partitioned(2)));
    is(
        now(&partitioned(1)),
        Status::InProgress,
        "PartitionRollout",
        "1 of 2 replicas updated (partition 1)",
    );
    // The API server's default, partition 0, means every Pod must be updated.
    is(
        now(&partitioned(0)),
        Status::InProgress,
        "PartitionRollout",
        "1 of 3 replicas updated (partition 0)",
    );
    let mut on_delete = stateful_set(json!({"type": "OnDelete"}), status);
    ready(now(&on_delete));
    on_delete["status"]["readyReplicas"] = json!(0);
    ready(now(&on_delete));
}

#[test]
fn daemon_set_rules() {
    let mut ds = json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "ops", "generation": 1},
        "status": {"observedGeneration": 1, "currentNumberScheduled": 3,
            "desiredNumberScheduled": 3, "numberReady": 3, "numberAvailable": 3,
            "updatedNumberScheduled": 3}});
    ready(now(&ds));
    ds["status"]["numberReady"] = json!(2);
    is(
        now(&ds),
        Status::InProgress,
        "LessReady",
        "2 of 3 pods ready",
    );
    ds["status"]["numberAvailable"] = json!(1);
    is(
        now(&ds),
        Status::InProgress,
        "LessAvailable",
        "1 of 3 pods available",
    );
    ds["status"]["updatedNumberScheduled"] = json!(0);
    is(
        now(&ds),
        Status::InProgress,
        "LessUpdated",
        "0 of 3 pods updated",
    );
    ds["status"]["currentNumberScheduled"] = json!(0);
    is(
        now(&ds),
        Status::InProgress,
        "LessCurrent",
        "0 of 3 pods scheduled",
    );
    // Nothing scheduled and never observed must not pass as "0 of 0 ready".
    ds["status"] = json!({});
    is(
        now(&ds),
        Status::InProgress,
        "NoObservedGeneration",
        "waiting for the controller to observe generation 1",
    );
}

// ---- Jobs ----

fn job(spec: Value, status: Value) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "migrate", "namespace": "shop", "generation": 1},
        "spec": spec, "status": status})
}

#[test]
fn job_is_ready_when_complete_and_not_before() {
    let spec = json!({"completions": 1, "backoffLimit": 2});
    let done = job(
        spec.clone(),
        json!({
        "startTime": "2025-01-01T00:00:00Z", "completionTime": "2025-01-01T00:00:30Z",
        "succeeded": 1,
        "conditions": [
            {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached"},
            {"type": "Complete", "status": "True", "reason": "CompletionsReached"}]}),
    );
    is(now(&done), Status::Ready, "Complete", "1 of 1 completions");
    let running = job(
        spec.clone(),
        json!({"startTime": "2025-01-01T00:00:00Z",
        "active": 1, "failed": 1, "ready": 0}),
    );
    is(
        now(&running),
        Status::InProgress,
        "JobNotComplete",
        "0 of 1 completions, 1 running, 1 failed pod",
    );
    is(
        now(&job(spec, json!({}))),
        Status::InProgress,
        "JobNotStarted",
        "not started yet",
    );
}

#[test]
fn a_failed_job_carries_the_controllers_reason() {
    let spec = json!({"backoffLimit": 2});
    for reason in ["BackoffLimitExceeded", "DeadlineExceeded"] {
        let broke = job(
            spec.clone(),
            json!({"failed": 3, "conditions": [
            {"type": "FailureTarget", "status": "True", "reason": reason,
             "message": "Job has reached the specified backoff limit"},
            {"type": "Failed", "status": "True", "reason": reason,
             "message": "Job has reached the specified backoff limit"}]}),
        );
        is(
            now(&broke),
            Status::Failed,
            reason,
            "Job has reached the specified backoff limit",
        );
    }
    // Failed follows FailureTarget only once every Pod has terminated.
    let failing = job(
        spec,
        json!({"startTime": "2025-01-01T00:00:00Z", "active": 1,
        "conditions": [{"type": "FailureTarget", "status": "True",
            "reason": "PodFailurePolicy", "message": "Container main exited with code 42"}]}),
    );
    is(
        now(&failing),
        Status::Failed,
        "PodFailurePolicy",
        "Container main exited with code 42",
    );
}

/// Issue 21, difference 4, and the resumed Job's reason.
#[test]
fn a_suspended_job_is_ready_and_a_resumed_one_is_not() {
    let suspended_cond = json!({"conditions": [{"type": "Suspended", "status": "True",
        "reason": "JobSuspended", "message": "Job suspended"}]});
    let suspended = job(json!({"suspend": true}), suspended_cond.clone());
    is(
        now(&suspended),
        Status::Ready,
        "Suspended",
        "suspended (spec.suspend)",
    );
    let resumed = job(json!({"suspend": false}), suspended_cond);
    is(
        now(&resumed),
        Status::InProgress,
        "Resuming",
        "spec.suspend is false: waiting for the Job controller to resume it",
    );
    let not_yet = job(json!({"suspend": true}), json!({}));
    is(
        now(&not_yet),
        Status::InProgress,
        "JobNotStarted",
        "suspended (spec.suspend): waiting for the Job controller to mark it Suspended",
    );
    let running_again = job(
        json!({"suspend": false}),
        json!({
        "startTime": "2025-01-01T00:00:00Z", "active": 1,
        "conditions": [{"type": "Suspended", "status": "False", "reason": "JobResumed"}]}),
    );
    is(
        now(&running_again),
        Status::InProgress,
        "JobNotComplete",
        "0 of 1 completions, 1 running",
    );
}

// ---- Pods ----

fn pod(status: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "shop", "creationTimestamp": CREATED},
        "spec": {"containers": [{"name": "web", "image": "nginx"}]},
        "status": status})
}

#[test]
fn pod_ready_and_finished() {
    ready(now(&pod(json!({"phase": "Running", "conditions": [
        {"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}]}))));
    ready(now(&pod(json!({"phase": "Succeeded"}))));
    // Deliberately not kstatus: a finished, failed Pod will not run again.
    is(
        now(&pod(json!({"phase": "Failed", "reason": "Evicted",
            "message": "The node was low on resource: memory."}))),
        Status::Failed,
        "Evicted",
        "The node was low on resource: memory.",
    );
    is(
        now(&pod(
            json!({"phase": "Failed", "containerStatuses": [{"name": "web",
            "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}),
        )),
        Status::Failed,
        "OOMKilled",
        "container web exited with code 137",
    );
}

/// Issue 21, difference 2: kstatus fails a running Pod with a crash-looping container at
/// once, and the reason is CrashLoopBackOff (we used to say Unschedulable).
#[test]
fn a_running_pod_crash_looping_fails() {
    let crashing = pod(json!({"phase": "Running",
        "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
        "containerStatuses": [{"name": "web", "ready": false, "restartCount": 1,
            "lastState": {"terminated": {"exitCode": 2, "reason": "Error"}},
            "state": {"waiting": {"reason": "CrashLoopBackOff",
                "message": "back-off 10s restarting failed container=web"}}}]}));
    is(
        now(&crashing),
        Status::Failed,
        "CrashLoopBackOff",
        "container web keeps crashing (1 restart, last exit code 2 (Error)): \
         back-off 10s restarting failed container=web",
    );
    let unready = pod(json!({"phase": "Running", "conditions": [
        {"type": "Ready", "status": "False", "reason": "ContainersNotReady",
         "message": "containers with unready status: [web]"}],
        "containerStatuses": [{"name": "web", "state": {"running": {}}}]}));
    is(
        now(&unready),
        Status::InProgress,
        "PodRunningNotReady",
        "containers with unready status: [web]",
    );
}

/// Issue 21, difference 3: unschedulable for longer than the 15 s schedule window fails.
#[test]
fn an_unschedulable_pod_fails_after_the_schedule_window() {
    let p = pod(json!({"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."}]}));
    let message = "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.";
    is(at(&p, 14), Status::InProgress, "PodNotScheduled", message);
    is(at(&p, 15), Status::Failed, "Unschedulable", message);
}

#[test]
fn a_pod_stuck_on_its_image_or_config_fails_after_the_grace_period() {
    for reason in [
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
    ] {
        let p = pod(json!({"phase": "Pending",
            "containerStatuses": [waiting(reason, "details", 0)]}));
        let message = format!("container web: {reason}: details");
        is(at(&p, 29), Status::InProgress, "PodPending", &message);
        is(at(&p, 30), Status::Failed, reason, &message);
    }
    let creating = pod(json!({"phase": "Pending",
        "containerStatuses": [{"name": "web", "state": {"waiting": {"reason": "ContainerCreating"}}}]}));
    is(
        at(&creating, 300),
        Status::InProgress,
        "PodPending",
        "pending",
    );
}

#[test]
fn an_init_container_crash_looping_fails_after_a_few_restarts() {
    let p = |restarts| {
        pod(json!({"phase": "Pending",
            "initContainerStatuses": [{"name": "migrate", "restartCount": restarts,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}))
    };
    is(
        now(&p(1)),
        Status::InProgress,
        "PodPending",
        "container migrate: CrashLoopBackOff",
    );
    is(
        now(&p(3)),
        Status::Failed,
        "CrashLoopBackOff",
        "container migrate keeps crashing (3 restarts)",
    );
}

// ---- other kinds ----

#[test]
fn pvc_rules() {
    let pvc = |phase: Value| {
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": "data", "namespace": "shop"},
               "status": {"phase": phase}})
    };
    ready(now(&pvc(json!("Bound"))));
    is(
        now(&pvc(json!("Pending"))),
        Status::InProgress,
        "NotBound",
        "phase Pending, waiting for a volume",
    );
    is(
        now(&pvc(Value::Null)),
        Status::InProgress,
        "NotBound",
        "waiting for a volume",
    );
    is(
        now(&pvc(json!("Lost"))),
        Status::Failed,
        "ClaimLost",
        "the bound PersistentVolume is gone",
    );
}

#[test]
fn crd_rules() {
    let crd = |conditions: Value| {
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
               "metadata": {"name": "widgets.example.com", "generation": 1},
               "status": {"conditions": conditions}})
    };
    ready(now(&crd(json!([
        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts"},
        {"type": "Established", "status": "True", "reason": "InitialNamesAccepted"}]))));
    is(
        now(&crd(json!([
            {"type": "NamesAccepted", "status": "False", "reason": "KindConflict",
             "message": "\"Widget\" is already in use"},
            {"type": "Established", "status": "False", "reason": "NotAccepted"}]))),
        Status::Failed,
        "KindConflict",
        "\"Widget\" is already in use",
    );
    is(
        now(&crd(json!([]))),
        Status::InProgress,
        "Installing",
        "waiting for the Established condition",
    );
}

#[test]
fn services_are_ready_once_they_have_a_cluster_ip() {
    let mut svc = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"type": "LoadBalancer", "clusterIP": "10.0.0.7", "ports": [{"port": 80}]},
        "status": {"loadBalancer": {}}});
    // No load balancer address: a cluster without a cloud provider never assigns one.
    ready(now(&svc));
    svc["spec"].as_object_mut().unwrap().remove("clusterIP");
    assert_eq!(now(&svc).reason, "NoIPAssigned");
}

#[test]
fn objects_without_conditions_are_ready() {
    for obj in [
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
               "data": {"k": "v"}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
               "data": {"password": "aHVudGVyMg=="}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
               "metadata": {"name": "r"}, "rules": []}),
        json!({"apiVersion": "example.com/v1", "kind": "Widget",
               "metadata": {"name": "w", "generation": 4}, "spec": {}}),
    ] {
        assert!(now(&obj).is_ready(), "{obj}");
    }
}

#[test]
fn an_object_being_deleted_is_not_ready() {
    let mut d = rolled_out();
    d["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:01:00Z");
    is(now(&d), Status::InProgress, "Terminating", "being deleted");
}

fn custom(status: Value) -> Value {
    json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
           "metadata": {"name": "tls", "namespace": "shop", "generation": 2},
           "spec": {"secretName": "tls"}, "status": status})
}

#[test]
fn custom_resource_rules() {
    ready(now(&custom(
        json!({"conditions": [{"type": "Ready", "status": "True",
        "observedGeneration": 2, "reason": "Ready"}]}),
    )));
    is(
        now(&custom(
            json!({"conditions": [{"type": "Ready", "status": "False",
            "observedGeneration": 2, "reason": "DoesNotExist",
            "message": "Issuing certificate as Secret does not exist"}]}),
        )),
        Status::InProgress,
        "DoesNotExist",
        "Issuing certificate as Secret does not exist",
    );
    is(
        now(&custom(
            json!({"conditions": [{"type": "Ready", "status": "Unknown"}]}),
        )),
        Status::InProgress,
        "NotReady",
        "Ready condition is Unknown",
    );
    // A Ready=True computed for an older generation is stale.
    is(
        now(&custom(
            json!({"conditions": [{"type": "Ready", "status": "True",
            "observedGeneration": 1}]}),
        )),
        Status::InProgress,
        "LatestGenerationNotObserved",
        "waiting for the controller to observe generation 2",
    );
    is(
        now(&custom(json!({"observedGeneration": 1,
            "conditions": [{"type": "Ready", "status": "True"}]}))),
        Status::InProgress,
        "LatestGenerationNotObserved",
        "waiting for the controller to observe generation 2",
    );
    is(
        now(&custom(json!({"conditions": [
            {"type": "Ready", "status": "False", "reason": "Failed"},
            {"type": "Stalled", "status": "True", "reason": "InvalidSpec",
             "message": "spec.issuerRef: issuer \"le\" not found"}]}))),
        Status::Failed,
        "InvalidSpec",
        "spec.issuerRef: issuer \"le\" not found",
    );
    is(
        now(&custom(json!({"conditions": [
            {"type": "Ready", "status": "True"},
            {"type": "Reconciling", "status": "True", "reason": "Progressing",
             "message": "reconciliation in progress"}]}))),
        Status::InProgress,
        "Progressing",
        "reconciliation in progress",
    );
    ready(now(&custom(
        json!({"conditions": [{"type": "Synced", "status": "True"}]}),
    )));
}
