//! Command-line surface of `kubectl gitops`. kubectl passes every flag after the plugin name
//! to us, so the kube connection flags are ours and are accepted before or after the
//! subcommand.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub const EXIT_CODES: &str = "\
Exit codes:
  diff:          0 no differences, 1 differences, 2 or more on error (as kubectl diff)
  sync, revert:  0 done (or nothing to do), 1 failed, refused or not ready in time (--wait),
                 2 invalid input, 3 another sync or revert holds the namespace; sync --verify
                 then exits as verify does
  status:        0 (with --exit-code: in sync and healthy), 1 drifted or unhealthy, 2 error
  verify:        0 verified and recorded, 1 not verified (the reasons are listed; nothing written)
                 or a push refused, 2 invalid input, 3 lost a race for refs/notes/deploy (another
                 verification was written or pushed first; nothing written, retry)
  history:       0, or 2 on error
  trust:         0 done, 1 failed or refused (e.g. by RBAC), 2 invalid input
  metrics:       0 (--once: every figure read), 1 --once printed an incomplete scrape (the
                 warnings say what is missing) or --serve failed, 2 invalid input";

/// How `--wait` and `status` judge health (README: "--wait"); a macro so that `concat!` can
/// put it into more than one help text.
macro_rules! health_rules {
    () => {
        "Health is judged as kstatus (sigs.k8s.io/cli-utils/pkg/kstatus) judges it, from the status \
the controllers publish: rolled out (a Deployment with a progress deadline also needs \
Progressing=True, reason NewReplicaSetAvailable), Running and Ready, bound, established, or the \
Ready condition True; Reconciling=True is in progress, Stalled=True is failed; a Job suspended \
on purpose is ready.

Two deliberate differences from kstatus: a Job is ready only when Complete, not merely started \
(a deploy must not move on while a migration still runs; Helm's --wait-for-jobs does the same); \
a bare Pod that finished Failed is failed (it will not run again).

Failed means waiting cannot help, and --wait stops at once. It is: kstatus's Failed \
(Stalled=True, a Deployment's ProgressDeadlineExceeded, a Job's Failed condition with its reason \
such as BackoffLimitExceeded or DeadlineExceeded, a running Pod in CrashLoopBackOff, a Pod \
unschedulable for more than 15s), and these early signals: a Pod, bare or of a Deployment's new \
ReplicaSet, whose container waits on ErrImagePull, ImagePullBackOff, InvalidImageName, \
ErrImageNeverPull or CreateContainerConfigError 30s after the Pod was created, or in \
CrashLoopBackOff after 3 restarts; a Job with FailureTarget=True; a Lost PVC. For a Deployment \
that is still rolling out, its ReplicaSets and Pods are read (if allowed) to find these."
    };
}

#[derive(Parser, Debug)]
#[command(
    name = "kubectl-gitops",
    bin_name = "kubectl gitops",
    version,
    about = "Diff, sync and revert a namespace to the manifests recorded at a git tag",
    long_about = "Diff, sync and revert a namespace to the manifests recorded at a git tag.\n\n\
Manifests are read straight from the git objects of the tag (never a checkout); a kustomization \
is rendered with `kubectl kustomize`, a Helm chart (a directory with Chart.yaml) with `helm \
template`, with the values of the environment's helm: block in gitops.yaml, offline, and only \
with dependencies vendored in the chart's charts/. Objects are applied with server-side apply (field manager \
kubectl-gitops) and tracked as an ApplySet, so only what we applied is ever pruned. Each sync is \
recorded in the namespace.",
    after_help = EXIT_CODES,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub kube: KubeArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// The connection flags every kubectl user expects (cli-runtime's generic flags).
#[derive(Args, Debug, Clone, Default)]
pub struct KubeArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, which may list several, or ~/.kube/config)
    #[arg(long, global = true, value_name = "path")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use
    #[arg(long, global = true, value_name = "name")]
    pub context: Option<String>,
    /// The kubeconfig cluster to use
    #[arg(long, global = true, value_name = "name")]
    pub cluster: Option<String>,
    /// The kubeconfig user to use
    #[arg(long, global = true, value_name = "name")]
    pub user: Option<String>,
    /// Namespace to act on (default: with --env, the environment's namespace in gitops.yaml;
    /// else the context's); `metrics` takes it more than once
    #[arg(
        short = 'n',
        long = "namespace",
        global = true,
        value_name = "name",
        action = clap::ArgAction::Append
    )]
    pub namespaces: Vec<String>,
    /// The one namespace of every verb but `metrics`: `-n` once (see [`KubeArgs::settle`]).
    #[arg(skip)]
    pub namespace: Option<String>,
    /// The address of the Kubernetes API server
    #[arg(short = 's', long, global = true, value_name = "url")]
    pub server: Option<String>,
    /// Bearer token for authentication to the API server
    #[arg(long, global = true, value_name = "token", hide_env_values = true)]
    pub token: Option<String>,
    /// Username to impersonate for the operation
    #[arg(long = "as", global = true, value_name = "user")]
    pub as_user: Option<String>,
    /// Group to impersonate (repeatable)
    #[arg(long = "as-group", global = true, value_name = "group")]
    pub as_group: Vec<String>,
    /// Path to a CA certificate file for the API server
    #[arg(long, global = true, value_name = "path")]
    pub certificate_authority: Option<PathBuf>,
    /// Do not verify the API server's certificate (insecure)
    #[arg(long, global = true)]
    pub insecure_skip_tls_verify: bool,
    /// Server name to use for certificate validation
    #[arg(long, global = true, value_name = "name")]
    pub tls_server_name: Option<String>,
    /// Time to wait for the answer to each request: a duration such as 30s or 1m, or plain
    /// seconds as kubectl takes them (default 60s; 0 waits without a limit). Connecting, TLS
    /// handshake included, takes at most 10s (or this, if shorter); a request that timed out is
    /// not retried
    #[arg(long, global = true, value_name = "duration",
          value_parser = shared::duration::parse_seconds_or_duration)]
    pub request_timeout: Option<std::time::Duration>,
    /// Log verbosity: 0 quiet, 4 requests, 6+ details (logs go to stderr and never show secret values)
    #[arg(
        short = 'v',
        long = "v",
        global = true,
        value_name = "level",
        default_value_t = 0
    )]
    pub verbosity: u8,
}

