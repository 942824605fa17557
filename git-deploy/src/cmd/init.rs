use std::path::Path;
use std::process::Command;

use shared::config::{self, Config, Environment};
use shared::git::Repo;
use shared::{Error, Result, refname};

use crate::cli::InitArgs;
use crate::output;
use shared::git::Plan;

/// `NAME=BRANCH[:PATH[:NAMESPACE]]`
fn parse_env(spec: &str) -> Result<Environment> {
    let bad = |why: String| {
        Error::invalid(format!("--env {spec:?}: {why}")).hint(
            "use NAME=BRANCH[:PATH[:NAMESPACE]], e.g. --env prod=env/prod:deploy/prod:production",
        )
    };
    let (name, rest) = spec
        .split_once('=')
        .ok_or_else(|| bad("missing '='".into()))?;
    let mut parts = rest.splitn(3, ':');
    let branch = parts.next().unwrap_or_default().to_string();
    let path = parts
        .next()
        .map(str::to_string)
        .unwrap_or_else(|| format!("deploy/{name}"));
    let namespace = parts
        .next()
        .map(str::to_string)
        .unwrap_or_else(|| name.to_string());
    if let Some(p) = refname::env_name_problem(name) {
        return Err(bad(format!("environment name {name:?} {p}")));
    }
    if let Some(p) = refname::branch_problem(&branch) {
        return Err(bad(format!("branch {branch:?} {p}")));
    }
    if let Some(p) = refname::repo_path_problem(&path) {
        return Err(bad(format!("path {path:?} {p}")));
    }
    if let Some(p) = refname::dns_label_problem(&namespace) {
        return Err(bad(format!("namespace {namespace:?} {p}")));
    }
    Ok(Environment {
        name: name.to_string(),
        branch,
        path: refname::normalize_repo_path(&path),
        namespace,
        context: None,
        helm: None,
        gates: Default::default(),
        notify: Vec::new(),
    })
}

fn default_envs() -> Vec<Environment> {
    ["dev", "staging", "prod"]
        .iter()
        .map(|n| Environment {
            name: n.to_string(),
            branch: format!("env/{n}"),
            path: format!("deploy/{n}"),
            namespace: n.to_string(),
            context: None,
            helm: None,
            gates: Default::default(),
            notify: Vec::new(),
        })
        .collect()
}

