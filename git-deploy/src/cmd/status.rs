//! `git deploy status`: each environment's branch, latest deploy, pending promotion and the
//! state of its gates, and locks.

use serde_json::json;
use shared::gates::{self, State};
use shared::git::notes::{DEPLOY_NOTES_REF, newer_on_remotes};
use shared::git::{Repo, lock};
use shared::{Config, Environment, Result};

use crate::cli::{Output, StatusArgs};
use crate::output::{self, Cell};

/// Where the pending promotion into an environment stands with its gates.
enum Pending {
    /// Nothing to promote: no commits pending, or the previous environment's latest deploy is
    /// already on this branch.
    Nothing,
    /// Commits are pending, but the previous environment has no deploy to promote.
    NoDeploy,
    Gated(gates::Evaluation),
}

/// The gates of `env` judged on the latest deploy of `previous`, if that deploy is not on
/// `env`'s branch yet.
fn pending_gates(
    repo: &Repo,
    head_cfg: &Config,
    previous: &Environment,
    env: &Environment,
    head: Option<gix::ObjectId>,
    now: jiff::Timestamp,
) -> Result<Pending> {
    let Some(latest) = repo.deploys(&previous.name)?.latest()? else {
        return Ok(Pending::NoDeploy);
    };
    if let Some(head) = head
        && repo.is_ancestor(latest.commit, head)?
    {
        return Ok(Pending::Nothing);
    }
    let source = repo.tag_info_at(&latest.name, latest.target)?;
    let at_source = repo.config_at(source.commit, &source.name).ok();
    let gates = gates::effective(
        repo,
        &env.name,
        &env.branch,
        at_source.as_ref().and_then(|c| c.env(&env.name)),
    )?;
    let source_env = head_cfg.env(&previous.name).unwrap_or(previous);
    Ok(Pending::Gated(gates::assess(
        repo, source_env, &source, &gates, now,
    )?))
}

pub fn run(repo: &Repo, args: StatusArgs) -> Result<()> {
    let (cfg, _) = super::head_config(repo)?;
    let now = jiff::Timestamp::now();
    let mut read_notes = false;
    let mut rows = Vec::new();
    let mut json_envs = Vec::new();
    let mut heads = Vec::new();
    for env in &cfg.environments {
        heads.push(repo.branch_head(&env.branch)?);
    }
    for (i, env) in cfg.environments.iter().enumerate() {
        let head = heads[i];
        let deploys = repo.deploys(&env.name)?;
        let latest = deploys.latest()?;
        let head_tag = match head {
            Some(head) => deploys.of_commit(head)?.map(|t| t.name),
            None => None,
        };
        let previous = i.checked_sub(1).map(|p| &cfg.environments[p]);
        let pending = match (previous.and_then(|_| heads[i - 1]), head) {
            (Some(prev_head), Some(head)) => Some(repo.count_between(&[head], prev_head)?),
            (Some(prev_head), None) => Some(repo.count_between(&[], prev_head)?),
            _ => None,
        };
        let lock = lock::read_lock(repo, &env.name)?;
        let gate = match (previous, pending) {
            (Some(p), Some(n)) if n > 0 => pending_gates(repo, &cfg, p, env, head, now)?,
            _ => Pending::Nothing,
        };
        let gate_json = match &gate {
            Pending::Nothing => serde_json::Value::Null,
            Pending::NoDeploy => json!({"state": "no deploy"}),
            Pending::Gated(e) => {
                read_notes |= !e.gates.is_empty();
                let mut v = e.to_json(now);
                v["label"] = json!(e.state().label());
                v
            }
        };
        json_envs.push(json!({
            "name": env.name,
            "branch": env.branch,
            "namespace": env.namespace,
            "path": if env.path.is_empty() { "." } else { env.path.as_str() },
            "commit": head.map(|h| h.to_string()),
            "tag": latest.as_ref().map(|t| t.name.clone()),
            "tagged": head_tag.is_some(),
            "head_tag": head_tag,
            "pending": pending,
            "previous": previous.map(|p| p.name.clone()),
            "gates": gate_json,
            "locked": lock.as_ref().map(|l| serde_json::to_value(l).unwrap_or_default()),
        }));
        let tagged = match (&head, &head_tag) {
            (None, _) => Cell::styled("-", output::DIM),
            (Some(_), Some(_)) => Cell::styled("yes", output::GOOD),
            (Some(_), None) => Cell::styled("no", output::WARN),
        };
        rows.push(vec![
            Cell::plain(&env.name),
            Cell::plain(&env.branch),
            match head {
                Some(h) => Cell::plain(repo.short(h)),
                None => Cell::styled("(missing)", output::BAD),
            },
            match &latest {
                Some(t) => Cell::plain(&t.name),
                None => Cell::styled("-", output::DIM),
            },
            tagged,
            match (pending, previous) {
                (Some(0), Some(_)) => Cell::styled("0", output::GOOD),
                (Some(n), Some(p)) => Cell::styled(format!("{n} from {}", p.name), output::WARN),
                _ => Cell::styled("-", output::DIM),
            },
            match &gate {
                Pending::Nothing => Cell::styled("-", output::DIM),
                Pending::NoDeploy => Cell::styled(
                    format!(
                        "no deploy of {}",
                        previous.map(|p| p.name.as_str()).unwrap_or("")
                    ),
                    output::WARN,
                ),
                Pending::Gated(e) => {
                    let state = e.state();
                    let style = match state {
                        State::None => output::DIM,
                        State::Ready => output::GOOD,
                        State::Soaking { .. } | State::Unverified => output::WARN,
                        State::Void => output::BAD,
                    };
                    Cell::styled(state.label(), style)
                }
            },
            match &lock {
                Some(l) => {
                    Cell::styled(format!("locked by {}: {}", l.holder, l.reason), output::BAD)
                }
                None => Cell::plain(""),
            },
        ]);
    }
    if read_notes {
        for line in newer_on_remotes(repo, DEPLOY_NOTES_REF) {
            output::warn(line);
        }
    }
    match args.output {
        Output::Json => output::print_json(&json!({ "environments": json_envs })),
        Output::Text => output::print_table(
            &[
                "ENV",
                "BRANCH",
                "COMMIT",
                "LATEST TAG",
                "TAGGED",
                "PENDING",
                "GATES",
                "LOCK",
            ],
            rows,
        ),
    }
    Ok(())
}
