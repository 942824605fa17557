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

pub fn run(repo: &mut Repo, args: InitArgs) -> Result<()> {
    let workdir = repo.require_workdir("git deploy init")?;
    let file = workdir.join(config::FILE_NAME);
    let cfg = if file.exists() {
        if !args.envs.is_empty() {
            return Err(Error::refused(format!(
                "{} already exists; refusing to overwrite it",
                file.display()
            ))
            .hint("edit it by hand, or remove it and run init again"));
        }
        let text = std::fs::read_to_string(&file).map_err(|e| Error::context(file.display(), e))?;
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
        Config::parse(&file.display().to_string(), &text)?
    } else {
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
        if args.dry_run {
            output::info(format!(
                "dry run: would write {} and commit it:",
                file.display()
            ));
            anstream::print!("{}", cfg.to_yaml());
        } else {
            std::fs::write(&file, cfg.to_yaml()).map_err(|e| Error::context(file.display(), e))?;
            git(&workdir, &["add", "--", config::FILE_NAME])?;
            git(
                &workdir,
                &[
                    "commit",
                    "--quiet",
                    "-m",
                    "Add gitops.yaml (git deploy init)",
                    "--",
                    config::FILE_NAME,
                ],
            )?;
            let head = git(&workdir, &["rev-parse", "--short", "HEAD"])?;
            let branch = git(&workdir, &["rev-parse", "--abbrev-ref", "HEAD"])?;
            output::info(format!(
                "wrote {} and committed it as {head} on {branch}",
                config::FILE_NAME
            ));
            // Our handle still sees the old HEAD; reopen to see the commit git just made.
            *repo = Repo::open(&workdir)?;
        }
        cfg
    };
    let head = repo.head_commit()?;
    let mut plan = Plan::new("git-deploy: init", None);
    for env in &cfg.environments {
        if repo.branch_head(&env.branch)?.is_none() {
            match head {
                Some(h) => plan.add(
                    format!("refs/heads/{}", env.branch),
                    None,
                    Some(h),
                    format!("environment {}", env.name),
                ),
                None if args.dry_run => output::info(format!(
                    "would create refs/heads/{} at the new commit",
                    env.branch
                )),
                None => return Err(Error::refused("HEAD has no commit to create branches at")),
            }
        }
    }
    if plan.updates.is_empty() {
        if !args.dry_run {
            output::info("all environment branches exist; nothing to create");
        }
        return Ok(());
    }
    super::show_plan(repo, &plan, args.dry_run);
    if args.dry_run {
        return Ok(());
    }
    plan.execute(repo)?;
    output::info(format!(
        "ready: environments {} (next: `git deploy tag {}`)",
        cfg.names().join(" -> "),
        cfg.environments[0].name
    ));
    Ok(())
}
