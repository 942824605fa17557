use serde_json::json;
use shared::Result;
use shared::git::Repo;
use shared::git::lock;

use crate::cli::{Output, StatusArgs};
use crate::output::{self, Cell};

pub fn run(repo: &Repo, args: StatusArgs) -> Result<()> {
    let (cfg, _) = super::head_config(repo)?;
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
            match &lock {
                Some(l) => {
                    Cell::styled(format!("locked by {}: {}", l.holder, l.reason), output::BAD)
                }
                None => Cell::plain(""),
            },
        ]);
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
                "LOCK",
            ],
            rows,
        ),
    }
    Ok(())
}
