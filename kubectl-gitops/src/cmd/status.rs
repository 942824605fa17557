//! `kubectl gitops status`: the current revision, drift from it (a dry-run diff of its
//! recorded manifests against the live namespace), objects nobody owns, and workload health.
//! Read-only: dry-runs never persist.

use std::io::Write;

use serde_json::json;
use shared::{Error, Result};

use crate::cli::{Format, KubeArgs, StatusArgs};
use crate::health::{self, Health};
use crate::plan::{self, Action};

pub async fn run(kube: &KubeArgs, args: StatusArgs) -> Result<i32> {
    let crate::record::Recorded {
        mut cluster,
        namespace,
        records,
        ..
    } = crate::record::open(kube).await?;
    let Some(current) = records.newest().cloned() else {
        return Err(
            Error::invalid(format!("namespace {namespace} has no recorded revision"))
                .hint("kubectl gitops sync records one; status compares the namespace with it"),
        );
    };
    let manifests = crate::record::load(&cluster, &namespace, &current).await?;
    let opts = plan::Options {
        namespace: namespace.clone(),
        allow_other_namespaces: true,
        allow_cluster_scoped: true,
        create_namespace: false,
        allow_empty: true,
        concurrency: args.planning.concurrency as usize,
        prune_protected: false,
        prune: true,
        check_all: args.planning.check_all,
        for_write: false,
        keep_unchanged_live: true,
    };
    let plan = plan::build(&mut cluster, manifests, &opts).await?;
    let keys = |a: Action| {
        plan.items
            .iter()
            .filter(|i| i.action == a)
            .map(|i| i.key.to_string())
            .collect::<Vec<_>>()
    };
    let changed = keys(Action::Update);
    let missing = keys(Action::Create);
    let extra = keys(Action::Prune);
    let unowned: Vec<String> = plan.unowned.iter().map(|k| k.to_string()).collect();
    let mut health_rows = Vec::new();
    for item in plan.items.iter().filter(|i| i.desired.is_some()) {
        let h = match &item.live {
            Some(live) => health::health(live),
            None => Health::Failed("missing".into()),
        };
        health_rows.push((item.key.to_string(), h));
    }
    let unhealthy = health_rows
        .iter()
        .filter(|(_, h)| *h != Health::Ready)
        .count();
    let in_sync = changed.is_empty() && missing.is_empty() && extra.is_empty();
    let ok = in_sync && unhealthy == 0;
    match args.output {
        Format::Json => {
            let health_json: Vec<_> = health_rows
                .iter()
                .map(|(k, h)| {
                    let (status, reason) = describe(h);
                    json!({"object": k, "status": status, "reason": reason})
                })
                .collect();
            let v = json!({
                "namespace": namespace,
                "revision": {
                    "revision": current.revision, "tag": current.tag, "commit": current.commit,
                    "time": current.time, "user": current.user, "outcome": current.outcome,
                    "objects": current.objects.len(),
                },
                "drift": {"changed": changed, "missing": missing, "extra": extra, "unowned": unowned},
                "in_sync": in_sync,
                "healthy": unhealthy == 0,
                "health": health_json,
            });
            shared::output::print_json(&v);
        }
        Format::Text => {
            let mut out = anstream::stdout().lock();
            let _ = writeln!(
                out,
                "namespace {namespace}: revision {} ({}), tag {} ({}), {} by {}",
                current.revision,
                current.outcome,
                current.tag,
                current.commit.chars().take(7).collect::<String>(),
                current.time,
                if current.user.is_empty() {
                    "unknown"
                } else {
                    &current.user
                }
            );
            let _ = writeln!(
                out,
                "drift: {} changed, {} missing, {} extra, {} not owned by any applyset{}",
                changed.len(),
                missing.len(),
                extra.len(),
                unowned.len(),
                if in_sync { " (in sync)" } else { "" }
            );
            for (label, list) in [
                ("changed", &changed),
                ("missing", &missing),
                ("extra", &extra),
                ("unowned", &unowned),
            ] {
                for k in list.iter() {
                    let _ = writeln!(out, "  {label}: {k}");
                }
            }
            let _ = writeln!(
                out,
                "health: {} of {} ready",
                health_rows.len() - unhealthy,
                health_rows.len()
            );
            for (k, h) in health_rows.iter().filter(|(_, h)| *h != Health::Ready) {
                let (status, reason) = describe(h);
                let _ = writeln!(out, "  {status}: {k}: {reason}");
            }
        }
    }
    Ok(if args.exit_code && !ok { 1 } else { 0 })
}

fn describe(h: &Health) -> (&'static str, String) {
    match h {
        Health::Ready => ("ready", String::new()),
        Health::InProgress(r) => ("in progress", r.clone()),
        Health::Failed(r) => ("failed", r.clone()),
    }
}
