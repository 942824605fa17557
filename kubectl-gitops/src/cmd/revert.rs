//! `kubectl gitops revert`: back to a recorded revision (manifests from the record in the
//! cluster, so it works with the git server down or the repository gone), or to a tag read
//! from git. Either way the objects are only a candidate: they go through the same validation
//! and plan as a sync's (a record is anyone's who may write Secrets in the namespace).

use crate::manifest::Content;
use shared::{Error, Result};

use super::{Intent, Prepared, apply_flow, connect, plan_for, plan_in, plan_options, planned};
use crate::cli::{KubeArgs, RevertArgs};
use crate::kubeconf::Connection;
use crate::notify;
use crate::record;
use crate::trust::{Enforce, Gate};

pub async fn run(kube: &KubeArgs, args: RevertArgs) -> Result<i32> {
    let target = target(kube, &args).await?;
    let env = target
        .env
        .clone()
        .or_else(|| shared::tag::TagName::parse(&target.tag).map(|t| t.env));
    let webhooks = notify::targets(
        &args.apply.notify,
        &args.apply.notify_env,
        &target.notify,
        env.as_deref(),
    )?;
    let intent = Intent {
        verb: "revert",
        namespace: Some(target.namespace.clone()),
        env: env.clone(),
        tag: target.tag.clone(),
        commit: target.commit.clone(),
    };
    let revision = target.revision;
    let describe = target.describe.clone();
    let p = planned(
        &intent,
        &webhooks,
        &args.apply,
        plan(kube, &args, target, env),
    )
    .await?;
    apply_flow(
        p,
        &webhooks,
        &args.apply,
        args.show_secrets,
        args.planning.concurrency as usize,
        Some((revision, format!("reverted to {describe}"))),
    )
    .await
}

/// The plan of going back to `target`.
async fn plan(
    kube: &KubeArgs,
    args: &RevertArgs,
    target: Target,
    env: Option<String>,
) -> Result<Prepared> {
    let flags = plan_options(&args.scope, &args.planning, Some(&args.apply));
    let (conn, cluster, plan) = match target.conn {
        Some(conn) => {
            let (cluster, plan) = plan_in(
                &conn,
                target.namespace.clone(),
                target.content,
                flags.clone(),
            )
            .await?;
            (conn, cluster, plan)
        }
        None => {
            plan_for(
                kube,
                target.content,
                Some(&target.namespace),
                None,
                flags.clone(),
            )
            .await?
        }
    };
    target.gate.check_plan(&conn.client, &plan).await?;
    eprintln!("revert {} to {}", plan.namespace, target.describe);
    Ok(Prepared {
        tag: target.tag,
        commit: target.commit,
        conn,
        cluster,
        plan,
        signature: target.gate.record.clone(),
        flags,
        env,
    })
}

pub struct Target {
    pub content: Content,
    pub namespace: String,
    pub tag: String,
    pub commit: String,
    pub revision: Option<u64>,
    /// `revision 3 (tag deploy/dev/...)` or `tag v1`.
    pub describe: String,
    /// The connection the namespace was resolved with (--to-tag: the environment's context).
    pub conn: Option<Connection>,
    /// The signature check, passed before the manifests were loaded.
    pub gate: Gate,
    /// With --to-tag of an environment's deploy tag: the environment and its `notify:`.
    pub env: Option<String>,
    pub notify: Vec<shared::config::NotifyTarget>,
}

async fn target(kube: &KubeArgs, args: &RevertArgs) -> Result<Target> {
    let enforce = Enforce::for_apply(args.apply.insecure_skip_signature);
    if let Some(tag) = &args.to_tag {
        let location = crate::source::Location {
            repo: args.repo.as_deref(),
            tag: Some(tag),
            env: None,
            path: args.path.as_deref(),
            values: &[],
            set: &[],
        };
        // Reads git objects: off the runtime's threads.
        let located = tokio::task::block_in_place(|| crate::source::locate(location))?;
        let (conn, namespace) = connect(
            kube,
            located.namespace.as_deref(),
            located.context.as_deref(),
        )
        .await?;
        let gate = Gate::for_tag(&conn.client, &namespace, located.tag.clone(), enforce).await?;
        let commit = gate.commit().unwrap_or_else(|| located.commit());
        return Ok(Target {
            content: tokio::task::block_in_place(|| located.load(commit))?,
            namespace,
            describe: format!("tag {}", located.name()),
            tag: located.name().to_string(),
            commit: commit.to_string(),
            revision: None,
            conn: Some(conn),
            gate,
            env: located.env.clone(),
            notify: located.notify.clone(),
        });
    }
    let record::Recorded {
        cluster,
        namespace,
        records,
    } = record::open(kube).await?;
    let Some(current) = records.newest() else {
        return Err(Error::invalid(format!(
            "namespace {namespace} has no recorded revisions to revert to"
        ))
        .hint("kubectl gitops sync records one per sync; use --to-tag to go to a tag"));
    };
    let meta = match args.to_revision {
        Some(n) => match records.trusted.iter().find(|m| m.revision == n) {
            Some(m) => m.clone(),
            None => {
                if let Some(c) = records.corrupt.iter().find(|c| c.revision == Some(n)) {
                    return Err(c.error(&namespace));
                }
                let kept: Vec<String> = records
                    .trusted
                    .iter()
                    .map(|m| m.revision.to_string())
                    .collect();
                return Err(
                    Error::invalid(format!("namespace {namespace} has no revision {n}")).hint(
                        format!(
                            "recorded revisions: {} (kubectl gitops history -n {namespace})",
                            kept.join(", ")
                        ),
                    ),
                );
            }
        },
        None => records
            .trusted
            .iter()
            .rev()
            .filter(|m| m.revision < current.revision)
            .find(|m| m.succeeded())
            .cloned()
            .ok_or_else(|| {
                Error::invalid(format!(
                    "namespace {namespace} has no successful revision before the current one ({})",
                    current.revision
                ))
                .hint(format!(
                    "kubectl gitops history -n {namespace} lists them; name one with --to-revision"
                ))
            })?,
    };
    // Before the record's manifests are read: its signature check is what it recorded.
    let gate = Gate::for_revision(
        &cluster.client,
        &namespace,
        meta.revision,
        &meta.tag,
        meta.signature.clone(),
        enforce,
    )
    .await?;
    let manifests = record::load(&cluster, &namespace, &meta).await?;
    Ok(Target {
        content: Content::Objects(manifests),
        namespace,
        describe: format!("revision {} (tag {})", meta.revision, meta.tag),
        tag: meta.tag.clone(),
        commit: meta.commit.clone(),
        revision: Some(meta.revision),
        conn: None,
        gate,
        env: None,
        notify: Vec::new(),
    })
}
