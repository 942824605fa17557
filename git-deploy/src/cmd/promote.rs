//! `git deploy promote <from> [<to>]`: moves the target branch to what <from> deployed and
//! tags it, after the target's gates passed (or were overridden with a recorded reason).

use gix::ObjectId;
use jiff::Timestamp;
use serde_json::json;
use shared::gates::{self, Evaluation};
use shared::git::notes::{DEPLOY_NOTES_REF, newer_on_remotes};
use shared::git::{Repo, TagInfo, lock, write};
use shared::tag::{self, Action, DeployRecord};
use shared::{Error, Result};

use crate::cli::{Output, PromoteArgs, Strategy};
use crate::output;

/// A pipeline of named steps: which deploy moves where (its signature checked when asked),
/// whether it is already there, the gates, the lock, how the branch moves, and the deploy that
/// records it.
pub fn run(repo: &mut Repo, args: PromoteArgs) -> Result<()> {
    check_args(&args)?;
    // Read now: a signing setup that cannot work fails before anything is decided.
    let sign = write::signing(repo, args.sign)?;
    let source = source_deploy(repo, &args)?;
    if args.verify_source || verify_source_configured(repo) {
        verify_source(repo, &source)?;
    }
    let (from, to) = environments(repo, &args, &source)?;
    let old = repo.branch_head(&to.branch)?;
    if already_promoted(repo, &args, &source, &to, old)? {
        return Ok(());
    }
    let gates = check_gates(repo, &args, &from, &to, &source)?;
    lock::check_unlocked(repo, &to.name, args.ignore_lock)?;
    let src = source.commit;
    let (new_head, how) = match old {
        None => (src, "new branch".to_string()),
        Some(old) if repo.is_ancestor(old, src)? => (src, "fast-forward".to_string()),
        Some(old) => diverged(repo, &args, &source.name, &from, &to, old, src)?,
    };

    output::info(format!(
        "promote {} -> {}: {} {} ({}) onto {} {}",
        from.name,
        to.name,
        source.name,
        from.branch,
        repo.short(src),
        to.branch,
        old.map(|o| repo.short(o)).unwrap_or_else(|| "(new)".into())
    ));
    super::print_changes(repo, old, new_head, &to.path)?;

    let succession = repo.deploys(&to.name)?.succession()?;
    let record = record(repo, &args, &from, &to, &source, old, &succession, &gates);
    let written = super::write_deploy(
        repo,
        super::Deploy {
            reason: format!("git-deploy: promote {} to {}", source.name, to.name),
            branch: super::Branch::Move {
                name: format!("refs/heads/{}", to.branch),
                old,
                note: how,
            },
            commit: new_head,
            record,
            succession,
            respect_lock: !args.ignore_lock,
            sign,
            write: &args.write,
            confirm: Some((
                format!("Promote {} to {}?", source.name, to.name),
                args.yes,
                format!("promote to {}", to.name),
            )),
            json: args.output == Output::Json,
        },
    )?;
    match args.output {
        Output::Json => {
            let mut doc = document(repo, &from, &to, &source, &gates);
            doc["updates"] = written.updates_json(repo);
            doc["tag"] = json!(written.tag);
            doc["written"] = json!(!written.dry_run);
            output::print_json(&doc);
        }
        Output::Text if !written.dry_run => output::stdout_line(&written.tag),
        Output::Text => {}
    }
    Ok(())
}

fn check_args(args: &PromoteArgs) -> Result<()> {
    super::check_env_name(&args.from)?;
    if let Some(to) = &args.to {
        super::check_env_name(to)?;
    }
    if let Some(remote) = &args.write.push {
        shared::git::push::check_remote(remote)?;
    }
    if let Some(m) = &args.message {
        tag::check_body(m)?;
    }
    if let Some(reason) = &args.override_gates
        && (reason.trim().is_empty() || reason.contains('\0'))
    {
        return Err(Error::invalid(
            "--override-gates needs a reason: it is recorded in the tag for whoever asks why",
        )
        .hint("e.g. --override-gates \"hotfix for INC-123, approved by the on-call\""));
    }
    Ok(())
}

