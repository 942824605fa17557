//! `kubectl gitops sync`: make the namespace match the manifests at a tag; with `--wait
//! --verify`, then record in git that the environment's deploy runs healthy.

use shared::Result;

use super::{Intent, apply_flow, plan_located, planned, verify};
use crate::cli::{Format, KubeArgs, SyncArgs};
use crate::notify;
use crate::trust::Enforce;

pub async fn run(kube: &KubeArgs, args: SyncArgs) -> Result<i32> {
    if let Some(remote) = &args.push {
        shared::git::push::check_remote(remote)?;
    }
    let enforce = Enforce::for_apply(args.apply.insecure_skip_signature);
    // Reading git objects: off the runtime's threads.
    let location: crate::source::Location = (&args.source).into();
    let located = tokio::task::block_in_place(|| crate::source::locate(location))?;
    // Checked before planning: an unusable webhook is bad input, and a run that fails while
    // planning is told too.
    let webhooks = notify::targets(
        &args.apply.notify,
        &args.apply.notify_env,
        &located.notify,
        located.env.as_deref(),
    )?;
    let intent = Intent {
        verb: "sync",
        namespace: kube.namespace.clone().or(located.namespace.clone()),
        env: located.env.clone(),
        tag: located.name().to_string(),
        commit: located.commit().to_string(),
    };
    let p = planned(
        &intent,
        &webhooks,
        &args.apply,
        plan_located(kube, located, &args.source, Some(&args.apply), enforce),
    )
    .await?;
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
        &webhooks,
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
