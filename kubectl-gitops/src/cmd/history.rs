//! `kubectl gitops history`: the revisions recorded in a namespace, newest first.

use serde_json::json;
use shared::Result;
use shared::output::{self, Cell};

use crate::cli::{Format, HistoryArgs, KubeArgs};
use crate::record::{Corrupt, Incomplete, Meta};
use crate::trust::SignatureRecord;

/// Every record that exists, readable or not: a forged record or one whose write never
/// finished is seen, never silently skipped.
enum Row<'a> {
    Readable(&'a Meta),
    Corrupt(&'a Corrupt),
    Incomplete(&'a Incomplete),
}

impl Row<'_> {
    fn revision(&self) -> u64 {
        match self {
            Row::Readable(m) => m.revision,
            Row::Corrupt(c) => c.revision.unwrap_or(0),
            Row::Incomplete(i) => i.revision,
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
        .chain(records.incomplete.iter().map(Row::Incomplete))
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
                        "signature": m.signature,
                    }),
                    Row::Corrupt(c) => json!({
                        "revision": c.revision,
                        "secret": c.name,
                        "corrupt": c.reason,
                    }),
                    Row::Incomplete(i) => json!({
                        "revision": i.revision,
                        "secrets": i.parts.iter().map(|(n, _)| n).collect::<Vec<_>>(),
                        "incomplete": i.describe(),
                    }),
                })
                .collect();
            output::print_json(&json!({"namespace": namespace, "revisions": list}));
        }
        Format::Text => {
            let rows: Vec<Vec<Cell>> = records
                .iter()
                .map(|r| match r {
                    Row::Readable(m) => vec![
                        Cell::plain(m.revision.to_string()),
                        Cell::plain(&m.tag),
                        Cell::plain(m.commit.chars().take(7).collect::<String>()),
                        Cell::plain(&m.time),
                        Cell::plain(&m.user),
                        Cell::plain(&m.outcome),
                        Cell::plain(m.objects.len().to_string()),
                        signed_by(m),
                    ],
                    Row::Corrupt(c) => vec![
                        Cell::plain(c.revision.map(|n| n.to_string()).unwrap_or("?".into())),
                        Cell::plain("-"),
                        Cell::plain("-"),
                        Cell::plain("-"),
                        Cell::plain("-"),
                        Cell::styled(
                            format!("corrupt (Secret {}): {}", c.name, c.reason),
                            output::BAD,
                        ),
                        Cell::plain("-"),
                        Cell::plain("-"),
                    ],
                    Row::Incomplete(i) => vec![
                        Cell::plain(i.revision.to_string()),
                        Cell::plain("-"),
                        Cell::plain("-"),
                        Cell::plain("-"),
                        Cell::plain("-"),
                        Cell::styled(i.describe(), output::BAD),
                        Cell::plain("-"),
                        Cell::plain("-"),
                    ],
                })
                .collect();
            let empty = rows.is_empty();
            output::print_table(
                &[
                    "REVISION",
                    "TAG",
                    "COMMIT",
                    "TIME",
                    "USER",
                    "OUTCOME",
                    "OBJECTS",
                    "SIGNED BY",
                ],
                rows,
            );
            if empty {
                output::stdout_line(format!("no revisions recorded in namespace {namespace}"));
            }
        }
    }
    Ok(0)
}

/// Who signed the revision's tag (or commit), `skipped` (--insecure-skip-signature), `no
/// policy`, or `-` for a record written before signed deploys.
fn signed_by(m: &Meta) -> Cell {
    match &m.signature {
        None => Cell::plain("-"),
        Some(s @ SignatureRecord::Skipped) => Cell::styled(s.short(), output::WARN),
        Some(s) => Cell::plain(s.short()),
    }
}