impl KubeArgs {
    /// Sets [`KubeArgs::namespace`] from `-n`, which every verb but `metrics` takes once:
    /// a second `-n` is refused rather than one of them silently winning.
    pub fn settle(&mut self, several_allowed: bool) -> shared::Result<()> {
        if self.namespaces.len() > 1 && !several_allowed {
            return Err(shared::Error::invalid(format!(
                "-n/--namespace given {} times ({}); this command acts on one namespace",
                self.namespaces.len(),
                self.namespaces.join(", ")
            ))
            .hint("only `kubectl gitops metrics` follows several namespaces"));
        }
        self.namespace = self.namespaces.first().cloned();
        Ok(())
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show what a sync would change: one diff per object, then a summary
    #[command(after_help = EXIT_CODES)]
    Diff(DiffArgs),
    /// Make the namespace match the tag: apply, prune what we applied before, record it
    #[command(after_help = EXIT_CODES)]
    Sync(SyncArgs),
    /// Bring the namespace back to a recorded revision (no git needed) or to a tag
    ///
    /// The record or tag is checked exactly as sync checks a tag, with the same flags and
    /// defaults: a record is a Secret that anyone who may write Secrets in the namespace can
    /// edit, so objects outside the namespace, cluster-scoped objects and an empty record are
    /// refused unless the flag a sync would need is given.
    ///
    /// Under a trust policy (see `trust`), --to-tag checks the tag's signature as sync does; a
    /// recorded revision is allowed when it was verified when it was synced, by keys the policy
    /// still lists (its manifests come from the record, where no signature can be checked).
    #[command(after_help = EXIT_CODES)]
    Revert(RevertArgs),
    /// The recorded revisions of the namespace, newest first
    #[command(after_help = EXIT_CODES)]
    History(HistoryArgs),
    /// Current revision, drift from it, and workload health (read-only)
    #[command(
        after_help = EXIT_CODES,
        long_about = concat!(
            "Current revision, drift from it, and workload health (read-only).\n\n",
            health_rules!()
        )
    )]
    Status(StatusArgs),
    /// Record in git that an environment's latest deploy runs in sync and healthy
    #[command(
        after_help = EXIT_CODES,
        long_about = concat!(
            "Record in git that an environment's latest deploy runs in sync and healthy.\n\n\
The namespace's current revision must have succeeded and be the environment's latest trusted \
deploy tag, and the namespace must be in sync with that tag's manifests (no object changed, \
missing or left over) and healthy. Then a note is appended to the deploy's tag object under \
refs/notes/deploy, made of trailers: Verified-Env, Verified-Namespace, Verified-Cluster (the API \
server's URL), Verified-Revision, Verified-At (RFC 3339, UTC) and Verified-By (the user the API \
server authenticated). git deploy promote reads it for the `verified` and `soak` gates. The notes \
ref is updated by compare-and-swap; --push pushes it atomically with a lease on what the remote \
has. Otherwise it exits 1, lists the reasons and writes nothing.\n\n",
            health_rules!()
        )
    )]
    Verify(VerifyArgs),
    /// Require signed tags: set, show or clear the namespace's trust policy
    #[command(
        subcommand,
        after_help = EXIT_CODES,
        long_about = TRUST_ABOUT
    )]
    Trust(TrustCommand),
    /// Prometheus exporter: revision, last sync, drift, health and lock of namespaces (read-only)
    #[command(after_help = EXIT_CODES, long_about = METRICS_ABOUT)]
    Metrics(MetricsArgs),
}