/// What <from> deployed: its latest deploy tag, or the one named.
fn source_deploy(repo: &Repo, args: &PromoteArgs) -> Result<TagInfo> {
    if let Some(t) = &args.tag {
        return super::require_deploy_tag(repo, &args.from, t);
    }
    match repo.deploys(&args.from)?.latest()? {
        Some(t) => repo.tag_info_at(&t.name, t.target),
        None => Err(Error::invalid(format!(
            "environment {} has no deploy tag to promote",
            args.from
        ))
        .hint(format!(
            "tag what {0} runs first: `git deploy tag {0}`",
            args.from
        ))),
    }
}

/// The two environments, as gitops.yaml at the promoted commit describes them.
fn environments(
    repo: &Repo,
    args: &PromoteArgs,
    source: &TagInfo,
) -> Result<(shared::Environment, shared::Environment)> {
    let cfg = repo.config_at(source.commit, &source.name)?;
    let from = cfg
        .require(&args.from, &format!("gitops.yaml at {}", source.name))?
        .clone();
    let to = match &args.to {
        Some(name) => cfg.require(name, &format!("gitops.yaml at {}", source.name))?.clone(),
        None => cfg.next_after(&from.name).cloned().ok_or_else(|| {
            Error::invalid(format!("{} is the last environment in gitops.yaml; there is nothing after it to promote to", from.name))
                .hint("name the target environment: git deploy promote <from> <to>")
        })?,
    };
    if to.name == from.name {
        return Err(Error::invalid(format!(
            "cannot promote {} to itself",
            to.name
        )));
    }
    Ok((from, to))
}

/// The target already contains the source commit: nothing moves, so nothing is gated.
fn already_promoted(
    repo: &Repo,
    args: &PromoteArgs,
    source: &TagInfo,
    to: &shared::Environment,
    old: Option<ObjectId>,
) -> Result<bool> {
    let Some(old) = old else { return Ok(false) };
    if !repo.is_ancestor(source.commit, old)? {
        return Ok(false);
    }
    output::info(format!(
        "{} ({}) already contains {} ({}); nothing to promote",
        to.branch,
        repo.short(old),
        source.name,
        repo.short(source.commit)
    ));
    if repo.deploys(&to.name)?.latest()?.is_none() {
        output::info(format!(
            "{0} has no deploy tag yet: `git deploy tag {0}` records that it runs this commit",
            to.name
        ));
    }
    if args.output == Output::Json {
        output::print_json(&json!({
            "from": args.from,
            "to": to.name,
            "source_tag": source.name,
            "source_commit": source.commit.to_string(),
            "up_to_date": true,
            "updates": [],
            "tag": null,
            "written": false,
        }));
    }
    Ok(true)
}

/// The gates of the target judged on the source deploy, and the override if one was given.
struct GateCheck {
    evaluation: Option<Evaluation>,
    /// `--override-gates`, when it was needed.
    overridden: Option<String>,
    now: Timestamp,
}

