//! One module per verb. diff, sync and revert share how a plan is made (`prepare`,
//! `plan_for`, one `plan_options` for all three) and sync and revert how it is shown,
//! confirmed and executed (`apply_flow`); `sync --verify` ends with `verify`.

pub mod diff;
pub mod history;
pub mod revert;
pub mod status;
pub mod sync;
pub mod trust;
pub mod verify;

use serde_json::json;
use shared::Result;

use crate::cli::{ApplyArgs, Format, KubeArgs, PlanningArgs, ScopeArgs, SourceArgs};
use crate::cluster::Cluster;
use crate::kubeconf::{self, Connection};
use crate::manifest::{Content, Manifest};
use crate::plan::{self, Plan};
use crate::trust::{Enforce, Gate, SignatureRecord};
use crate::{execute, health, log, report, source};

pub struct Prepared {
    pub tag: String,
    pub commit: String,
    pub conn: Connection,
    pub cluster: Cluster,
    pub plan: Plan,
    /// What the revision records about the tag's signature.
    pub signature: SignatureRecord,
}

/// Connects (context from the flags, else the environment's) and names the target namespace:
/// -n, else the environment's, else the context's.
pub async fn connect(
    kube: &KubeArgs,
    env_namespace: Option<&str>,
    env_context: Option<&str>,
) -> Result<(Connection, String)> {
    let conn = kubeconf::connect(kube, env_context).await?;
    let namespace = kube
        .namespace
        .clone()
        .or_else(|| env_namespace.map(str::to_string))
        .unwrap_or_else(|| conn.default_namespace.clone());
    Ok((conn, namespace))
}

/// Builds the plan for `content` in `namespace` (`opts.namespace` is set here; callers leave
/// it empty). A Helm chart is rendered here, for that namespace and with the server's version
/// and APIs as its Capabilities.
pub async fn plan_in(
    conn: &Connection,
    namespace: String,
    content: Content,
    mut opts: plan::Options,
) -> Result<(Cluster, Plan)> {
    opts.namespace = namespace;
    let mut cluster = Cluster::discover(conn.client.clone()).await?;
    let manifests = objects(content, &cluster, &opts.namespace).await?;
    let plan = plan::build(&mut cluster, manifests, &opts).await?;
    Ok((cluster, plan))
}

/// [`connect`], then [`plan_in`].
pub async fn plan_for(
    kube: &KubeArgs,
    content: Content,
    env_namespace: Option<&str>,
    env_context: Option<&str>,
    opts: plan::Options,
) -> Result<(Connection, Cluster, Plan)> {
    let (conn, namespace) = connect(kube, env_namespace, env_context).await?;
    let (cluster, plan) = plan_in(&conn, namespace, content, opts).await?;
    Ok((conn, cluster, plan))
}

/// The objects of `content`: a Helm chart is rendered for `namespace`, with the server's
/// version and APIs as its Capabilities.
pub async fn objects(
    content: Content,
    cluster: &Cluster,
    namespace: &str,
) -> Result<Vec<Manifest>> {
    match content {
        Content::Objects(manifests) => Ok(manifests),
        Content::Chart(chart) => {
            let caps = cluster.capabilities().await?;
            // Runs helm and parses its output: off the runtime's threads.
            let manifests = tokio::task::block_in_place(|| chart.render(&caps, namespace))?;
            log::info(
                1,
                format!(
                    "chart {}: release {}, {} objects",
                    chart.path(),
                    chart.release(),
                    manifests.len()
                ),
            );
            Ok(manifests)
        }
    }
}

/// How every command that applies (or shows what applying would do) plans: one function, so
/// sync, diff and revert validate with the same flags and the same defaults. `apply` is `None`
/// for diff.
pub fn plan_options(
    scope: &ScopeArgs,
    planning: &PlanningArgs,
    apply: Option<&ApplyArgs>,
) -> plan::Options {
    plan::Options {
        namespace: String::new(),
        allow_other_namespaces: scope.allow_other_namespaces,
        allow_cluster_scoped: scope.allow_cluster_scoped,
        create_namespace: scope.create_namespace,
        allow_empty: scope.allow_empty,
        concurrency: planning.concurrency as usize,
        prune_protected: apply.is_some_and(|a| a.prune_protected),
        prune: apply.is_none_or(|a| !a.no_prune),
        check_all: planning.check_all,
        for_write: apply.is_some_and(|a| !a.dry_run),
        keep_unchanged_live: false,
        // diff shows every object it could compute, then every rejection (exit 2).
        report_rejections: apply.is_none(),
    }
}

