use shared::Result;
use shared::git::Repo;
use shared::git::lock;

use crate::cli::{LockArgs, UnlockArgs};
use crate::output;
use shared::git::Plan;
use shared::git::write;

fn check_known(repo: &Repo, env: &str) -> Result<()> {
    super::check_env_name(env)?;
    if let Ok((cfg, _)) = super::head_config(repo) {
        cfg.require(env, "gitops.yaml at HEAD")?;
    }
    Ok(())
}

pub fn lock(repo: &mut Repo, args: LockArgs) -> Result<()> {
    check_known(repo, &args.env)?;
    if let Some(remote) = &args.write.push {
        shared::git::push::check_remote(remote)?;
    }
    let reason = args.message.trim();
    if reason.is_empty() {
        return Err(shared::Error::invalid(
            "-m <reason> is empty; say why the environment is locked",
        ));
    }
    if let Some(l) = lock::read_lock(repo, &args.env)? {
        return Err(shared::Error::refused(format!(
            "environment {} is already locked by {} <{}> since {}: {}",
            args.env, l.holder, l.email, l.since, l.reason
        ))
        .hint(format!(
            "`git deploy unlock {}` first if the lock is yours to lift",
            args.env
        )));
    }
    let empty_tree = gix::ObjectId::empty_tree(repo.inner.object_hash());
    let msg = format!("lock {}\n\n{reason}\n", args.env);
    let id = write::make_commit(repo, empty_tree, &[], &msg)?;
    let mut plan = Plan::new(
        format!("git-deploy: lock {}", args.env),
        args.write.push.clone(),
    );
    plan.add(lock::lock_ref(&args.env), None, Some(id), "lock");
    super::show_plan(repo, &plan, args.write.dry_run, false);
    if args.write.dry_run {
        return Ok(());
    }
    plan.execute(repo)?;
    output::info(format!("locked {}: {reason}", args.env));
    Ok(())
}

pub fn unlock(repo: &mut Repo, args: UnlockArgs) -> Result<()> {
    check_known(repo, &args.env)?;
    if let Some(remote) = &args.write.push {
        shared::git::push::check_remote(remote)?;
    }
    let Some(l) = lock::read_lock(repo, &args.env)? else {
        output::info(format!(
            "environment {} is not locked; nothing to do",
            args.env
        ));
        return Ok(());
    };
    let mut plan = Plan::new(
        format!("git-deploy: unlock {}", args.env),
        args.write.push.clone(),
    );
    plan.add(
        lock::lock_ref(&args.env),
        Some(l.id),
        None,
        format!("lock held by {} since {}", l.holder, l.since),
    );
    super::show_plan(repo, &plan, args.write.dry_run, false);
    if args.write.dry_run {
        return Ok(());
    }
    plan.execute(repo)?;
    output::info(format!(
        "unlocked {} (was locked by {}: {})",
        args.env, l.holder, l.reason
    ));
    Ok(())
}
