//! One module per subcommand. Each reads what it needs, builds a `Plan`, and either prints it
//! (`--dry-run`) or confirms and executes it.

pub mod diff;
pub mod init;
pub mod lock;
pub mod log;
pub mod promote;
pub mod rollback;
pub mod show;
pub mod status;
pub mod tag;

use gix::ObjectId;
use shared::git::Repo;
use shared::{Config, Error, Result};

use crate::cli::WriteArgs;
use crate::output;
use crate::plan::Plan;
use crate::write;

/// gitops.yaml as committed at HEAD: where we learn which branch an environment lives on
/// before we know which commit is being deployed.
pub fn head_config(repo: &Repo) -> Result<(Config, ObjectId)> {
    repo.head_config()
}

pub fn check_env_name(name: &str) -> Result<()> {
    if let Some(problem) = shared::refname::env_name_problem(name) {
        return Err(Error::invalid(format!(
            "environment name {name:?} {problem}"
        )));
    }
    Ok(())
}

/// Prints the plan; with `dry_run`, stops there.
pub fn show_plan(repo: &Repo, plan: &Plan, dry_run: bool) {
    if dry_run {
        output::info("dry run: these ref updates would be made; nothing was written");
        anstream::print!("{}", plan.render(repo));
    } else {
        output::info(plan.render(repo).trim_end());
    }
}

/// Commits a deploy brings and the files it changes under the environment's path.
pub fn print_changes(repo: &Repo, old: Option<ObjectId>, new: ObjectId, path: &str) -> Result<()> {
    let commits = match old {
        Some(old) => repo.commits_between(&[old], new, Some(50))?,
        None => repo.commits_between(&[], new, Some(50))?,
    };
    if !commits.is_empty() {
        output::info(format!(
            "{}commits:{}",
            output::HEADER.render(),
            output::HEADER.render_reset()
        ));
        for c in &commits {
            output::info(format!("  {} {}", c.short, c.subject));
        }
    }
    let changes = repo.file_changes(old, new, path)?;
    let shown = if path.is_empty() { "." } else { path };
    if changes.is_empty() {
        output::info(format!("no file changes under {shown}"));
    } else {
        output::info(format!(
            "{}changes under {shown}:{}",
            output::HEADER.render(),
            output::HEADER.render_reset()
        ));
        output::info(output::render_stat(&changes).trim_end());
    }
    Ok(())
}

/// A deploy tag of `env` named on the command line (with or without `refs/tags/`); refused
/// unless it is a deploy both tools trust (`shared::git::Deploys`).
pub fn require_deploy_tag(repo: &Repo, env: &str, name: &str) -> Result<shared::git::TagInfo> {
    let short = name.trim_start_matches("refs/tags/");
    match shared::tag::TagName::parse(short) {
        Some(t) if t.env == env => {}
        Some(t) => {
            return Err(Error::invalid(format!(
                "tag {short:?} is a deploy tag of {}, not of {env}",
                t.env
            )));
        }
        None => {
            return Err(Error::invalid(format!(
                "{short:?} is not a deploy tag (deploy/{env}/<YYYYMMDD>T<HHMMSS>Z)"
            ))
            .hint(format!("`git deploy log {env}` lists them")));
        }
    }
    repo.deploys(env)?.require(short)
}

/// What one deploy writes: optionally a branch move, and one annotated deploy tag on `commit`.
pub struct Deploy<'a> {
    pub reason: String,
    /// Full ref name, its value read at the start, and why it moves.
    pub branch: Option<(String, Option<ObjectId>, String)>,
    pub commit: ObjectId,
    pub record: shared::tag::DeployRecord,
    pub sign: bool,
    pub write: &'a WriteArgs,
    /// Question, `--yes`, and what is refused, for commands that confirm before writing.
    pub confirm: Option<(String, bool, String)>,
}

/// Builds the tag, shows the plan, and (unless --dry-run) confirms and executes it; prints the
/// new tag's name on stdout for scripts.
pub fn write_deploy(repo: &mut Repo, d: Deploy<'_>) -> Result<()> {
    let who = write::identity(repo)?;
    let name = write::free_tag_name(repo, &d.record.env, who.time.seconds)?;
    let tag_id = write::make_tag(repo, &name, d.commit, &d.record, d.sign)?;
    let mut plan = Plan::new(d.reason, d.write.push.clone());
    if let Some((branch, old, note)) = d.branch {
        plan.add(branch, old, Some(d.commit), note);
    }
    plan.add(
        format!("refs/tags/{name}"),
        None,
        Some(tag_id),
        format!("annotated tag on {}", repo.short(d.commit)),
    );
    show_plan(repo, &plan, d.write.dry_run);
    if d.write.dry_run {
        return Ok(());
    }
    if let Some((question, yes, what)) = &d.confirm {
        shared::prompt::confirm(question, *yes, what)?;
    }
    plan.execute(repo)?;
    output::stdout_line(&name);
    Ok(())
}
