use serde_json::json;
use shared::Result;
use shared::git::{Repo, TagInfo};

use crate::cli::{LogArgs, Output};
use crate::output::{self, Cell};

pub fn tag_json(repo: &Repo, info: &TagInfo) -> serde_json::Value {
    let rec = info.record.as_ref();
    json!({
        "name": info.name,
        "env": rec.map(|r| r.env.clone()),
        "action": rec.and_then(|r| r.action).map(|a| a.as_str()),
        "commit": info.commit.to_string(),
        "short_commit": repo.short(info.commit),
        "source_env": rec.and_then(|r| r.source_env.clone()),
        "source_tag": rec.and_then(|r| r.source_tag.clone()),
        "source_commit": rec.and_then(|r| r.source_commit.clone()),
        "previous_tag": rec.and_then(|r| r.previous_tag.clone()),
        "previous_commit": rec.and_then(|r| r.previous_commit.clone()),
        "gate_override": rec.and_then(|r| r.gate_override.clone()),
        "branch": rec.map(|r| r.branch.clone()),
        "tool": rec.map(|r| r.tool.clone()),
        "tagger": info.tagger.as_ref().map(|t| t.name.clone()),
        "email": info.tagger.as_ref().map(|t| t.email.clone()),
        "date": info.tagger.as_ref().map(|t| t.rfc3339()),
        "subject": rec.map(|r| r.subject.clone()),
        "body": rec.and_then(|r| r.body.clone()),
        "signed": info.signed,
    })
}

pub fn run(repo: &Repo, args: LogArgs) -> Result<()> {
    super::check_env_name(&args.env)?;
    let deploys = repo.deploys(&args.env)?;
    let limit = args.max_count.unwrap_or(usize::MAX);
    let mut infos = Vec::new();
    for t in deploys.iter().take(limit) {
        let t = t?;
        infos.push(repo.tag_info_at(&t.name, t.target)?);
    }
    match args.output {
        Output::Json => {
            let list: Vec<_> = infos.iter().map(|i| tag_json(repo, i)).collect();
            output::print_json(&json!({ "tags": list }));
        }
        Output::Text => {
            let rows = infos
                .iter()
                .map(|i| {
                    let rec = i.record.as_ref();
                    let action = rec
                        .and_then(|r| r.action)
                        .map(|a| a.as_str())
                        .unwrap_or("?");
                    let source = match rec {
                        Some(r) => match (&r.source_env, &r.source_tag) {
                            (Some(e), Some(t)) if *e == r.env => t.clone(),
                            (Some(e), Some(t)) => format!("{e} {t}"),
                            _ => String::new(),
                        },
                        None => "(not a git-deploy tag)".into(),
                    };
                    let style = match action {
                        "rollback" => output::WARN,
                        _ => anstyle::Style::new(),
                    };
                    vec![
                        Cell::plain(&i.name),
                        Cell::styled(action, style),
                        Cell::plain(repo.short(i.commit)),
                        Cell::plain(source),
                        Cell::plain(
                            i.tagger
                                .as_ref()
                                .map(|t| t.name.clone())
                                .unwrap_or_default(),
                        ),
                        Cell::plain(i.tagger.as_ref().map(|t| t.rfc3339()).unwrap_or_default()),
                    ]
                })
                .collect();
            output::print_table(
                &["TAG", "ACTION", "COMMIT", "SOURCE", "TAGGER", "DATE"],
                rows,
            );
        }
    }
    Ok(())
}
