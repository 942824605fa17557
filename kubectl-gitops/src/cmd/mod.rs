//! One module per verb. diff, sync and revert share how a plan is made (`prepare`,
//! `plan_for`, one `plan_options` for all three) and sync and revert how it is shown,
//! confirmed and executed (`apply_flow`); `sync --verify` ends with `verify`.

pub mod diff;
pub mod history;
pub mod metrics;
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
use crate::{execute, log, notify, report, source};

pub struct Prepared {
    pub tag: String,
    pub commit: String,
    pub conn: Connection,
    pub cluster: Cluster,
    pub plan: Plan,
    /// What the revision records about the tag's signature.
    pub signature: SignatureRecord,
    /// The options the plan was made with; a rollback plans with the same.
    pub flags: plan::Options,
    /// The environment deployed, when known (`--env`, or a deploy tag's name).
    pub env: Option<String>,
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
        replace_immutable: apply.is_some_and(|a| a.replace_immutable),
        // diff shows every object it could compute, then every rejection (exit 2).
        report_rejections: apply.is_none(),
        // Shown by diff, `--dry-run` and `-o json` only; a sync that prints text lists creates
        // by name.
        keep_create_answers: apply.is_none_or(|a| a.dry_run || a.output == Format::Json),
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
    // Reading git objects and parsing block: off the runtime's threads.
    let location: source::Location = args.into();
    let located = tokio::task::block_in_place(|| source::locate(location))?;
    plan_located(kube, located, args, apply, enforce).await
}

/// [`prepare`] of a tag already located.
pub async fn plan_located(
    kube: &KubeArgs,
    located: source::Located,
    args: &SourceArgs,
    apply: Option<&ApplyArgs>,
    enforce: Enforce,
) -> Result<Prepared> {
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
    let (cluster, plan) = plan_in(&conn, namespace, content, flags.clone()).await?;
    gate.check_plan(&conn.client, &plan).await?;
    Ok(Prepared {
        tag: located.name().to_string(),
        commit: commit.to_string(),
        conn,
        cluster,
        plan,
        signature: gate.record,
        flags,
        env: located.env.clone(),
    })
}

/// What a sync or revert is about before its plan exists: enough to tell the webhooks about a
/// run that failed while planning (manifests the server rejects, a chart that does not
/// render, an untrusted tag, the cluster unreachable).
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
        let facts = notify::Facts::default();
        notify::send(webhooks, &notify::event(&run, &facts, Some(e))).await;
    }
    result
}

pub fn source_json(p: &Prepared) -> serde_json::Value {
    json!({"tag": p.tag, "commit": p.commit, "signature": p.signature})
}

/// Shows the plan, refuses what must be refused, confirms, executes (waiting as asked and as
/// the plan's waves need), reports, and tells the webhooks how it went: sync and revert.
pub async fn apply_flow(
    mut p: Prepared,
    webhooks: &[notify::Target],
    args: &ApplyArgs,
    show_secrets: bool,
    concurrency: usize,
    revert: Option<(Option<u64>, String)>,
) -> Result<i32> {
    let mut facts = notify::Facts::default();
    let verb = if revert.is_some() { "revert" } else { "sync" };
    let result = run_apply(&mut p, args, show_secrets, concurrency, revert, &mut facts).await;
    if facts.meant_to_write {
        let run = notify::Run {
            verb,
            namespace: &p.plan.namespace,
            environment: p.env.as_deref(),
            tag: &p.tag,
            commit: &p.commit,
            user: &p.conn.user,
            started: notify::started(),
        };
        notify::send(
            webhooks,
            &notify::event(&run, &facts, result.as_ref().err()),
        )
        .await;
    }
    result
}

