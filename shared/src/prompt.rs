//! The confirmation both tools ask before writing: never blocks without a terminal, so CI
//! must say --yes, and a refusal says how to proceed.

use std::io::IsTerminal;

use crate::error::{Error, Result};

/// Asks `question` unless `yes`; `what` names the action in refusals ("promote to prod").
pub fn confirm(question: &str, yes: bool, what: &str) -> Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return Err(Error::refused(format!(
            "refusing to {what} without confirmation: no terminal to ask on"
        ))
        .hint("pass --yes to confirm non-interactively, or --dry-run to only see the plan"));
    }
    let ok = dialoguer::Confirm::new()
        .with_prompt(question)
        .default(false)
        .interact()
        .map_err(|e| Error::refused(format!("confirmation failed: {e}")))?;
    if ok {
        Ok(())
    } else {
        Err(Error::refused(format!(
            "{what}: cancelled, nothing was written"
        )))
    }
}
