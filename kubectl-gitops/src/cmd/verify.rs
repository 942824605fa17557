//! `kubectl gitops verify --env <env>` (and `sync --wait --verify`): checks that the
//! environment's namespace runs its latest deploy, in sync and healthy, and records that in
//! git as a note on the deploy's tag object (`refs/notes/deploy`), which `git deploy promote`
//! reads for its `verified` and `soak` gates.
//!
//! A pipeline of named steps: the deploy to verify (git), the namespace's current revision
//! (its records), drift and health (`inspect`, as `status` computes them), who is verifying
//! (the API server says), then the note through the one git writer (`shared::git::Plan`):
//! compare-and-swap on the notes ref, and with `--push` one atomic push leased on what the
//! remote has. Any check that fails: exit 1 with every reason, nothing written.

use std::path::Path;

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::{Api, PostParams};
use serde_json::json;
use shared::git::notes::{DEPLOY_NOTES_REF, append_note};
use shared::git::{Plan, Repo};
use shared::signature::TagTarget;
use shared::verification::{Verification, format_time};
use shared::{Error, Result};

use crate::cli::{Format, KubeArgs, VerifyArgs};
use crate::cluster::Cluster;
use crate::kubeconf::{self, Connection};
use crate::manifest::Content;
use crate::record::{self, Records};
use crate::{inspect, log, source};

/// What to verify and how to record it; `verify` takes it from its flags, `sync --verify` from
/// the sync's.
pub struct Request<'a> {
    pub env: &'a str,
    pub repo: Option<&'a Path>,
    pub push: Option<&'a str>,
    pub dry_run: bool,
    pub output: Format,
    pub concurrency: usize,
    pub check_all: bool,
}

pub async fn run(kube: &KubeArgs, args: VerifyArgs) -> Result<i32> {
    verify(
        kube,
        Request {
            env: &args.env,
            repo: args.repo.as_deref(),
            push: args.push.as_deref(),
            dry_run: args.dry_run,
            output: args.output,
            concurrency: args.planning.concurrency as usize,
            check_all: args.planning.check_all,
        },
    )
    .await
}

pub async fn verify(kube: &KubeArgs, req: Request<'_>) -> Result<i32> {
    if let Some(remote) = req.push {
        shared::git::push::check_remote(remote)?;
    }
    let (deploy, content) = latest_deploy(&req)?;
    let namespace = namespace(kube, &deploy)?;
    let conn = kubeconf::connect(kube, deploy.context.as_deref()).await?;
    let mut cluster = Cluster::discover(conn.client.clone()).await?;
    let records = record::list(&cluster, &namespace).await?;
    let (revision, mut problems) = current_revision(&records, &namespace, &deploy);
    let manifests = super::objects(content, &cluster, &namespace).await?;
    let inspection = inspect::inspect(
        &mut cluster,
        &namespace,
        manifests,
        req.concurrency,
        req.check_all,
    )
    .await?;
    problems.extend(inspection.problems());
    let revision = match revision {
        Some(r) if problems.is_empty() => r,
        _ => return Err(refuse(&req, &deploy, &namespace, &problems)),
    };
    let verification = Verification {
        env: deploy.env.clone(),
        namespace: namespace.clone(),
        cluster: conn.server.trim_end_matches('/').to_string(),
        revision,
        // Whole seconds, as the note records it.
        at: jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
        by: authenticated_user(&conn).await,
    };
    record_note(&req, deploy, verification)
}

/// The environment's latest trusted deploy and the repository to write the note into; beside
/// it, `latest_deploy` returns its manifests or Helm chart, from git as sync reads them.
struct Deploy {
    repo: Repo,
    env: String,
    tag: String,
    commit: gix::ObjectId,
    tag_object: gix::ObjectId,
    namespace: String,
    context: Option<String>,
}

fn latest_deploy(req: &Request<'_>) -> Result<(Deploy, Content)> {
    // The tag is read once: the note goes on the tag object whose manifests were compared.
    let located = source::locate(source::Location {
        repo: req.repo,
        tag: None,
        env: Some(req.env),
        path: None,
        values: &[],
        set: &[],
    })?;
    let content = located.load(located.commit())?;
    let dir = match req.repo {
        Some(p) => p.to_path_buf(),
        None => std::env::current_dir()?,
    };
    let repo = Repo::discover(&dir)?;
    let tag_object = match &located.tag.target {
        TagTarget::Annotated { object, .. } => object.id,
        TagTarget::Lightweight => {
            return Err(Error::invalid(format!(
                "{} is not an annotated tag; nothing to note a verification on",
                located.name()
            )));
        }
    };
    Ok((
        Deploy {
            repo,
            env: req.env.to_string(),
            tag: located.name().to_string(),
            commit: located.commit(),
            tag_object,
            namespace: located.namespace.clone().unwrap_or_default(),
            context: located.context.clone(),
        },
        content,
    ))
}

/// The environment's namespace. `-n` may only repeat it: a verification of another namespace
/// would not count for the environment's gates.
fn namespace(kube: &KubeArgs, deploy: &Deploy) -> Result<String> {
    match &kube.namespace {
        Some(ns) if *ns != deploy.namespace => Err(Error::invalid(format!(
            "-n {ns}: environment {} runs in namespace {} (gitops.yaml at {}); a verification of \
             another namespace would not count for its gates",
            deploy.env, deploy.namespace, deploy.tag
        ))
        .hint("drop -n, or change the environment's namespace in gitops.yaml")),
        _ => Ok(deploy.namespace.clone()),
    }
}

