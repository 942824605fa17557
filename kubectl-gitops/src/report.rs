//! Showing a plan: one unified diff per changed object with a kind/namespace/name header, a
//! summary, or the plan as JSON. Secret values are masked here, the single place every
//! output path goes through, unless --show-secrets.

use std::io::Write;

use crate::normalize;
use serde_json::{Value, json};

use crate::execute::Outcome;
use crate::phases::Phase;
use crate::plan::{Action, Item, Plan};

/// Before/after views of an item as shown to people: normalised, and masked unless asked.
pub fn views(item: &Item, show_secrets: bool) -> (Option<Value>, Option<Value>) {
    // A hook is created anew: whatever holds its name now is its previous run, not a before.
    let mut before = match item.action {
        Action::Hook => None,
        _ => item.live.clone(),
    };
    let mut after = match item.action {
        Action::Prune | Action::Protected | Action::Kept => None,
        // What will be created, not the server's dry-run of it: that is full of defaults and
        // of a uid the real run will not have.
        Action::Hook => item.desired.clone(),
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

/// What an item's line says: `create Kind/ns/name`, `hook Kind/ns/name (PreSync, ...)`.
fn doing(item: &Item) -> Option<String> {
    let what = verb(item)?;
    Some(match what.split_once(' ') {
        Some((verb, detail)) => format!("{verb} {} {detail}", item.key),
        None => format!("{what} {}", item.key),
    })
}

/// What will be done to an item: `create`, `update`, `hook (PreSync, ...)`...
fn verb(item: &Item) -> Option<String> {
    Some(match item.action {
        Action::Unchanged => return None,
        Action::Create => "create".into(),
        Action::Update => "update".into(),
        Action::Prune => "prune".into(),
        Action::Protected => "not-pruned (protected)".into(),
        Action::Kept => "not-pruned (--no-prune)".into(),
        Action::Replace => format!(
            "replace ({} cannot change)",
            item.immutable.as_deref().unwrap_or("an immutable field")
        ),
        Action::Hook => {
            let hook = item.placement.hook.as_ref()?;
            let phases: Vec<&str> = hook.phases.iter().map(|p| p.as_str()).collect();
            let rerun = item.live.is_some() && !hook.delete.before_creation;
            format!(
                "hook ({}, delete policy {}{})",
                phases.join(","),
                hook.delete,
                if rerun { "; exists, not run again" } else { "" }
            )
        }
    })
}

/// The heading of each phase and wave of an ordered plan, before its first line, and of the
/// prunes; nothing for a plan without waves.
struct Headings {
    ordered: bool,
    last: Option<(u8, Phase, i32)>,
}

impl Headings {
    fn new(plan: &Plan) -> Headings {
        Headings {
            ordered: plan.ordered,
            last: None,
        }
    }

    fn before(&mut self, item: &Item) -> Option<String> {
        if !self.ordered {
            return None;
        }
        let at = if item.desired.is_none() {
            (1, Phase::Sync, 0)
        } else {
            (0, item.placement.first_phase(), item.placement.wave)
        };
        if self.last == Some(at) {
            return None;
        }
        self.last = Some(at);
        Some(match at {
            (1, ..) => "# prune (after the last wave of Sync, in reverse wave order)".into(),
            (_, Phase::SyncFail, wave) => {
                format!("# phase SyncFail, wave {wave} (only if the sync fails)")
            }
            (_, phase, wave) => format!("# phase {phase}, wave {wave}"),
        })
    }
}

pub fn print_diff(plan: &Plan, show_secrets: bool) {
    let color = anstream::AutoStream::choice(&std::io::stdout()) != anstream::ColorChoice::Never;
    let mut out = anstream::stdout().lock();
    let mut headings = Headings::new(plan);
    for item in &plan.items {
        let Some(line) = doing(item) else { continue };
        if let Some(h) = headings.before(item) {
            let _ = writeln!(out, "{h}");
        }
        let _ = writeln!(out, "# {}", line.replacen("not-pruned", "not pruned", 1));
        if let Some(owner) = &item.owner {
            if item.action == Action::Hook {
                let _ = writeln!(out, "# warning: {owner}; sync refuses to run the hook");
            } else {
                let _ = writeln!(
                    out,
                    "# warning: {owner}; sync refuses to take it over without --adopt"
                );
            }
        }
        if let Some(conflict) = &item.conflict {
            let _ = writeln!(out, "# conflict: {conflict}");
        }
        if item.action == Action::Update
            && let Some(fields) = &item.immutable
        {
            let _ = writeln!(
                out,
                "# immutable: {fields} cannot change; sync refuses unless it may replace the object \
                 (Replace=true or --replace-immutable)"
            );
        }
        if !matches!(item.action, Action::Protected | Action::Kept) {
            let _ = write!(out, "{}", item_diff(item, show_secrets, color));
        }
    }
    for s in &plan.skipped {
        let _ = writeln!(out, "# skip {}: {}", s.key, s.why);
    }
    let _ = writeln!(out, "{}", plan.summary());
}

/// One line per object the plan changes (or declines to prune) and hook it runs, on stderr:
/// what a confirmation is asked about.
pub fn print_changes(plan: &Plan) {
    let mut err = anstream::stderr().lock();
    let mut headings = Headings::new(plan);
    for item in &plan.items {
        let Some(line) = doing(item) else { continue };
        if let Some(h) = headings.before(item) {
            let _ = writeln!(err, "{}", h.trim_start_matches("# "));
        }
        let _ = writeln!(err, "  {}", line.replacen("not-pruned", "not pruned", 1));
    }
}

/// Objects not applied and hook types ignored, one line each on stderr.
pub fn print_notes(plan: &Plan) {
    let mut err = anstream::stderr().lock();
    for s in &plan.skipped {
        let _ = writeln!(err, "note: {} {}", s.key, s.why);
    }
    for n in &plan.notes {
        let _ = writeln!(err, "note: {n}");
    }
}

/// Phase and wave of an item, for JSON.
fn placement_json(item: &Item) -> (Value, Value) {
    let phases: Vec<&str> = item.placement.phases().iter().map(|p| p.as_str()).collect();
    let phase = if phases.len() == 1 {
        json!(phases[0])
    } else {
        json!(phases.join(","))
    };
    (phase, json!(item.placement.wave))
}

pub fn plan_json(plan: &Plan, show_secrets: bool, extra: Value) -> Value {
    let mut creates = Vec::new();
    let mut updates = Vec::new();
    let mut prunes = Vec::new();
    let mut protected = Vec::new();
    let mut unchanged = Vec::new();
    let mut hooks = Vec::new();
    let mut replaces = Vec::new();
    let mut waves: Vec<Value> = Vec::new();
    for item in &plan.items {
        let object = item.key.to_string();
        let (phase, wave) = placement_json(item);
        if item.desired.is_some() {
            for p in item.placement.phases() {
                let w = item.placement.wave;
                match waves
                    .iter_mut()
                    .find(|v| v["phase"] == p.as_str() && v["wave"] == w)
                {
                    Some(v) => v["objects"]
                        .as_array_mut()
                        .expect("a list")
                        .push(json!(object)),
                    None => {
                        waves.push(json!({"phase": p.as_str(), "wave": w, "objects": [object]}))
                    }
                }
            }
        }
        match item.action {
            Action::Create => {
                let (_, after) = views(item, show_secrets);
                creates.push(json!({"object": object, "phase": phase, "wave": wave, "manifest": after, "conflict": item.conflict, "owner": item.owner}));
            }
            Action::Update => updates.push(json!({
                "object": object,
                "phase": phase,
                "wave": wave,
                "diff": item_diff(item, show_secrets, false),
                "conflict": item.conflict,
                "owner": item.owner,
                "immutable": item.immutable,
            })),
            Action::Replace => replaces.push(json!({
                "object": object,
                "phase": phase,
                "wave": wave,
                "immutable": item.immutable,
                "diff": item_diff(item, show_secrets, false),
            })),
            Action::Hook => {
                let (_, after) = views(item, show_secrets);
                let hook = item.placement.hook.as_ref();
                hooks.push(json!({
                    "object": object,
                    "phase": phase,
                    "wave": wave,
                    "delete_policy": hook.map(|h| h.delete.to_string()),
                    "runs_again": !(item.live.is_some() && hook.is_some_and(|h| !h.delete.before_creation)),
                    "manifest": after,
                    "blocked": item.owner,
                }));
            }
            Action::Prune => prunes.push(json!({"object": object, "wave": wave})),
            Action::Protected | Action::Kept => protected.push(json!({"object": object, "reason": if item.action == Action::Kept { "--no-prune" } else { "protected kind" }})),
            Action::Unchanged => unchanged.push(json!(object)),
        }
    }
    waves.sort_by_key(|v| {
        let phase = match v["phase"].as_str() {
            Some("PreSync") => 0,
            Some("Sync") => 1,
            Some("PostSync") => 2,
            _ => 3,
        };
        (phase, v["wave"].as_i64().unwrap_or_default())
    });
    let skipped: Vec<Value> = plan
        .skipped
        .iter()
        .map(|s| json!({"object": s.key.to_string(), "reason": s.why}))
        .collect();
    let mut v = json!({
        "namespace": plan.namespace,
        "applyset": plan.applyset_id,
        "summary": {
            "create": creates.len(),
            "update": updates.len(),
            "prune": prunes.len(),
            "unchanged": unchanged.len(),
            "protected": protected.len(),
            "replace": replaces.len(),
            "hooks": hooks.len(),
            "skipped": skipped.len(),
        },
        "ordered": plan.ordered,
        "creates": creates,
        "updates": updates,
        "replaces": replaces,
        "prunes": prunes,
        "protected": protected,
        "unchanged": unchanged,
        "hooks": hooks,
        "skipped": skipped,
        "notes": plan.notes,
        "waves": waves,
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

/// What a sync or revert did, for `-o json`: the revision and its outcome, what was applied,
/// pruned and run, and the final verdict on each object waited for (the ones that were not
/// ready listed again under `failed`).
pub fn outcome_json(outcome: &Outcome) -> Value {
    let p = &outcome.progress;
    let verdict = |w: &crate::health::Waited| {
        json!({"object": w.key.to_string(), "status": w.verdict.status.as_str(),
               "reason": w.verdict.reason, "message": w.verdict.message})
    };
    json!({
        "revision": outcome.revision,
        "outcome": outcome.outcome,
        "applied": p.applied,
        "pruned": p.pruned,
        "hooks": p.hooks,
        "health": p.health.iter().map(verdict).collect::<Vec<_>>(),
        "failed": outcome
            .failure
            .iter()
            .flat_map(|f| f.not_ready.iter().map(verdict))
            .collect::<Vec<_>>(),
        "error": outcome.failure.as_ref().map(|f| f.error.message.clone()),
    })
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
