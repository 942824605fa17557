//! Faults, end to end (issue 8): the API server stopped mid-sync and started again on the same
//! etcd data, a sync killed with SIGKILL, ten writers racing on one namespace, and a server
//! that answers 429; and through Toxiproxy (issue 19), connections reset in the middle of a
//! sync and a server that stops answering. Each runs the real `kubectl-gitops` against the
//! real test API server; every wait is bounded.

#[path = "../common/cluster.rs"]
mod cluster;
#[path = "../common/repo.rs"]
mod repo;
#[path = "../common/tools.rs"]
mod tools;
#[path = "../common/toxiproxy.rs"]
mod toxiproxy;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use repo::ConfigRepo as Repo;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_kubectl-gitops");

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Helpers of this crate on the shared config repository.
impl Repo {
    /// Replaces `app/` with `n` ConfigMaps whose data carries `tag`, commits and tags.
    fn tag_config_maps(&self, tag: &str, n: usize) {
        let app = self.path.join("app");
        let _ = std::fs::remove_dir_all(&app);
        std::fs::create_dir_all(&app).unwrap();
        let mut stream = String::new();
        for i in 0..n {
            stream.push_str(&format!(
                "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\ndata:\n  tag: {tag}\n  i: '{i}'\n"
            ));
        }
        self.write("app/all.yaml", stream);
        self.tag(tag);
    }

