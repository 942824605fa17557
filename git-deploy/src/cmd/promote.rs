use gix::ObjectId;
use shared::git::Repo;
use shared::git::lock;
use shared::tag::{self, Action, DeployRecord};
use shared::{Error, Result};

use crate::cli::{PromoteArgs, Strategy};
use crate::output;
use shared::git::write;

pub fn run(repo: &mut Repo, args: PromoteArgs) -> Result<()> {
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
    // Read now: a signing setup that cannot work fails before anything is decided.
    let sign = write::signing(repo, args.sign)?;

    // What <from> deployed: its latest deploy tag, or the one named.
    let source = match &args.tag {
        Some(t) => super::require_deploy_tag(repo, &args.from, t)?,
        None => match repo.deploys(&args.from)?.latest()? {
            Some(t) => repo.tag_info_at(&t.name, t.target)?,
            None => {
                return Err(Error::invalid(format!(
                    "environment {} has no deploy tag to promote",
                    args.from
                ))
                .hint(format!(
                    "tag what {0} runs first: `git deploy tag {0}`",
                    args.from
                )));
            }
        },
    };
    if args.verify_source || verify_source_configured(repo) {
        verify_source(repo, &source)?;
    }
    let src = source.commit;
    let cfg = repo.config_at(src, &source.name)?;
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
    lock::check_unlocked(repo, &to.name, args.ignore_lock)?;

    let branch_ref = format!("refs/heads/{}", to.branch);
    let old = repo.branch_head(&to.branch)?;
    if let Some(old) = old
        && repo.is_ancestor(src, old)?
    {
        output::info(format!(
            "{} ({}) already contains {} ({}); nothing to promote",
            to.branch,
            repo.short(old),
            source.name,
            repo.short(src)
        ));
        if repo.deploys(&to.name)?.latest()?.is_none() {
            output::info(format!(
                "{0} has no deploy tag yet: `git deploy tag {0}` records that it runs this commit",
                to.name
            ));
        }
        return Ok(());
    }

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
    let previous = succession.previous.clone();
    let record = DeployRecord {
        env: to.name.clone(),
        action: Some(Action::Promote),
        subject: tag::subject(
            &to.name,
            Action::Promote,
            &format!("{} {}", from.name, source.name),
            &repo.short(src),
        ),
        body: args.message.clone(),
        source_env: Some(from.name.clone()),
        source_tag: Some(source.name.clone()),
        source_commit: Some(src.to_string()),
        previous_tag: previous.as_ref().map(|p| p.name.clone()),
        previous_commit: old.map(|o| o.to_string()),
        branch: to.branch.clone(),
        tool: format!("git-deploy/{}", shared::VERSION),
    };
    super::write_deploy(
        repo,
        super::Deploy {
            reason: format!("git-deploy: promote {} to {}", source.name, to.name),
            branch: super::Branch::Move {
                name: branch_ref,
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
        },
    )
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
fn verify_source(repo: &Repo, source: &shared::git::TagInfo) -> Result<()> {
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
