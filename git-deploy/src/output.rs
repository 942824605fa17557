//! Terminal output: aligned tables for people, JSON for scripts, colour only where anstream
//! decides the stream is a terminal (NO_COLOR, CLICOLOR and CLICOLOR_FORCE are honoured).

use std::io::Write;

use anstyle::{AnsiColor, Style};

pub const HEADER: Style = Style::new().bold();
pub const GOOD: Style = AnsiColor::Green.on_default();
pub const WARN: Style = AnsiColor::Yellow.on_default();
pub const BAD: Style = AnsiColor::Red.on_default();
pub const DIM: Style = Style::new().dimmed();
pub const ADDED: Style = AnsiColor::Green.on_default();
pub const REMOVED: Style = AnsiColor::Red.on_default();
pub const HUNK: Style = AnsiColor::Cyan.on_default();

/// A table cell: text and its style (width is measured on the text alone).
pub struct Cell(pub String, pub Style);

impl Cell {
    pub fn plain(s: impl Into<String>) -> Self {
        Cell(s.into(), Style::new())
    }
    pub fn styled(s: impl Into<String>, style: Style) -> Self {
        Cell(s.into(), style)
    }
}

pub fn print_table(headers: &[&str], rows: Vec<Vec<Cell>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.0.chars().count());
        }
    }
    let mut out = anstream::stdout().lock();
    let last = headers.len() - 1;
    for (i, h) in headers.iter().enumerate() {
        let pad = if i == last {
            0
        } else {
            widths[i] - h.chars().count() + 2
        };
        let _ = write!(out, "{HEADER}{h}{HEADER:#}{}", " ".repeat(pad));
    }
    let _ = writeln!(out);
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let pad = if i == last {
                0
            } else {
                widths[i] - cell.0.chars().count() + 2
            };
            let style = cell.1;
            let _ = write!(out, "{style}{}{style:#}{}", cell.0, " ".repeat(pad));
        }
        let _ = writeln!(out);
    }
}

pub fn print_json(value: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer_pretty(&mut out, value);
    let _ = writeln!(out);
}

/// Informational lines go to stderr so stdout stays clean for scripts.
pub fn info(line: impl std::fmt::Display) {
    let _ = writeln!(anstream::stderr(), "{line}");
}

/// `warning: ...` on stderr, as git prints its warnings.
pub fn warn(line: impl std::fmt::Display) {
    let _ = writeln!(anstream::stderr(), "{WARN}warning:{WARN:#} {line}");
}

pub fn stdout_line(line: impl std::fmt::Display) {
    let _ = writeln!(anstream::stdout(), "{line}");
}

/// A git-style file stat: `path | 12 +++--` with a totals line.
pub fn render_stat(changes: &[shared::git::FileChange]) -> String {
    let mut s = String::new();
    if changes.is_empty() {
        return s;
    }
    let width = changes
        .iter()
        .map(|c| c.path.chars().count())
        .max()
        .unwrap_or(0);
    let (mut adds, mut dels) = (0, 0);
    for c in changes {
        adds += c.added;
        dels += c.removed;
        let graph = if c.binary {
            "Bin".to_string()
        } else {
            let total = c.added + c.removed;
            let scale = if total > 40 { 40.0 / total as f64 } else { 1.0 };
            let plus = ((c.added as f64) * scale).ceil() as usize;
            let minus = ((c.removed as f64) * scale).ceil() as usize;
            format!(
                "{} {ADDED}{}{ADDED:#}{REMOVED}{}{REMOVED:#}",
                total,
                "+".repeat(plus),
                "-".repeat(minus)
            )
        };
        let status = match c.status {
            shared::git::ChangeStatus::Added => " (new)",
            shared::git::ChangeStatus::Deleted => " (gone)",
            shared::git::ChangeStatus::Modified => "",
        };
        s.push_str(&format!(" {:width$} | {graph}{status}\n", c.path));
    }
    s.push_str(&format!(
        " {} file{} changed, {adds} insertion{}(+), {dels} deletion{}(-)\n",
        changes.len(),
        if changes.len() == 1 { "" } else { "s" },
        if adds == 1 { "" } else { "s" },
        if dels == 1 { "" } else { "s" },
    ));
    s
}

/// A coloured unified diff of one file.
pub fn render_patch(path: &str, old: &str, new: &str) -> String {
    let diff = similar::TextDiff::from_lines(old, new);
    let mut out = format!("{HEADER}--- a/{path}\n+++ b/{path}{HEADER:#}\n");
    for hunk in diff.unified_diff().context_radius(3).iter_hunks() {
        out.push_str(&format!("{HUNK}{}{HUNK:#}\n", hunk.header()));
        for change in hunk.iter_changes() {
            let (sign, style) = match change.tag() {
                similar::ChangeTag::Delete => ("-", REMOVED),
                similar::ChangeTag::Insert => ("+", ADDED),
                similar::ChangeTag::Equal => (" ", Style::new()),
            };
            let text = change.value();
            let nl = if text.ends_with('\n') {
                ""
            } else {
                "\n\\ No newline at end of file\n"
            };
            out.push_str(&format!(
                "{style}{sign}{}{style:#}{nl}",
                text.trim_end_matches('\n')
            ));
            if nl.is_empty() {
                out.push('\n');
            }
        }
    }
    out
}