const METRICS_ABOUT: &str = "\
Prometheus exporter: revision, last sync, drift, health and lock of namespaces (read-only).

--serve ADDR serves /metrics (Prometheus text format, or OpenMetrics when the scraper's Accept \
header prefers it) and /healthz; --once prints one scrape to stdout (for node_exporter's textfile \
collector or a CI step) and exits.

Namespaces: -n (more than once), --env (their namespaces in gitops.yaml at HEAD of the config \
repository), or --all-namespaces (every namespace holding a kubectl-gitops ApplySet parent, \
followed as they come and go); default: the context's namespace.

The exporter follows the cluster by watches: revision records, the Lease, the ApplySet parents \
and the objects of each namespace's current revision (with the Pods and ReplicaSets of its \
Deployments). A scrape sends no request; health is judged at scrape time from what the \
watches hold, with the same rules as status and --wait. Drift is recomputed every \
--drift-interval and after every new revision, as status computes it (one server-side dry-run \
per object whose fields cannot be proven unchanged from the LIST alone); a namespace whose Lease \
is held is checked once the sync is done. Nothing is ever written.

Metrics (prefix kubectl_gitops_):
  revision_info{namespace,revision,tag,commit,outcome,signed_by}  1, the newest revision record
  last_sync_timestamp_seconds{namespace}         when the newest record was written
  last_sync_success{namespace}                   1 if it succeeded (also a revert), 0 if it \
failed, was interrupted or rolled back
  last_successful_sync_timestamp_seconds{namespace}  the newest successful record kept
  drift_objects{namespace,kind}                  kind: changed, missing, extra, unowned
  drift_checked_timestamp_seconds{namespace}     when drift was last computed
  health_objects{namespace,status}               status: ready, in_progress, failed
  namespace_locked{namespace}                    1 while a sync or revert holds the Lease
  scrape_errors_total                            watch, record and drift errors of this exporter
  build_info{version}                            1";