    fn dir(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

fn gitops(kubeconfig: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env_remove("KUBECONFIG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Waits for a child at most `limit`, killing it if it is still running then: a hang fails
/// the test instead of stalling the suite.
fn wait_bounded(mut child: Child, limit: Duration, what: &str) -> (Output, Duration) {
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return (child.wait_with_output().unwrap(), started.elapsed());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!("{what} still running after {limit:?}; stderr:\n{}", err(&o));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run(kubeconfig: &Path, args: &[&str]) -> Output {
    let child = gitops(kubeconfig, args).spawn().unwrap();
    wait_bounded(child, Duration::from_secs(60), &format!("{args:?}")).0
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: Output) -> Output {
    assert_eq!(
        o.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        out(&o),
        err(&o)
    );
    o
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> Output {
    let program = std::env::var_os("KUBECTL").unwrap_or_else(|| "kubectl".into());
    Command::new(program)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .unwrap()
}

fn kubectl_ok(kubeconfig: &Path, args: &[&str]) -> String {
    let o = kubectl(kubeconfig, args);
    assert!(o.status.success(), "kubectl {args:?}: {}", err(&o));
    out(&o)
}

fn sync_args<'a>(repo: &'a Repo, tag: &'a str, ns: &'a str) -> Vec<&'a str> {
    vec![
        "sync",
        "--repo",
        repo.dir(),
        "--tag",
        tag,
        "--path",
        "app",
        "-n",
        ns,
        "--yes",
        "--history-limit",
        "100",
    ]
}

fn diff_is_empty(kubeconfig: &Path, repo: &Repo, tag: &str, ns: &str) {
    let d = run(
        kubeconfig,
        &[
            "diff",
            "--repo",
            repo.dir(),
            "--tag",
            tag,
            "--path",
            "app",
            "-n",
            ns,
        ],
    );
    assert_eq!(
        d.status.code(),
        Some(0),
        "diff against {tag}: {}{}",
        out(&d),
        err(&d)
    );
}

/// History, newest first, as (revision, tag, outcome).
fn history(kubeconfig: &Path, ns: &str) -> Vec<(u64, String, String)> {
    let o = ok(run(kubeconfig, &["history", "-n", ns, "-o", "json"]));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["revision"].as_u64().unwrap(),
                r["tag"].as_str().unwrap_or_default().to_string(),
                r["outcome"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Revisions strictly decreasing (newest first): none duplicated, none out of order.
fn assert_consistent(h: &[(u64, String, String)]) {
    let revs: Vec<u64> = h.iter().map(|r| r.0).collect();
    assert!(
        revs.windows(2).all(|w| w[0] > w[1]),
        "revisions strictly increasing, no duplicates: {h:?}"
    );
}

fn lease_holder(kubeconfig: &Path, ns: &str) -> Option<String> {
    let o = kubectl(
        kubeconfig,
        &[
            "get",
            "lease",
            "kubectl-gitops-lock",
            "-n",
            ns,
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
    );
    o.status.success().then(|| out(&o))
}

/// Waits (bounded) until a sync holds the namespace's lease, i.e. has started writing.
fn wait_for_lease(kubeconfig: &Path, ns: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if lease_holder(kubeconfig, ns).is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the sync never took the lease in {ns}");
}

/// The "time passes" step: instead of waiting out the 30 s lease, move its last renewal into
/// the past, exactly what a holder that stopped renewing looks like 30 s later, and shorten
/// its duration to 2 s: the next run must still see it unchanged for that long (on its own
/// monotonic clock) before it takes it over.
fn expire_lease(kubeconfig: &Path, ns: &str) {
    kubectl_ok(
        kubeconfig,
        &[
            "patch",
            "lease",
            "kubectl-gitops-lock",
            "-n",
            ns,
            "--type=merge",
            "-p",
            r#"{"spec":{"renewTime":"2020-01-01T00:00:00.000000Z","leaseDurationSeconds":2}}"#,
        ],
    );
}

fn count_config_maps(kubeconfig: &Path, ns: &str, selector: &str) -> usize {
    kubectl_ok(
        kubeconfig,
        &["get", "configmaps", "-n", ns, "-l", selector, "-o", "name"],
    )
    .lines()
    .count()
}

/// A cluster this test owns alone, started and stopped with `tests/cluster/start`/`stop` on a
/// state directory that survives restarts (etcd data, certificates, kubeconfig).
struct OwnedCluster {
    dir: tempfile::TempDir,
    extra: Vec<String>,
}

impl OwnedCluster {
    fn start(extra: &[&str]) -> OwnedCluster {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("faults");
        std::fs::create_dir_all(&base).unwrap();
        let c = OwnedCluster {
            dir: tempfile::Builder::new()
                .prefix("cluster-")
                .tempdir_in(base)
                .unwrap(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        c.up();
        c
    }

    fn up(&self) {
        let o = Command::new("bash")
            .arg(workspace().join("tests/cluster/start"))
            .arg(self.dir.path())
            .args(&self.extra)
            .env("GITOPS_CLUSTER_START_TIMEOUT", "60")
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "tests/cluster/start: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    fn down(&self) {
        let _ = Command::new("bash")
            .arg(workspace().join("tests/cluster/stop"))
            .arg(self.dir.path())
            .env("GITOPS_CLUSTER_STOP_TIMEOUT", "10")
            .status();
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }
}

impl Drop for OwnedCluster {
    fn drop(&mut self) {
        self.down();
    }
}

#[test]
fn api_server_stopped_mid_sync_fails_cleanly_and_a_rerun_converges() {
    let c = OwnedCluster::start(&[]);
    let kc = c.kubeconfig();
    let ns = "stopped";
    kubectl_ok(&kc, &["create", "namespace", ns]);
    let repo = Repo::new();
    repo.tag_config_maps("v1", 1000);
    let mut args = sync_args(&repo, "v1", ns);
    // Few requests at a time, so the server goes down while most objects are still to do.
    args.extend(["--concurrency", "2", "--request-timeout", "5s"]);
    let child = gitops(&kc, &args).spawn().unwrap();
    let pid = child.id();
    wait_for_lease(&kc, ns);
    std::thread::sleep(Duration::from_millis(300));
    c.down();
    // Down for longer than the client's retries of idempotent requests (about 10 s): the sync
    // must give up on its own, in bounded time.
    let (o, took) = wait_bounded(child, Duration::from_secs(45), "sync with the server down");
    let stderr = err(&o);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains(&format!("sync of {ns} failed after applying")),
        "says how far it got: {stderr}"
    );
    assert!(
        stderr.contains("(Connect)") && stderr.contains("check that the API server is reachable"),
        "names the connection failure: {stderr}"
    );
    assert!(
        stderr.contains(" more\nnot recorded"),
        "the list of objects not applied is cut short: {stderr}"
    );
    assert!(
        stderr.contains("; rerunning the sync converges"),
        "a lost connection is transient: {stderr}"
    );
    assert!(
        stderr.contains("not recorded") && !stderr.contains("recorded as revision"),
        "does not claim a record it could not write: {stderr}"
    );
    assert!(
        stderr.contains("could not record the failed revision"),
        "the record could not be written with the server down, and says so: {stderr}"
    );
    eprintln!("sync gave up {took:?} after the server went down");

    c.up();
    // The failed run could not release its lease either: until it expires (30 s after the
    // last renewal; a loaded machine may take that long to restart the server), the next run
    // sees it, names it, and writes nothing.
    let before = count_config_maps(&kc, ns, "applyset.kubernetes.io/part-of");
    assert!(
        before > 0 && before < 1000,
        "stopped midway: {before} of 1000 applied"
    );
    rerun_converges(&kc, &kc, &repo, ns, pid, before);
}

#[cfg(unix)]
#[test]
fn a_killed_sync_leaves_its_lease_and_the_next_run_takes_it_over() {
    let c = cluster::cluster();
    let kc = c.kubeconfig();
    let ns = c.fresh_namespace("sigkill");
    let repo = Repo::new();
    repo.tag_config_maps("v1", 600);
    ok(run(kc, &sync_args(&repo, "v1", &ns)));
    repo.tag_config_maps("v2", 600);
    let mut args = sync_args(&repo, "v2", &ns);
    args.extend(["--concurrency", "2"]);
    let mut child = gitops(kc, &args).spawn().unwrap();
    let pid = child.id();
    wait_for_lease(kc, &ns);
    std::thread::sleep(Duration::from_millis(200));
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    let holder = lease_holder(kc, &ns).expect("a killed sync cannot release its lease");
    assert!(holder.contains(&format!("(pid {pid})")), "{holder}");

    let o = run(kc, &sync_args(&repo, "v2", &ns));
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert!(err(&o).contains(&holder), "names the holder: {}", err(&o));

    expire_lease(kc, &ns);
    let o = ok(run(kc, &sync_args(&repo, "v2", &ns)));
    assert!(
        err(&o).contains(&format!(
            "taking over expired Lease {ns}/kubectl-gitops-lock"
        )),
        "{}",
        err(&o)
    );
    diff_is_empty(kc, &repo, "v2", &ns);
    let h = history(kc, &ns);
    assert_consistent(&h);
    assert_eq!(
        h.iter().map(|r| (r.0, r.1.as_str())).collect::<Vec<_>>(),
        [(2, "v2"), (1, "v1")],
        "the killed run recorded nothing: {h:?}"
    );
    assert_eq!(lease_holder(kc, &ns), None, "released");
}

#[test]
fn ten_syncs_and_reverts_at_once_keep_history_exact() {
    let c = cluster::cluster();
    let kc = c.kubeconfig().to_path_buf();
    let ns = c.fresh_namespace("tenway");
    let repo = Repo::new();
    repo.tag_config_maps("A", 20);
    repo.tag_config_maps("B", 30);
    ok(run(&kc, &sync_args(&repo, "A", &ns)));
    ok(run(&kc, &sync_args(&repo, "B", &ns)));
    let children: Vec<(String, Child)> = (0..10)
        .map(|i| {
            let (what, args): (String, Vec<&str>) = match i % 3 {
                0 => ("sync A".into(), sync_args(&repo, "A", &ns)),
                1 => ("sync B".into(), sync_args(&repo, "B", &ns)),
                _ => (
                    "revert".into(),
                    vec!["revert", "-n", &ns, "--yes", "--history-limit", "100"],
                ),
            };
            (what, gitops(&kc, &args).spawn().unwrap())
        })
        .collect();
    let mut winners = 0;
    for (what, child) in children {
        let (o, _) = wait_bounded(child, Duration::from_secs(60), &what);
        match o.status.code() {
            Some(0) => winners += 1,
            // A run holding the lease is named by holder; a run with nothing to change takes
            // no lease and names the run whose record got in first.
            Some(3) => assert!(
                (err(&o).contains("is being changed by") && err(&o).contains("(pid "))
                    || err(&o).contains("changed while this run was planning: revision"),
                "{what}: exit 3 names the other run: {}",
                err(&o)
            ),
            other => panic!("{what}: exit {other:?}: {}", err(&o)),
        }
    }
    assert!(winners >= 1);
    let h = history(&kc, &ns);
    let revs: Vec<u64> = h.iter().map(|r| r.0).collect();
    let expected: Vec<u64> = (1..=2 + winners).rev().collect();
    assert_eq!(
        revs, expected,
        "exactly 1..=N, no gaps or duplicates: {h:?}"
    );
    // The newest record is the last successful writer's; the namespace is what it applied
    // (a revert records the tag it went back to).
    let last_tag = &h[0].1;
    diff_is_empty(&kc, &repo, last_tag, &ns);
    assert_eq!(lease_holder(&kc, &ns), None, "released");
    assert_eq!(
        count_config_maps(&kc, &ns, "applyset.kubernetes.io/part-of"),
        if last_tag == "A" { 20 } else { 30 }
    );
}

#[test]
fn a_throttled_server_answering_429_is_ridden_out() {
    // Without priority and fairness the legacy in-flight limit answers 429 at once; with a
    // limit of one, a sync at concurrency 16 draws them. system:masters is exempt from the
    // limit, so the sync acts as a plain user bound to cluster-admin.
    let c = OwnedCluster::start(&[
        "--",
        "--enable-priority-and-fairness=false",
        "--max-requests-inflight=1",
        "--max-mutating-requests-inflight=1",
    ]);
    let kc = c.kubeconfig();
    kubectl_ok(
        &kc,
        &[
            "create",
            "clusterrolebinding",
            "throttled-admin",
            "--clusterrole=cluster-admin",
            "--user=throttled",
        ],
    );
    let ns = "throttled";
    kubectl_ok(&kc, &["create", "namespace", ns]);
    let repo = Repo::new();
    repo.tag_config_maps("v1", 150);
    let mut args = sync_args(&repo, "v1", ns);
    args.extend(["--concurrency", "16", "--as", "throttled", "-v", "9"]);
    let o = ok(run(&kc, &args));
    diff_is_empty(&kc, &repo, "v1", ns);
    let h = history(&kc, ns);
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0].2, "succeeded");
    assert_eq!(
        count_config_maps(&kc, ns, "applyset.kubernetes.io/part-of"),
        150
    );
    // The server's own count proves the sync was throttled and not just lucky.
    let metrics = kubectl_ok(&kc, &["get", "--raw", "/metrics"]);
    let throttled: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{") && l.contains("code=\"429\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    eprintln!("the server answered 429 {throttled} times during the sync");
    assert!(throttled > 0.0, "no 429 was drawn; stderr:\n{}", err(&o));
    assert!(
        err(&o).contains("retrying in"),
        "our retries (-v 6) rode them out: {}",
        err(&o)
    );
}

/// How far a failed sync says it got: K of "after applying K of N changed objects".
fn applied_count(stderr: &str, ns: &str) -> (usize, usize) {
    let prefix = format!("sync of {ns} failed after applying ");
    let rest = stderr
        .split_once(&prefix)
        .unwrap_or_else(|| panic!("no {prefix:?} in: {stderr}"))
        .1;
    let mut words = rest.split_whitespace();
    let k = words.next().and_then(|w| w.parse().ok());
    let of = words.next();
    let n = words.next().and_then(|w| w.parse().ok());
    match (k, of, n) {
        (Some(k), Some("of"), Some(n)) => (k, n),
        _ => panic!("cannot read the count after {prefix:?}: {stderr}"),
    }
}

/// The outcome rules for a sync cut off by the network: it failed in bounded time (the caller
/// bounds it), said how many objects it applied and named the rest, did not claim a record it
/// could not write, and the namespace holds at least what it said it applied (requests in
/// flight when it stopped may have landed too) and less than everything.
fn assert_cut_off(o: &Output, kc: &Path, ns: &str, total: usize) -> usize {
    let stderr = err(o);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let (said, of) = applied_count(&stderr, ns);
    assert_eq!(of, total, "{stderr}");
    assert!(
        stderr.contains("\nnot applied: ") && stderr.contains(" more\nnot recorded"),
        "names what was not applied, cut short: {stderr}"
    );
    assert!(
        stderr.contains("could not record the failed revision")
            && !stderr.contains("recorded as revision"),
        "does not claim a record it could not write: {stderr}"
    );
    assert!(
        stderr.contains("check that the API server is reachable"),
        "names a network failure: {stderr}"
    );
    let present = count_config_maps(kc, ns, "applyset.kubernetes.io/part-of");
    assert!(
        said <= present && present < total,
        "said {said} applied, {present} of {total} are there: {stderr}"
    );
    present
}

/// After a cut-off run: it could not release its lease, so until the lease expires the next
/// run names the holder and writes nothing; then a rerun takes the lease over and converges,
/// and history has its one record. (A run cut off for longer than the lease's 30 s, as the
/// silent server's is, finds the lease expired already.)
fn rerun_converges(kc: &Path, proxied: &Path, repo: &Repo, ns: &str, pid: u32, present: usize) {
    let mut o = run(proxied, &sync_args(repo, "v1", ns));
    if o.status.code() == Some(3) {
        assert!(err(&o).contains(&format!("(pid {pid})")), "{}", err(&o));
        assert_eq!(
            count_config_maps(kc, ns, "applyset.kubernetes.io/part-of"),
            present,
            "a run refused for the lease wrote nothing"
        );
        expire_lease(kc, ns);
        o = run(proxied, &sync_args(repo, "v1", ns));
    }
    let o = ok(o);
    assert!(
        err(&o).contains(&format!(
            "taking over expired Lease {ns}/kubectl-gitops-lock from"
        )) && err(&o).contains(&format!("(pid {pid})")),
        "{}",
        err(&o)
    );
    diff_is_empty(proxied, repo, "v1", ns);
    let h = history(kc, ns);
    assert_consistent(&h);
    assert_eq!(h.len(), 1, "the cut-off run left no record: {h:?}");
    assert_eq!(h[0].2, "succeeded", "{h:?}");
    assert_eq!(lease_holder(kc, ns), None, "released");
}

/// Starts a sync of 1,000 ConfigMaps through `proxied` at concurrency 2 and returns once it
/// holds the lease and has been applying for a moment, so the fault lands mid-sync.
fn sync_through_proxy(kc: &Path, proxied: &Path, repo: &Repo, ns: &str, extra: &[&str]) -> Child {
    let mut args = sync_args(repo, "v1", ns);
    args.extend(["--concurrency", "2"]);
    args.extend(extra);
    let child = gitops(proxied, &args).spawn().unwrap();
    wait_for_lease(kc, ns);
    std::thread::sleep(Duration::from_millis(300));
    child
}

#[test]
fn connections_reset_mid_sync_fail_it_in_bounded_time_and_a_rerun_converges() {
    let c = cluster::cluster();
    let kc = c.kubeconfig();
    let ns = c.fresh_namespace("reset");
    let proxies = toxiproxy::Toxiproxy::start();
    let dir = tempfile::tempdir().unwrap();
    let proxied = dir.path().join("kubeconfig");
    let proxy = proxies.proxied_kubeconfig("apiserver", kc, &proxied);
    let repo = Repo::new();
    repo.tag_config_maps("v1", 1000);

    let child = sync_through_proxy(kc, &proxied, &repo, &ns, &[]);
    let pid = child.id();
    // Every connection, open or new, is reset by peer until the toxic goes: longer than the
    // retries of idempotent requests (about 15 s), so the sync must give up on its own.
    proxy.add_reset_peer("reset", Duration::ZERO);
    let (o, took) = wait_bounded(child, Duration::from_secs(60), "sync with resets");
    proxy.remove_toxic("reset");
    let present = assert_cut_off(&o, kc, &ns, 1000);
    assert!(
        err(&o).contains("Connection reset by peer"),
        "names the reset connection: {}",
        err(&o)
    );
    eprintln!("sync gave up {took:?} after connections were reset; {present} of 1000 applied");
    rerun_converges(kc, &proxied, &repo, &ns, pid, present);
}

#[test]
fn a_server_that_stops_answering_mid_sync_times_out_and_a_rerun_converges() {
    let c = cluster::cluster();
    let kc = c.kubeconfig();
    let ns = c.fresh_namespace("silent");
    let proxies = toxiproxy::Toxiproxy::start();
    let dir = tempfile::tempdir().unwrap();
    let proxied = dir.path().join("kubeconfig");
    let proxy = proxies.proxied_kubeconfig("apiserver", kc, &proxied);
    let repo = Repo::new();
    repo.tag_config_maps("v1", 1000);

    // Connections stay open and nothing comes back: only a request timeout notices. With
    // --request-timeout 2s each request gives up after 2 s and is retried (about 15 s of
    // backoff in all), so the run ends well within the bound.
    let child = sync_through_proxy(kc, &proxied, &repo, &ns, &["--request-timeout", "2s"]);
    let pid = child.id();
    proxy.add_timeout("silence", Duration::ZERO);
    let (o, took) = wait_bounded(child, Duration::from_secs(120), "sync with a silent server");
    proxy.remove_toxic("silence");
    let present = assert_cut_off(&o, kc, &ns, 1000);
    assert!(
        err(&o).contains("no answer from the API server within 2s"),
        "names the timeout: {}",
        err(&o)
    );
    eprintln!(
        "sync gave up {took:?} after the server stopped answering; {present} of 1000 applied"
    );
    rerun_converges(kc, &proxied, &repo, &ns, pid, present);
}

/// A kubeconfig whose server is `url`, with a token and no certificate check: all a client
/// needs to start talking (the listener below never gets that far).
fn kubeconfig_for(dir: &Path, url: &str) -> PathBuf {
    let path = dir.join(format!("kubeconfig-{}", url.replace([':', '/'], "_")));
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {url}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: abc\ncontexts:\n- name: x\n  context: {{cluster: c, user: u, namespace: default}}\ncurrent-context: x\n"
        ),
    )
    .unwrap();
    path
}

/// A server that accepts TCP connections and never says a word: neither the TLS handshake nor
/// an HTTP answer ever comes. Connections are held open until the test ends.
fn silent_server() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    addr
}

#[test]
fn a_server_that_accepts_and_never_answers_fails_in_bounded_time() {
    let repo = Repo::new();
    repo.tag_config_maps("v1", 1);
    let addr = silent_server();
    let diff = |kc: &Path, extra: &[&str]| {
        let mut args = vec![
            "diff",
            "--repo",
            repo.dir(),
            "--tag",
            "v1",
            "--path",
            "app",
            "-n",
            "x",
        ];
        args.extend_from_slice(extra);
        let child = gitops(kc, &args).spawn().unwrap();
        wait_bounded(child, Duration::from_secs(90), &format!("diff {extra:?}"))
    };
    // https: the TLS handshake never completes; http: the request is never answered.
    for url in [format!("https://{addr}"), format!("http://{addr}")] {
        let kc = kubeconfig_for(repo.tmp.path(), &url);
        let (o, took) = diff(&kc, &["--request-timeout", "2s"]);
        eprintln!(
            "{url} --request-timeout 2s: exit {:?} after {took:?}",
            o.status.code()
        );
        assert_eq!(o.status.code(), Some(2), "{}", err(&o));
        assert!(
            took < Duration::from_secs(8),
            "{url}: --request-timeout 2s bounds each request (not retried after a timeout), took {took:?}: {}",
            err(&o)
        );
        assert!(
            err(&o).contains("no answer from the API server within 2s"),
            "{url}: says what happened: {}",
            err(&o)
        );
    }
    // Without the flag the default bounds hold: the TLS handshake is part of connecting (10 s).
    let kc = kubeconfig_for(repo.tmp.path(), &format!("https://{addr}"));
    let (o, took) = diff(&kc, &[]);
    eprintln!("https, no flag: exit {:?} after {took:?}", o.status.code());
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        took < Duration::from_secs(20),
        "connecting is bounded by 10 s without --request-timeout, took {took:?}: {}",
        err(&o)
    );
    assert!(err(&o).contains("within 10s"), "{}", err(&o));
}

/// Two tags of three ConfigMaps: `keep` changes, `gone` leaves, `new` arrives.
fn lease_repo() -> Repo {
    let repo = Repo::new();
    let cm = |name: &str, v: &str| {
        format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  v: '{v}'\n"
        )
    };
    repo.write(
        "app/all.yaml",
        format!("{}{}", cm("keep", "1"), cm("gone", "1")),
    );
    repo.tag("A");
    repo.write(
        "app/all.yaml",
        format!("{}{}", cm("keep", "2"), cm("new", "2")),
    );
    repo.tag("B");
    repo
}

/// Starts `sync B`, paused (the test-only `KUBECTL_GITOPS_TEST_PAUSE_BEFORE`) at its
/// checkpoint `at` while holding the lease; returns the child and the file that releases it.
fn paused_sync(kc: &Path, repo: &Repo, ns: &str, at: &str) -> (Child, PathBuf) {
    let gate = repo.tmp.path().join(format!("release-{at}"));
    let mut cmd = gitops(kc, &sync_args(repo, "B", ns));
    cmd.env(
        "KUBECTL_GITOPS_TEST_PAUSE_BEFORE",
        format!("{at}:{}", gate.display()),
    );
    let child = cmd.spawn().unwrap();
    let paused = PathBuf::from(format!("{}.paused", gate.display()));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !paused.exists() {
        assert!(Instant::now() < deadline, "the sync never reached {at}");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, gate)
}

fn exists(kc: &Path, ns: &str, what: &str) -> bool {
    kubectl(kc, &["get", what, "-n", ns]).status.success()
}

#[test]
fn a_sync_that_loses_its_lease_stops_before_its_next_write() {
    let c = cluster::cluster();
    let kc = c.kubeconfig();
    let ns = c.fresh_namespace("stolen");
    let repo = lease_repo();
    ok(run(kc, &sync_args(&repo, "A", &ns)));
    let (child, gate) = paused_sync(kc, &repo, &ns, "prune");
    // Another client takes the Lease while the sync holds it (by force: the protocol alone
    // never does this to a live holder, but a person or a buggy tool may).
    let thief = "thief@elsewhere (pid 7)";
    kubectl_ok(
        kc,
        &[
            "patch",
            "lease",
            "kubectl-gitops-lock",
            "-n",
            &ns,
            "--type=merge",
            "-p",
            &format!(r#"{{"spec":{{"holderIdentity":"{thief}"}}}}"#),
        ],
    );
    std::fs::write(&gate, "").unwrap();
    let (o, _) = wait_bounded(child, Duration::from_secs(60), "sync that lost its lease");
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert!(
        err(&o).contains(&format!("lost the namespace lock to {thief}")),
        "{}",
        err(&o)
    );
    assert!(
        exists(kc, &ns, "configmap/gone"),
        "nothing is pruned after the lease is lost"
    );
    let h = history(kc, &ns);
    assert_eq!(
        h[0].2,
        format!("interrupted: lost the namespace lock to {thief}"),
        "{h:?}"
    );
    assert_eq!(
        lease_holder(kc, &ns).as_deref(),
        Some(thief),
        "the new holder's lease is left alone"
    );
}

#[test]
fn a_client_whose_clock_runs_ahead_does_not_take_over_a_live_lease() {
    let c = cluster::cluster();
    let kc = c.kubeconfig();
    let ns = c.fresh_namespace("clock");
    let repo = lease_repo();
    ok(run(kc, &sync_args(&repo, "A", &ns)));
    let (holder, gate) = paused_sync(kc, &repo, &ns, "prune");
    let held_by = lease_holder(kc, &ns).unwrap();
    // 40 s ahead: by its clock the holder's last renewal is more than 30 s old.
    let mut cmd = gitops(kc, &sync_args(&repo, "B", &ns));
    cmd.env("KUBECTL_GITOPS_TEST_CLOCK_OFFSET", "40s");
    let (o, took) = wait_bounded(cmd.spawn().unwrap(), Duration::from_secs(60), "sync ahead");
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert!(err(&o).contains(&held_by), "names the holder: {}", err(&o));
    assert!(
        took < Duration::from_secs(30),
        "stops as soon as it sees the holder renew (every 10 s), took {took:?}"
    );
    assert_eq!(lease_holder(kc, &ns), Some(held_by), "still the holder's");
    std::fs::write(&gate, "").unwrap();
    let (o, _) = wait_bounded(holder, Duration::from_secs(60), "the holder");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let h = history(kc, &ns);
    assert_eq!(
        h.iter()
            .map(|r| (r.0, r.1.as_str(), r.2.as_str()))
            .collect::<Vec<_>>(),
        [(2, "B", "succeeded"), (1, "A", "succeeded")]
    );
}

/// Random lowercase letters: data that gzip cannot shrink much.
fn noise(seed: u64, n: usize) -> String {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (b'a' + (s % 26) as u8) as char
        })
        .collect()
}

/// Makes `f` (YAML) exist in the cluster, with kubectl apply.
fn apply_yaml(kc: &Path, dir: &Path, name: &str, yaml: &str) {
    let f = dir.join(name);
    std::fs::write(&f, yaml).unwrap();
    kubectl_ok(kc, &["apply", "-f", f.to_str().unwrap()]);
}

/// Names of the record part Secrets (`kubectl-gitops.rev.N.k`) in the namespace.
fn record_parts(kc: &Path, ns: &str) -> Vec<String> {
    kubectl_ok(
        kc,
        &[
            "get",
            "secrets",
            "-n",
            ns,
            "-l",
            "gitops.kubectl.io/part-of-revision",
            "-o",
            "name",
        ],
    )
    .lines()
    .map(str::to_string)
    .collect()
}

#[test]
fn a_record_write_that_fails_midway_leaves_nothing_that_blocks_later_runs() {
    let c = cluster::cluster();
    let kc = c.kubeconfig();
    let ns = c.fresh_namespace("halfrecord");
    let repo = Repo::new();
    repo.tag_config_maps("small", 1);
    // Two ConfigMaps of incompressible data: the record needs two parts.
    let app = repo.path.join("app");
    for (i, name) in ["big-a", "big-b"].iter().enumerate() {
        std::fs::write(
            app.join(format!("{name}.yaml")),
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  blob: {}\n",
                noise(i as u64 + 7, 600_000)
            ),
        )
        .unwrap();
    }
    repo.tag("big");
    ok(run(kc, &sync_args(&repo, "small", &ns)));

