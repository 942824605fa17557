//! `kubectl-gitops`, run by kubectl as `kubectl gitops ...`. Parses arguments, connects, and
//! maps outcomes to the documented exit codes; the work is in the other modules.

mod applyset;
mod cli;
mod cluster;
mod health;
mod history;
mod kubeconf;
mod lock;
mod log;
mod manifest;
mod normalize;
mod plan;
mod record;
mod report;
mod revert;
mod source;
mod status;
mod sync;
mod unchanged;

#[cfg(test)]
mod properties;

use std::io::Write;

use clap::Parser;
use cli::{Cli, Command, Output, SourceArgs};
use serde_json::json;
use shared::{Error, Result};

fn main() {
    let cli = Cli::parse();
    log::set_level(cli.kube.verbosity);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            let mut stderr = anstream::stderr();
            let red = anstyle::AnsiColor::Red.on_default();
            let _ = writeln!(stderr, "{red}error:{red:#} {}", err.message);
            if let Some(hint) = &err.hint {
                let _ = writeln!(stderr, "hint: {hint}");
            }
            err.exit_code()
        }
    };
    std::process::exit(code);
}

struct Prepared {
    tag: String,
    commit: String,
    conn: kubeconf::Connection,
    cluster: cluster::Cluster,
    plan: plan::Plan,
}

/// Connects (context from the flags, else the environment's) and builds the plan for
/// `manifests` in the namespace from -n, else the environment's, else the context's
/// (`opts.namespace` is resolved here; callers leave it empty).
async fn plan_for(
    kube: &cli::KubeArgs,
    manifests: Vec<crate::manifest::Manifest>,
    env_namespace: Option<&str>,
    env_context: Option<&str>,
    mut opts: plan::Options,
) -> Result<(kubeconf::Connection, cluster::Cluster, plan::Plan)> {
    let conn = kubeconf::connect(kube, env_context).await?;
    opts.namespace = kube
        .namespace
        .clone()
        .or_else(|| env_namespace.map(str::to_string))
        .unwrap_or_else(|| conn.default_namespace.clone());
    let mut cluster = cluster::Cluster::discover(conn.client.clone()).await?;
    let plan = plan::build(&mut cluster, manifests, &opts).await?;
    Ok((conn, cluster, plan))
}

/// How every command that applies (or shows what applying would do) plans: one function, so
/// sync, diff and revert validate with the same flags and the same defaults. `apply` is `None`
/// for diff.
fn plan_options(
    scope: &cli::ScopeArgs,
    planning: &cli::PlanningArgs,
    apply: Option<&cli::ApplyArgs>,
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

async fn prepare(
    kube: &cli::KubeArgs,
    args: &SourceArgs,
    apply: Option<&cli::ApplyArgs>,
) -> Result<Prepared> {
    let source = source::resolve(args.into())?;
    log::info(
        1,
        format!(
            "{}{} ({}) path {:?}: {} objects",
            source
                .env
                .as_deref()
                .map(|e| format!("{e}: "))
                .unwrap_or_default(),
            source.tag,
            &source.commit.to_string()[..12],
            source.path,
            source.manifests.len()
        ),
    );
    let flags = plan_options(&args.scope, &args.planning, apply);
    let (conn, cluster, plan) = plan_for(
        kube,
        source.manifests,
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
    })
}

fn source_json(p: &Prepared) -> serde_json::Value {
    json!({"tag": p.tag, "commit": p.commit})
}

/// Shows the plan, refuses what must be refused, confirms, executes, waits: sync and revert.
async fn apply_flow(
    mut p: Prepared,
    args: &cli::ApplyArgs,
    show_secrets: bool,
    concurrency: usize,
    revert: Option<(Option<u64>, String)>,
) -> Result<i32> {
    let reverted_to = revert.as_ref().and_then(|r| r.0);
    let success = revert
        .as_ref()
        .map(|r| r.1.clone())
        .unwrap_or_else(|| "succeeded".into());
    let timeout = health::parse_timeout(&args.timeout)?;
    if args.output == Output::Json {
        let v = report::plan_json(&p.plan, show_secrets, source_json(&p));
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
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
    sync::check_blockers(&p.plan, args.adopt, args.force_conflicts)?;
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
    shared::prompt::confirm(&question, args.yes, verb)?;
    let opts = sync::SyncOptions {
        force_conflicts: args.force_conflicts,
        concurrency,
        history_limit: args.history_limit,
    };
    let info = sync::RecordInfo {
        tag: p.tag.clone(),
        commit: p.commit.clone(),
        user: p.conn.user.clone(),
        reverted_to,
        success,
    };
    let outcome = sync::execute(&mut p.cluster, &p.plan, &opts, info).await?;
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
        health::wait(&p.cluster, &targets, timeout).await?;
    }
    Ok(0)
}

async fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Diff(args) => {
            // Exit 1 means "differences" to scripts, so every diff error must be 2 or more.
            let p = prepare(&cli.kube, &args.source, None)
                .await
                .map_err(|e| match e.kind {
                    shared::ErrorKind::Refused => Error {
                        kind: shared::ErrorKind::Invalid,
                        ..e
                    },
                    _ => e,
                })?;
            match args.output {
                Output::Json => {
                    let v = report::plan_json(&p.plan, args.source.show_secrets, source_json(&p));
                    println!("{}", serde_json::to_string_pretty(&v).expect("json"));
                }
                Output::Diff => {
                    if let Ok(tool) = std::env::var("KUBECTL_EXTERNAL_DIFF")
                        && !tool.trim().is_empty()
                    {
                        return report::external_diff(&p.plan, &tool, args.source.show_secrets);
                    }
                    report::print_diff(&p.plan, args.source.show_secrets);
                }
            }
            Ok(if p.plan.has_changes() { 1 } else { 0 })
        }
        Command::Sync(args) => {
            let p = prepare(&cli.kube, &args.source, Some(&args.apply)).await?;
            apply_flow(
                p,
                &args.apply,
                args.source.show_secrets,
                args.source.planning.concurrency as usize,
                None,
            )
            .await
        }
        Command::Revert(args) => {
            let target = revert::target(&cli.kube, &args).await?;
            let flags = plan_options(&args.scope, &args.planning, Some(&args.apply));
            let (conn, cluster, plan) = plan_for(
                &cli.kube,
                target.manifests,
                Some(&target.namespace),
                None,
                flags,
            )
            .await?;
            eprintln!("revert {} to {}", plan.namespace, target.describe);
            let p = Prepared {
                tag: target.tag,
                commit: target.commit,
                conn,
                cluster,
                plan,
            };
            apply_flow(
                p,
                &args.apply,
                args.show_secrets,
                args.planning.concurrency as usize,
                Some((target.revision, format!("reverted to {}", target.describe))),
            )
            .await
        }
        Command::History(args) => history::run(&cli.kube, args).await,
        Command::Status(args) => status::run(&cli.kube, args).await.map_err(|e| Error {
            kind: shared::ErrorKind::Invalid,
            ..e
        }),
    }
}