/// `kubectl gitops metrics`.
#[derive(Args, Debug)]
pub struct MetricsArgs {
    /// Serve /metrics and /healthz on this address, e.g. 127.0.0.1:9464 (0.0.0.0:9464 in a Pod)
    #[arg(
        long,
        value_name = "addr",
        conflicts_with = "once",
        required_unless_present = "once"
    )]
    pub serve: Option<std::net::SocketAddr>,
    /// Print one scrape (Prometheus text format) to stdout and exit
    #[arg(long)]
    pub once: bool,
    /// Follow every namespace that holds a kubectl-gitops ApplySet parent, as they come and go
    #[arg(short = 'A', long, conflicts_with = "env")]
    pub all_namespaces: bool,
    /// Follow this environment's namespace, from gitops.yaml at HEAD of the config repository
    /// (more than once for several)
    #[arg(long, value_name = "env")]
    pub env: Vec<String>,
    /// The config repository, with --env (default: the repository around the working
    /// directory); -C as in git and git deploy
    #[arg(short = 'C', long, value_name = "path")]
    pub repo: Option<PathBuf>,
    /// How often drift is recomputed (it costs dry-runs); 0 turns drift off
    #[arg(long, value_name = "duration", default_value = "5m", value_parser = shared::duration::parse)]
    pub drift_interval: std::time::Duration,
    #[command(flatten)]
    pub planning: PlanningArgs,
}

const TRUST_ABOUT: &str = "\
Require signed tags: set, show or clear the namespace's trust policy.

The policy is the ConfigMap kubectl-gitops-trust in the namespace. While it exists, sync and \
revert --to-tag check the tag's signature (and/or its commit's, per --mode) before anything is \
written, and refuse (exit 1, nothing written) a tag that is not signed, is lightweight, is \
signed by a key the policy does not list, carries a bad signature, or is signed with an expired \
or revoked key or by a principal not allowed for that key; diff shows the same verdict as a \
warning. SSH signatures are checked against an OpenSSH allowed_signers file (as git's \
gpg.ssh.allowedSignersFile), OpenPGP signatures with gpg against a throw-away keyring of the \
policy's keys. Who may change the policy is decided by RBAC on that ConfigMap.";

#[derive(Subcommand, Debug)]
pub enum TrustCommand {
    /// Write the namespace's trust policy from git's own key files (replaces any policy)
    Set(TrustSetArgs),
    /// Show the namespace's trust policy: mode and trusted keys (never key material)
    Show(TrustShowArgs),
    /// Remove the namespace's trust policy: its deploys are no longer checked
    Clear(TrustClearArgs),
}

#[derive(Args, Debug)]
pub struct TrustSetArgs {
    /// An OpenSSH allowed_signers file, the format of git's gpg.ssh.allowedSignersFile: one
    /// `principals [options] key-type base64-key` line per trusted SSH key
    #[arg(long, value_name = "file")]
    pub ssh_allowed_signers: Option<PathBuf>,
    /// ASCII-armoured OpenPGP public keys, as `gpg --armor --export KEY...` writes them
    #[arg(long, value_name = "file")]
    pub gpg_keys: Option<PathBuf>,
    /// Which signatures a deploy needs: the annotated tag's (tag), the tagged commit's
    /// (commit; the tag may then be unsigned or lightweight), or both (tag-and-commit)
    #[arg(long, value_name = "mode", default_value = "tag",
          value_parser = clap::builder::PossibleValuesParser::new(["tag", "commit", "tag-and-commit"]))]
    pub mode: String,
    /// Print the ConfigMap that would be written (YAML) and write nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct TrustShowArgs {
    /// Output format: text or json
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
}

#[derive(Args, Debug)]
pub struct TrustClearArgs {}

pub use shared::output::Format;

