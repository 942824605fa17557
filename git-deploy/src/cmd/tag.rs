use shared::git::Repo;
use shared::git::lock;
use shared::tag::{self, Action, DeployRecord};
use shared::{Error, Result};

use crate::cli::TagArgs;
use crate::output;
use shared::git::write;

pub fn run(repo: &mut Repo, args: TagArgs) -> Result<()> {
    super::check_env_name(&args.env)?;
    if let Some(remote) = &args.write.push {
        shared::git::push::check_remote(remote)?;
    }
    if let Some(m) = &args.message {
        tag::check_body(m)?;
    }
    // Read now: a signing setup that cannot work fails before anything is decided.
    let sign = write::signing(repo, args.sign)?;
    let (head_cfg, _) = super::head_config(repo)?;
    let env = head_cfg.require(&args.env, "gitops.yaml at HEAD")?.clone();
    let branch_head = repo.branch_head(&env.branch)?.ok_or_else(|| {
        Error::invalid(format!(
            "branch {} of environment {} does not exist",
            env.branch, env.name
        ))
        .hint("create it with `git deploy init`, or `git branch <branch> <commit>`")
    })?;
    let commit = match &args.rev {
        Some(rev) => {
            let c = repo.resolve_commit(rev)?;
            if !repo.is_ancestor(c, branch_head)? {
                return Err(Error::invalid(format!(
                    "{rev} ({}) is not on branch {}",
                    repo.short(c),
                    env.branch
                ))
                .hint(format!(
                    "only commits of {} can be deployed to {}; promote or merge it there first",
                    env.branch, env.name
                )));
            }
            c
        }
        None => branch_head,
    };
    // The commit being deployed must itself describe the environment the same way.
    let cfg = repo.config_at(commit, &format!("{} of {}", repo.short(commit), env.branch))?;
    let here = cfg.require(&env.name, &format!("gitops.yaml at {}", repo.short(commit)))?;
    if here.branch != env.branch {
        return Err(Error::invalid(format!(
            "gitops.yaml at {} puts {} on branch {}, but HEAD's gitops.yaml says {}",
            repo.short(commit),
            env.name,
            here.branch,
            env.branch
        )));
    }
    lock::check_unlocked(repo, &env.name, args.ignore_lock)?;

    let succession = repo.deploys(&env.name)?.succession()?;
    let previous = succession.previous.clone();
    if let Some(prev) = &previous
        && prev.commit == commit
    {
        output::info(format!(
            "{} is already deployed to {} as {}; nothing to do",
            repo.short(commit),
            env.name,
            prev.name
        ));
        return Ok(());
    }
    let previous_commit = previous.as_ref().map(|p| p.commit);
    let record = DeployRecord {
        env: env.name.clone(),
        action: Some(Action::Tag),
        subject: tag::subject(&env.name, Action::Tag, "", &repo.short(commit)),
        body: args.message.clone(),
        previous_tag: previous.as_ref().map(|p| p.name.clone()),
        previous_commit: previous_commit.map(|c| c.to_string()),
        branch: env.branch.clone(),
        tool: format!("git-deploy/{}", shared::VERSION),
        ..Default::default()
    };
    let written = super::write_deploy(
        repo,
        super::Deploy {
            reason: format!("git-deploy: tag {}", env.name),
            branch: super::Branch::Keep {
                name: format!("refs/heads/{}", env.branch),
                head: branch_head,
            },
            commit,
            record,
            succession,
            respect_lock: !args.ignore_lock,
            sign,
            write: &args.write,
            confirm: None,
            json: false,
        },
    )?;
    if !written.dry_run {
        output::stdout_line(&written.tag);
    }
    Ok(())
}
