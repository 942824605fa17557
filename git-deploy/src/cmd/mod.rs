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
use shared::git::Plan;
use shared::git::write;

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

/// Prints the plan; with `dry_run`, stops there. With `json` stdout is kept for the caller's
/// JSON document, and the plan goes to stderr.
pub fn show_plan(repo: &Repo, plan: &Plan, dry_run: bool, json: bool) {
    if dry_run {
        output::info("dry run: these ref updates would be made; nothing was written");
        if json {
            output::info(plan.render(repo).trim_end());
        } else {
            anstream::print!("{}", plan.render(repo));
        }
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

/// What one deploy writes: optionally a branch move, one annotated deploy tag on `commit`, and
/// the move of the environment's latest-deploy token; guarded by the environment's lock.
pub struct Deploy<'a> {
    pub reason: String,
    /// What changes the branch: full ref name, its value read at the start, and why it moves;
    /// or `Keep` when the branch stays where it is (then it is only pushed, fast-forward).
    pub branch: Branch,
    pub commit: ObjectId,
    pub record: shared::tag::DeployRecord,
    /// The deploy this one follows (read before anything else was decided).
    pub succession: shared::git::Succession,
    /// How to sign the tag (`write::signing`); `None`: unsigned.
    pub sign: Option<shared::signature::SigningSetup>,
    pub write: &'a WriteArgs,
    /// False with --ignore-lock; otherwise a lock taken after the check still stops the write.
    pub respect_lock: bool,
    /// Question, `--yes`, and what is refused, for commands that confirm before writing.
    pub confirm: Option<(String, bool, String)>,
    /// `-o json`: the caller prints a JSON document on stdout, so the plan goes to stderr.
    pub json: bool,
}

/// What `write_deploy` did: the new tag (written unless `dry_run`) and the ref updates.
pub struct Written {
    pub tag: String,
    pub updates: Vec<shared::git::RefUpdate>,
    pub dry_run: bool,
}

impl Written {
    /// The ref updates, for `-o json`.
    pub fn updates_json(&self, repo: &Repo) -> serde_json::Value {
        let id = |v: Option<ObjectId>| v.map(|v| v.to_string());
        serde_json::Value::Array(
            self.updates
                .iter()
                .map(|u| {
                    serde_json::json!({
                        "ref": u.name,
                        "old": id(u.old),
                        "new": id(u.new),
                        "note": u.note,
                        "short_new": u.new.map(|n| repo.short(n)),
                    })
                })
                .collect(),
        )
    }
}

pub enum Branch {
    Move {
        name: String,
        old: Option<ObjectId>,
        note: String,
    },
    Keep {
        name: String,
        head: ObjectId,
    },
}

/// Builds the tag, shows the plan, and (unless --dry-run) confirms and executes it. Callers
/// print the new tag's name (or their JSON) on stdout for scripts.
pub fn write_deploy(repo: &mut Repo, d: Deploy<'_>) -> Result<Written> {
    let env = d.record.env.clone();
    let who = write::identity(repo)?;
    let name = write::free_tag_name(repo, &env, who.time.seconds)?;
    // A dry run does not sign (no passphrase prompt, no hardware key touch for a plan that
    // is only shown); it says which key would.
    let sign = d.sign.as_ref().filter(|_| !d.write.dry_run);
    let tag_id = write::make_tag(repo, &name, d.commit, &d.record, sign)?;
    let mut plan = Plan::new(d.reason, d.write.push.clone());
    match d.branch {
        Branch::Move { name, old, note } => plan.add(name, old, Some(d.commit), note),
        // The tagged commit must reach the remote with its tag (issue 13): the branch goes
        // along, fast-forward only, and must not move locally meanwhile.
        Branch::Keep { name, head } => plan.publish(name, head, "branch with the tagged commit"),
    }
    plan.add(
        format!("refs/tags/{name}"),
        None,
        Some(tag_id),
        format!("annotated tag on {}", repo.short(d.commit)),
    );
    d.succession.add_to(&mut plan, tag_id);
    if d.respect_lock {
        plan.guard(
            shared::git::lock::lock_ref(&env),
            None,
            format!("environment {env} was locked"),
        );
    }
    show_plan(repo, &plan, d.write.dry_run, d.json);
    let mut written = Written {
        tag: name,
        updates: plan.updates.clone(),
        dry_run: d.write.dry_run,
    };
    if d.write.dry_run {
        if let Some(setup) = &d.sign {
            output::info(format!("the tag would be signed with {}", setup.describe()));
        }
        return Ok(written);
    }
    if let Some((question, yes, what)) = &d.confirm {
        shared::prompt::confirm(question, *yes, what)?;
    }
    plan.execute(repo)?;
    written.dry_run = false;
    Ok(written)
}