/// How a sync or revert writes: shared by both.
#[derive(Args, Debug, Clone)]
pub struct ApplyArgs {
    /// Print the plan and write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation
    #[arg(short, long)]
    pub yes: bool,
    /// Do not delete objects that left the manifests
    #[arg(long)]
    pub no_prune: bool,
    /// Also prune Namespaces, PersistentVolumeClaims and CustomResourceDefinitions
    #[arg(long)]
    pub prune_protected: bool,
    /// Take over fields another field manager owns
    #[arg(long)]
    pub force_conflicts: bool,
    /// Take over objects that belong to another ApplySet or carry Argo CD / Flux / Helm / kapp marks
    #[arg(long)]
    pub adopt: bool,
    /// How many revision records to keep in the namespace
    #[arg(long, value_name = "n", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub history_limit: u32,
    /// Wait until what was applied is ready (rolled out, complete, bound, established)
    #[arg(
        long,
        long_help = concat!(
            "Wait until what was applied is ready (rolled out, complete, bound, established), \
             at most --timeout; exit 1 at the first object that failed. The revision is \
             recorded once the wait is over, as failed if it did not end with everything \
             ready. Manifests with sync waves or hooks are waited for wave by wave in any \
             case.\n\n\
             The wait reads the cluster by watch, not by polling: one LIST and WATCH per kind \
             and namespace of what was applied (selected by the ApplySet label), and for \
             Deployments still rolling out one of the ReplicaSets and one of the Pods of their \
             namespace. A kind the user may get but not list and watch (RBAC) is polled \
             instead (-v 2 says so).\n\n",
            health_rules!()
        )
    )]
    pub wait: bool,
    /// How long --wait (and the waves and hooks of a sync) may wait in all: a duration such as
    /// 90s, 5m or 1h30m; a hook Job's activeDeadlineSeconds gives it its own
    #[arg(long, value_name = "duration", default_value = "5m", value_parser = shared::duration::parse)]
    pub timeout: std::time::Duration,
    /// With --wait: when what was applied fails or is not ready in time (or on Ctrl-C), go
    /// back to the last successful revision (revert: to the revision current before it), wait
    /// for that, and exit 1
    #[arg(
        long,
        requires = "wait",
        long_help = "With --wait: when what was applied fails (an early signal of --wait: \
ProgressDeadlineExceeded, CrashLoopBackOff after 3 restarts, ImagePullBackOff, ErrImagePull, \
InvalidImageName or CreateContainerConfigError 30s after the Pod was created, a Job at its \
backoff limit, Stalled=True) or is not ready within --timeout, or on Ctrl-C, put the namespace \
back as it was: revert to the last successful revision of the records (a revert rolls back to \
the revision that was current before it), with the same plan as `kubectl gitops revert` \
(pruning, order, waves, hooks), wait for that with --rollback-timeout, and exit 1. The failed \
revision is recorded as `failed: <reason>` (or `interrupted`) and marked as rolled back; the \
rollback as a new revision, `rolled back to revision N (tag T) after failed revision M`. A \
second Ctrl-C stops the rollback itself (recorded as `interrupted`). Without a successful \
revision before (a first sync) nothing is rolled back: what was applied stays, exit 1."
    )]
    pub rollback_on_failure: bool,
    /// How long the rollback of --rollback-on-failure may wait (default: --timeout), so a slow
    /// failure cannot eat the time the rollback needs
    #[arg(long, value_name = "duration", requires = "rollback_on_failure", value_parser = shared::duration::parse)]
    pub rollback_timeout: Option<std::time::Duration>,
    /// Delete and recreate an object whose apply would change an immutable field (a Job's
    /// template, a selector, a Service's clusterIP), as the annotation
    /// gitops.kubectl.io/sync-options: Replace=true does for one object; never for
    /// Namespaces, PersistentVolumeClaims and CustomResourceDefinitions
    #[arg(long)]
    pub replace_immutable: bool,
    /// Output format of the plan: text (the summary; with --dry-run, diffs) or json (the plan)
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
    /// Do not check the namespace's trust policy (see `trust`): neither the tag's signature
    /// nor, for revert, whether the recorded revision was verified when it was synced; a
    /// warning says so and the revision records the check as skipped
    #[arg(long)]
    pub insecure_skip_signature: bool,
    /// POST one JSON event about this run to this webhook when it ends (more than once for
    /// several); Slack and Mattermost show its `text` as is. Also `notify:` in gitops.yaml
    #[arg(long, value_name = "url")]
    pub notify: Vec<String>,
    /// Like --notify, with the URL read from this environment variable, so that it stays out
    /// of shell history, process lists and CI logs (more than once for several)
    #[arg(long, value_name = "name")]
    pub notify_env: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RevertArgs {
    /// Revision to bring back (default: the last successful revision before the current one)
    #[arg(long, value_name = "n", conflicts_with = "to_tag")]
    pub to_revision: Option<u64>,
    /// Bring back the manifests at this tag instead (read from git, as sync does)
    #[arg(long, value_name = "tag")]
    pub to_tag: Option<String>,
    /// The config repository, with --to-tag (default: the repository around the working
    /// directory); -C as in git and git deploy
    #[arg(short = 'C', long, value_name = "path")]
    pub repo: Option<std::path::PathBuf>,
    /// Manifests path, with --to-tag (default: the environment's path in gitops.yaml)
    #[arg(long, value_name = "path")]
    pub path: Option<String>,
    #[command(flatten)]
    pub scope: ScopeArgs,
    #[command(flatten)]
    pub planning: PlanningArgs,
    /// Show Secret values instead of masking them
    #[arg(long)]
    pub show_secrets: bool,
    #[command(flatten)]
    pub apply: ApplyArgs,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Output format: text (a table) or json
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Output format: text (a report) or json
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
    /// Exit 1 when the namespace drifted from its revision or a workload is not ready
    #[arg(long)]
    pub exit_code: bool,
    #[command(flatten)]
    pub planning: PlanningArgs,
}

