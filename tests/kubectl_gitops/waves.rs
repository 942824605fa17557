//! Sync phases, waves and hooks on the workload-running test cluster: the Jobs really run and
//! complete (or fail, image tag `fail`), the Deployments really roll out, so every ordering
//! claim is checked with the timestamps the controllers wrote: a Job's `completionTime`, an
//! object's `creationTimestamp`, a condition's `lastTransitionTime`. Timestamps have second
//! resolution, so each case makes the earlier step take seconds (a Job of three completions
//! run one at a time, a Deployment with `minReadySeconds`), and an implementation that applied
//! everything at once would be caught.

use std::time::{Duration, Instant};

use super::*;

type Time = jiff::Timestamp;

fn time(v: &Value, what: &str) -> Time {
    v.pointer(what)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no {what} in {v}"))
        .parse()
        .unwrap()
}

fn created(v: &Value) -> Time {
    time(v, "/metadata/creationTimestamp")
}

/// When the condition `kind` of `obj` last became what it is.
fn transition(obj: &Value, kind: &str) -> Time {
    let c = obj["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} condition: {obj}"));
    time(c, "/lastTransitionTime")
}

/// A Job of three completions, one at a time: about three seconds on this cluster.
fn job(name_line: &str, image: &str, annotations: &[(&str, &str)]) -> String {
    let mut meta = format!("  {name_line}\n");
    if !annotations.is_empty() {
        meta.push_str("  annotations:\n");
        for (k, v) in annotations {
            meta.push_str(&format!("    {k}: {v:?}\n"));
        }
    }
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n{meta}spec:\n  completions: 3\n  parallelism: 1\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: task\n          image: {image}\n"
    )
}

/// podinfo's backend Deployment as the corpus has it (`minReadySeconds: 3`), with its image tag
/// replaced.
fn podinfo_backend(tag: &str) -> String {
    let d = std::fs::read_to_string(corpus().join("podinfo/deploy/bases/backend/deployment.yaml"))
        .unwrap();
    assert!(d.contains("podinfo:6.14.1"), "corpus changed");
    d.replace("podinfo:6.14.1", &format!("podinfo:{tag}"))
}

fn get(kind: &str, name: &str, ns: &str) -> Value {
    kubectl_json(&["get", kind, name, "-n", ns])
}

