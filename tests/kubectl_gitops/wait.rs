//! How `--wait` reads the cluster: by watches (one LIST + WATCH per kind and namespace, plus
//! the Pods and ReplicaSets of a namespace whose Deployments roll out), never by GETs of the
//! waited objects, counted by the API server's own `apiserver_request_total`; by polling when
//! RBAC refuses the watch; and a watched object deleted during the wait ends it.

use std::collections::BTreeMap;
use std::time::Duration;

use super::metrics::OwnCluster;
use super::*;

/// Requests by (verb, resource, scope) for the kinds a wait on Deployments reads.
fn wait_requests(own: &OwnCluster) -> BTreeMap<(String, String, String), f64> {
    own.requests()
        .into_iter()
        .filter(|((verb, resource, _), _)| {
            matches!(resource.as_str(), "deployments" | "replicasets" | "pods")
                && matches!(verb.as_str(), "GET" | "LIST" | "WATCH")
        })
        .collect()
}

/// Six Deployments rolling out: the wait reads them by one LIST + WATCH of Deployments (and,
/// since they roll out, of ReplicaSets and Pods), not by a GET per Deployment per poll and a
/// LIST of Pods per check (what the polling did: it fails this test). On a cluster of its own,
/// so that no other test's requests are counted.
#[test]
fn a_wait_on_deployments_watches_them_and_never_gets_them_one_by_one() {
    let own = OwnCluster::start(&[]);
    let repo = Repo::new();
    let names = ["a", "b", "c", "d", "e", "f"];
    for name in names {
        repo.write(&format!("app/{name}.yaml"), deployment(name, "nginx:1.27"));
    }
    repo.tag("v1");
    let r = repo.path.to_str().unwrap();
    // The requests of one sync, counted by the server; a watch is counted once it ends (the
    // process has exited), so the counters are read a moment later.
    let sync = |ns: &str, extra: &[&str]| {
        own.kubectl(&["create", "namespace", ns]);
        let before = wait_requests(&own);
        let o = Command::new(BIN)
            .args([
                "sync",
                "--repo",
                r,
                "--tag",
                "v1",
                "--path",
                "app",
                "-n",
                ns,
                "--yes",
                "--kubeconfig",
            ])
            .arg(own.kubeconfig())
            .args(extra)
            .env_remove("KUBECONFIG")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", err(&o));
        std::thread::sleep(Duration::from_secs(2));
        let after = wait_requests(&own);
        let mut made: BTreeMap<(String, String), f64> = BTreeMap::new();
        for (sign, counts) in [(1.0, &after), (-1.0, &before)] {
            for ((verb, resource, _), v) in counts {
                *made.entry((verb.clone(), resource.clone())).or_insert(0.0) += sign * v;
            }
        }
        made.retain(|_, v| *v != 0.0);
        (err(&o), made)
    };
    // What a sync reads without waiting (its plan lists the namespace's Deployments).
    let (_, plain) = sync("plain", &[]);
    let (stderr, waited) = sync("waited", &["--wait", "--timeout", "60s"]);
    assert!(stderr.contains("waiting for 6 objects"), "{stderr}");
    eprintln!("requests with --wait: {waited:?}; without: {plain:?}");
    // Returned only once every Deployment was available.
    let available = own.kubectl(&[
        "get",
        "deployments",
        "-n",
        "waited",
        "-o",
        "jsonpath={.items[*].status.availableReplicas}",
    ]);
    assert_eq!(
        available.split_whitespace().count(),
        names.len(),
        "{available}"
    );
    let n = |m: &BTreeMap<(String, String), f64>, verb: &str, resource: &str| {
        m.get(&(verb.to_string(), resource.to_string()))
            .copied()
            .unwrap_or(0.0)
    };
    for resource in ["deployments", "replicasets", "pods"] {
        assert_eq!(
            n(&waited, "GET", resource),
            0.0,
            "GETs of {resource}: {waited:?}"
        );
        // The wait's own: one LIST and one WATCH of each (a watch that expired would add one
        // of each; none does within a minute).
        let lists = n(&waited, "LIST", resource) - n(&plain, "LIST", resource);
        let watches = n(&waited, "WATCH", resource) - n(&plain, "WATCH", resource);
        assert!(
            lists <= 1.0 && watches <= 1.0,
            "{resource}: {lists} LIST, {watches} WATCH; with --wait {waited:?}, without {plain:?}"
        );
    }
    // The Deployments were listed by the wait, not read some other way.
    assert_eq!(
        n(&waited, "LIST", "deployments") - n(&plain, "LIST", "deployments"),
        1.0,
        "{waited:?}"
    );
}