/// The tag is read once and its signature checked against the namespace's trust policy
/// (`enforce`) before anything is rendered; the manifests are those of the commit that was
/// checked.
pub async fn prepare(
    kube: &KubeArgs,
    args: &SourceArgs,
    apply: Option<&ApplyArgs>,
    enforce: Enforce,
) -> Result<Prepared> {
    // Reading git objects, parsing and rendering (kubectl kustomize) block: off the runtime's
    // threads.
    let location: source::Location = args.into();
    let located = tokio::task::block_in_place(|| source::locate(location))?;
    let (conn, namespace) = connect(
        kube,
        located.namespace.as_deref(),
        located.context.as_deref(),
    )
    .await?;
    let gate = Gate::for_tag(&conn.client, &namespace, located.tag.clone(), enforce).await?;
    gate.check_command_line_values(&args.set)?;
    let commit = gate.commit().unwrap_or_else(|| located.commit());
    let content = tokio::task::block_in_place(|| located.load(commit))?;
    log::info(
        1,
        format!(
            "{}{} ({}) path {:?}: {}",
            located
                .env
                .as_deref()
                .map(|e| format!("{e}: "))
                .unwrap_or_default(),
            located.name(),
            &commit.to_string()[..12],
            located.path,
            match &content {
                Content::Objects(m) => format!("{} objects", m.len()),
                Content::Chart(_) => "a Helm chart".to_string(),
            }
        ),
    );
    let flags = plan_options(&args.scope, &args.planning, apply);
    let (cluster, plan) = plan_in(&conn, namespace, content, flags).await?;
    gate.check_plan(&conn.client, &plan).await?;
    Ok(Prepared {
        tag: located.name().to_string(),
        commit: commit.to_string(),
        conn,
        cluster,
        plan,
        signature: gate.record,
    })
}

pub fn source_json(p: &Prepared) -> serde_json::Value {
    json!({"tag": p.tag, "commit": p.commit, "signature": p.signature})
}

/// Shows the plan, refuses what must be refused, confirms, executes, waits: sync and revert.
pub async fn apply_flow(
    mut p: Prepared,
    args: &ApplyArgs,
    show_secrets: bool,
    concurrency: usize,
    revert: Option<(Option<u64>, String)>,
) -> Result<i32> {
    let reverted_to = revert.as_ref().and_then(|r| r.0);
    let success = revert
        .as_ref()
        .map(|r| r.1.clone())
        .unwrap_or_else(|| "succeeded".into());
    if args.output == Format::Json {
        let v = report::plan_json(&p.plan, show_secrets, source_json(&p));
        shared::output::print_json(&v);
    } else if args.dry_run {
        report::print_diff(&p.plan, show_secrets);
    } else {
        if !args.yes {
            // What the question is about, object by object, not just counted.
            report::print_changes(&p.plan);
        }
        eprintln!(
            "{} -> namespace {}: {}",
            p.tag,
            p.plan.namespace,
            p.plan.summary()
        );
    }
    execute::check_blockers(&p.plan, args.adopt, args.force_conflicts)?;
    if args.dry_run {
        eprintln!("dry run: nothing was written");
        return Ok(0);
    }
    let verb = if revert.is_some() { "revert" } else { "sync" };
    let question = format!(
        "{} namespace {} to {}?",
        if revert.is_some() { "Revert" } else { "Sync" },
        p.plan.namespace,
        p.tag
    );
    // Reads the terminal: a blocking wait, off the runtime's thread.
    tokio::task::block_in_place(|| shared::prompt::confirm(&question, args.yes, verb))?;
    let opts = execute::SyncOptions {
        force_conflicts: args.force_conflicts,
        concurrency,
        history_limit: args.history_limit,
    };
    let info = execute::RecordInfo {
        tag: p.tag.clone(),
        commit: p.commit.clone(),
        user: p.conn.user.clone(),
        reverted_to,
        success,
        signature: p.signature.clone(),
    };
    let outcome = execute::execute(&mut p.cluster, &p.plan, &opts, info).await?;
    if args.adopt && !p.plan.helm_releases.is_empty() {
        shared::output::warn(format!(
            "adopted objects of Helm release {}: {}",
            p.plan
                .helm_releases
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            execute::helm_record_advice(&p.plan)
        ));
    }
    eprintln!(
        "{} {} to {}: {} applied, {} pruned, revision {}",
        if revert.is_some() {
            "reverted"
        } else {
            "synced"
        },
        p.plan.namespace,
        p.tag,
        outcome.applied.len(),
        outcome.pruned.len(),
        outcome.revision
    );
    if args.wait {
        let targets: Vec<_> = p
            .plan
            .items
            .iter()
            .filter(|i| i.desired.is_some())
            .map(|i| (i.key.clone(), i.resolved.clone()))
            .collect();
        health::wait(&p.cluster, &targets, args.timeout).await?;
    }
    Ok(0)
}
