//! Notifications of sync and revert, received by a real HTTP receiver on 127.0.0.1: exactly
//! one event per run with the right outcome (success, failure while planning or applying,
//! rollback by `--rollback-on-failure`, interrupt), a receiver that is down or answers 500
//! delays the run by at most the retry budget and leaves its exit code alone, and no Secret
//! value or webhook URL in any output.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::metrics::{alerts_on, metrics_once, revision_info, value};
use super::*;

/// A webhook receiver: records each request's body, answers `status`.
struct Receiver {
    port: u16,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    fn start(status: u16) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let seen = seen.clone();
                std::thread::spawn(move || serve_one(stream, status, &seen));
            }
        });
        Receiver { port, bodies }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn events(&self) -> Vec<Value> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| serde_json::from_str(b).unwrap_or_else(|e| panic!("{e}: {b}")))
            .collect()
    }

    fn hits(&self) -> usize {
        self.bodies.lock().unwrap().len()
    }

    /// The one event received, waited for briefly (delivery ends before the run exits, but
    /// the receiver's thread may still be recording it).
    fn only_event(&self) -> Value {
        let start = Instant::now();
        while self.hits() == 0 && start.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let events = self.events();
        assert_eq!(events.len(), 1, "exactly one event per run: {events:#?}");
        events.into_iter().next().unwrap()
    }

    fn clear(&self) {
        self.bodies.lock().unwrap().clear();
    }
}

/// One HTTP/1.1 exchange per connection: the request line, headers, a Content-Length body.
fn serve_one(stream: std::net::TcpStream, status: u16, seen: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, v)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    seen.lock().unwrap().push(String::from_utf8(body).unwrap());
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} Status\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
}

/// A port nobody listens on.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

const SECRET: &str = "n0tify-S3cret-Value";
const TOKEN: &str = "T0KEN-in-the-webhook-path";

fn app_repo() -> Repo {
    let repo = Repo::new();
    repo.write("app/web.yaml", deployment("web", "nginx:1.27"));
    repo.write(
        "app/creds.yaml",
        format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  password: {SECRET}\n"),
    );
    repo
}

fn assert_clean(o: &Output, event: &Value) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(SECRET);
    let body = event.to_string();
    for text in [out(o), err(o), body] {
        for leak in [SECRET, b64.as_str(), TOKEN] {
            assert!(!text.contains(leak), "{leak} leaked:\n{text}");
        }
    }
}

