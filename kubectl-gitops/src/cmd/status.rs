//! `kubectl gitops status`: the current revision, drift from it (a dry-run diff of its
//! recorded manifests against the live namespace), objects nobody owns, and workload health.
//! Read-only: dry-runs never persist.

use std::io::Write;

use serde_json::json;
use shared::{Error, Result};

use crate::cli::{Format, KubeArgs, StatusArgs};

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
    let inspection = crate::inspect::inspect(
        &mut cluster,
        &namespace,
        manifests,
        args.planning.concurrency as usize,
        args.planning.check_all,
    )
    .await?;
    let crate::inspect::Inspection {
        changed,
        missing,
        extra,
        unowned,
        rejected,
        health: health_rows,
    } = &inspection;
    let unhealthy = inspection.unhealthy();
    let in_sync = inspection.in_sync();
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
                    "objects": current.objects.len(), "signature": current.signature,
                },
                "drift": {"changed": changed, "missing": missing, "extra": extra, "unowned": unowned,
                          "rejected": rejected.iter()
                              .map(|(k, why)| json!({"object": k, "message": why}))
                              .collect::<Vec<_>>()},
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
                "signature: {}",
                match &current.signature {
                    Some(s) => s.to_string(),
                    None => "not recorded (a revision from before signed deploys)".into(),
                }
            );
            let _ = writeln!(
                out,
                "drift: {} changed, {} missing, {} extra, {}{} not owned by any applyset{}",
                changed.len(),
                missing.len(),
                extra.len(),
                if rejected.is_empty() {
                    String::new()
                } else {
                    format!("{} cannot be re-applied, ", rejected.len())
                },
                unowned.len(),
                if in_sync { " (in sync)" } else { "" }
            );
            for (k, why) in rejected {
                let _ = writeln!(out, "  cannot re-apply: {k}: {why}");
            }
            for (label, list) in [
                ("changed", changed),
                ("missing", missing),
                ("extra", extra),
                ("unowned", unowned),
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