    // An admission policy refuses part 0 of any record in this namespace: the sync applies,
    // writes part 1, and then fails to write part 0.
    let policy = format!("deny-record-{ns}");
    apply_yaml(
        kc,
        repo.tmp.path(),
        "policy.yaml",
        &format!(
            "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicy\nmetadata:\n  name: {policy}\nspec:\n  failurePolicy: Fail\n  matchConstraints:\n    resourceRules:\n    - apiGroups: ['']\n      apiVersions: [v1]\n      operations: [CREATE]\n      resources: [secrets]\n  validations:\n  - expression: \"!object.metadata.name.matches('^kubectl-gitops[.]rev[.][0-9]+$')\"\n    message: test policy refuses revision records\n---\napiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicyBinding\nmetadata:\n  name: {policy}\nspec:\n  policyName: {policy}\n  validationActions: [Deny]\n  matchResources:\n    namespaceSelector:\n      matchLabels:\n        kubernetes.io/metadata.name: {ns}\n"
        ),
    );
    let probe = |expect_denied: bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let o = kubectl(
                kc,
                &[
                    "create",
                    "secret",
                    "generic",
                    "kubectl-gitops.rev.999",
                    "-n",
                    &ns,
                    "--dry-run=server",
                ],
            );
            if o.status.success() != expect_denied {
                return;
            }
            assert!(Instant::now() < deadline, "the policy never took effect");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    probe(true);
    let o = run(kc, &sync_args(&repo, "big", &ns));
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains("test policy refuses revision records"),
        "{}",
        err(&o)
    );
    assert_eq!(
        record_parts(kc, &ns),
        Vec::<String>::new(),
        "the failed write removed the part it had written"
    );
    kubectl_ok(
        kc,
        &[
            "delete",
            "validatingadmissionpolicybinding,validatingadmissionpolicy",
            &policy,
        ],
    );
    probe(false);

    // A no-op sync records normally (before: exit 3, "recorded by another sync").
    let o = ok(run(kc, &sync_args(&repo, "big", &ns)));
    assert!(err(&o).contains("0 to create, 0 to update"), "{}", err(&o));

    // Parts left by a run that died between its parts and its part 0 (made by hand here): the
    // next record takes a number past them, and history names them.
    let newest = history(kc, &ns)[0].0;
    let orphan = format!("kubectl-gitops.rev.{}.1", newest + 1);
    kubectl_ok(
        kc,
        &[
            "create",
            "secret",
            "generic",
            &orphan,
            "-n",
            &ns,
            "--from-literal=manifests.1=x",
        ],
    );
    kubectl_ok(
        kc,
        &[
            "label",
            "secret",
            &orphan,
            "-n",
            &ns,
            "app.kubernetes.io/managed-by=kubectl-gitops",
            &format!("gitops.kubectl.io/part-of-revision={}", newest + 1),
        ],
    );
    let o = ok(run(kc, &sync_args(&repo, "big", &ns)));
    assert!(
        err(&o).contains(&format!("revision {}", newest + 2)),
        "skips the number the orphan holds: {}",
        err(&o)
    );
    let listed = ok(run(kc, &["history", "-n", &ns, "-o", "json"]));
    let v: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let entry = v["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["revision"] == newest + 1)
        .unwrap_or_else(|| panic!("history lists revision {}: {v}", newest + 1))
        .clone();
    assert!(
        entry["incomplete"]
            .as_str()
            .unwrap_or_default()
            .contains(&orphan),
        "{entry}"
    );
    assert!(
        record_parts(kc, &ns).contains(&format!("secret/{orphan}")),
        "parts of a run that may still be writing are left alone for 10 minutes"
    );
}

