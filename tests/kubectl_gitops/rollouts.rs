//! Rollouts the test cluster carries out for real: its kube-controller-manager controllers, its
//! scheduler and KWOK's fake nodes turn what `sync` applies into ReplicaSets, Pods, Jobs and
//! bound volumes, so `--wait` and `status` are tested against the status those controllers
//! compute, never against a status a test wrote. Failures use the cluster's convention
//! (tests/cluster/README.md): image tag `broken` never pulls, `crash` crash-loops, a Job Pod
//! tagged `fail` exits 1.

use std::time::{Duration, Instant};

use super::*;

fn one_tag(name: &str, files: &[(&str, String)]) -> Repo {
    let repo = Repo::new();
    for (path, content) in files {
        repo.write(path, content);
    }
    repo.tag(name);
    repo
}

fn job(name: &str, image: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\nspec:\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: task\n          image: {image}\n"
    )
}

#[test]
fn wait_follows_a_real_rollout_to_ready() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("wait");
    let repo = two_tags();
    let r = repo.path.to_str().unwrap();
    ok(sync_app(r, "A", &ns, &["--wait", "--timeout", "60s"]));
    let d = kubectl_json(&["get", "deployment", "web", "-n", &ns]);
    assert_eq!(d["status"]["availableReplicas"], 1, "{d}");
    // A new image is a new ReplicaSet: --wait returns once its Pod has replaced the old one.
    ok(sync_app(r, "B", &ns, &["--wait", "--timeout", "60s"]));
    let pods = live_pods(&ns, "web");
    assert_eq!(pods.len(), 1, "{pods:?}");
    assert_eq!(pods[0]["spec"]["containers"][0]["image"], "nginx:1.27");
    assert_eq!(pods[0]["status"]["phase"], "Running");
    let rs = kubectl_json(&["get", "replicasets", "-n", &ns]);
    assert_eq!(
        rs["items"].as_array().unwrap().len(),
        2,
        "old and new ReplicaSet"
    );
}

/// Before the 30 s grace period of a Pod that cannot pull its image, `--wait` runs to its
/// timeout, and the timeout names the Deployment, its Pod and the reason.
#[test]
fn wait_times_out_on_an_image_that_cannot_be_pulled() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("broken");
    let repo = one_tag(
        "bad",
        &[("app/web.yaml", deployment("web", "nginx:broken"))],
    );
    let r = repo.path.to_str().unwrap();
    let o = sync_app(r, "bad", &ns, &["--wait", "--timeout", "5s"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let pods = live_pods(&ns, "web");
    assert_eq!(
        pods[0]["status"]["containerStatuses"][0]["state"]["waiting"]["reason"], "ImagePullBackOff",
        "{pods:?}"
    );
    let pod = pods[0]["metadata"]["name"].as_str().unwrap();
    assert!(
        err(&o).contains(&format!(
            "timed out after 5s waiting for 1 object: Deployment.apps/{ns}/web: LessAvailable: \
             0 of 1 updated replicas available; pod {pod}: container app: ImagePullBackOff: \
             Back-off pulling image \"nginx:broken\""
        )),
        "{}",
        err(&o)
    );
    // The revision is recorded after the wait, for what it found.
    assert_eq!(
        history(&ns)["revisions"][0]["outcome"],
        format!("failed: not ready within 5s: Deployment.apps/{ns}/web (LessAvailable)")
    );
}

/// Ctrl-C during `--wait` ends the wait at once (not at `--timeout`), records the revision as
/// interrupted and releases the namespace's lease.
#[test]
fn ctrl_c_during_the_wait_stops_at_once_and_records_it() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("wait-sigint");
    let repo = one_tag(
        "bad",
        &[("app/web.yaml", deployment("web", "nginx:broken"))],
    );
    let r = repo.path.to_str().unwrap();
    let run = super::rollback::Running::start(r, "bad", &ns, &["--wait", "--timeout", "300s"]);
    // Applied and waiting: the Deployment's Pod exists and the run says it is waiting (a fixed
    // pause after the Pod appeared was too short on a loaded machine).
    wait_for("the sync's Pod", Duration::from_secs(30), || {
        (!live_pods(&ns, "web").is_empty()).then_some(())
    });
    run.wait_for_stderr("waiting for 1 object", Duration::from_secs(30));
    assert_eq!(
        super::rollback::leases(&ns),
        1,
        "the lease is held while waiting"
    );
    let interrupted = Instant::now();
    run.ctrl_c();
    let (code, stderr) = run.finish();
    assert!(
        interrupted.elapsed() < Duration::from_secs(10),
        "{:?} after Ctrl-C",
        interrupted.elapsed()
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "interrupted (Ctrl-C) while waiting for 1 object: Deployment.apps/{ns}/web"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("recorded as revision 1 (interrupted)"),
        "{stderr}"
    );
    assert_eq!(history(&ns)["revisions"][0]["outcome"], "interrupted");
    assert!(
        kubectl_json(&["get", "leases", "-n", &ns])["items"]
            .as_array()
            .unwrap()
            .is_empty(),
        "Ctrl-C releases the lease"
    );
}

