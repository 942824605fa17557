//! Showing a plan: one unified diff per changed object with a kind/namespace/name header, a
//! summary, or the plan as JSON. Secret values are masked here, the single place every
//! output path goes through, unless --show-secrets.

use std::io::Write;

use crate::normalize;
use serde_json::{Value, json};

use crate::plan::{Action, Item, Plan};

/// Before/after views of an item as shown to people: normalised, and masked unless asked.
pub fn views(item: &Item, show_secrets: bool) -> (Option<Value>, Option<Value>) {
    let mut before = item.live.clone();
    let mut after = match item.action {
        Action::Prune | Action::Protected | Action::Kept => None,
        _ => item.merged.clone().or_else(|| item.desired.clone()),
    };
    for v in [before.as_mut(), after.as_mut()].into_iter().flatten() {
        normalize::normalize(v);
    }
    if !show_secrets {
        normalize::mask_secrets(before.as_mut(), after.as_mut());
    }
    (before, after)
}

fn yaml(v: &Option<Value>) -> String {
    v.as_ref().map(normalize::to_yaml).unwrap_or_default()
}

pub fn item_diff(item: &Item, show_secrets: bool, color: bool) -> String {
    let (before, after) = views(item, show_secrets);
    let key = item.key.to_string();
    shared::render::unified_diff(
        &format!("{key} (live)"),
        &format!("{key} (git)"),
        &yaml(&before),
        &yaml(&after),
        color,
    )
}

pub fn print_diff(plan: &Plan, show_secrets: bool) {
    let color = anstream::AutoStream::choice(&std::io::stdout()) != anstream::ColorChoice::Never;
    let mut out = anstream::stdout().lock();
    for item in &plan.items {
        let tag = match item.action {
            Action::Unchanged => continue,
            Action::Create => "create",
            Action::Update => "update",
            Action::Prune => "prune",
            Action::Protected => "not pruned (protected)",
            Action::Kept => "not pruned (--no-prune)",
        };
        let _ = writeln!(out, "# {tag} {}", item.key);
        if let Some(owner) = &item.owner {
            let _ = writeln!(
                out,
                "# warning: {owner}; sync refuses to take it over without --adopt"
            );
        }
        if let Some(conflict) = &item.conflict {
            let _ = writeln!(out, "# conflict: {conflict}");
        }
        if !matches!(item.action, Action::Protected | Action::Kept) {
            let _ = write!(out, "{}", item_diff(item, show_secrets, color));
        }
    }
    let _ = writeln!(out, "{}", plan.summary());
}

/// One line per object the plan changes (or declines to prune), on stderr: what a
/// confirmation is asked about.
pub fn print_changes(plan: &Plan) {
    let mut err = anstream::stderr().lock();
    for item in &plan.items {
        let what = match item.action {
            Action::Unchanged => continue,
            Action::Create => "create",
            Action::Update => "update",
            Action::Prune => "prune",
            Action::Protected => "not pruned (protected)",
            Action::Kept => "not pruned (--no-prune)",
        };
        let _ = writeln!(err, "  {what} {}", item.key);
    }
}

pub fn plan_json(plan: &Plan, show_secrets: bool, extra: Value) -> Value {
    let mut creates = Vec::new();
    let mut updates = Vec::new();
    let mut prunes = Vec::new();
    let mut protected = Vec::new();
    let mut unchanged = Vec::new();
    for item in &plan.items {
        let object = item.key.to_string();
        match item.action {
            Action::Create => {
                let (_, after) = views(item, show_secrets);
                creates.push(json!({"object": object, "manifest": after, "conflict": item.conflict, "owner": item.owner}));
            }
            Action::Update => updates.push(json!({
                "object": object,
                "diff": item_diff(item, show_secrets, false),
                "conflict": item.conflict,
                "owner": item.owner,
            })),
            Action::Prune => prunes.push(json!({"object": object})),
            Action::Protected | Action::Kept => protected.push(json!({"object": object, "reason": if item.action == Action::Kept { "--no-prune" } else { "protected kind" }})),
            Action::Unchanged => unchanged.push(json!(object)),
        }
    }
    let mut v = json!({
        "namespace": plan.namespace,
        "applyset": plan.applyset_id,
        "summary": {
            "create": creates.len(),
            "update": updates.len(),
            "prune": prunes.len(),
            "unchanged": unchanged.len(),
            "protected": protected.len(),
        },
        "creates": creates,
        "updates": updates,
        "prunes": prunes,
        "protected": protected,
        "unchanged": unchanged,
    });
    // Only diff plans with rejections (sync refuses them before showing anything).
    if !plan.rejected.is_empty() {
        v["rejected"] = plan
            .rejected
            .iter()
            .map(|r| json!({"object": r.key.to_string(), "message": r.reason()}))
            .collect();
    }
    if let (Some(map), Value::Object(extra)) = (v.as_object_mut(), extra) {
        map.extend(extra);
    }
    v
}

/// `KUBECTL_EXTERNAL_DIFF` as kubectl runs it: two directories, LIVE and MERGED, holding one
/// file per object named `[group.]version.Kind.namespace.name`; the tool's exit code is
/// passed through (0 same, 1 different, more on error).
pub fn external_diff(plan: &Plan, tool: &str, show_secrets: bool) -> shared::Result<i32> {
    let tmp = tempfile::tempdir()?;
    let (live_dir, merged_dir) = (tmp.path().join("LIVE"), tmp.path().join("MERGED"));
    std::fs::create_dir_all(&live_dir)?;
    std::fs::create_dir_all(&merged_dir)?;
    for item in plan.items.iter().filter(|i| i.action != Action::Unchanged) {
        let r = &item.resolved.resource;
        let gv = if r.group.is_empty() {
            r.version.clone()
        } else {
            format!("{}.{}", r.group, r.version)
        };
        let file = format!(
            "{gv}.{}.{}.{}",
            r.kind,
            item.key.namespace.as_deref().unwrap_or(""),
            item.key.name
        );
        let (before, after) = views(item, show_secrets);
        if let Some(b) = before {
            std::fs::write(live_dir.join(&file), normalize::to_yaml(&b))?;
        }
        if let Some(a) = after {
            std::fs::write(merged_dir.join(&file), normalize::to_yaml(&a))?;
        }
    }
    let mut parts = tool.split_whitespace();
    let program = parts.next().unwrap_or("diff");
    let mut cmd = std::process::Command::new(program);
    cmd.args(parts).arg(&live_dir).arg(&merged_dir);
    let status = crate::child::status(
        cmd,
        &format!("KUBECTL_EXTERNAL_DIFF={tool}"),
        &crate::child::EXTERNAL_DIFF,
    )?
    .map_err(|e| shared::Error::refused(format!("KUBECTL_EXTERNAL_DIFF={tool}: {e}")))?;
    Ok(status.code().unwrap_or(2))
}
