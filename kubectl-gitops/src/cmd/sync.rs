//! `kubectl gitops sync`: make the namespace match the manifests at a tag.

use shared::Result;

use super::{apply_flow, prepare};
use crate::cli::{KubeArgs, SyncArgs};
use crate::trust::Enforce;

pub async fn run(kube: &KubeArgs, args: SyncArgs) -> Result<i32> {
    let enforce = Enforce::for_apply(args.apply.insecure_skip_signature);
    let p = prepare(kube, &args.source, Some(&args.apply), enforce).await?;
    apply_flow(
        p,
        &args.apply,
        args.source.show_secrets,
        args.source.planning.concurrency as usize,
        None,
    )
    .await
}
