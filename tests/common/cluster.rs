//! A real Kubernetes API server for integration tests.
//!
//! Include it from a test crate with
//!
//! ```ignore
//! #[path = "../common/cluster.rs"]
//! mod cluster;
//! ```
//!
//! and call [`cluster()`]. The first call in a test process builds (if needed) and starts
//! `tests/cluster` — an embedded etcd and a real kube-apiserver v1.36 with the
//! kube-controller-manager controllers, the kube-scheduler, a volume provisioner behind the
//! default StorageClass `standard`, and three KWOK Nodes that run Pods without containers, on free
//! 127.0.0.1 ports — and every later call returns the same cluster. Deployments roll out,
//! Jobs complete and claims bind by themselves; image tags `broken`, `crash` and `fail` make them
//! fail (see tests/cluster/README.md). [`cluster()`] returns only once the Nodes are Ready and the
//! StorageClass exists (the cluster writes its `ready` file then), so no test races the
//! cluster's own start-up. Tests isolate themselves with [`TestCluster::fresh_namespace`], never
//! by sharing one.
//!
//! The cluster process is started with `--exit-on-stdin-close` and this module holds the write
//! end of its stdin for the whole test process: when the test process ends, however it ends,
//! the pipe closes and the cluster stops and deletes its state directory (the Rust test harness
//! runs no destructors for statics, so nothing here could stop it explicitly). State lives in
//! `$CARGO_TARGET_TMPDIR/gitops-cluster/run-*`; directories left by killed runs are swept.
//!
//! Environment:
//! - `GITOPS_TEST_KUBECONFIG=<path>`: use that cluster (kind, k3d, …) instead; nothing is built,
//!   started or stopped. [`TestCluster::client`] and [`TestCluster::kubectl`] use its current
//!   context; [`TestCluster::restricted_client`] needs a context named `restricted` whose user
//!   can only read namespace `restricted-ns` (what the built-in cluster sets up) and panics
//!   with an explanation if there is none.
//! - `GITOPS_TEST_CLUSTER_TIMEOUT=<seconds>`: how long to wait for readiness (default 120;
//!   the build before it is not counted, run `tests/cluster/build` first to keep it out).
//! - `GITOPS_TEST_KEEP_CLUSTER_DIR=1`: keep the state directory (logs, etcd data) after exit.
//! - `RACE=1`: build and run the cluster with the Go race detector (see tests/cluster/build);
//!   its reports go to the run's `cluster.log` (keep it with the variable above) or to
//!   `GORACE=log_path=...`.
//! - `KUBECTL`: the kubectl binary for [`TestCluster::kubectl`] (default: `kubectl` on PATH).
//!
//! If Go is missing, the first call panics with install instructions: tests that need a
//! cluster never skip silently.
#![allow(dead_code)]

use std::collections::hash_map::RandomState;
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Label put on every namespace made by [`TestCluster::fresh_namespace`], so leftovers on a
/// shared cluster (`GITOPS_TEST_KUBECONFIG`) can be found and deleted.
pub const NAMESPACE_LABEL: &str = "gitops-tools.test/fixture";

/// Namespace that the `restricted` user may read (ClusterRole `view`) and nothing else.
pub const RESTRICTED_NAMESPACE: &str = "restricted-ns";

/// A running cluster: the one this process started, or the one `GITOPS_TEST_KUBECONFIG` names.
pub struct TestCluster {
    kubeconfig: PathBuf,
    dir: Option<PathBuf>,
    owned: Option<Owned>,
}

/// What keeps a cluster we started alive: its stdin pipe must stay open as long as we live.
struct Owned {
    child: Mutex<Child>,
    _stdin: ChildStdin,
}

static CLUSTER: OnceLock<Result<TestCluster, String>> = OnceLock::new();

/// The cluster of this test process, started on first use.
///
/// Panics (in every test that asks, with the same message) if it cannot be built or started.
pub fn cluster() -> &'static TestCluster {
    match CLUSTER.get_or_init(TestCluster::init) {
        Ok(cluster) => cluster,
        Err(message) => panic!("{message}"),
    }
}

impl TestCluster {
    fn init() -> Result<TestCluster, String> {
        if let Some(path) = std::env::var_os("GITOPS_TEST_KUBECONFIG") {
            let kubeconfig = PathBuf::from(path);
            if !kubeconfig.is_file() {
                return Err(format!(
                    "GITOPS_TEST_KUBECONFIG={} is not a file",
                    kubeconfig.display()
                ));
            }
            return Ok(TestCluster {
                kubeconfig,
                dir: None,
                owned: None,
            });
        }
        start_own_cluster()
    }

