//! `kubectl-gitops`, run by kubectl as `kubectl gitops ...`. Parses arguments and maps
//! outcomes to the documented exit codes; each verb is in `cmd/`, the machinery beside it.

mod applyset;
mod child;
mod cli;
mod cluster;
mod cmd;
mod execute;
mod health;
mod hooks;
mod inspect;
mod interrupt;
mod kubeconf;
mod lock;
mod log;
mod manifest;
mod metrics;
mod normalize;
mod notify;
mod outcome;
mod phases;
mod plan;
mod record;
mod report;
mod rollback;
mod source;
mod trust;
mod unchanged;
mod watched;
mod waves;

#[cfg(test)]
mod properties;

use clap::Parser;
use cli::{Cli, Command};
use shared::{Error, ErrorKind, Result};

fn main() {
    notify::started();
    let mut cli = Cli::parse();
    log::set_level(cli.kube.verbosity);
    if let Err(err) = cli.kube.settle(matches!(cli.command, Command::Metrics(_))) {
        shared::output::print_error(&err);
        std::process::exit(err.exit_code());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            shared::output::print_error(&err);
            err.exit_code()
        }
    };
    std::process::exit(code);
}

/// Every verb's outcome as an exit code: `Ok` carries the verb's own (diff: 1 = differences),
/// errors map through their kind, except where a verb documents otherwise.
async fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        // Exit 1 means "differences" to scripts, so every diff error must be 2 or more: also
        // one after planning (an external diff tool that cannot be started).
        Command::Diff(args) => cmd::diff::run(&cli.kube, args)
            .await
            .map_err(|e| match e.kind {
                ErrorKind::Refused => Error {
                    kind: ErrorKind::Invalid,
                    ..e
                },
                _ => e,
            }),
        Command::Sync(args) => cmd::sync::run(&cli.kube, args).await,
        Command::Revert(args) => cmd::revert::run(&cli.kube, args).await,
        // The read-only verbs agree with diff: every error is 2 (for status, 1 is "drifted or
        // unhealthy" with --exit-code), a forbidden namespace as much as a missing one.
        Command::History(args) => cmd::history::run(&cli.kube, args).await.map_err(|e| Error {
            kind: ErrorKind::Invalid,
            ..e
        }),
        Command::Trust(command) => cmd::trust::run(&cli.kube, command).await,
        Command::Status(args) => cmd::status::run(&cli.kube, args).await.map_err(|e| Error {
            kind: ErrorKind::Invalid,
            ..e
        }),
        Command::Metrics(args) => cmd::metrics::run(&cli.kube, args).await,
        // verify: 1 not verified or a push refused, 2 invalid input, 3 a lost race.
        Command::Verify(args) => cmd::verify::run(&cli.kube, args).await,
    }
}