/// A sync, a sync of an environment whose gitops.yaml names the webhook, and a revert: each
/// sends exactly one event, with what a chat or a script needs; no Secret value and no
/// webhook URL appears anywhere, even at -v 9.
#[test]
fn every_sync_and_revert_sends_one_event() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("notify-ok");
    let hook = Receiver::start(200);
    let url = hook.url(&format!("/hooks/{TOKEN}"));
    let repo = app_repo();
    repo.write(
        "gitops.yaml",
        format!(
            "environments:\n  - name: dev\n    branch: env/dev\n    path: app\n    namespace: {ns}\n    notify:\n      - env: TEST_HOOK_URL\n"
        ),
    );
    repo.deploy_tag("dev", "deploy/dev/20250101T000000Z");
    let r = repo.path.to_str().unwrap();
    let env = [("TEST_HOOK_URL", url.as_str())];

    let o = run_env(
        &[
            "sync",
            "--repo",
            r,
            "--env",
            "dev",
            "--yes",
            "--wait",
            "--timeout",
            "60s",
            "-v",
            "9",
        ],
        &env,
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let e = hook.only_event();
    assert_clean(&o, &e);
    let commit = repo.git(&["rev-parse", "HEAD"]);
    assert_eq!(e["verb"], "sync");
    assert_eq!(e["namespace"], ns.as_str());
    assert_eq!(e["environment"], "dev");
    assert_eq!(e["tag"], "deploy/dev/20250101T000000Z");
    assert_eq!(e["commit"], commit.as_str());
    assert_eq!(e["revision"], 1);
    assert_eq!(e["outcome"], "succeeded");
    assert_eq!(e["recorded_outcome"], "succeeded");
    assert_eq!(e["reason"], Value::Null);
    assert_eq!(e["user"], "admin");
    assert_eq!(
        (e["applied"].as_u64(), e["pruned"].as_u64()),
        (Some(2), Some(0))
    );
    assert!(e["duration_seconds"].as_f64().unwrap() > 0.0, "{e}");
    assert_eq!(
        e["tool"],
        format!("kubectl-gitops/{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        e["text"].as_str().unwrap(),
        format!(
            "kubectl gitops sync of namespace {ns} (dev) to deploy/dev/20250101T000000Z ({}) \
             succeeded; revision 1, 2 applied, 0 pruned, {:.1}s, by admin",
            &commit[..7],
            e["duration_seconds"].as_f64().unwrap()
        )
    );

    // --notify-env on the command line: the same, and a run that changes nothing still tells.
    hook.clear();
    let o = run_env(
        &[
            "sync",
            "--repo",
            r,
            "--env",
            "dev",
            "--yes",
            "--notify-env",
            "EXTRA_HOOK",
        ],
        &[("EXTRA_HOOK", url.as_str())],
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let events = {
        std::thread::sleep(Duration::from_millis(200));
        hook.events()
    };
    // gitops.yaml's entry names a variable this run lacks: a warning, and only --notify-env.
    assert_eq!(events.len(), 1, "{events:#?}");
    assert!(
        err(&o).contains("warning: notify #1 of environment dev in gitops.yaml: the environment variable TEST_HOOK_URL is not set; no event goes there"),
        "{}",
        err(&o)
    );
    assert_eq!(
        (
            events[0]["revision"].as_u64(),
            events[0]["applied"].as_u64()
        ),
        (Some(2), Some(0))
    );
    assert_clean(&o, &events[0]);

    // A revert is an event too.
    hook.clear();
    let o = run_env(
        &[
            "revert",
            "-n",
            &ns,
            "--to-revision",
            "1",
            "--yes",
            "--notify",
            &url,
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let e = hook.only_event();
    assert_clean(&o, &e);
    assert_eq!(e["verb"], "revert");
    assert_eq!(e["outcome"], "succeeded");
    assert_eq!(e["environment"], "dev", "from the deploy tag's name");
    assert_eq!(e["revision"], 3);
    assert_eq!(
        e["recorded_outcome"],
        "reverted to revision 1 (tag deploy/dev/20250101T000000Z)"
    );

    // A dry run tells nobody.
    hook.clear();
    let o = run_env(
        &[
            "sync",
            "--repo",
            r,
            "--env",
            "dev",
            "--dry-run",
            "--notify",
            &url,
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(hook.hits(), 0);

    // A --notify-env whose variable is unset is bad input: exit 2, nothing written.
    let before = history(&ns)["revisions"].as_array().unwrap().len();
    let o = run_env(
        &[
            "sync",
            "--repo",
            r,
            "--env",
            "dev",
            "--yes",
            "--notify-env",
            "UNSET_HOOK_VARIABLE",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains("--notify-env UNSET_HOOK_VARIABLE: the environment variable UNSET_HOOK_VARIABLE is not set"),
        "{}",
        err(&o)
    );
    assert_eq!(history(&ns)["revisions"].as_array().unwrap().len(), before);
}

/// A sync that fails while planning (the API server rejects an object in the dry-run) tells
/// the webhooks too: one `failed` event with the error's first line and no revision, and
/// nothing is written; a `--dry-run` of it tells nobody.
#[test]
fn a_sync_that_fails_while_planning_sends_failed() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("notify-plan");
    let hook = Receiver::start(200);
    let url = hook.url(&format!("/hooks/{TOKEN}"));
    let repo = app_repo();
    repo.write(
        "app/svc.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n    - port: 70000\n",
    );
    repo.tag("v1");
    let r = repo.path.to_str().unwrap();

    let dry = sync_app(r, "v1", &ns, &["--dry-run", "--notify", &url]);
    assert_ne!(dry.status.code(), Some(0), "{}", err(&dry));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(hook.hits(), 0, "a dry run tells nobody");

    let o = sync_app(r, "v1", &ns, &["--notify", &url]);
    assert_eq!(o.status.code(), dry.status.code(), "{}", err(&o));
    let e = hook.only_event();
    assert_clean(&o, &e);
    assert_eq!(e["verb"], "sync");
    assert_eq!(e["namespace"], ns.as_str());
    assert_eq!(e["tag"], "v1");
    assert_eq!(
        e["commit"],
        repo.git(&["rev-parse", "v1^{commit}"]).as_str()
    );
    assert_eq!(e["outcome"], "failed");
    assert_eq!(e["revision"], Value::Null);
    assert_eq!(
        (e["applied"].as_u64(), e["pruned"].as_u64()),
        (Some(0), Some(0))
    );
    let reason = e["reason"].as_str().unwrap();
    let head: String = reason.chars().take(30).collect();
    assert!(
        err(&o).contains(&format!("error: {head}")),
        "the reason is the error's first line: {reason}\n{}",
        err(&o)
    );
    assert!(reason.contains("web"), "{reason}");
    assert!(
        !kubectl(&["get", "secrets", "-n", &ns, "-o", "name"]).contains("kubectl-gitops"),
        "nothing written"
    );
}

/// A rollout that fails under `--wait --rollback-on-failure` and is rolled back sends one
/// event: `rolled back`, the revision it went back to, the rollback's own record and the
/// reason. The exporter then reports the rollback as the last sync, not a success, and the
/// tested alert `GitopsLastSyncFailed` fires on those figures.
#[test]
fn a_rolled_back_sync_sends_rolled_back() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("notify-rollback");
    let hook = Receiver::start(200);
    let url = hook.url(&format!("/hooks/{TOKEN}"));
    let repo = Repo::new();
    repo.write("app/web.yaml", deployment("web", "nginx:1.25"));
    repo.tag("good");
    repo.write("app/web.yaml", deployment("web", "nginx:broken"));
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
            "60s",
            "--rollback-on-failure",
            "--notify",
            &url,
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let e = hook.only_event();
    assert_clean(&o, &e);
    assert_eq!(e["outcome"], "rolled back", "{e}");
    assert_eq!(e["rolled_back_to"], 1, "{e}");
    assert_eq!(e["revision"], 3, "{e}");
    assert_eq!(e["tag"], "bad");
    let recorded = "rolled back to revision 1 (tag good) after failed revision 2";
    assert_eq!(e["recorded_outcome"], recorded);
    let reason = e["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("Deployment.apps/{ns}/web: ImagePullBackOff")),
        "{reason}"
    );
    assert!(
        e["text"]
            .as_str()
            .unwrap()
            .contains(") failed and was rolled back to revision 1: "),
        "{e}"
    );

    let (o, scrape) = metrics_once(&["-n", &ns]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(
        value(&scrape, "kubectl_gitops_last_sync_success", &ns, &[]),
        Some(0.0)
    );
    assert_eq!(revision_info(&scrape, &ns).unwrap()["outcome"], recorded);
    alerts_on(
        &scrape,
        &ns,
        &[(
            "GitopsLastSyncFailed",
            &[
                ("severity", "critical"),
                ("revision", "3"),
                ("tag", "good"),
                ("outcome", recorded),
            ],
        )],
    );
}

/// A failed rollout (a Job whose Pod fails) reaches the webhook as `failed` with the reason,
/// while a second webhook that is down costs a warning and not the exit code; and the
/// exporter's figures of that namespace make the tested alert rule fire.
#[test]
fn a_failed_sync_reaches_the_webhook_and_the_alert_rule() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("notify-fail");
    let hook = Receiver::start(200);
    let repo = Repo::new();
    repo.write(
        "app/job.yaml",
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\nspec:\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: task\n          image: migrate:fail\n",
    );
    repo.tag("v1");
    let r = repo.path.to_str().unwrap();
    let down = format!("http://127.0.0.1:{}/{TOKEN}", closed_port());
    let o = sync_app(
        r,
        "v1",
        &ns,
        &[
            "--wait",
            "--timeout",
            "60s",
            "--notify",
            &hook.url("/hook"),
            "--notify",
            &down,
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let e = hook.only_event();
    assert_clean(&o, &e);
    assert_eq!(e["outcome"], "failed");
    assert_eq!(e["revision"], 1);
    let reason = e["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("Job.batch/{ns}/migrate"))
            && reason.contains("BackoffLimitExceeded"),
        "{reason}"
    );
    assert!(
        e["text"]
            .as_str()
            .unwrap()
            .contains(&format!(") failed: {reason}; revision 1")),
        "{e}"
    );
    let stderr = err(&o);
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning: notification"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one warning for the webhook that is down: {}",
        err(&o)
    );
    assert!(
        warnings[0]
            .starts_with("warning: notification to --notify #2 not delivered: could not connect"),
        "{}",
        warnings[0]
    );

    let (o, scrape) = metrics_once(&["-n", &ns]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(
        value(
            &scrape,
            "kubectl_gitops_health_objects",
            &ns,
            &[("status", "failed")]
        ),
        Some(1.0)
    );
    alerts_on(
        &scrape,
        &ns,
        &[(
            "GitopsWorkloadFailed",
            &[("status", "failed"), ("severity", "critical")],
        )],
    );
}

/// SIGINT mid-sync: one event `interrupted` with the revision that recorded it, and the
/// exporter's figures make "last sync failed" fire with that revision's labels.
#[cfg(unix)]
#[test]
fn an_interrupted_sync_sends_interrupted() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("notify-int");
    let hook = Receiver::start(200);
    let repo = Repo::new();
    let mut stream = String::new();
    for i in 0..600 {
        stream.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\ndata:\n  i: '{i}'\n"
        ));
    }
    repo.write("app/all.yaml", &stream);
    repo.tag("v1");
    let r = repo.path.to_str().unwrap();
    let mut child = std::process::Command::new(BIN)
        .args([
            "sync",
            "--repo",
            r,
            "--tag",
            "v1",
            "--path",
            "app",
            "-n",
            &ns,
            "--yes",
            "--concurrency",
            "2",
            "--notify",
            &hook.url("/hook"),
            "--kubeconfig",
        ])
        .arg(c.kubeconfig())
        .env_remove("KUBECONFIG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(
        "the sync to take the lease",
        Duration::from_secs(30),
        || {
            c.kubectl()
                .args(["get", "lease", "kubectl-gitops-lock", "-n", &ns])
                .output()
                .unwrap()
                .status
                .success()
                .then_some(())
        },
    );
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    let e = hook.only_event();
    assert_eq!(e["outcome"], "interrupted", "{e}");
    assert_eq!(e["recorded_outcome"], "interrupted");
    assert_eq!(e["revision"], 1);
    assert!(
        e["reason"]
            .as_str()
            .unwrap()
            .ends_with("interrupted (Ctrl-C)"),
        "{e}"
    );
    let applied = e["applied"].as_u64().unwrap();
    assert!(applied < 600, "{e}");

    let (o, scrape) = metrics_once(&["-n", &ns]);
    assert!(o.status.code() == Some(0), "{}", err(&o));
    assert_eq!(
        value(&scrape, "kubectl_gitops_last_sync_success", &ns, &[]),
        Some(0.0)
    );
    let info = revision_info(&scrape, &ns).unwrap();
    assert_eq!(info["outcome"], "interrupted");
    alerts_on(
        &scrape,
        &ns,
        &[(
            "GitopsLastSyncFailed",
            &[
                ("severity", "critical"),
                ("revision", "1"),
                ("tag", "v1"),
                ("outcome", "interrupted"),
            ],
        )],
    );
}

/// Receivers that answer 500 or are not there: each is retried with backoff within the
/// budget (5 s), the run is delayed by no more than that, its exit code is what it would have
/// been, and each undelivered event is one warning that names the webhook by its flag.
#[test]
fn an_unreachable_or_failing_webhook_delays_the_run_at_most_the_budget() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("notify-down");
    let failing = Receiver::start(500);
    let repo = Repo::new();
    repo.write(
        "app/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: safe\n",
    );
    repo.tag("v1");
    let r = repo.path.to_str().unwrap();
    ok(sync_app(r, "v1", &ns, &[]));
    let started = Instant::now();
    ok(sync_app(r, "v1", &ns, &[]));
    let baseline = started.elapsed();
    let down = format!("http://127.0.0.1:{}/{TOKEN}", closed_port());
    let started = Instant::now();
    let o = sync_app(
        r,
        "v1",
        &ns,
        &[
            "--notify",
            &failing.url(&format!("/{TOKEN}")),
            "--notify",
            &down,
        ],
    );
    let took = started.elapsed();
    assert_eq!(
        o.status.code(),
        Some(0),
        "the run's own exit code: {}",
        err(&o)
    );
    assert!(
        took < baseline + Duration::from_secs(6),
        "delayed by {:?} (baseline {baseline:?})",
        took - baseline.min(took)
    );
    assert!(
        failing.hits() >= 3,
        "retried with backoff: {} attempts",
        failing.hits()
    );
    let stderr = err(&o);
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(warnings.len(), 2, "{}", err(&o));
    assert!(
        warnings.iter().any(|w| w.starts_with(
            "warning: notification to --notify #1 not delivered: the webhook answered 500"
        )),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(|w| w
            .starts_with("warning: notification to --notify #2 not delivered: could not connect")),
        "{warnings:?}"
    );
    assert!(!err(&o).contains(TOKEN) && !out(&o).contains(TOKEN));
    // Every attempt carried the same one event.
    let events = failing.events();
    assert!(events.windows(2).all(|w| w[0] == w[1]), "{events:#?}");
    assert_eq!(events[0]["outcome"], "succeeded");
}
