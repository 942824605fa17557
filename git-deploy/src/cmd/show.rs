//! `git deploy show <tag>`: what a deploy tag records, its signature as `git tag -v` judges
//! it, and the verifications noted on it.

use serde_json::json;
use shared::Result;
use shared::git::Repo;
use shared::git::notes::{DEPLOY_NOTES_REF, newer_on_remotes};
use shared::signature::{self, Check, Verdict, git_config};
use shared::verification::format_time;

use crate::cli::{Output, ShowArgs};
use crate::output;

pub fn run(repo: &Repo, args: ShowArgs) -> Result<()> {
    // One read of the ref: the record and the signature are of the same object.
    let (short, target) = repo.tag_target(&args.tag)?;
    let info = repo.tag_info_at(&short, target)?;
    let signature = signature_status(repo, &short, target);
    let mut value = super::log::tag_json(repo, &info);
    value["signature"] = signature_json(&signature);
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
                ("Signature", Some(signature_line(&signature))),
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

/// The tag's signature as git's own configuration judges it (`gpg.ssh.allowedSignersFile`,
/// the GPG keyring), or why it cannot be judged (an SSH signature with no allowed signers
/// file: git refuses to check it too).
fn signature_status(repo: &Repo, short: &str, target: gix::ObjectId) -> Result<Check> {
    let tag = signature::read_tag_at(&repo.inner, short, target)?;
    git_config::verify_tag(&repo.inner, &tag)
}

fn signature_line(status: &Result<Check>) -> String {
    match status {
        Ok(check) => match &check.verdict {
            Verdict::Good { signer } => {
                format!("good: {} signature by {signer}", signer.key.format.label())
            }
            other => format!("{}: {other}", other.code()),
        },
        Err(e) => match &e.hint {
            Some(hint) => format!("cannot check: {} ({hint})", e.message),
            None => format!("cannot check: {}", e.message),
        },
    }
}

/// `{"verdict": "good", "signer": {...}, "message": "..."}`; `"verdict": "cannot-check"` with
/// the reason when the signature cannot be judged.
fn signature_json(status: &Result<Check>) -> serde_json::Value {
    match status {
        Ok(check) => {
            let mut v = serde_json::to_value(&check.verdict).expect("verdicts serialise");
            v["message"] = json!(check.verdict.to_string());
            v
        }
        Err(e) => json!({"verdict": "cannot-check", "message": e.message, "hint": e.hint}),
    }
}
