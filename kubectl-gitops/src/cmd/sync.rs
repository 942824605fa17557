//! `kubectl gitops sync`: make the namespace match the manifests at a tag; with `--wait
//! --verify`, then record in git that the environment's deploy runs healthy.

use shared::Result;

use super::{apply_flow, prepare, verify};
use crate::cli::{Format, KubeArgs, SyncArgs};
use crate::trust::Enforce;

pub async fn run(kube: &KubeArgs, args: SyncArgs) -> Result<i32> {
    if let Some(remote) = &args.push {
        shared::git::push::check_remote(remote)?;
    }
    let enforce = Enforce::for_apply(args.apply.insecure_skip_signature);
    let p = prepare(kube, &args.source, Some(&args.apply), enforce).await?;
    if !args.force {
        // A plan for writing read the records already; a dry run reads them only for this
        // line, and goes on without it when it may not.
        let listed = match args.apply.dry_run && p.plan.namespace_exists {
            true => crate::record::list(&p.cluster, &p.plan.namespace)
                .await
                .ok(),
            false => None,
        };
        let records = listed.as_ref().unwrap_or(&p.plan.records);
        if let Some(line) = crate::rollback::failed_before(records, &p.tag) {
            shared::output::warn(line);
        }
    }
    let code = apply_flow(
        p,
        &args.apply,
        args.source.show_secrets,
        args.source.planning.concurrency as usize,
        None,
    )
    .await?;
    let (true, 0, Some(env)) = (args.verify, code, args.source.env.as_deref()) else {
        return Ok(code);
    };
    verify::verify(
        kube,
        verify::Request {
            env,
            repo: args.source.repo.as_deref(),
            push: args.push.as_deref(),
            dry_run: false,
            // stdout carries the sync's own output (its plan with -o json).
            output: Format::Text,
            concurrency: args.source.planning.concurrency as usize,
            check_all: args.source.planning.check_all,
        },
    )
    .await
}