/// A deployer whose Role may get and list Deployments but not watch them (and may not read
/// Pods or ReplicaSets at all, like the README's Role) still gets a correct wait: its
/// Deployments are polled, as `-v 2` says, and the sync returns once they are available.
#[test]
fn a_deployer_who_may_not_watch_deployments_gets_a_wait_by_polling() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("wait-rbac");
    let role = super::signed::readme_role(&ns).replace(
        "resources: [deployments]\n  verbs: [get, list, watch,",
        "resources: [deployments]\n  verbs: [get, list,",
    );
    assert!(
        !role.contains("[deployments]\n  verbs: [get, list, watch"),
        "{role}"
    );
    kubectl(&["create", "serviceaccount", "ci-deployer", "-n", &ns]);
    let mut apply = c.kubectl();
    apply
        .args(["apply", "-n", &ns, "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = apply.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), role.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "kubectl apply: {}", err(&o));
    let repo = Repo::new();
    repo.write("app/web.yaml", deployment("web", "nginx:1.27"));
    repo.write("app/api.yaml", deployment("api", "nginx:1.27"));
    repo.tag("v1");
    let r = repo.path.to_str().unwrap();
    let ci = format!("--as=system:serviceaccount:{ns}:ci-deployer");
    let o = sync_app(
        r,
        "v1",
        &ns,
        &[&ci, "--wait", "--timeout", "60s", "-v", "2"],
    );
    let stderr = err(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "may not list and watch deployments in {ns} (Deployment"
        )) || stderr.contains(&format!("may not list and watch deployments in {ns} (")),
        "{stderr}"
    );
    assert!(stderr.contains("polling its objects instead"), "{stderr}");
    for name in ["web", "api"] {
        let available = kubectl(&[
            "get",
            "deployment",
            name,
            "-n",
            &ns,
            "-o",
            "jsonpath={.status.availableReplicas}",
        ]);
        assert_eq!(available.trim(), "1", "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("Deployment.apps/{ns}/{name}")) && stderr.contains("Ready"),
            "{stderr}"
        );
    }
}

/// A Deployment deleted while the wait watches it ends the wait at once: nothing is left to
/// become ready ("deleted after it was applied"), not a wait until --timeout.
#[test]
fn a_waited_deployment_deleted_during_the_wait_fails_it_as_not_found() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("wait-deleted");
    let repo = Repo::new();
    repo.write("app/web.yaml", deployment("web", "nginx:broken"));
    repo.tag("bad");
    let r = repo.path.to_str().unwrap();
    let run = super::rollback::Running::start(r, "bad", &ns, &["--wait", "--timeout", "300s"]);
    run.wait_for_stderr("waiting for 1 object", Duration::from_secs(30));
    let deleted = std::time::Instant::now();
    kubectl(&["delete", "deployment", "web", "-n", &ns, "--wait=false"]);
    let (code, stderr) = run.finish();
    assert!(
        deleted.elapsed() < Duration::from_secs(20),
        "{:?} after the delete: {stderr}",
        deleted.elapsed()
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "1 object failed: Deployment.apps/{ns}/web: NotFound: deleted after it was applied"
        )),
        "{stderr}"
    );
}
