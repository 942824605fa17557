//! `kubectl gitops status`: the current revision, drift from it (a dry-run diff of its
//! recorded manifests against the live namespace), objects nobody owns, and workload health.
//! Read-only: dry-runs never persist.

use std::io::Write;

use futures::StreamExt;
use serde_json::json;
use shared::{Error, Result};

use crate::cli::{Format, KubeArgs, StatusArgs};
use crate::health::{self, Verdict};
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
        replace_immutable: false,
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
    let limit = std::time::Duration::from_secs(30);
    let health_rows: Vec<(String, Verdict)> =
        // A hook's run is judged when it runs; its record outlives it.
        futures::stream::iter(
            plan.items
                .iter()
                .filter(|i| i.desired.is_some() && !i.is_hook()),
        )
            .map(|item| async {
                let verdict = match &item.live {
                    Some(live) => health::judge_live(&cluster, live, limit).await,
                    None => Verdict::failed("Missing", "not in the namespace"),
                };
                (item.key.to_string(), verdict)
            })
            .buffered(args.planning.concurrency as usize)
            .collect()
            .await;
    let unhealthy = health_rows.iter().filter(|(_, v)| !v.is_ready()).count();
    let in_sync = changed.is_empty() && missing.is_empty() && extra.is_empty();
    let ok = in_sync && unhealthy == 0;
    match args.output {
        Format::Json => {
            let health_json: Vec<_> = health_rows
                .iter()
                .map(|(k, v)| {
                    json!({"object": k, "status": v.status.as_str(),
                           "reason": v.reason, "message": v.message})
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
            for (k, v) in health_rows.iter().filter(|(_, v)| !v.is_ready()) {
                let _ = writeln!(out, "  {}: {k}: {}", v.status.as_str(), v.summary());
            }
        }
    }
    Ok(if args.exit_code && !ok { 1 } else { 0 })
}