    /// Path of a kubeconfig for this cluster. For a cluster started here its contexts are
    /// `admin` (current, group `system:masters`) and `restricted`.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// State directory of a cluster started here (`cluster.log` is in it); `None` with
    /// `GITOPS_TEST_KUBECONFIG`.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Whether this process started the cluster (false with `GITOPS_TEST_KUBECONFIG`).
    pub fn is_owned(&self) -> bool {
        self.owned.is_some()
    }

    /// Pid of the cluster process, when this process started it.
    pub fn pid(&self) -> Option<u32> {
        self.owned
            .as_ref()
            .map(|o| o.child.lock().unwrap_or_else(|e| e.into_inner()).id())
    }

    /// Creates a namespace no other test uses — `prefix` (lower-cased, reduced to DNS-label
    /// characters, shortened) plus a unique suffix — and returns its name. It carries the label
    /// [`NAMESPACE_LABEL`]. Returns once the controllers have added what every namespace of a
    /// real cluster has, ServiceAccount `default` (so Pods can be created at once) and
    /// ConfigMap `kube-root-ca.crt` (so listings do not change under a test), or after 10 s on
    /// a cluster that never adds them.
    ///
    /// Synchronous so it can be called anywhere; from async code it briefly blocks the calling
    /// thread (it runs its requests on a runtime of its own).
    pub fn fresh_namespace(&self, prefix: &str) -> String {
        let kubeconfig = self.kubeconfig.clone();
        let context = self.admin_context();
        let prefix = dns_label_prefix(prefix);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime for fresh_namespace");
            runtime.block_on(async move {
                let client = make_client(&kubeconfig, context.as_deref()).await;
                create_namespace(client, &prefix).await
            })
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    /// A client with full rights (`admin` context; the current context with
    /// `GITOPS_TEST_KUBECONFIG`). Make one per test: a client is bound to the tokio runtime
    /// it was made on, and every `#[tokio::test]` has its own.
    pub async fn client(&self) -> kube::Client {
        make_client(&self.kubeconfig, self.admin_context().as_deref()).await
    }

    /// A client as user `restricted`: may read namespace [`RESTRICTED_NAMESPACE`] (ClusterRole
    /// `view`), nothing else. With `GITOPS_TEST_KUBECONFIG` it uses that file's context named
    /// `restricted` and panics if there is none.
    pub async fn restricted_client(&self) -> kube::Client {
        if !self.is_owned() {
            let config = Kubeconfig::read_from(&self.kubeconfig)
                .unwrap_or_else(|e| panic!("read kubeconfig {}: {e}", self.kubeconfig.display()));
            if !config.contexts.iter().any(|c| c.name == "restricted") {
                panic!(
                    "restricted_client(): GITOPS_TEST_KUBECONFIG={} has no context named \
                     `restricted`; add one whose user can only read namespace \
                     {RESTRICTED_NAMESPACE} (RoleBinding to ClusterRole `view`), or unset \
                     GITOPS_TEST_KUBECONFIG to use the built-in test cluster",
                    self.kubeconfig.display()
                );
            }
        }
        make_client(&self.kubeconfig, Some("restricted")).await
    }

    /// `kubectl --kubeconfig <kubeconfig>`, ready for more arguments. Its current context is
    /// `admin` on a cluster started here; add `--context restricted` for the restricted user.
    pub fn kubectl(&self) -> Command {
        let program = std::env::var_os("KUBECTL").unwrap_or_else(|| "kubectl".into());
        let mut command = Command::new(program);
        command.arg("--kubeconfig").arg(&self.kubeconfig);
        command
    }

    /// `None` means the kubeconfig's current context.
    fn admin_context(&self) -> Option<String> {
        self.is_owned().then(|| "admin".to_owned())
    }
}

async fn make_client(kubeconfig: &Path, context: Option<&str>) -> kube::Client {
    let file = Kubeconfig::read_from(kubeconfig)
        .unwrap_or_else(|e| panic!("read kubeconfig {}: {e}", kubeconfig.display()));
    let options = KubeConfigOptions {
        context: context.map(str::to_owned),
        ..KubeConfigOptions::default()
    };
    let config = kube::Config::from_custom_kubeconfig(file, &options)
        .await
        .unwrap_or_else(|e| panic!("kubeconfig {} ({context:?}): {e}", kubeconfig.display()));
    kube::Client::try_from(config).unwrap_or_else(|e| panic!("kube client: {e}"))
}

async fn create_namespace(client: kube::Client, prefix: &str) -> String {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut attempt = 0;
    let name = loop {
        let name = format!("{prefix}-{}", unique_suffix());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([(NAMESPACE_LABEL.to_owned(), "true".to_owned())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        match namespaces.create(&PostParams::default(), &ns).await {
            Ok(_) => break name,
            Err(kube::Error::Api(status)) if status.code == 409 && attempt < 5 => attempt += 1,
            Err(e) => panic!("create namespace {name}: {e}"),
        }
    };
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
    let config_maps: Api<ConfigMap> = Api::namespaced(client, &name);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let account = matches!(accounts.get_opt("default").await, Ok(Some(_)));
        let root_ca = matches!(config_maps.get_opt("kube-root-ca.crt").await, Ok(Some(_)));
        if account && root_ca {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    name
}

/// Lower-case, DNS-label characters only, at most 40 characters so the suffix fits in 63.
fn dns_label_prefix(prefix: &str) -> String {
    let mut out: String = prefix
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    while out.ends_with('-') {
        out.pop();
    }
    let trimmed = out.trim_start_matches('-');
    if trimmed.is_empty() {
        "test".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// A counter keeps names unique within the process; the randomly seeded hash of pid and time
/// keeps them unique across processes sharing one cluster.
fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    format!("{n}{}", base36(hasher.finish() % 36u64.pow(6)))
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii")
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crate directory has a parent")
        .to_path_buf()
}

fn start_own_cluster() -> Result<TestCluster, String> {
    let binary = build_binary()?;
    let runs = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gitops-cluster");
    fs::create_dir_all(&runs).map_err(|e| format!("create {}: {e}", runs.display()))?;
    sweep_stale_runs(&runs);
    let dir = tempfile::Builder::new()
        .prefix("run-")
        .tempdir_in(&runs)
        .map_err(|e| format!("create a state directory in {}: {e}", runs.display()))?
        .keep();
    let log_path = dir.join("cluster.log");
    let log = fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let log_err = log.try_clone().map_err(|e| e.to_string())?;

    let mut command = Command::new(&binary);
    command
        .arg("--dir")
        .arg(&dir)
        .arg("--exit-on-stdin-close")
        .stdin(Stdio::piped())
        .stdout(log)
        .stderr(log_err);
    if std::env::var_os("GITOPS_TEST_KEEP_CLUSTER_DIR").is_none() {
        command.arg("--remove-dir-on-exit");
    }
    let started = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| format!("start {}: {e}", binary.display()))?;
    let stdin = child.stdin.take().expect("stdin is piped");

    let timeout = std::env::var("GITOPS_TEST_CLUSTER_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(120));
    let ready = dir.join("ready");
    loop {
        if ready.is_file() {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "test cluster exited with {status} before it was ready; {}",
                log_tail(&log_path)
            ));
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "test cluster not ready within {}s (GITOPS_TEST_CLUSTER_TIMEOUT); {}",
                timeout.as_secs(),
                log_tail(&log_path)
            ));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    eprintln!(
        "test cluster ready in {:.1}s: {} (pid {})",
        started.elapsed().as_secs_f64(),
        dir.display(),
        child.id()
    );
    Ok(TestCluster {
        kubeconfig: dir.join("kubeconfig"),
        dir: Some(dir),
        owned: Some(Owned {
            child: Mutex::new(child),
            _stdin: stdin,
        }),
    })
}

/// Runs `tests/cluster/build`, which rebuilds only when the Go sources changed.
fn build_binary() -> Result<PathBuf, String> {
    let script = workspace_root().join("tests/cluster/build");
    let output = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("run {}: {e}", script.display()))?;
    match output.status.code() {
        Some(0) => {}
        Some(127) => {
            return Err(
                "the test cluster needs the Go toolchain (go 1.25+), which is not on PATH: \
                 install it (Debian/Ubuntu: `apt-get install golang-go`, or from go.dev/dl) \
                 or point GITOPS_TEST_KUBECONFIG at an existing cluster's kubeconfig; \
                 see the message above"
                    .to_owned(),
            );
        }
        _ => {
            return Err(format!(
                "building the test cluster failed ({}): see the Go errors above, or run {}",
                output.status,
                script.display()
            ));
        }
    }
    let path = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if path.is_empty() {
        return Err(format!("{} printed no binary path", script.display()));
    }
    Ok(PathBuf::from(path))
}

/// Deletes state directories of clusters whose process died without cleaning up (SIGKILL).
/// A live cluster holds an flock on `cluster.lock`; a directory younger than a minute may
/// belong to a cluster still starting, before it took the lock.
fn sweep_stale_runs(runs: &Path) {
    let Ok(entries) = fs::read_dir(runs) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let young = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|age| age < Duration::from_secs(60));
        if young || !path.is_dir() {
            continue;
        }
        let lock = path.join("cluster.lock");
        let unlocked = match fs::File::open(&lock) {
            Ok(file) => file.try_lock().is_ok(),
            Err(_) => true,
        };
        if unlocked {
            let _ = fs::remove_dir_all(&path);
        }
    }
}

fn log_tail(path: &Path) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut file) = fs::File::open(path) {
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(4000)));
        let _ = file.read_to_end(&mut bytes);
    }
    format!(
        "last lines of {}:\n{}",
        path.display(),
        String::from_utf8_lossy(&bytes)
    )
}
