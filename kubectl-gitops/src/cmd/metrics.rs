//! `kubectl gitops metrics`: the Prometheus exporter (`crate::metrics`), serving or printing
//! one scrape.

use std::time::Duration;

use shared::{Error, Result};

use crate::cli::{KubeArgs, MetricsArgs};
use crate::metrics::{self, Exporter, Format, Scope};

/// How long `--once` waits for the watches to list and drift to be computed.
const ONCE_LIMIT: Duration = Duration::from_secs(60);

pub async fn run(kube: &KubeArgs, args: MetricsArgs) -> Result<i32> {
    let (env_namespaces, env_context) = environments(&args, kube.context.is_some())?;
    if args.all_namespaces && !kube.namespaces.is_empty() {
        return Err(
            Error::invalid("--all-namespaces and -n/--namespace exclude each other")
                .hint("give either, not both"),
        );
    }
    for ns in &kube.namespaces {
        if let Some(problem) = shared::refname::dns_label_problem(ns) {
            return Err(Error::invalid(format!("-n {ns:?}: namespace {problem}")));
        }
    }
    let conn = crate::kubeconf::connect(kube, env_context.as_deref()).await?;
    let scope = if args.all_namespaces {
        Scope::All
    } else {
        let mut list: Vec<String> = kube.namespaces.clone();
        list.extend(env_namespaces);
        if list.is_empty() {
            list.push(conn.default_namespace.clone());
        }
        list.sort();
        list.dedup();
        Scope::Namespaces(list)
    };
    let options = metrics::Options {
        drift_interval: (!args.drift_interval.is_zero()).then_some(args.drift_interval),
        defer_while_locked: args.serve.is_some(),
        planning: args.planning.clone(),
    };
    let exporter = Exporter::start(conn.client, scope, options);
    match args.serve {
        Some(addr) => metrics::serve(addr, exporter).await,
        None => {
            let missing = exporter.settle(ONCE_LIMIT).await;
            let (text, _) = exporter.scrape(Format::Prometheus);
            print!("{text}");
            for m in &missing {
                crate::log::warn(format!("incomplete scrape: {m}"));
            }
            Ok(if missing.is_empty() { 0 } else { 1 })
        }
    }
}

/// The namespaces of `--env`, from gitops.yaml at HEAD of the config repository, and the
/// kube context they name (one at most: the exporter talks to one cluster).
fn environments(args: &MetricsArgs, context_given: bool) -> Result<(Vec<String>, Option<String>)> {
    if args.env.is_empty() {
        return Ok((Vec::new(), None));
    }
    let dir = match &args.repo {
        Some(p) => p.clone(),
        None => std::env::current_dir()?,
    };
    let repo = shared::git::Repo::discover(&dir).map_err(|e| {
        Error::invalid(format!("--env needs the config repository: {}", e.message))
            .hint("pass -C <path to the config repository>, or run inside it")
    })?;
    let (config, head) = repo.head_config()?;
    let source = format!("gitops.yaml at HEAD ({})", repo.short(head));
    let mut namespaces = Vec::new();
    let mut contexts: Vec<String> = Vec::new();
    for name in &args.env {
        let env = config.require(name, &source)?;
        namespaces.push(env.namespace.clone());
        if let Some(c) = &env.context
            && !contexts.contains(c)
        {
            contexts.push(c.clone());
        }
    }
    if contexts.len() > 1 && !context_given {
        return Err(Error::invalid(format!(
            "the environments {} name different kube contexts ({}); one exporter watches one \
             cluster",
            args.env.join(", "),
            contexts.join(", ")
        ))
        .hint("run one exporter per cluster, or pick the context with --context"));
    }
    Ok((namespaces, contexts.pop()))
}