/// Connections cut while `--wait` watches (3 s, shorter than what the lease tolerates): the
/// wait's watches reconnect on their own, and the sync ends ready and recorded, as the polling
/// did. The Deployment becomes Available only 15 s after its Pod is ready
/// (`minReadySeconds`), so the resets land while the wait is still watching it.
#[test]
fn connections_reset_during_the_wait_are_ridden_out() {
    let c = cluster::cluster();
    let kc = c.kubeconfig();
    let ns = c.fresh_namespace("wait-reset");
    let proxies = toxiproxy::Toxiproxy::start();
    let dir = tempfile::tempdir().unwrap();
    let proxied = dir.path().join("kubeconfig");
    let proxy = proxies.proxied_kubeconfig("apiserver", kc, &proxied);
    let repo = Repo::new();
    repo.write(
        "app/web.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  minReadySeconds: 15\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n        - name: app\n          image: nginx:1.27\n",
    );
    repo.tag("v1");
    let mut args = sync_args(&repo, "v1", &ns);
    args.extend(["--wait", "--timeout", "120s", "-v", "4"]);
    let child = gitops(&proxied, &args).spawn().unwrap();
    let started = Instant::now();
    while kubectl(kc, &["get", "deployment", "web", "-n", &ns])
        .status
        .code()
        != Some(0)
    {
        assert!(started.elapsed() < Duration::from_secs(30), "never applied");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    // A disabled proxy closes every connection, open (the watches) or new, and refuses more.
    proxy.set_enabled(false);
    std::thread::sleep(Duration::from_secs(3));
    proxy.set_enabled(true);
    let (o, took) = wait_bounded(child, Duration::from_secs(150), "sync --wait across resets");
    let stderr = err(&o);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("Deployment.apps/{ns}/web")) && stderr.contains("Ready"),
        "{stderr}"
    );
    assert!(
        stderr.contains("(retrying)"),
        "the watch lost its connection and retried: {stderr}"
    );
    let available = kubectl_ok(
        kc,
        &[
            "get",
            "deployment",
            "web",
            "-n",
            &ns,
            "-o",
            "jsonpath={.status.availableReplicas}",
        ],
    );
    assert_eq!(available.trim(), "1", "{stderr}");
    assert_eq!(history(kc, &ns).len(), 1);
    eprintln!("sync --wait ended {took:?} after it started");
}
