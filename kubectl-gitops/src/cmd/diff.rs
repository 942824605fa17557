//! `kubectl gitops diff`: what a sync would change, one diff per object and a summary, or the
//! plan as JSON, or through `KUBECTL_EXTERNAL_DIFF`. Exit 1 means differences.

use shared::Result;

use super::{prepare, source_json};
use crate::cli::{DiffArgs, Format, KubeArgs};
use crate::report;
use crate::trust::Enforce;

pub async fn run(kube: &KubeArgs, args: DiffArgs) -> Result<i32> {
    // A tag the namespace's trust policy refuses is still diffed, under a warning line.
    let p = prepare(kube, &args.source, None, Enforce::Warn).await?;
    match args.output {
        Format::Json => {
            let v = report::plan_json(&p.plan, args.source.show_secrets, source_json(&p));
            shared::output::print_json(&v);
        }
        Format::Text => {
            if let Ok(tool) = std::env::var("KUBECTL_EXTERNAL_DIFF")
                && !tool.trim().is_empty()
            {
                // Writes files and waits for a child process: on a blocking thread.
                let show = args.source.show_secrets;
                let plan = p.plan;
                let (code, plan) = tokio::task::spawn_blocking(move || {
                    (report::external_diff(&plan, &tool, show), plan)
                })
                .await
                .map_err(|e| shared::Error::refused(format!("KUBECTL_EXTERNAL_DIFF: {e}")))?;
                return rejected(&plan).map_or(code, Err);
            }
            report::print_diff(&p.plan, args.source.show_secrets);
        }
    }
    if let Some(e) = rejected(&p.plan) {
        return Err(e);
    }
    Ok(if p.plan.has_changes() { 1 } else { 0 })
}

/// Objects the server rejects, shown after every diff that could be computed: together as
/// one error (exit 2), as a sync of them would refuse.
fn rejected(plan: &crate::plan::Plan) -> Option<shared::Error> {
    crate::plan::rejections_error(&plan.rejected)
}