fn git(workdir: &std::path::Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .current_dir(workdir)
        .args(args)
        .output()
        .map_err(|e| Error::refused(format!("could not run git: {e}")))?;
    if !out.status.success() {
        return Err(Error::refused(format!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// gitops.yaml as init finds it: committed already, or to be written from the flags.
enum Source {
    Committed(Config),
    New(Config),
}

/// Every name is checked before anything is written: a refusal leaves no gitops.yaml, no
/// commit and no branch behind.
pub fn run(repo: &mut Repo, args: InitArgs) -> Result<()> {
    let workdir = repo.require_workdir("git deploy init")?;
    let file = workdir.join(config::FILE_NAME);
    refuse_symlink(&file)?;
    let source = read_or_build(repo, &file, &args)?;
    let cfg = match &source {
        Source::Committed(c) | Source::New(c) => c.clone(),
    };
    let missing = missing_branches(repo, &cfg)?;
    shared::git::plan::check_new_ref_names(
        repo,
        &missing.iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>(),
    )?;
    if args.dry_run {
        if let Source::New(cfg) = &source {
            output::info(format!(
                "dry run: would write {} and commit it:",
                file.display()
            ));
            anstream::print!("{}", cfg.to_yaml());
        }
        for (name, _) in &missing {
            output::info(format!("would create {name} at HEAD"));
        }
        return Ok(());
    }
    if let Source::New(cfg) = &source {
        commit_config(&workdir, &file, cfg)?;
        // Our handle still sees the old HEAD; reopen to see the commit git just made.
        *repo = Repo::open(&workdir)?;
    }
    if missing.is_empty() {
        output::info("all environment branches exist; nothing to create");
        return Ok(());
    }
    let head = repo
        .head_commit()?
        .ok_or_else(|| Error::refused("HEAD has no commit to create branches at"))?;
    let mut plan = Plan::new("git-deploy: init", None);
    for (name, env) in missing {
        plan.add(name, None, Some(head), format!("environment {env}"));
    }
    super::show_plan(repo, &plan, false, false);
    plan.execute(repo)?;
    output::info(format!(
        "ready: environments {} (next: `git deploy tag {}`)",
        cfg.names().join(" -> "),
        cfg.environments[0].name
    ));
    Ok(())
}

/// A symbolic link named gitops.yaml would make init write through it (outside the
/// repository, for a link that points there) and commit the link, not a file.
fn refuse_symlink(file: &Path) -> Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(file) else {
        return Ok(());
    };
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(file)
            .map(|t| format!(" (to {})", t.display()))
            .unwrap_or_default();
        return Err(Error::refused(format!(
            "{} is a symbolic link{target}; git deploy init reads and writes a regular file only",
            file.display()
        ))
        .hint("remove the link, then run init again"));
    }
    Ok(())
}

fn read_or_build(repo: &Repo, file: &Path, args: &InitArgs) -> Result<Source> {
    if std::fs::symlink_metadata(file).is_ok() {
        if !args.envs.is_empty() {
            return Err(Error::refused(format!(
                "{} already exists; refusing to overwrite it",
                file.display()
            ))
            .hint("edit it by hand, or remove it and run init again"));
        }
        let text = std::fs::read_to_string(file).map_err(|e| Error::context(file.display(), e))?;
        let committed = match repo.head_commit()? {
            Some(head) => repo.file_at(head, config::FILE_NAME)?,
            None => None,
        };
        if committed.as_deref() != Some(text.as_bytes()) {
            return Err(Error::refused(format!("{} has changes that are not committed at HEAD", file.display()))
                .hint("commit it first: the tools read gitops.yaml from commits, never from the work tree"));
        }
        output::info(format!(
            "{} exists and is committed; creating missing branches only",
            config::FILE_NAME
        ));
        return Ok(Source::Committed(Config::parse(
            &file.display().to_string(),
            &text,
        )?));
    }
    let envs = if args.envs.is_empty() {
        default_envs()
    } else {
        args.envs
            .iter()
            .map(|s| parse_env(s))
            .collect::<Result<Vec<_>>>()?
    };
    let cfg = Config { environments: envs };
    // Round-trip through the parser so init can never write a file the tools reject
    // (duplicate names or branches are caught here).
    Config::parse("--env flags", &cfg.to_yaml())?;
    Ok(Source::New(cfg))
}

/// `(refs/heads/<branch>, environment)` for each environment branch that does not exist.
fn missing_branches(repo: &Repo, cfg: &Config) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for env in &cfg.environments {
        if repo.branch_head(&env.branch)?.is_none() {
            out.push((format!("refs/heads/{}", env.branch), env.name.clone()));
        }
    }
    Ok(out)
}

fn commit_config(workdir: &Path, file: &Path, cfg: &Config) -> Result<()> {
    std::fs::write(file, cfg.to_yaml()).map_err(|e| Error::context(file.display(), e))?;
    git(workdir, &["add", "--", config::FILE_NAME])?;
    git(
        workdir,
        &[
            "commit",
            "--quiet",
            "-m",
            "Add gitops.yaml (git deploy init)",
            "--",
            config::FILE_NAME,
        ],
    )?;
    let head = git(workdir, &["rev-parse", "--short", "HEAD"])?;
    let branch = git(workdir, &["rev-parse", "--abbrev-ref", "HEAD"])?;
    output::info(format!(
        "wrote {} and committed it as {head} on {branch}",
        config::FILE_NAME
    ));
    Ok(())
}