/// [`apply_flow`] but the notification; `facts` gathers what the event reports.
async fn run_apply(
    p: &mut Prepared,
    args: &ApplyArgs,
    show_secrets: bool,
    concurrency: usize,
    revert: Option<(Option<u64>, String)>,
    facts: &mut notify::Facts,
) -> Result<i32> {
    let reverted_to = revert.as_ref().and_then(|r| r.0);
    let success = revert
        .as_ref()
        .map(|r| r.1.clone())
        .unwrap_or_else(|| "succeeded".into());
    let json = args.output == Format::Json;
    if args.dry_run && !json {
        report::print_diff(&p.plan, show_secrets);
    } else if !json {
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
    report::print_notes(&p.plan);
    let blocked = execute::check_blockers(&p.plan, args.adopt, args.force_conflicts);
    if json && (args.dry_run || blocked.is_err()) {
        let v = report::plan_json(&p.plan, show_secrets, source_json(p));
        shared::output::print_json(&v);
    }
    // A refusal of a run meant to write is a failed run; a declined prompt tells nobody.
    facts.meant_to_write = !args.dry_run && blocked.is_err();
    blocked?;
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
    facts.meant_to_write = true;
    let opts = execute::SyncOptions {
        force_conflicts: args.force_conflicts,
        concurrency,
        history_limit: args.history_limit,
        wait: args.wait,
        timeout: args.timeout,
    };
    // Where a failure goes back to, found before anything is written.
    let rollback_to = args
        .rollback_on_failure
        .then(|| crate::rollback::target(&p.plan.records, revert.is_some()))
        .flatten();
    let info = execute::RecordInfo {
        tag: p.tag.clone(),
        commit: p.commit.clone(),
        user: p.conn.user.clone(),
        reverted_to,
        success,
        signature: p.signature.clone(),
        rollback_to: rollback_to.as_ref().map(|m| m.revision),
    };
    let lease = execute::Lease::Take {
        keep_on_failure: rollback_to.is_some(),
    };
    let outcome = execute::execute(&mut p.cluster, &p.plan, &opts, info, lease).await?;
    facts.applied = outcome.progress.applied.len();
    facts.pruned = outcome.progress.pruned.len();
    facts.revision = outcome.revision;
    facts.outcome = Some(outcome.outcome.clone());
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
    let mut v = json.then(|| {
        let mut v = report::plan_json(&p.plan, show_secrets, source_json(p));
        v["result"] = report::outcome_json(&outcome);
        v
    });
    if outcome.failure.is_some() && args.rollback_on_failure {
        let result = roll_back(p, args, concurrency, outcome, rollback_to, facts).await;
        if let Some(v) = &mut v {
            v["rollback"] = result.1;
            shared::output::print_json(v);
        }
        return Err(result.0);
    }
    if let Some(v) = &v {
        shared::output::print_json(v);
    }
    if let Some(failure) = outcome.failure {
        return Err(failure.error);
    }
    let progress = &outcome.progress;
    let mut line = format!(
        "{} {} to {}: {} applied, {} pruned",
        if revert.is_some() {
            "reverted"
        } else {
            "synced"
        },
        p.plan.namespace,
        p.tag,
        progress.applied.len(),
        progress.pruned.len(),
    );
    if !progress.hooks.is_empty() {
        line.push_str(&format!(", {} hooks run", progress.hooks.len()));
    }
    line.push_str(&format!(
        ", revision {}",
        outcome.revision.expect("a successful run is recorded")
    ));
    eprintln!("{line}");
    Ok(0)
}

/// After a failed run with `--rollback-on-failure`: says what failed, reverts to `to` (the
/// failed run's lease handed on) and waits for it. Returns the error to exit 1 with, saying
/// whether the rollback became ready, and the rollback for `-o json`.
async fn roll_back(
    p: &mut Prepared,
    args: &ApplyArgs,
    concurrency: usize,
    outcome: execute::Outcome,
    to: Option<crate::record::Meta>,
    facts: &mut notify::Facts,
) -> (shared::Error, serde_json::Value) {
    let failure = outcome.failure.expect("a failed run");
    let ns = p.plan.namespace.clone();
    let Some(to) = to else {
        let mut e = failure.error;
        e.message.push_str(&format!(
            "\nnothing to roll back to: namespace {ns} has no successful revision before this \
             one, so what was applied stays as it is"
        ));
        let v = json!({"rolled_back": false, "reason": "no successful revision before this one"});
        return (e, v);
    };
    // What failed and why, first; then the rollback's own progress.
    shared::output::print_error(&failure.error);
    let req = crate::rollback::Request {
        to: &to,
        failed: outcome.revision,
        plan: p.flags.clone(),
        adopt: args.adopt,
        force_conflicts: args.force_conflicts,
        concurrency,
        history_limit: args.history_limit,
        timeout: args.rollback_timeout.unwrap_or(args.timeout),
        user: p.conn.user.clone(),
        enforce: Enforce::for_apply(args.insecure_skip_signature),
    };
    let what = match outcome.revision {
        Some(m) => format!("failed revision {m}"),
        None => "the failed run".to_string(),
    };
    eprintln!(
        "rolling back namespace {ns} to {} after {what} (at most {})",
        req.describe(),
        shared::duration::format_duration(req.timeout)
    );
    let rolled = crate::rollback::run(&mut p.cluster, &ns, &req, outcome.lease).await;
    let mut v = json!({
        "rolled_back": true,
        "to_revision": to.revision,
        "tag": to.tag,
        "failed_revision": outcome.revision,
    });
    let e = match rolled {
        Err(e) => {
            v["error"] = json!(e.message);
            v["ready"] = json!(false);
            shared::Error::refused(format!(
                "{}: the rollback to {} failed before it was recorded: {}",
                failure_line(&what, &outcome.outcome),
                req.describe(),
                e.message
            ))
        }
        Ok(back) => {
            // The event reports the rollback's record: `rolled back to revision N ...`.
            if back.revision.is_some() {
                facts.revision = back.revision;
                facts.outcome = Some(back.outcome.clone());
            }
            v["result"] = report::outcome_json(&back);
            v["ready"] = json!(back.failure.is_none());
            let recorded = back.revision.map_or_else(
                || "not recorded".to_string(),
                |n| format!("recorded as revision {n}"),
            );
            match back.failure {
                None => shared::Error::refused(format!(
                    "{}; rolled back to {}: {} applied, {} pruned, ready, {recorded}",
                    failure_line(&what, &outcome.outcome),
                    req.describe(),
                    back.progress.applied.len(),
                    back.progress.pruned.len()
                )),
                Some(f) => shared::Error::refused(format!(
                    "{}; the rollback to {} did not become ready ({recorded}): {}",
                    failure_line(&what, &outcome.outcome),
                    req.describe(),
                    f.error.message
                )),
            }
        }
    };
    (
        e.hint(format!(
            "kubectl gitops history -n {ns} shows both revisions"
        )),
        v,
    )
}

/// `failed revision 4 (failed: Deployment.apps/shop/web: ImagePullBackOff)`.
fn failure_line(what: &str, outcome: &str) -> String {
    format!("{what} ({outcome})")
}