/// The namespace's current revision, if it is a successful sync (or revert) of the deploy;
/// otherwise the reasons it is not.
fn current_revision(
    records: &Records,
    namespace: &str,
    deploy: &Deploy,
) -> (Option<u64>, Vec<String>) {
    let Some(current) = records.newest() else {
        return (
            None,
            vec![format!(
                "namespace {namespace} has no recorded revision: sync it first (kubectl gitops sync --env {})",
                deploy.env
            )],
        );
    };
    let mut problems = Vec::new();
    if records.newest_number() > current.revision {
        problems.push(format!(
            "the newest revision record of namespace {namespace} (revision {}) is corrupt, so \
             what the namespace runs is not known: kubectl gitops history -n {namespace}",
            records.newest_number()
        ));
    }
    let succeeded = current.outcome == "succeeded" || current.outcome.starts_with("reverted to");
    if !succeeded {
        problems.push(format!(
            "revision {} did not succeed: {}",
            current.revision, current.outcome
        ));
    }
    let commit = gix::ObjectId::from_hex(current.commit.as_bytes()).ok();
    if current.tag != deploy.tag || commit != Some(deploy.commit) {
        problems.push(format!(
            "revision {} runs {}, not {}'s latest deploy {}: sync it (kubectl gitops sync --env {})",
            current.revision, current.tag, deploy.env, deploy.tag, deploy.env
        ));
    }
    (Some(current.revision), problems)
}

/// Who the API server says we are (SelfSubjectReview): in a pipeline that is its service
/// account or token's user, where the kubeconfig's user name is whatever the pipeline called
/// it. Falls back to the kubeconfig user (as revision records name it) when the server does not
/// answer.
async fn authenticated_user(conn: &Connection) -> String {
    let api: Api<SelfSubjectReview> = Api::all(conn.client.clone());
    match api
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
    {
        Ok(review) => {
            if let Some(name) = review
                .status
                .and_then(|s| s.user_info)
                .and_then(|u| u.username)
                .filter(|n| !n.is_empty())
            {
                return name;
            }
        }
        Err(e) => log::info(
            2,
            format!("SelfSubjectReview failed ({e}); naming the kubeconfig user"),
        ),
    }
    if conn.user.is_empty() {
        "unknown".into()
    } else {
        conn.user.clone()
    }
}

/// Not verified: every reason, nothing written (exit 1).
fn refuse(req: &Request<'_>, deploy: &Deploy, namespace: &str, problems: &[String]) -> Error {
    if req.output == Format::Json {
        shared::output::print_json(&json!({
            "verified": false,
            "env": deploy.env,
            "namespace": namespace,
            "tag": deploy.tag,
            "problems": problems,
        }));
    }
    Error::refused(format!(
        "{} ({}) is not verified in namespace {namespace}; nothing was written:\n  {}",
        deploy.tag,
        deploy.env,
        problems.join("\n  ")
    ))
    .hint(format!(
        "kubectl gitops status -n {namespace} shows the namespace; sync or fix it, then verify again"
    ))
}

/// Appends the verification to the notes on the deploy's tag object and its commit: shown,
/// then (unless
/// --dry-run) written by compare-and-swap and pushed with a lease.
fn record_note(req: &Request<'_>, mut deploy: Deploy, v: Verification) -> Result<i32> {
    let repo = &mut deploy.repo;
    // Built in memory: a dry run or a lost race leaves the object database untouched.
    repo.inner.objects.enable_object_memory();
    let mut plan = Plan::new(
        format!("kubectl-gitops: verify {} {}", v.env, deploy.tag),
        req.push.map(str::to_string),
    );
    let text = v.render();
    let message = format!(
        "Verified {}: {} (revision {})\n\nNotes added by 'kubectl gitops verify'.\n",
        v.env, deploy.tag, v.revision
    );
    let notes_commit = append_note(
        repo,
        &mut plan,
        DEPLOY_NOTES_REF,
        // The tag object's note is the one gates read; the same text on the commit is for
        // people: `git log --notes=deploy` shows notes of commits only.
        &[deploy.tag_object, deploy.commit],
        &text,
        &message,
    )?;
    eprintln!(
        "{} runs {} (revision {}) in sync and healthy; {}:",
        v.namespace,
        deploy.tag,
        v.revision,
        if req.dry_run {
            "dry run: this note would be appended, nothing was written"
        } else {
            "appending this note"
        }
    );
    for line in text.lines() {
        eprintln!("  {line}");
    }
    eprint!("{}", plan.render(repo));
    if !req.dry_run {
        plan.execute(repo)?;
        eprintln!(
            "verified {}: note on {} in {DEPLOY_NOTES_REF}{}",
            v.env,
            deploy.tag,
            req.push
                .map(|r| format!(", pushed to {r}"))
                .unwrap_or_default()
        );
    }
    if req.output == Format::Json {
        shared::output::print_json(&json!({
            "verified": true,
            "written": !req.dry_run,
            "env": v.env,
            "namespace": v.namespace,
            "tag": deploy.tag,
            "tag_object": deploy.tag_object.to_string(),
            "verification": v,
            "notes_ref": DEPLOY_NOTES_REF,
            "notes_commit": notes_commit.to_string(),
            "pushed_to": if req.dry_run { None } else { req.push },
            "verified_at": format_time(v.at),
        }));
    }
    Ok(0)
}
