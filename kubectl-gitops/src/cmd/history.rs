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
    let any_hooks = records
        .iter()
        .any(|r| matches!(r, Row::Readable(m) if !m.hooks.is_empty()));
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
                        "rolled_back_to": m.rolled_back_to,
                        "hooks": m.hooks,
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
                    Row::Readable(m) => {
                        let mut row = vec![
                            Cell::plain(m.revision.to_string()),
                            Cell::plain(&m.tag),
                            Cell::plain(m.commit.chars().take(7).collect::<String>()),
                            Cell::plain(&m.time),
                            Cell::plain(&m.user),
                            Cell::plain(match m.rolled_back_to {
                                Some(n) => format!("{} (rolled back to {n})", m.outcome),
                                None => m.outcome.clone(),
                            }),
                            Cell::plain(m.objects.len().to_string()),
                            signed_by(m),
                        ];
                        if any_hooks {
                            row.push(Cell::plain(hooks_cell(m)));
                        }
                        row
                    }
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
                    ]
                    .into_iter()
                    .chain(any_hooks.then(|| Cell::plain("-")))
                    .collect(),
                    Row::Incomplete(i) => vec![
                        Cell::plain(i.revision.to_string()),
                        Cell::plain("-"),
                        Cell::plain("-"),
                        Cell::plain("-"),
                        Cell::plain("-"),
                        Cell::styled(i.describe(), output::BAD),
                        Cell::plain("-"),
                        Cell::plain("-"),
                    ]
                    .into_iter()
                    .chain(any_hooks.then(|| Cell::plain("-")))
                    .collect(),
                })
                .collect();
            let empty = rows.is_empty();
            let mut headers = vec![
                "REVISION",
                "TAG",
                "COMMIT",
                "TIME",
                "USER",
                "OUTCOME",
                "OBJECTS",
                "SIGNED BY",
            ];
            if any_hooks {
                headers.push("HOOKS");
            }
            output::print_table(&headers, rows);
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

/// `migrate PreSync succeeded 4.1s, notify-x7k2p SyncFail succeeded 1.0s`.
fn hooks_cell(m: &Meta) -> String {
    if m.hooks.is_empty() {
        return "-".into();
    }
    m.hooks
        .iter()
        .map(|h| {
            let name = h.object.rsplit('/').next().unwrap_or(&h.object);
            format!("{name} {} {} {}s", h.phase, h.outcome, h.seconds)
        })
        .collect::<Vec<_>>()
        .join(", ")
}
