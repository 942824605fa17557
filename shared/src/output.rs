//! Terminal output both tools share: the error printer, aligned tables, JSON for scripts, and
//! the styles they use. Colour is written as ANSI styles and left to anstream, which strips it
//! where the stream is not a terminal (NO_COLOR, CLICOLOR and CLICOLOR_FORCE are honoured).

use std::io::Write;

use anstyle::{AnsiColor, Style};

use crate::error::Error;

pub const HEADER: Style = Style::new().bold();
pub const GOOD: Style = AnsiColor::Green.on_default();
pub const WARN: Style = AnsiColor::Yellow.on_default();
pub const BAD: Style = AnsiColor::Red.on_default();
pub const DIM: Style = Style::new().dimmed();
pub const ADDED: Style = AnsiColor::Green.on_default();
pub const REMOVED: Style = AnsiColor::Red.on_default();
pub const HUNK: Style = AnsiColor::Cyan.on_default();

/// The values of `-o/--output`, the same for every command of both tools: `text` for people
/// (a table, a report, or diffs and a summary), `json` for scripts. `table` and `diff`, the
/// names some commands used before, still work.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    #[value(alias = "table", alias = "diff")]
    Text,
    Json,
}

/// `error: <message>` and, when there is one, `hint: <what to do>`, on stderr: how both tools
/// end a failed run.
pub fn print_error(err: &Error) {
    let mut stderr = anstream::stderr().lock();
    let _ = writeln!(stderr, "{BAD}error:{BAD:#} {}", err.message);
    if let Some(hint) = &err.hint {
        let _ = writeln!(stderr, "{DIM}hint:{DIM:#} {hint}");
    }
}

/// `warning: <message>` on stderr, styled alike in both tools.
pub fn warn(message: impl std::fmt::Display) {
    let _ = writeln!(anstream::stderr(), "{WARN}warning:{WARN:#} {message}");
}

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

/// Columns padded to their widest cell and two spaces apart, the last one unpadded; the header
/// row in bold.
pub fn render_table(headers: &[&str], rows: &[Vec<Cell>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.0.chars().count());
        }
    }
    let last = headers.len() - 1;
    let pad = |i: usize, text: &str| {
        if i == last {
            String::new()
        } else {
            " ".repeat(widths[i] - text.chars().count() + 2)
        }
    };
    let mut out = String::new();
    for (i, h) in headers.iter().enumerate() {
        out.push_str(&format!("{HEADER}{h}{HEADER:#}{}", pad(i, h)));
    }
    out.push('\n');
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let style = cell.1;
            out.push_str(&format!("{style}{}{style:#}{}", cell.0, pad(i, &cell.0)));
        }
        out.push('\n');
    }
    out
}

pub fn print_table(headers: &[&str], rows: Vec<Vec<Cell>>) {
    let _ = anstream::stdout()
        .lock()
        .write_all(render_table(headers, &rows).as_bytes());
}

/// Pretty JSON on stdout. A reader that went away (`| head`) ends the output quietly.
pub fn print_json(value: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer_pretty(&mut out, value);
    let _ = writeln!(out);
}

/// Informational lines go to stderr so stdout stays clean for scripts.
pub fn info(line: impl std::fmt::Display) {
    let _ = writeln!(anstream::stderr(), "{line}");
}

pub fn stdout_line(line: impl std::fmt::Display) {
    let _ = writeln!(anstream::stdout(), "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_leave_the_last_unpadded() {
        let rows = vec![
            vec![
                Cell::plain("1"),
                Cell::plain("deploy/dev/x"),
                Cell::plain("ok"),
            ],
            vec![
                Cell::plain("12"),
                Cell::styled("t", BAD),
                Cell::plain("failed: x"),
            ],
        ];
        let text = render_table(&["REV", "TAG", "OUTCOME"], &rows);
        let plain =
            String::from_utf8(anstream::adapter::strip_bytes(text.as_bytes()).into_vec()).unwrap();
        assert_eq!(
            plain,
            "REV  TAG           OUTCOME\n1    deploy/dev/x  ok\n12   t             failed: x\n"
        );
        assert!(text.contains(&format!("{BAD}t{BAD:#}")));
    }
}