/// Evaluates the target's gates before anything is built, asked or written; unmet gates
/// refuse (exit 1, each gate listed) unless `--override-gates` gives a reason.
fn check_gates(
    repo: &Repo,
    args: &PromoteArgs,
    from: &shared::Environment,
    to: &shared::Environment,
    source: &TagInfo,
) -> Result<GateCheck> {
    let now = Timestamp::now();
    let effective = gates::effective(repo, &to.name, &to.branch, Some(to))?;
    if effective.is_empty() {
        if args.override_gates.is_some() {
            output::info(format!(
                "{} has no gates; --override-gates is not needed and not recorded",
                to.name
            ));
        }
        return Ok(GateCheck {
            evaluation: None,
            overridden: None,
            now,
        });
    }
    for line in newer_on_remotes(repo, DEPLOY_NOTES_REF) {
        output::warn(line);
    }
    // The source environment's namespace as the repository describes it (gitops.yaml at HEAD),
    // not as the promoted commit would have it.
    let (head_cfg, _) = repo.head_config()?;
    let source_env = head_cfg.env(&from.name).unwrap_or(from);
    let evaluation = gates::assess(repo, source_env, source, &effective, now)?;
    let lines = evaluation.lines(now);
    let mut check = GateCheck {
        evaluation: Some(evaluation),
        overridden: None,
        now,
    };
    let met = check.evaluation.as_ref().is_some_and(Evaluation::met);
    if met {
        output::info(format!("gates of {} for {}: met", to.name, source.name));
        for l in &lines {
            output::info(format!("  {l}"));
        }
        if args.override_gates.is_some() {
            output::info("--override-gates is not needed and not recorded");
        }
        return Ok(check);
    }
    if let Some(reason) = &args.override_gates {
        output::warn(format!(
            "gates of {} for {} are not met; overridden: {}",
            to.name,
            source.name,
            reason.trim()
        ));
        for l in &lines {
            output::info(format!("  {l}"));
        }
        check.overridden = Some(reason.trim().to_string());
        return Ok(check);
    }
    if args.output == Output::Json {
        output::print_json(&document(repo, from, to, source, &check));
    }
    Err(Error::refused(format!(
        "gates of {} are not met for {}:\n  {}",
        to.name,
        source.name,
        lines.join("\n  ")
    ))
    .hint(format!(
        "promote once they are met, or anyway with --override-gates \"<reason>\" (recorded in the tag as Deploy-Gate-Override); `git deploy status` shows where {} stands",
        to.name
    )))
}

/// The new tag's record; an override adds its trailer and, in the body, the gates it passed by.
#[allow(clippy::too_many_arguments)]
fn record(
    repo: &Repo,
    args: &PromoteArgs,
    from: &shared::Environment,
    to: &shared::Environment,
    source: &TagInfo,
    old: Option<ObjectId>,
    succession: &shared::git::Succession,
    gates: &GateCheck,
) -> DeployRecord {
    let mut body = args.message.clone();
    if gates.overridden.is_some()
        && let Some(e) = &gates.evaluation
    {
        let unmet = format!(
            "Gates of {} not met at promotion (overridden):\n  {}",
            to.name,
            e.lines(gates.now).join("\n  ")
        );
        body = Some(match body {
            Some(b) if !b.trim().is_empty() => format!("{}\n\n{unmet}", b.trim_end()),
            _ => unmet,
        });
    }
    DeployRecord {
        env: to.name.clone(),
        action: Some(Action::Promote),
        subject: tag::subject(
            &to.name,
            Action::Promote,
            &format!("{} {}", from.name, source.name),
            &repo.short(source.commit),
        ),
        body,
        source_env: Some(from.name.clone()),
        source_tag: Some(source.name.clone()),
        source_commit: Some(source.commit.to_string()),
        previous_tag: succession.previous.as_ref().map(|p| p.name.clone()),
        previous_commit: old.map(|o| o.to_string()),
        gate_override: gates.overridden.clone(),
        branch: to.branch.clone(),
        tool: format!("git-deploy/{}", shared::VERSION),
    }
}

/// `-o json`: what is promoted where, and the gates.
fn document(
    repo: &Repo,
    from: &shared::Environment,
    to: &shared::Environment,
    source: &TagInfo,
    gates: &GateCheck,
) -> serde_json::Value {
    json!({
        "from": from.name,
        "to": to.name,
        "source_tag": source.name,
        "source_commit": source.commit.to_string(),
        "short_source_commit": repo.short(source.commit),
        "gates": gates.evaluation.as_ref().map(|e| e.to_json(gates.now)),
        "gate_override": gates.overridden,
        "updates": [],
        "tag": null,
        "written": false,
    })
}

/// `deploy.verifySource` in git config.
fn verify_source_configured(repo: &Repo) -> bool {
    repo.inner
        .config_snapshot()
        .boolean("deploy.verifySource")
        .unwrap_or(false)
}