#[test]
fn a_rollout_past_its_progress_deadline_fails_before_the_timeout() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("deadline");
    let manifest = deployment("web", "nginx:broken").replace(
        "  replicas: 1\n",
        "  replicas: 1\n  progressDeadlineSeconds: 10\n",
    );
    let repo = one_tag("bad", &[("app/web.yaml", manifest)]);
    let r = repo.path.to_str().unwrap();
    let started = Instant::now();
    let o = sync_app(r, "bad", &ns, &["--wait", "--timeout", "120s"]);
    // The deployment controller gives up after 10 s (ProgressDeadlineExceeded), before the
    // 30 s grace period of the Pod's ImagePullBackOff, and --wait reports that failure instead
    // of waiting out its own timeout.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains(&format!(
            "1 object failed: Deployment.apps/{ns}/web: ProgressDeadlineExceeded: ReplicaSet \"web-"
        )),
        "{}",
        err(&o)
    );
    assert!(err(&o).contains("has timed out progressing"), "{}", err(&o));
    let d = kubectl_json(&["get", "deployment", "web", "-n", &ns]);
    let progressing = d["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Progressing")
        .cloned()
        .unwrap();
    assert_eq!(progressing["reason"], "ProgressDeadlineExceeded", "{d}");
}

/// `status` reports a Deployment whose Pod crash-loops as failed, naming the Pod and the
/// reason, once the container has restarted 3 times (10 s on this cluster).
#[test]
fn status_reports_a_crash_looping_deployment_as_unhealthy() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("crash");
    let repo = one_tag("v1", &[("app/web.yaml", deployment("web", "nginx:crash"))]);
    let r = repo.path.to_str().unwrap();
    ok(sync_app(r, "v1", &ns, &[]));
    let object = format!("Deployment.apps/{ns}/web");
    let web = |s: &Value| {
        s["health"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["object"] == object)
            .cloned()
            .unwrap_or_else(|| panic!("no health entry for the Deployment: {s}"))
    };
    let s = wait_for(
        "status to call the rollout failed",
        Duration::from_secs(60),
        || {
            let o = run(&["status", "-n", &ns, "--exit-code", "-o", "json"]);
            assert_eq!(o.status.code(), Some(1), "{}", out(&o));
            let s: Value = serde_json::from_slice(&o.stdout).unwrap();
            (web(&s)["status"] == "failed").then_some(s)
        },
    );
    assert_eq!(s["in_sync"], true, "{s}");
    assert_eq!(s["healthy"], false, "{s}");
    let pods = live_pods(&ns, "web");
    let status = &pods[0]["status"]["containerStatuses"][0];
    // The cluster restarts the container every 5 s: CrashLoopBackOff, exit code 1.
    assert_eq!(
        status["state"]["waiting"]["reason"], "CrashLoopBackOff",
        "{status}"
    );
    assert_eq!(status["lastState"]["terminated"]["exitCode"], 1, "{status}");
    assert!(status["restartCount"].as_i64().unwrap() >= 3, "{status}");
    let pod = pods[0]["metadata"]["name"].as_str().unwrap();
    let h = web(&s);
    assert_eq!(h["reason"], "CrashLoopBackOff", "{h}");
    assert!(
        h["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("pod {pod}: container app keeps crashing (")),
        "{h}"
    );
    // The table says the same, one line per unhealthy object.
    let o = run(&["status", "-n", &ns, "--exit-code"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("health: 0 of 1 ready"), "{}", out(&o));
    assert!(
        out(&o).contains(&format!(
            "  failed: {object}: CrashLoopBackOff: pod {pod}: container app keeps crashing ("
        )),
        "{}",
        out(&o)
    );
}

#[test]
fn wait_sees_a_job_complete_and_a_failing_job_fail() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("jobs");
    let repo = Repo::new();
    repo.write("app/migrate.yaml", job("migrate", "busybox:1.36"));
    repo.tag("good");
    repo.write("app/seed.yaml", job("seed", "busybox:fail"));
    repo.tag("bad");
    let r = repo.path.to_str().unwrap();

    ok(sync_app(r, "good", &ns, &["--wait", "--timeout", "60s"]));
    let j = kubectl_json(&["get", "job", "migrate", "-n", &ns]);
    assert_eq!(j["status"]["succeeded"], 1, "{j}");

    // Its Pod exits 1 and backoffLimit is 0: the Job controller marks the Job Failed.
    let o = sync_app(r, "bad", &ns, &["--wait", "--timeout", "60s"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains(&format!("Job.batch/{ns}/seed")),
        "{}",
        err(&o)
    );
    assert!(
        err(&o).contains(&format!(
            "1 object failed: Job.batch/{ns}/seed: BackoffLimitExceeded: Job has reached the \
             specified backoff limit"
        )),
        "{}",
        err(&o)
    );
    let pods = kubectl_json(&["get", "pods", "-n", &ns, "-l", "job-name=seed"]);
    let pod = &pods["items"][0];
    assert_eq!(pod["status"]["phase"], "Failed", "{pod}");
    assert_eq!(
        pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"], 1,
        "{pod}"
    );
}

#[test]
fn a_synced_cronjob_creates_jobs_on_schedule() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("cron");
    let cron = "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: tick\nspec:\n  schedule: '* * * * *'\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          containers:\n            - name: tick\n              image: busybox:1.36\n";
    let repo = one_tag("v1", &[("app/cron.yaml", cron.to_string())]);
    let r = repo.path.to_str().unwrap();
    ok(sync_app(r, "v1", &ns, &["--wait", "--timeout", "30s"]));
    // The CronJob controller starts a Job at the next minute boundary, KWOK completes its Pod.
    let job = wait_for(
        "the CronJob's first Job to complete",
        Duration::from_secs(90),
        || {
            let jobs = kubectl_json(&["get", "jobs", "-n", &ns]);
            jobs["items"]
                .as_array()?
                .iter()
                .find(|j| j["status"]["succeeded"] == 1)
                .cloned()
        },
    );
    assert_eq!(
        job["metadata"]["ownerReferences"][0]["kind"], "CronJob",
        "{job}"
    );
    assert_eq!(
        job["metadata"]["ownerReferences"][0]["name"], "tick",
        "{job}"
    );
    // The Jobs the controller makes are not drift of what was synced.
    let o = run(&["status", "-n", &ns, "--exit-code"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
}

#[test]
fn podinfo_overlay_synced_with_wait_becomes_ready_on_its_own() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("podinfo-wait");
    let repo = Repo::new();
    copy_dir(&corpus().join("podinfo/deploy"), &repo.path.join("deploy"));
    repo.write(
        "deploy/test/kustomization.yaml",
        format!("namespace: {ns}\nresources:\n- ../overlays/dev\n"),
    );
    repo.write(
        "gitops.yaml",
        format!("environments:\n  - name: dev\n    branch: env/dev\n    path: deploy/test\n    namespace: {ns}\n"),
    );
    repo.deploy_tag("dev", "deploy/dev/20260101T000000Z");
    let r = repo.path.to_str().unwrap();
    let o = ok(run(&[
        "sync",
        "--repo",
        r,
        "--env",
        "dev",
        "--yes",
        "--wait",
        "--timeout",
        "120s",
    ]));
    assert!(err(&o).contains("revision 1"), "{}", err(&o));
    for d in kubectl_json(&["get", "deployments", "-n", &ns])["items"]
        .as_array()
        .unwrap()
    {
        assert_eq!(
            d["status"]["availableReplicas"], d["spec"]["replicas"],
            "{}",
            d["metadata"]["name"]
        );
    }
    let pvc = kubectl_json(&["get", "pvc", "database-primary", "-n", &ns]);
    assert_eq!(pvc["status"]["phase"], "Bound", "{pvc}");
    let sts = kubectl_json(&["get", "statefulset", "database-primary", "-n", &ns]);
    assert_eq!(sts["status"]["availableReplicas"], 1, "{sts}");
    let o = run(&["status", "-n", &ns, "--exit-code"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
}
