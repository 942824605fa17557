//! `git deploy show <tag>`: what a deploy tag records, and the verifications noted on it.

use shared::Result;
use shared::git::Repo;
use shared::git::notes::{DEPLOY_NOTES_REF, newer_on_remotes};
use shared::verification::format_time;

use crate::cli::{Output, ShowArgs};
use crate::output;

pub fn run(repo: &Repo, args: ShowArgs) -> Result<()> {
    let info = repo.tag_info(&args.tag)?;
    let mut value = super::log::tag_json(repo, &info);
    let verifications = match info.tag_object {
        Some(object) => repo.verifications(object)?,
        None => Vec::new(),
    };
    value["verifications"] = serde_json::to_value(&verifications).unwrap_or_default();
    for line in newer_on_remotes(repo, DEPLOY_NOTES_REF) {
        output::warn(line);
    }
    match args.output {
        Output::Json => output::print_json(&value),
        Output::Text => {
            let field = |k: &str| value.get(k).and_then(|v| v.as_str()).map(str::to_string);
            let mut lines = vec![format!(
                "{}tag {}{}",
                output::HEADER.render(),
                info.name,
                output::HEADER.render_reset()
            )];
            let rows = [
                ("Environment", field("env")),
                ("Action", field("action")),
                ("Commit", field("commit")),
                ("Branch", field("branch")),
                ("Source env", field("source_env")),
                ("Source tag", field("source_tag")),
                ("Source commit", field("source_commit")),
                ("Previous tag", field("previous_tag")),
                ("Previous commit", field("previous_commit")),
                ("Gate override", field("gate_override")),
                (
                    "Tagger",
                    info.tagger
                        .as_ref()
                        .map(|t| format!("{} <{}>", t.name, t.email)),
                ),
                ("Date", field("date")),
                ("Tool", field("tool")),
                (
                    "Signed",
                    Some(if info.signed { "yes" } else { "no" }.to_string()),
                ),
            ];
            for (k, v) in rows {
                if let Some(v) = v {
                    lines.push(format!("{k:<16} {v}"));
                }
            }
            if verifications.is_empty() {
                lines.push(format!("{:<16} none", "Verified"));
            }
            for (i, v) in verifications.iter().enumerate() {
                lines.push(format!(
                    "{:<16} {} {} (namespace {}) on {}, revision {}, by {}",
                    if i == 0 { "Verified" } else { "" },
                    format_time(v.at),
                    v.env,
                    v.namespace,
                    v.cluster,
                    v.revision,
                    v.by
                ));
            }
            if info.record.is_none() {
                lines.push("(this tag carries no git-deploy record)".into());
            }
            if let Some(rec) = &info.record {
                lines.push(String::new());
                lines.push(format!("    {}", rec.subject));
                if let Some(body) = &rec.body {
                    lines.push(String::new());
                    for l in body.lines() {
                        lines.push(format!("    {l}"));
                    }
                }
            }
            for l in lines {
                output::stdout_line(l);
            }
        }
    }
    Ok(())
}
