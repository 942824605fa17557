use shared::git::Repo;
use shared::git::lock;
use shared::tag::{self, Action, DeployRecord};
use shared::{Error, Result};

use crate::cli::RollbackArgs;
use crate::output;
use shared::git::write;

pub fn run(repo: &mut Repo, args: RollbackArgs) -> Result<()> {
    super::check_env_name(&args.env)?;
    if let Some(remote) = &args.write.push {
        shared::git::push::check_remote(remote)?;
    }
    if let Some(m) = &args.message {
        tag::check_body(m)?;
    }
    // Read now: a signing setup that cannot work fails before anything is decided.
    let sign = write::signing(repo, args.sign)?;
    let (succession, current, target) = pick(repo, &args)?;

    let cfg = repo.config_at(target.commit, &target.name)?;
    let env = cfg
        .require(&args.env, &format!("gitops.yaml at {}", target.name))?
        .clone();
    lock::check_unlocked(repo, &env.name, args.ignore_lock)?;
    let head = repo.branch_head(&env.branch)?.ok_or_else(|| {
        Error::invalid(format!(
            "branch {} of environment {} does not exist",
            env.branch, env.name
        ))
    })?;
    let target_tree = repo.tree_of(target.commit)?;
    if repo.tree_of(head)? == target_tree {
        output::info(format!(
            "{} ({}) already has the tree of {}; nothing to roll back",
            env.branch,
            repo.short(head),
            target.name
        ));
        return Ok(());
    }
    let msg = format!(
        "Roll back {} to {}\n\nRestores the tree of {} ({}) on {}; the commits since stay in history.\n",
        env.name,
        target.name,
        target.name,
        repo.short(target.commit),
        env.branch
    );
    let new_head = write::make_commit(repo, target_tree, &[head], &msg)?;
    output::info(format!(
        "rollback {}: {} {} -> tree of {} ({})",
        env.name,
        env.branch,
        repo.short(head),
        target.name,
        repo.short(target.commit)
    ));
    super::print_changes(repo, Some(head), new_head, &env.path)?;

    let record = DeployRecord {
        env: env.name.clone(),
        action: Some(Action::Rollback),
        subject: tag::subject(
            &env.name,
            Action::Rollback,
            &target.name,
            &repo.short(target.commit),
        ),
        body: args.message.clone(),
        source_env: Some(env.name.clone()),
        source_tag: Some(target.name.clone()),
        source_commit: Some(target.commit.to_string()),
        previous_tag: Some(current.name.clone()),
        previous_commit: Some(head.to_string()),
        gate_override: None,
        branch: env.branch.clone(),
        tool: format!("git-deploy/{}", shared::VERSION),
    };
    let written = super::write_deploy(
        repo,
        super::Deploy {
            reason: format!("git-deploy: roll back {} to {}", env.name, target.name),
            branch: super::Branch::Move {
                name: format!("refs/heads/{}", env.branch),
                old: Some(head),
                note: format!("new commit restoring {}", target.name),
            },
            commit: new_head,
            record,
            succession,
            respect_lock: !args.ignore_lock,
            sign,
            write: &args.write,
            confirm: Some((
                format!("Roll back {} to {}?", env.name, target.name),
                args.yes,
                format!("roll back {}", env.name),
            )),
            json: false,
        },
    )?;
    if !written.dry_run {
        output::stdout_line(&written.tag);
    }
    Ok(())
}

/// The current deploy and the one to restore: named, or the most recent earlier deploy whose
/// tree differs (rolling back to a tag with the same tree would change nothing).
fn pick(
    repo: &Repo,
    args: &RollbackArgs,
) -> Result<(
    shared::git::Succession,
    shared::git::DeployTag,
    shared::git::TagInfo,
)> {
    let deploys = repo.deploys(&args.env)?;
    let succession = deploys.succession()?;
    let mut trusted = deploys.iter();
    let Some(current) = trusted.next().transpose()? else {
        return Err(Error::invalid(format!(
            "environment {} has no deploy tags to roll back to",
            args.env
        )));
    };
    let current_tree = repo.tree_of(current.commit)?;
    let target = match &args.tag {
        Some(t) => super::require_deploy_tag(repo, &args.env, t)?,
        None => {
            let mut found = None;
            for t in trusted {
                let t = t?;
                if repo.tree_of(t.commit)? != current_tree {
                    found = Some(repo.tag_info_at(&t.name, t.target)?);
                    break;
                }
            }
            found.ok_or_else(|| {
                Error::invalid(format!(
                    "environment {} has no earlier deploy that differs from the current one ({})",
                    args.env, current.name
                ))
                .hint(format!(
                    "`git deploy log {}` lists its deploys; name one explicitly",
                    args.env
                ))
            })?
        }
    };
    Ok((succession, current, target))
}
