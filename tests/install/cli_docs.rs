//! docs/cli/*.md: the command-line reference of both tools, made of the `--help` of every
//! (sub)command of the built binaries, so it cannot drift from the clap definitions.
//! `UPDATE_DOCS=1` rewrites the files; otherwise a difference fails the test.

#[path = "common.rs"]
mod common;

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;

const UPDATE: &str = "UPDATE_DOCS=1 cargo test -p kubectl-gitops --test cli_docs";

fn help(bin: &Path, words: &[String]) -> String {
    let mut cmd = Command::new(bin);
    // Help must not depend on the caller's terminal or environment: clap wraps to COLUMNS and
    // shows the current value of `env`-backed flags.
    cmd.env_clear()
        .env("COLUMNS", "100")
        .env("NO_COLOR", "1")
        .args(words)
        .arg("--help");
    let out = common::run_ok(&mut cmd);
    String::from_utf8(out.stdout).expect("utf-8 help")
}

/// `title` is how users type the command (`git deploy`, `kubectl gitops`).
fn reference(bin: &Path, title: &str, file_stem: &str) -> String {
    let mut md = String::new();
    writeln!(md, "# `{title}` command-line reference\n").unwrap();
    writeln!(
        md,
        "<!-- Generated from `{file_stem} --help` and the --help of every subcommand by \
         tests/install/cli_docs.rs; do not edit by hand: run `{UPDATE}`. -->\n"
    )
    .unwrap();
    let mut queue: Vec<Vec<String>> = vec![Vec::new()];
    let mut sections = Vec::new();
    while let Some(words) = queue.pop() {
        let text = help(bin, &words);
        let mut subs: Vec<Vec<String>> = common::subcommands(&text)
            .into_iter()
            .map(|s| {
                let mut w = words.clone();
                w.push(s);
                w
            })
            .collect();
        subs.reverse();
        queue.extend(subs);
        sections.push((words, text));
    }
    let commands: Vec<String> = sections
        .iter()
        .map(|(w, _)| {
            [title.to_string()]
                .into_iter()
                .chain(w.iter().cloned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    for name in &commands {
        let anchor: String = name.replace(' ', "-");
        writeln!(md, "- [`{name}`](#{anchor})").unwrap();
    }
    for (name, (_, text)) in commands.iter().zip(&sections) {
        writeln!(md, "\n## {name}\n\n```text\n{}\n```", text.trim_end()).unwrap();
    }
    md
}

#[test]
fn docs_cli_is_up_to_date() {
    let dir = common::root().join("docs/cli");
    let update = std::env::var_os("UPDATE_DOCS").is_some_and(|v| v != "0" && !v.is_empty());
    let mut stale = Vec::new();
    for (bin, title, stem) in [
        (common::git_deploy(), "git deploy", "git-deploy"),
        (common::kubectl_gitops(), "kubectl gitops", "kubectl-gitops"),
    ] {
        let want = reference(&bin, title, stem);
        let path = dir.join(format!("{stem}.md"));
        let have = fs::read_to_string(&path).unwrap_or_default();
        if have == want {
            continue;
        }
        if update {
            fs::create_dir_all(&dir).unwrap();
            fs::write(&path, &want).unwrap();
            eprintln!("rewrote {}", path.display());
            continue;
        }
        let first = have
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| have.lines().count().min(want.lines().count()));
        stale.push(format!(
            "{} differs from the --help output, first at line {}:\n  committed: {:?}\n  generated: {:?}",
            path.display(),
            first + 1,
            have.lines().nth(first).unwrap_or("<end of file>"),
            want.lines().nth(first).unwrap_or("<end of file>"),
        ));
    }
    assert!(
        stale.is_empty(),
        "docs/cli is stale: run `{UPDATE}`\n{}",
        stale.join("\n")
    );
}