/// Refuses (exit 1, before anything is planned) a source tag whose signature git's own
/// configuration does not trust, as `git tag -v` would refuse it.
fn verify_source(repo: &Repo, source: &TagInfo) -> Result<()> {
    let target = source.tag_object.unwrap_or(source.commit);
    let tag = shared::signature::read_tag_at(&repo.inner, &source.name, target)?;
    let check = shared::signature::git_config::verify_tag(&repo.inner, &tag)?;
    if !check.verdict.is_good() {
        return Err(Error::refused(format!("will not promote: {check}")).hint(format!(
            "--verify-source (or deploy.verifySource) accepts a source tag that `git tag -v {}` \
             accepts: signed by a key in gpg.ssh.allowedSignersFile (SSH) or your GPG keyring",
            source.name
        )));
    }
    output::info(format!("source {check}"));
    Ok(())
}

/// The target has commits the source lacks (a hotfix). `ff` refuses and lists them; `merge`
/// and `tree` build one new commit with both as parents, so nothing is rewritten and later
/// promotions see the source as merged.
fn diverged(
    repo: &Repo,
    args: &PromoteArgs,
    source_tag: &str,
    from: &shared::Environment,
    to: &shared::Environment,
    old: ObjectId,
    src: ObjectId,
) -> Result<(ObjectId, String)> {
    match args.strategy {
        Strategy::Ff => {
            let extra = repo.commits_between(&[src], old, Some(20))?;
            let mut list = String::new();
            for c in &extra {
                list.push_str(&format!("\n  {} {}", c.short, c.subject));
            }
            Err(Error::refused(format!(
                "cannot fast-forward {}: it has {} commit{} that {} ({}) lacks:{list}",
                to.branch,
                extra.len(),
                if extra.len() == 1 { "" } else { "s" },
                source_tag,
                repo.short(src)
            ))
            .hint(format!(
                "keep them with `--strategy merge` (a merge commit), or replace {}'s tree with {}'s with `--strategy tree` (one new commit, no conflicts, no history rewrite); or bring them into {} first",
                to.name, from.name, from.branch
            )))
        }
        Strategy::Merge => {
            let options = repo.inner.tree_merge_options()?.into();
            let labels = gix::merge::blob::builtin_driver::text::Labels {
                ancestor: Some("base".into()),
                current: Some(to.branch.as_str().into()),
                other: Some(source_tag.into()),
            };
            let mut outcome = repo.inner.merge_commits(old, src, labels, options)?;
            let how = gix::merge::tree::TreatAsUnresolved::default();
            if outcome.tree_merge.has_unresolved_conflicts(how) {
                let mut paths: Vec<String> = outcome
                    .tree_merge
                    .conflicts
                    .iter()
                    .filter(|c| c.is_unresolved(how))
                    .map(|c| {
                        let (ours, theirs) = c.changes_in_resolution();
                        let p = ours.location().to_string();
                        if p.is_empty() {
                            theirs.location().to_string()
                        } else {
                            p
                        }
                    })
                    .collect();
                paths.sort();
                paths.dedup();
                return Err(Error::refused(format!(
                    "merging {source_tag} into {} conflicts in:\n  {}",
                    to.branch,
                    paths.join("\n  ")
                ))
                .hint("resolve by hand (merge on a work tree and push), or use `--strategy tree` to take the source's tree as is"));
            }
            let tree = outcome.tree_merge.tree.write()?.detach();
            let msg = format!(
                "Merge {source_tag} into {}\n\nPromotes {} ({}) to {} keeping {}'s own commits.\n",
                to.branch,
                from.name,
                repo.short(src),
                to.name,
                to.branch
            );
            Ok((
                write::make_commit(repo, tree, &[old, src], &msg)?,
                "merge".into(),
            ))
        }
        Strategy::Tree => {
            let tree = repo.tree_of(src)?;
            let msg = format!(
                "Promote {source_tag} to {}: take its tree\n\nSets the tree of {} to that of {} ({}), replacing changes made only on {}.\n",
                to.name,
                to.branch,
                source_tag,
                repo.short(src),
                to.branch
            );
            Ok((
                write::make_commit(repo, tree, &[old, src], &msg)?,
                "new commit with the source's tree".into(),
            ))
        }
    }
}
