//! One module per verb. diff, sync and revert share how a plan is made (`prepare`,
//! `plan_for`, one `plan_options` for all three) and sync and revert how it is shown,
//! confirmed and executed (`apply_flow`); `sync --verify` ends with `verify`.

pub mod diff;
pub mod history;
pub mod metrics;
pub mod revert;
pub mod status;
pub mod sync;
pub mod verify;

use serde_json::json;
use shared::Result;

use crate::cli::{ApplyArgs, Format, KubeArgs, PlanningArgs, ScopeArgs, SourceArgs};
use crate::cluster::Cluster;
use crate::kubeconf::{self, Connection};
use crate::manifest::{Content, Manifest};
use crate::plan::{self, Plan};
use crate::{execute, health, log, notify, report, source};

pub struct Prepared {
    pub tag: String,
    pub commit: String,
    pub conn: Connection,
    pub cluster: Cluster,
    pub plan: Plan,
    /// The environment deployed, when known (`--env`, or a deploy tag's name).
    pub env: Option<String>,
}

/// Connects (context from the flags, else the environment's) and builds the plan for
/// `content` in the namespace from -n, else the environment's, else the context's
/// (`opts.namespace` is resolved here; callers leave it empty). A Helm chart is rendered here,
/// for that namespace and with the server's version and APIs as its Capabilities.
pub async fn plan_for(
    kube: &KubeArgs,
    content: Content,
    env_namespace: Option<&str>,
    env_context: Option<&str>,
    mut opts: plan::Options,
) -> Result<(Connection, Cluster, Plan)> {
    let conn = kubeconf::connect(kube, env_context).await?;
    opts.namespace = kube
        .namespace
        .clone()
        .or_else(|| env_namespace.map(str::to_string))
        .unwrap_or_else(|| conn.default_namespace.clone());
    let mut cluster = Cluster::discover(conn.client.clone()).await?;
    let manifests = objects(content, &cluster, &opts.namespace).await?;
    let plan = plan::build(&mut cluster, manifests, &opts).await?;
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
            let manifests = chart.render(&caps, namespace)?;
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
    }
}

pub async fn prepare(
    kube: &KubeArgs,
    args: &SourceArgs,
    apply: Option<&ApplyArgs>,
) -> Result<Prepared> {
    let source = resolve(args)?;
    plan_source(kube, source, args, apply).await
}

/// The tag (or the environment's latest deploy tag) and what it holds, read from git.
pub fn resolve(args: &SourceArgs) -> Result<source::Source> {
    let source = source::resolve(args.into())?;
    log::info(
        1,
        format!(
            "{}{} ({}) path {:?}: {}",
            source
                .env
                .as_deref()
                .map(|e| format!("{e}: "))
                .unwrap_or_default(),
            source.tag,
            &source.commit.to_string()[..12],
            source.path,
            match &source.content {
                Content::Objects(m) => format!("{} objects", m.len()),
                Content::Chart(_) => "a Helm chart".to_string(),
            }
        ),
    );
    Ok(source)
}

/// The plan of a resolved `source` against the cluster.
pub async fn plan_source(
    kube: &KubeArgs,
    source: source::Source,
    args: &SourceArgs,
    apply: Option<&ApplyArgs>,
) -> Result<Prepared> {
    let flags = plan_options(&args.scope, &args.planning, apply);
    let (conn, cluster, plan) = plan_for(
        kube,
        source.content,
        source.namespace.as_deref(),
        source.context.as_deref(),
        flags,
    )
    .await?;
    Ok(Prepared {
        tag: source.tag,
        commit: source.commit.to_string(),
        conn,
        cluster,
        plan,
        env: source.env,
    })
}

/// What a sync or revert is about before its plan exists: enough to tell the webhooks about a
/// run that failed while planning (manifests the server rejects, a chart that does not
/// render, the cluster unreachable).
pub struct Intent {
    pub verb: &'static str,
    /// `-n`, else the environment's; `None`: the context's, unknown until connected.
    pub namespace: Option<String>,
    pub env: Option<String>,
    pub tag: String,
    pub commit: String,
}

/// Awaits `planning`; if it fails (and the run was meant to write), `webhooks` get one
/// `failed` event before the error is returned.
pub async fn planned(
    intent: &Intent,
    webhooks: &[notify::Target],
    args: &ApplyArgs,
    planning: impl std::future::Future<Output = Result<Prepared>>,
) -> Result<Prepared> {
    let result = planning.await;
    if let Err(e) = &result
        && !args.dry_run
    {
        let namespace = intent
            .namespace
            .clone()
            .unwrap_or_else(|| "(the context's)".to_string());
        let run = notify::Run {
            verb: intent.verb,
            namespace: &namespace,
            environment: intent.env.as_deref(),
            tag: &intent.tag,
            commit: &intent.commit,
            user: "",
            started: notify::started(),
        };
        let progress = execute::Progress::default();
        notify::send(webhooks, &notify::event(&run, &progress, Some(e))).await;
    }
    result
}

pub fn source_json(p: &Prepared) -> serde_json::Value {
    json!({"tag": p.tag, "commit": p.commit})
}

/// Shows the plan, refuses what must be refused, confirms, executes, waits, and tells the
/// webhooks how it went: sync and revert.
pub async fn apply_flow(
    mut p: Prepared,
    webhooks: &[notify::Target],
    args: &ApplyArgs,
    show_secrets: bool,
    concurrency: usize,
    revert: Option<(Option<u64>, String)>,
) -> Result<i32> {
    show_plan(&p, args, show_secrets);
    let blocked = execute::check_blockers(&p.plan, args.adopt, args.force_conflicts);
    if args.dry_run {
        blocked?;
        eprintln!("dry run: nothing was written");
        return Ok(0);
    }
    if blocked.is_ok() {
        // Declined: nothing was attempted, and the person who declined needs no message.
        confirm(&p, revert.is_some(), args.yes)?;
    }
    let mut progress = execute::Progress::default();
    let result = match blocked {
        Err(e) => Err(e),
        Ok(()) => execute_and_wait(&mut p, args, concurrency, &revert, &mut progress).await,
    };
    let run = notify::Run {
        verb: if revert.is_some() { "revert" } else { "sync" },
        namespace: &p.plan.namespace,
        environment: p.env.as_deref(),
        tag: &p.tag,
        commit: &p.commit,
        user: &p.conn.user,
        started: notify::started(),
    };
    notify::send(
        webhooks,
        &notify::event(&run, &progress, result.as_ref().err()),
    )
    .await;
    result
}

fn show_plan(p: &Prepared, args: &ApplyArgs, show_secrets: bool) {
    if args.output == Format::Json {
        let v = report::plan_json(&p.plan, show_secrets, source_json(p));
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
}

fn confirm(p: &Prepared, revert: bool, yes: bool) -> Result<()> {
    let verb = if revert { "revert" } else { "sync" };
    let question = format!(
        "{} namespace {} to {}?",
        if revert { "Revert" } else { "Sync" },
        p.plan.namespace,
        p.tag
    );
    shared::prompt::confirm(&question, yes, verb)
}

async fn execute_and_wait(
    p: &mut Prepared,
    args: &ApplyArgs,
    concurrency: usize,
    revert: &Option<(Option<u64>, String)>,
    progress: &mut execute::Progress,
) -> Result<i32> {
    let reverted_to = revert.as_ref().and_then(|r| r.0);
    let success = revert
        .as_ref()
        .map(|r| r.1.clone())
        .unwrap_or_else(|| "succeeded".into());
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
    };
    let outcome = execute::execute(&mut p.cluster, &p.plan, &opts, info, progress).await?;
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