/// The ReplicaSet of `deployment` whose Pods run `image`.
fn replica_set_with(ns: &str, image: &str) -> Value {
    kubectl_json(&["get", "replicasets", "-n", ns])["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|rs| rs["spec"]["template"]["spec"]["containers"][0]["image"] == image)
        .cloned()
        .unwrap_or_else(|| panic!("no ReplicaSet runs {image}"))
}

const MIGRATE: &str = "name: migrate";

#[test]
fn a_presync_migration_completes_before_the_deployment_is_created_or_updated() {
    let ns = cluster::cluster().fresh_namespace("presync");
    let repo = Repo::new();
    let hook = [("gitops.kubectl.io/hook", "PreSync")];
    repo.write("app/migrate.yaml", job(MIGRATE, "busybox:1.36", &hook));
    repo.write("app/backend.yaml", podinfo_backend("6.14.1"));
    repo.tag("v1");
    repo.write("app/backend.yaml", podinfo_backend("6.14.2"));
    repo.tag("v2");
    // v3: the migration left the manifests.
    std::fs::remove_file(repo.path.join("app/migrate.yaml")).unwrap();
    repo.tag("v3");
    let r = repo.path.to_str().unwrap();

    // No --wait: the hook's annotation alone makes the sync wait, wave by wave.
    let o = ok(sync_app(r, "v1", &ns, &["--timeout", "90s"]));
    assert!(err(&o).contains("1 hook"), "{}", err(&o));
    let migrate = get("job", "migrate", &ns);
    assert_eq!(migrate["status"]["succeeded"], 3, "{migrate}");
    let done = time(&migrate, "/status/completionTime");
    let backend = get("deployment", "backend", &ns);
    assert!(
        created(&backend) >= done
            && created(&backend) >= created(&migrate) + Duration::from_secs(2),
        "the Deployment ({}) was created before the migration completed ({done})",
        created(&backend)
    );
    // A hook is not an ApplySet member.
    assert!(
        migrate["metadata"]["labels"]["applyset.kubernetes.io/part-of"].is_null(),
        "{migrate}"
    );
    let first_uid = migrate["metadata"]["uid"].clone();

    // An update: the fixed-name hook runs again (BeforeHookCreation), and the new ReplicaSet
    // comes after it.
    ok(sync_app(r, "v2", &ns, &["--timeout", "90s"]));
    let migrate = get("job", "migrate", &ns);
    assert_ne!(migrate["metadata"]["uid"], first_uid, "the hook ran again");
    let done = time(&migrate, "/status/completionTime");
    let rs = replica_set_with(&ns, "ghcr.io/stefanprodan/podinfo:6.14.2");
    assert!(
        created(&rs) >= done,
        "the new ReplicaSet ({}) was created before the migration completed ({done})",
        created(&rs)
    );
    let backend = get("deployment", "backend", &ns);
    assert_eq!(backend["status"]["updatedReplicas"], 1, "{backend}");

    // The same tag again: the hook runs again too, though nothing else changes.
    let second_uid = migrate["metadata"]["uid"].clone();
    let o = ok(sync_app(r, "v2", &ns, &["--timeout", "90s"]));
    assert!(
        err(&o).contains("0 to create, 0 to update, 0 to prune, 1 unchanged, 1 hook"),
        "{}",
        err(&o)
    );
    assert_ne!(get("job", "migrate", &ns)["metadata"]["uid"], second_uid);
    let h = history(&ns);
    let hooks = &h["revisions"][0]["hooks"];
    assert_eq!(hooks[0]["object"], format!("Job.batch/{ns}/migrate"), "{h}");
    assert_eq!(hooks[0]["phase"], "PreSync", "{h}");
    assert_eq!(hooks[0]["outcome"], "succeeded", "{h}");
    assert!(hooks[0]["seconds"].as_f64().unwrap() >= 2.0, "{h}");
    let table = out(&ok(run(&["history", "-n", &ns])));
    assert!(table.contains("migrate PreSync succeeded"), "{table}");

    // Hooks are never pruned as members: the last run stays when the hook leaves the tag.
    let o = ok(sync_app(r, "v3", &ns, &[]));
    assert!(err(&o).contains("0 pruned"), "{}", err(&o));
    assert!(!err(&o).contains("hook"), "{}", err(&o));
    get("job", "migrate", &ns);
}

#[test]
fn a_failing_migration_stops_the_sync_before_the_deployment_and_runs_syncfail_hooks() {
    let ns = cluster::cluster().fresh_namespace("hookfail");
    let repo = Repo::new();
    let hook = [("gitops.kubectl.io/hook", "PreSync")];
    repo.write("app/migrate.yaml", job(MIGRATE, "busybox:1.36", &hook));
    repo.write("app/backend.yaml", podinfo_backend("6.14.1"));
    repo.tag("v1");
    repo.write("app/migrate.yaml", job(MIGRATE, "busybox:fail", &hook));
    repo.write("app/backend.yaml", podinfo_backend("6.14.2"));
    // Argo CD's spelling; generateName: a new Job per failed sync.
    repo.write(
        "app/notify.yaml",
        job(
            "generateName: notify-",
            "busybox:1.36",
            &[("argocd.argoproj.io/hook", "SyncFail")],
        ),
    );
    repo.tag("v2");
    let r = repo.path.to_str().unwrap();
    ok(sync_app(r, "v1", &ns, &["--timeout", "90s"]));

    let o = sync_app(r, "v2", &ns, &["--timeout", "90s"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains(&format!(
            "PreSync wave 0: 1 object failed: Job.batch/{ns}/migrate: BackoffLimitExceeded"
        )),
        "{}",
        err(&o)
    );
    assert!(
        err(&o).contains(&format!("not applied: Deployment.apps/{ns}/backend")),
        "{}",
        err(&o)
    );
    // The Deployment is untouched: the old image still runs.
    let backend = get("deployment", "backend", &ns);
    assert_eq!(
        backend["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/stefanprodan/podinfo:6.14.1"
    );
    // The SyncFail hook ran to completion, under a name the server gave it.
    let jobs = kubectl_json(&["get", "jobs", "-n", &ns]);
    let notify: Vec<&Value> = jobs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["metadata"]["generateName"] == "notify-")
        .collect();
    assert_eq!(notify.len(), 1, "{jobs}");
    assert_eq!(notify[0]["status"]["succeeded"], 3, "{}", notify[0]);
    let notify_name = notify[0]["metadata"]["name"].as_str().unwrap();
    assert!(
        created(notify[0]) >= transition(&get("job", "migrate", &ns), "Failed"),
        "SyncFail ran after the failure"
    );
    let h = history(&ns);
    let rev = &h["revisions"][0];
    assert_eq!(
        rev["outcome"],
        format!("failed: Job.batch/{ns}/migrate: BackoffLimitExceeded"),
        "{h}"
    );
    let hooks: Vec<(String, String, String)> = rev["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["object"].as_str().unwrap().to_string(),
                h["phase"].as_str().unwrap().to_string(),
                h["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        hooks,
        [
            (
                format!("Job.batch/{ns}/migrate"),
                "PreSync".into(),
                "failed".into()
            ),
            (
                format!("Job.batch/{ns}/{notify_name}"),
                "SyncFail".into(),
                "succeeded".into()
            ),
        ],
        "{h}"
    );
}

#[test]
fn a_wave_starts_only_once_the_wave_before_is_available() {
    let ns = cluster::cluster().fresh_namespace("waves");
    let repo = Repo::new();
    let web = deployment("web", "nginx:1.25").replace(
        "spec:\n  replicas: 1\n",
        "spec:\n  replicas: 1\n  minReadySeconds: 3\n",
    );
    repo.write("app/web.yaml", web);
    repo.write(
        "app/after.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: after\n  annotations:\n    gitops.kubectl.io/sync-wave: \"1\"\ndata:\n  a: b\n",
    );
    repo.tag("v1");
    let r = repo.path.to_str().unwrap();
    ok(sync_app(r, "v1", &ns, &["--timeout", "60s"]));
    let web = get("deployment", "web", &ns);
    let available = transition(&web, "Available");
    let after = get("configmap", "after", &ns);
    assert!(
        created(&after) >= available && available >= created(&web) + Duration::from_secs(3),
        "ConfigMap created {}, Deployment created {} and Available {available}",
        created(&after),
        created(&web)
    );
}

/// A repository written for Argo CD: its annotations, unchanged, give the same order.
#[test]
fn argo_cd_hooks_and_waves_run_in_argo_cd_order() {
    let ns = cluster::cluster().fresh_namespace("argo");
    let repo = Repo::new();
    repo.write(
        "app/migrate.yaml",
        job(
            MIGRATE,
            "busybox:1.36",
            &[
                ("argocd.argoproj.io/hook", "PreSync"),
                (
                    "argocd.argoproj.io/hook-delete-policy",
                    "BeforeHookCreation",
                ),
            ],
        ),
    );
    repo.write(
        "app/config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config\n  annotations:\n    argocd.argoproj.io/sync-wave: \"-1\"\ndata:\n  a: b\n",
    );
    repo.write(
        "app/web.yaml",
        deployment("web", "nginx:1.25").replace(
            "spec:\n  replicas: 1\n",
            "spec:\n  replicas: 1\n  minReadySeconds: 3\n",
        ),
    );
    repo.write(
        "app/smoke.yaml",
        job(
            "name: smoke",
            "busybox:1.36",
            &[("argocd.argoproj.io/hook", "PostSync")],
        ),
    );
    repo.tag("v1");
    let r = repo.path.to_str().unwrap();

    // What diff shows first: the phases and waves, and the hooks that will run.
    let d = diff_app(r, "v1", &ns, &[]);
    assert_eq!(d.status.code(), Some(1), "{}", err(&d));
    let text = out(&d);
    let headings: Vec<&str> = text.lines().filter(|l| l.starts_with("# ")).collect();
    assert_eq!(
        headings,
        [
            "# phase PreSync, wave 0".to_string(),
            format!("# hook Job.batch/{ns}/migrate (PreSync, delete policy BeforeHookCreation)"),
            "# phase Sync, wave -1".to_string(),
            format!("# create ConfigMap/{ns}/config"),
            "# phase Sync, wave 0".to_string(),
            format!("# create Deployment.apps/{ns}/web"),
            "# phase PostSync, wave 0".to_string(),
            format!("# hook Job.batch/{ns}/smoke (PostSync, delete policy BeforeHookCreation)"),
        ],
        "{}",
        out(&d)
    );
    let plan: Value =
        serde_json::from_slice(&diff_app(r, "v1", &ns, &["-o", "json"]).stdout).unwrap();
    assert_eq!(
        plan["creates"][0]["object"],
        format!("ConfigMap/{ns}/config")
    );
    assert_eq!(plan["creates"][0]["phase"], "Sync");
    assert_eq!(plan["creates"][0]["wave"], -1);
    assert_eq!(plan["hooks"][0]["phase"], "PreSync");
    assert_eq!(plan["hooks"][1]["phase"], "PostSync");
    let waves: Vec<(String, i64)> = plan["waves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["phase"].as_str().unwrap().into(),
                w["wave"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        waves,
        [
            ("PreSync".into(), 0),
            ("Sync".into(), -1),
            ("Sync".into(), 0),
            ("PostSync".into(), 0)
        ]
    );
    let dry = ok(sync_app(r, "v1", &ns, &["--dry-run"]));
    assert!(
        out(&dry).contains("# phase PostSync, wave 0"),
        "{}",
        out(&dry)
    );

    ok(sync_app(r, "v1", &ns, &["--timeout", "90s"]));
    let migrate = get("job", "migrate", &ns);
    let config = get("configmap", "config", &ns);
    let web = get("deployment", "web", &ns);
    let smoke = get("job", "smoke", &ns);
    let steps = [
        (
            "migration complete",
            time(&migrate, "/status/completionTime"),
        ),
        ("wave -1 created", created(&config)),
        ("wave 0 created", created(&web)),
        ("wave 0 available", transition(&web, "Available")),
        ("PostSync created", created(&smoke)),
    ];
    for pair in steps.windows(2) {
        assert!(
            pair[0].1 <= pair[1].1,
            "{} after {}: {steps:?}",
            pair[0].0,
            pair[1].0
        );
    }
    assert!(
        steps[3].1 >= steps[2].1 + Duration::from_secs(3),
        "{steps:?}"
    );
    assert_eq!(smoke["status"]["succeeded"], 3, "{smoke}");
}

#[test]
fn an_immutable_field_is_named_and_replace_recreates_the_object() {
    let ns = cluster::cluster().fresh_namespace("immutable");
    let repo = Repo::new();
    let once = |image: &str, annotations: &[(&str, &str)]| {
        job("name: once", image, annotations).replace("  completions: 3\n  parallelism: 1\n", "")
    };
    repo.write("app/once.yaml", once("busybox:1.36", &[]));
    repo.tag("v1");
    repo.write("app/once.yaml", once("busybox:1.37", &[]));
    repo.tag("v2");
    repo.write(
        "app/once.yaml",
        once(
            "busybox:1.37",
            &[("gitops.kubectl.io/sync-options", "Replace=true")],
        ),
    );
    repo.tag("v3");
    let r = repo.path.to_str().unwrap();
    ok(sync_app(r, "v1", &ns, &["--wait", "--timeout", "60s"]));
    let before = snapshot(&ns);
    let uid = get("job", "once", &ns)["metadata"]["uid"].clone();

    let o = sync_app(r, "v2", &ns, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains(&format!("Job.batch/{ns}/once: spec.template cannot change")),
        "{}",
        err(&o)
    );
    assert!(err(&o).contains("Replace=true"), "{}", err(&o));
    assert_eq!(snapshot(&ns), before, "nothing was written");
    let d = diff_app(r, "v2", &ns, &[]);
    assert!(
        out(&d).contains("# immutable: spec.template cannot change"),
        "{}",
        out(&d)
    );

    // The flag, or the annotation: deleted and created anew.
    ok(sync_app(
        r,
        "v2",
        &ns,
        &["--replace-immutable", "--wait", "--timeout", "60s"],
    ));
    let job = get("job", "once", &ns);
    assert_ne!(job["metadata"]["uid"], uid);
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox:1.37"
    );
    let d = diff_app(r, "v3", &ns, &[]);
    assert!(
        out(&d).contains(&format!("# update Job.batch/{ns}/once")),
        "only the annotation changes: {}",
        out(&d)
    );
    ok(sync_app(r, "v3", &ns, &[]));
    repo.write(
        "app/once.yaml",
        once(
            "busybox:1.36",
            &[("gitops.kubectl.io/sync-options", "Replace=true")],
        ),
    );
    repo.tag("v4");
    let d = diff_app(r, "v4", &ns, &[]);
    assert!(
        out(&d).contains(&format!(
            "# replace Job.batch/{ns}/once (spec.template cannot change)"
        )),
        "{}",
        out(&d)
    );
    let uid = get("job", "once", &ns)["metadata"]["uid"].clone();
    ok(sync_app(r, "v4", &ns, &["--wait", "--timeout", "60s"]));
    let job = get("job", "once", &ns);
    assert_ne!(job["metadata"]["uid"], uid);
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox:1.36"
    );
    assert_eq!(job["status"]["succeeded"], 1, "{job}");
}

/// `--timeout` is shared by the waves; a hook Job's `activeDeadlineSeconds` is its own.
#[test]
fn a_hook_jobs_active_deadline_is_its_own_timeout() {
    let ns = cluster::cluster().fresh_namespace("deadline-hook");
    let repo = Repo::new();
    let hook = [("gitops.kubectl.io/hook", "PreSync")];
    repo.write("app/migrate.yaml", job(MIGRATE, "busybox:1.36", &hook));
    repo.tag("short");
    repo.write(
        "app/migrate.yaml",
        job(MIGRATE, "busybox:1.36", &hook).replace(
            "  backoffLimit: 0\n",
            "  backoffLimit: 0\n  activeDeadlineSeconds: 60\n",
        ),
    );
    repo.tag("own");
    let r = repo.path.to_str().unwrap();
    // Three completions take about three seconds: more than --timeout 1s.
    let o = sync_app(r, "short", &ns, &["--timeout", "1s"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let outcome = history(&ns)["revisions"][0]["outcome"].clone();
    assert!(
        outcome.as_str().unwrap().starts_with(&format!(
            "failed: not ready within 1s: Job.batch/{ns}/migrate (Job"
        )),
        "{outcome}"
    );
    let started = Instant::now();
    ok(sync_app(r, "own", &ns, &["--timeout", "1s"]));
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(get("job", "migrate", &ns)["status"]["succeeded"], 3);
}
