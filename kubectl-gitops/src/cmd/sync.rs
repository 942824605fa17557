//! `kubectl gitops sync`: make the namespace match the manifests at a tag; with `--wait
//! --verify`, then record in git that the environment's deploy runs healthy.

use shared::Result;

use super::{Intent, apply_flow, plan_source, planned, resolve, verify};
use crate::cli::{Format, KubeArgs, SyncArgs};
use crate::notify;

pub async fn run(kube: &KubeArgs, args: SyncArgs) -> Result<i32> {
    if let Some(remote) = &args.push {
        shared::git::push::check_remote(remote)?;
    }
    let source = resolve(&args.source)?;
    // Checked before planning: an unusable webhook is bad input, and a run that fails while
    // planning is told too.
    let webhooks = notify::targets(
        &args.apply.notify,
        &args.apply.notify_env,
        &source.notify,
        source.env.as_deref(),
    )?;
    let intent = Intent {
        verb: "sync",
        namespace: kube.namespace.clone().or(source.namespace.clone()),
        env: source.env.clone(),
        tag: source.tag.clone(),
        commit: source.commit.to_string(),
    };
    let p = planned(
        &intent,
        &webhooks,
        &args.apply,
        plan_source(kube, source, &args.source, Some(&args.apply)),
    )
    .await?;
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
