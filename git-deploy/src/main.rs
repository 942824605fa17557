//! `git-deploy`, run by git as `git deploy ...`. This file only parses arguments, opens the
//! repository and maps errors to the documented exit codes; the work is in `cmd/`.

mod cli;
mod cmd;
mod output;

use std::path::PathBuf;

use clap::{CommandFactory, Parser};
use cli::{Cli, Command};
use shared::git::Repo;

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let spaced = spaced_push_value(&args);
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        // `--push origin` leaves `origin` over as an argument nobody takes.
        Err(e) if e.kind() == clap::error::ErrorKind::UnknownArgument && spaced.is_some() => {
            std::process::exit(report(&push_takes_equals(
                spaced.as_deref().unwrap_or_default(),
            )))
        }
        Err(e) => e.exit(),
    };
    let code = match run(cli, spaced.as_deref()) {
        Ok(()) => 0,
        Err(err) => report(&err),
    };
    std::process::exit(code);
}

fn report(err: &shared::Error) -> i32 {
    output::print_error(err);
    err.exit_code()
}

/// The word after a bare `--push`, when it is not a flag: `--push[=remote]` follows git's
/// convention for optional values, so `--push origin` does not give the remote; `origin` is
/// read as the next positional argument (or rejected as unexpected).
fn spaced_push_value(args: &[std::ffi::OsString]) -> Option<String> {
    let at = args.iter().position(|a| a == "--push")?;
    let next = args.get(at + 1)?.to_str()?;
    (!next.starts_with('-')).then(|| next.to_string())
}

fn push_takes_equals(word: &str) -> shared::Error {
    shared::Error::invalid(format!(
        "`--push {word}`: --push takes the remote as --push={word}"
    ))
    .hint("without a value, --push pushes to origin")
}

fn run(cli: Cli, spaced_push: Option<&str>) -> shared::Result<()> {
    match cli.command {
        Command::Completions(args) => {
            let mut cmd = Cli::command();
            clap_complete::generate(args.shell, &mut cmd, "git-deploy", &mut std::io::stdout());
            return Ok(());
        }
        Command::Man(args) => return man(args.output_dir),
        _ => {}
    }
    let dir = match &cli.dir {
        Some(d) => d.clone(),
        None => std::env::current_dir()?,
    };
    if !dir.is_dir() {
        return Err(shared::Error::invalid(format!(
            "-C {}: no such directory",
            dir.display()
        )));
    }
    let mut repo = Repo::discover(&dir)?;
    // `tag dev --push origin` parses (origin as the revision) but means a remote: refuse
    // when the word after `--push` names one.
    if let Some(word) = spaced_push
        && repo.inner.remote_names().iter().any(|r| *r == word)
    {
        return Err(push_takes_equals(word));
    }
    // Objects are built in memory and only written when a plan executes, so refusals,
    // dry-runs and declined prompts leave the object database untouched.
    repo.inner.objects.enable_object_memory();
    match cli.command {
        Command::Init(a) => cmd::init::run(&mut repo, a),
        Command::Status(a) => cmd::status::run(&repo, a),
        Command::Tag(a) => cmd::tag::run(&mut repo, a),
        Command::Promote(a) => cmd::promote::run(&mut repo, a),
        Command::Rollback(a) => cmd::rollback::run(&mut repo, a),
        Command::Log(a) => cmd::log::run(&repo, a),
        Command::Diff(a) => cmd::diff::run(&repo, a),
        Command::Show(a) => cmd::show::run(&repo, a),
        Command::Lock(a) => cmd::lock::lock(&mut repo, a),
        Command::Unlock(a) => cmd::lock::unlock(&mut repo, a),
        Command::Completions(_) | Command::Man(_) => unreachable!("handled above"),
    }
}

/// `git deploy --help` makes git open `man git-deploy`, so we ship man pages generated from
/// the same definitions as `-h`.
fn man(dir: Option<PathBuf>) -> shared::Result<()> {
    let cmd = Cli::command();
    let Some(dir) = dir else {
        clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?;
        return Ok(());
    };
    std::fs::create_dir_all(&dir)?;
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut buf)?;
    std::fs::write(dir.join("git-deploy.1"), &buf)?;
    for sub in cmd.get_subcommands() {
        let name = format!("git-deploy-{}", sub.get_name());
        let page = sub
            .clone()
            .name(name.clone())
            .bin_name(format!("git deploy {}", sub.get_name()));
        let mut buf = Vec::new();
        clap_mangen::Man::new(page).render(&mut buf)?;
        std::fs::write(dir.join(format!("{name}.1")), &buf)?;
    }
    output::info(format!("wrote man pages to {}", dir.display()));
    Ok(())
}
