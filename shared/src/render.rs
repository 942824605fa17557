//! Unified diffs of rendered objects, in the shape `diff -u` users already read.

use std::fmt::Write as _;
use std::time::Duration;

use similar::{ChangeTag, TextDiff};

const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";
const CYAN: &str = "\x1b[36m";
const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";

/// A unified diff from `before` (the live object) to `after` (git) with three lines of
/// context, labelled `--- <header> (live)` / `+++ <header> (git)`; empty when both are equal.
/// `color` adds ANSI colour; callers decide it from the terminal and `NO_COLOR`.
pub fn unified_diff(header: &str, before: &str, after: &str, color: bool) -> String {
    if before == after {
        return String::new();
    }
    // Objects are small, but a huge ConfigMap must not stall a whole diff run: past the
    // deadline similar settles for a coarser (still correct) diff.
    let diff = TextDiff::configure()
        .timeout(Duration::from_secs(2))
        .diff_lines(before, after);
    let paint = |out: &mut String, style: &str, text: &str| {
        if color && !style.is_empty() {
            let _ = writeln!(out, "{style}{text}{RESET}");
        } else {
            let _ = writeln!(out, "{text}");
        }
    };
    let mut out = String::new();
    paint(&mut out, BOLD, &format!("--- {header} (live)"));
    paint(&mut out, BOLD, &format!("+++ {header} (git)"));
    for hunk in diff.unified_diff().context_radius(3).iter_hunks() {
        paint(&mut out, CYAN, &hunk.header().to_string());
        for change in hunk.iter_changes() {
            let (sign, style) = match change.tag() {
                ChangeTag::Delete => ('-', RED),
                ChangeTag::Insert => ('+', GREEN),
                ChangeTag::Equal => (' ', ""),
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

    #[test]
    fn equal_inputs_give_no_diff() {
        assert_eq!(unified_diff("x", "a\n", "a\n", true), "");
    }

    #[test]
    fn plain_diff_has_labels_hunks_and_context() {
        let before = "a\nb\nc\nd\ne\nf\ng\nh\n";
        let after = "a\nb\nc\nd\nE\nf\ng\nh\n";
        let diff = unified_diff("apps/v1 Deployment prod/web", before, after, false);
        assert_eq!(
            diff,
            "--- apps/v1 Deployment prod/web (live)\n+++ apps/v1 Deployment prod/web (git)\n@@ -2,7 +2,7 @@\n b\n c\n d\n-e\n+E\n f\n g\n h\n"
        );
        assert!(!diff.contains('\x1b'));
    }

    #[test]
    fn creation_and_missing_newline() {
        let diff = unified_diff("ConfigMap/ns/c", "", "a: 1\nb: 2", false);
        assert_eq!(
            diff,
            "--- ConfigMap/ns/c (live)\n+++ ConfigMap/ns/c (git)\n@@ -0,0 +1,2 @@\n+a: 1\n+b: 2\n\\ No newline at end of file\n"
        );
    }

    #[test]
    fn colour_only_when_asked() {
        let diff = unified_diff("h", "x\ny\n", "x\nz\n", true);
        assert!(diff.contains(&format!("{RED}-y{RESET}\n")), "{diff:?}");
        assert!(diff.contains(&format!("{GREEN}+z{RESET}\n")), "{diff:?}");
        assert!(diff.contains(&format!("{BOLD}--- h (live){RESET}\n")));
        assert!(diff.contains(&format!("{CYAN}@@ -1,2 +1,2 @@{RESET}\n")));
        assert!(diff.contains("\n x\n"), "{diff:?}");
    }
}
