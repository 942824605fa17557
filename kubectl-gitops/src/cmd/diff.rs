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
                return report::external_diff(&p.plan, &tool, args.source.show_secrets);
            }
            report::print_diff(&p.plan, args.source.show_secrets);
        }
    }
    Ok(if p.plan.has_changes() { 1 } else { 0 })
}
