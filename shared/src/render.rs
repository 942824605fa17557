//! The one diff renderer of both tools: unified diffs in the shape `diff -u` users already
//! read, of rendered objects (kubectl gitops) and of files between branches (git deploy).

use std::fmt::Write as _;
use std::time::Duration;

use anstyle::Style;
use similar::{ChangeTag, TextDiff};

use crate::output::{ADDED, HEADER, HUNK, REMOVED};

/// A unified diff from `before` to `after` with three lines of context, headed
/// `--- <from>` / `+++ <to>`; empty when both are equal. `color` adds ANSI styles (callers
/// decide it from the stream, or leave it to anstream to strip).
pub fn unified_diff(from: &str, to: &str, before: &str, after: &str, color: bool) -> String {
    if before == after {
        return String::new();
    }
    // Objects and files are small, but a huge one must not stall a whole run: past the
    // deadline similar settles for a coarser (still correct) diff.
    let diff = TextDiff::configure()
        .timeout(Duration::from_secs(2))
        .diff_lines(before, after);
    let paint = |out: &mut String, style: Style, text: &str| {
        if color && style != Style::new() {
            let _ = writeln!(out, "{style}{text}{style:#}");
        } else {
            let _ = writeln!(out, "{text}");
        }
    };
    let mut out = String::new();
    paint(&mut out, HEADER, &format!("--- {from}"));
    paint(&mut out, HEADER, &format!("+++ {to}"));
    for hunk in diff.unified_diff().context_radius(3).iter_hunks() {
        paint(&mut out, HUNK, &hunk.header().to_string());
        for change in hunk.iter_changes() {
            let (sign, style) = match change.tag() {
                ChangeTag::Delete => ('-', REMOVED),
                ChangeTag::Insert => ('+', ADDED),
                ChangeTag::Equal => (' ', Style::new()),
            };
            let value = change.value();
            let line = format!("{sign}{}", value.strip_suffix('\n').unwrap_or(value));
            paint(&mut out, style, &line);
            if change.missing_newline() {
                out.push_str("\\ No newline at end of file\n");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESET: &str = "\x1b[0m";
    const BOLD: &str = "\x1b[1m";
    const CYAN: &str = "\x1b[36m";
    const RED: &str = "\x1b[31m";
    const GREEN: &str = "\x1b[32m";

    #[test]
    fn equal_inputs_give_no_diff() {
        assert_eq!(unified_diff("x", "y", "a\n", "a\n", true), "");
    }

    #[test]
    fn plain_diff_has_labels_hunks_and_context() {
        let before = "a\nb\nc\nd\ne\nf\ng\nh\n";
        let after = "a\nb\nc\nd\nE\nf\ng\nh\n";
        let diff = unified_diff(
            "apps/v1 Deployment prod/web (live)",
            "apps/v1 Deployment prod/web (git)",
            before,
            after,
            false,
        );
        assert_eq!(
            diff,
            "--- apps/v1 Deployment prod/web (live)\n+++ apps/v1 Deployment prod/web (git)\n@@ -2,7 +2,7 @@\n b\n c\n d\n-e\n+E\n f\n g\n h\n"
        );
        assert!(!diff.contains('\x1b'));
    }

    #[test]
    fn creation_and_missing_newline() {
        let diff = unified_diff(
            "ConfigMap/ns/c (live)",
            "ConfigMap/ns/c (git)",
            "",
            "a: 1\nb: 2",
            false,
        );
        assert_eq!(
            diff,
            "--- ConfigMap/ns/c (live)\n+++ ConfigMap/ns/c (git)\n@@ -0,0 +1,2 @@\n+a: 1\n+b: 2\n\\ No newline at end of file\n"
        );
    }

    #[test]
    fn colour_only_when_asked() {
        let diff = unified_diff("h (live)", "h (git)", "x\ny\n", "x\nz\n", true);
        assert!(diff.contains(&format!("{RED}-y{RESET}\n")), "{diff:?}");
        assert!(diff.contains(&format!("{GREEN}+z{RESET}\n")), "{diff:?}");
        assert!(diff.contains(&format!("{BOLD}--- h (live){RESET}\n")));
        assert!(diff.contains(&format!("{CYAN}@@ -1,2 +1,2 @@{RESET}\n")));
        assert!(diff.contains("\n x\n"), "{diff:?}");
    }

    #[test]
    fn files_between_branches() {
        let diff = unified_diff("a/app/cm.yaml", "b/app/cm.yaml", "k: 1\n", "k: 2\n", false);
        assert_eq!(
            diff,
            "--- a/app/cm.yaml\n+++ b/app/cm.yaml\n@@ -1 +1 @@\n-k: 1\n+k: 2\n"
        );
    }
}
