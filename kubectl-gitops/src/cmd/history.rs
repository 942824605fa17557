//! `kubectl gitops history`: the revisions recorded in a namespace, newest first.

use std::io::Write;

use serde_json::json;
use shared::Result;

use crate::cli::{Format, HistoryArgs, KubeArgs};
use crate::record::{Corrupt, Meta};

enum Row<'a> {
    Readable(&'a Meta),
    Corrupt(&'a Corrupt),
}

impl Row<'_> {
    fn revision(&self) -> u64 {
        match self {
            Row::Readable(m) => m.revision,
            Row::Corrupt(c) => c.revision.unwrap_or(0),
        }
    }
}

pub async fn run(kube: &KubeArgs, args: HistoryArgs) -> Result<i32> {
    let crate::record::Recorded {
        namespace, records, ..
    } = crate::record::open(kube).await?;
    // Newest first; a corrupt record sits where the number its name carries puts it (one
    // whose name carries none, last), so a forged record is seen, never silently skipped.
    let mut rows: Vec<Row> = records
        .trusted
        .iter()
        .map(Row::Readable)
        .chain(records.corrupt.iter().map(Row::Corrupt))
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.revision()));
    let records = rows;
    match args.output {
        Format::Json => {
            let list: Vec<_> = records
                .iter()
                .map(|r| match r {
                    Row::Readable(m) => json!({
                        "revision": m.revision,
                        "tag": m.tag,
                        "commit": m.commit,
                        "time": m.time,
                        "user": m.user,
                        "outcome": m.outcome,
                        "objects": m.objects.len(),
                        "reverted_to": m.reverted_to,
                    }),
                    Row::Corrupt(c) => json!({
                        "revision": c.revision,
                        "secret": c.name,
                        "corrupt": c.reason,
                    }),
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({"namespace": namespace, "revisions": list}))
                    .expect("json")
            );
        }
        Format::Table => {
            let mut out = anstream::stdout().lock();
            let rows: Vec<[String; 7]> = records
                .iter()
                .map(|r| match r {
                    Row::Readable(m) => [
                        m.revision.to_string(),
                        m.tag.clone(),
                        m.commit.chars().take(7).collect(),
                        m.time.clone(),
                        m.user.clone(),
                        m.outcome.clone(),
                        m.objects.len().to_string(),
                    ],
                    Row::Corrupt(c) => [
                        c.revision.map(|n| n.to_string()).unwrap_or("?".into()),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        format!("corrupt (Secret {}): {}", c.name, c.reason),
                        "-".into(),
                    ],
                })
                .collect();
            let headers = [
                "REVISION", "TAG", "COMMIT", "TIME", "USER", "OUTCOME", "OBJECTS",
            ];
            let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
            for r in &rows {
                for (i, c) in r.iter().enumerate() {
                    widths[i] = widths[i].max(c.chars().count());
                }
            }
            let line = |cells: Vec<&str>| {
                cells
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        if i + 1 == cells.len() {
                            c.to_string()
                        } else {
                            format!("{c:<w$}", w = widths[i])
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("  ")
            };
            let _ = writeln!(out, "{}", line(headers.to_vec()));
            for r in &rows {
                let _ = writeln!(out, "{}", line(r.iter().map(String::as_str).collect()));
            }
            if rows.is_empty() {
                let _ = writeln!(out, "no revisions recorded in namespace {namespace}");
            }
        }
    }
    Ok(0)
}