/// How the plan is computed: by diff, sync, revert and status alike.
#[derive(Args, Debug, Clone)]
pub struct PlanningArgs {
    /// Requests in flight at once
    #[arg(long, value_name = "n", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Ask the server to dry-run every object, also those whose live fields already match
    /// the manifest and are skipped by default (slower; for admission webhooks that change
    /// objects on every write)
    #[arg(long)]
    pub check_all: bool,
}

/// What the objects to apply may reach beyond the target namespace: the same flags, with the
/// same defaults, for everything that applies (sync, and revert, whose record or tag is checked
/// exactly as a sync's tag is).
#[derive(Args, Debug, Clone, Default)]
pub struct ScopeArgs {
    /// Allow objects whose namespace differs from the target namespace
    #[arg(long)]
    pub allow_other_namespaces: bool,
    /// Allow cluster-scoped objects (a Namespace named like the target is always allowed)
    #[arg(long)]
    pub allow_cluster_scoped: bool,
    /// Create the target namespace if it does not exist
    #[arg(long)]
    pub create_namespace: bool,
    /// Allow a render with no objects (applying it prunes everything we applied)
    #[arg(long)]
    pub allow_empty: bool,
}

/// Where the manifests come from and how they may be applied.
#[derive(Args, Debug, Clone)]
pub struct SourceArgs {
    /// The config repository (default: the git repository containing the working directory);
    /// -C as in git and git deploy
    #[arg(short = 'C', long, value_name = "path")]
    pub repo: Option<PathBuf>,
    /// Deploy the manifests at this tag. A tag under deploy/ must be a trusted deploy (see
    /// --env), else it is refused with the reason
    #[arg(
        long,
        value_name = "tag",
        conflicts_with = "env",
        required_unless_present = "env"
    )]
    pub tag: Option<String>,
    /// Deploy the environment's latest trusted deploy tag: an annotated deploy/<env>/... tag
    /// made by git deploy (Deploy-Env trailer) on a commit of the environment's branch (from
    /// gitops.yaml at HEAD); other tags there are ignored with a warning. Namespace, path and
    /// context default to the environment's entry in gitops.yaml at that tag
    #[arg(long, value_name = "env")]
    pub env: Option<String>,
    /// Manifests path inside the repository (default: the environment's path). A directory
    /// with a Chart.yaml is a Helm chart, rendered with `helm template` (HELM_PATH, else helm
    /// on PATH)
    #[arg(long, value_name = "path")]
    pub path: Option<String>,
    /// Helm chart values file, a path inside the tag's tree (repeatable; read after the values
    /// of gitops.yaml's helm: block). Only with --tag: what an environment deploys is in git
    #[arg(long = "values", value_name = "file", conflicts_with = "env")]
    pub values: Vec<String>,
    /// Set a Helm chart value as `helm --set` reads it (repeatable; read last). Only with --tag.
    /// Refused in a namespace with a trust policy: the value is not in the signed tag
    #[arg(long = "set", value_name = "key=value", conflicts_with = "env",
          value_parser = helm_set)]
    pub set: Vec<String>,
    #[command(flatten)]
    pub scope: ScopeArgs,
    #[command(flatten)]
    pub planning: PlanningArgs,
    /// Show Secret values instead of masking them
    #[arg(long)]
    pub show_secrets: bool,
}

