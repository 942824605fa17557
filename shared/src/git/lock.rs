//! Environment locks: `refs/deploy/locks/<env>` is a commit (empty tree) whose author is the
//! holder, whose date is when, and whose message is why. Fetch and push it like any ref to
//! share locks. Writers that must not write into a locked environment put the lock ref in
//! their plan as a guard (`Plan::guard`), so a lock taken after the check still stops them.

use gix::ObjectId;
use gix::bstr::ByteSlice;

use super::{Person, Repo};
use crate::error::{Error, Result};

/// `refs/deploy/locks/<env>`.
pub fn lock_ref(env: &str) -> String {
    format!("refs/deploy/locks/{env}")
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LockInfo {
    pub env: String,
    pub holder: String,
    pub email: String,
    pub since: String,
    pub reason: String,
    #[serde(skip)]
    pub id: ObjectId,
}

pub fn read_lock(repo: &Repo, env: &str) -> Result<Option<LockInfo>> {
    let Some(id) = repo.ref_target(&lock_ref(env))? else {
        return Ok(None);
    };
    let commit = repo.inner.find_commit(id)?;
    let decoded = commit.decode()?;
    let author = decoded.author()?;
    let time = author.time().unwrap_or_default();
    let message = decoded.message.to_str_lossy();
    let reason = message
        .split_once("\n\n")
        .map(|(_, body)| body)
        .unwrap_or(&message);
    let reason = reason
        .lines()
        .filter(|l| !l.starts_with("Deploy-"))
        .collect::<Vec<_>>()
        .join("\n");
    Ok(Some(LockInfo {
        env: env.to_string(),
        holder: author.name.to_str_lossy().trim().to_string(),
        email: author.email.to_str_lossy().trim().to_string(),
        since: Person {
            name: String::new(),
            email: String::new(),
            seconds: time.seconds,
            offset: time.offset,
        }
        .rfc3339(),
        reason: reason.trim().to_string(),
        id,
    }))
}

/// Refuses when `env` is locked, naming the holder and the reason.
pub fn check_unlocked(repo: &Repo, env: &str, ignore: bool) -> Result<()> {
    if ignore {
        return Ok(());
    }
    if let Some(lock) = read_lock(repo, env)? {
        return Err(Error::refused(format!(
            "environment {env} is locked by {} <{}> since {}: {}",
            lock.holder, lock.email, lock.since, lock.reason
        ))
        .hint(format!(
            "wait for `git deploy unlock {env}`, or pass --ignore-lock if you must"
        )));
    }
    Ok(())
}
