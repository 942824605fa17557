//! Terminal output: the presentation both tools share (`shared::output`: errors, tables,
//! JSON, styles), and the file stat only git deploy shows.

pub use shared::output::*;

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