/// `--set` takes `key=value` (Helm reads the rest: commas, dots, indexes).
fn helm_set(value: &str) -> Result<String, String> {
    match value.split_once('=') {
        Some((key, _)) if !key.trim().is_empty() => Ok(value.to_string()),
        _ => Err("expected key=value, e.g. --set replicaCount=2".into()),
    }
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Output format: text (diffs and a summary) or json (the plan: creates, updates with their
    /// diff, prunes)
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
}

#[derive(Args, Debug)]
pub struct SyncArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub apply: ApplyArgs,
    /// After --wait, verify the environment's deploy as `kubectl gitops verify` does and record
    /// it in git (needs --env and --wait)
    #[arg(long, requires = "wait", requires = "env", conflicts_with = "dry_run")]
    pub verify: bool,
    /// Sync a tag whose earlier sync failed and was rolled back without warning about it
    #[arg(long)]
    pub force: bool,
    /// With --verify: push the note to the remote (default origin) atomically, leased on what it
    /// has: --push=<remote>
    #[arg(long, value_name = "remote", num_args = 0..=1, require_equals = true,
          default_missing_value = "origin", requires = "verify")]
    pub push: Option<String>,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The environment whose latest deploy to verify; its namespace and context come from its
    /// entry in gitops.yaml (--context overrides the context; -n may only repeat the namespace,
    /// as a verification elsewhere would not count for the environment's gates)
    #[arg(long, value_name = "env")]
    pub env: String,
    /// The config repository (default: the git repository containing the working directory);
    /// -C as in git and git deploy
    #[arg(short = 'C', long, value_name = "path")]
    pub repo: Option<PathBuf>,
    /// Push the note to the remote (default origin) in one atomic push, leased on what the
    /// remote has; a remote with notes this clone lacks stops it (exit 3): --push=<remote>
    #[arg(long, value_name = "remote", num_args = 0..=1, require_equals = true,
          default_missing_value = "origin")]
    pub push: Option<String>,
    /// Check and print the note and the ref update, and write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Output format: text or json (the checks, and the verification when recorded)
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
    #[command(flatten)]
    pub planning: PlanningArgs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_work_before_and_after_the_subcommand() {
        let before = Cli::try_parse_from([
            "kubectl-gitops",
            "--context",
            "c",
            "-n",
            "ns",
            "diff",
            "--tag",
            "t",
        ])
        .unwrap();
        let after = Cli::try_parse_from([
            "kubectl-gitops",
            "diff",
            "--tag",
            "t",
            "--context",
            "c",
            "-n",
            "ns",
        ])
        .unwrap();
        assert_eq!(before.kube.context.as_deref(), Some("c"));
        assert_eq!(after.kube.context.as_deref(), Some("c"));
        assert_eq!(after.kube.namespaces, ["ns"]);
    }

    #[test]
    fn dash_c_names_the_repository_as_in_git() {
        let cli =
            Cli::try_parse_from(["kubectl-gitops", "diff", "-C", "/r", "--tag", "t"]).unwrap();
        let Command::Diff(d) = cli.command else {
            panic!("diff")
        };
        assert_eq!(d.source.repo.as_deref(), Some(std::path::Path::new("/r")));
        let cli =
            Cli::try_parse_from(["kubectl-gitops", "revert", "-C", "/r", "--to-tag", "t"]).unwrap();
        let Command::Revert(r) = cli.command else {
            panic!("revert")
        };
        assert_eq!(r.repo.as_deref(), Some(std::path::Path::new("/r")));
    }

    #[test]
    fn output_takes_the_same_values_everywhere_and_the_old_names() {
        for (args, expected) in [
            (vec!["diff", "--tag", "t", "-o", "json"], Format::Json),
            (vec!["diff", "--tag", "t", "-o", "text"], Format::Text),
            (vec!["diff", "--tag", "t", "-o", "diff"], Format::Text),
            (vec!["history", "-o", "table"], Format::Text),
            (vec!["status", "--output", "text"], Format::Text),
        ] {
            let cli = Cli::try_parse_from(["kubectl-gitops"].into_iter().chain(args.clone()))
                .unwrap_or_else(|e| panic!("{args:?}: {e}"));
            let got = match cli.command {
                Command::Diff(a) => a.output,
                Command::History(a) => a.output,
                Command::Status(a) => a.output,
                _ => unreachable!(),
            };
            assert_eq!(got, expected, "{args:?}");
        }
    }

    #[test]
    fn only_metrics_takes_several_namespaces() {
        let mut cli =
            Cli::try_parse_from(["kubectl-gitops", "status", "-n", "a", "-n", "b"]).unwrap();
        let e = cli.kube.settle(false).unwrap_err();
        assert!(e.message.contains("given 2 times (a, b)"), "{e}");
        let mut cli =
            Cli::try_parse_from(["kubectl-gitops", "metrics", "--once", "-n", "a", "-n", "b"])
                .unwrap();
        cli.kube.settle(true).unwrap();
        assert_eq!(cli.kube.namespaces, ["a", "b"]);
        let mut cli = Cli::try_parse_from(["kubectl-gitops", "history", "-n", "a"]).unwrap();
        cli.kube.settle(false).unwrap();
        assert_eq!(cli.kube.namespace.as_deref(), Some("a"));
    }

    #[test]
    fn metrics_serves_or_prints_once() {
        assert!(Cli::try_parse_from(["kubectl-gitops", "metrics"]).is_err());
        assert!(
            Cli::try_parse_from([
                "kubectl-gitops",
                "metrics",
                "--once",
                "--serve",
                "127.0.0.1:9464"
            ])
            .is_err()
        );
        let cli = Cli::try_parse_from(["kubectl-gitops", "metrics", "--serve", "127.0.0.1:9464"])
            .unwrap();
        let Command::Metrics(m) = cli.command else {
            panic!("metrics")
        };
        assert_eq!(m.serve, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(m.drift_interval, std::time::Duration::from_secs(300));
    }

    #[test]
    fn tag_or_env_is_required() {
        assert!(Cli::try_parse_from(["kubectl-gitops", "diff"]).is_err());
        assert!(
            Cli::try_parse_from(["kubectl-gitops", "diff", "--tag", "a", "--env", "b"]).is_err()
        );
    }
}
