use serde_json::json;
use shared::git::{ChangeStatus, Repo};
use shared::{Error, Result};

use crate::cli::{DiffArgs, Output};
use crate::output;

pub fn run(repo: &Repo, args: DiffArgs) -> Result<()> {
    let (cfg, _) = super::head_config(repo)?;
    let a = cfg.require(&args.a, "gitops.yaml at HEAD")?;
    let b = cfg.require(&args.b, "gitops.yaml at HEAD")?;
    let head = |e: &shared::Environment| {
        repo.branch_head(&e.branch)?.ok_or_else(|| {
            Error::invalid(format!(
                "branch {} of environment {} does not exist",
                e.branch, e.name
            ))
        })
    };
    let (ha, hb) = (head(a)?, head(b)?);
    let commits = repo.commits_between(&[hb], ha, None)?;
    let changes = repo.file_changes(Some(hb), ha, "")?;
    if args.output == Output::Json {
        output::print_json(&json!({
            "from": {"env": a.name, "branch": a.branch, "commit": ha.to_string()},
            "to": {"env": b.name, "branch": b.branch, "commit": hb.to_string()},
            "commits": commits,
            "files": changes,
        }));
        return Ok(());
    }
    output::stdout_line(format!(
        "{}{} commit{} in {} ({}) not in {} ({}){}",
        output::HEADER.render(),
        commits.len(),
        if commits.len() == 1 { "" } else { "s" },
        a.name,
        a.branch,
        b.name,
        b.branch,
        output::HEADER.render_reset()
    ));
    for c in &commits {
        output::stdout_line(format!("  {} {}", c.short, c.subject));
    }
    if changes.is_empty() {
        output::stdout_line(format!(
            "no file differences between {} and {}",
            a.branch, b.branch
        ));
        return Ok(());
    }
    output::stdout_line("");
    anstream::print!("{}", output::render_stat(&changes));
    if !args.stat {
        for c in &changes {
            if c.binary {
                output::stdout_line(format!("Binary file {} differs", c.path));
                continue;
            }
            let old = c
                .old
                .map(|id| repo.blob(id))
                .transpose()?
                .unwrap_or_default();
            let new = c
                .new
                .map(|id| repo.blob(id))
                .transpose()?
                .unwrap_or_default();
            let (old, new) = (String::from_utf8_lossy(&old), String::from_utf8_lossy(&new));
            output::stdout_line("");
            let label = match c.status {
                ChangeStatus::Added => " (new file)",
                ChangeStatus::Deleted => " (deleted)",
                ChangeStatus::Modified => "",
            };
            anstream::print!(
                "{}",
                shared::render::unified_diff(
                    &format!("a/{}{label}", c.path),
                    &format!("b/{}{label}", c.path),
                    &old,
                    &new,
                    true
                )
            );
        }
    }
    Ok(())
}
