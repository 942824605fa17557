//! Rendering a kustomization with `kubectl kustomize` from an export of the commit's tree, after
//! making sure rendering can reach neither the network nor files outside the export.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use shared::error::{Error, Result};
use shared::git::Repo;

use super::Manifest;
use super::export::{export_commit, without_network};
use super::parse::{parse_yaml_stream, with_parser_stack, yaml_message, yaml_options};
use super::tree::{join, resolve_link};

/// Names kustomize accepts for a kustomization, in its order of preference.
pub const KUSTOMIZATION_FILES: [&str; 3] =
    ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// Renders the kustomization at `path` from an export of the whole commit (bases usually live
/// elsewhere in the repository), after making sure rendering cannot reach the network or
/// files outside the export.
pub(super) fn render_kustomization(
    repo: &Repo,
    root: &gix::Tree<'_>,
    path: &str,
    short: &str,
    kubectl: &Path,
) -> Result<Vec<Manifest>> {
    let tmp = tempfile::Builder::new()
        .prefix("gitops-kustomize-")
        .tempdir()
        .map_err(|e| Error::context("creating a temporary directory", e))?;
    export_commit(repo, root, tmp.path())?;
    check_kustomizations_are_local(tmp.path(), path, short)?;

    let dir = if path.is_empty() {
        tmp.path().to_path_buf()
    } else {
        tmp.path().join(path)
    };
    let label = format!(
        "kustomize build {}",
        if path.is_empty() { "." } else { path }
    );
    let mut cmd = Command::new(kubectl);
    cmd.arg("kustomize").arg(&dir).current_dir(tmp.path());
    // Belt and braces after the checks above: remote bases are cloned with git and remote
    // files fetched over HTTP(S); both fail fast instead of reaching out.
    without_network(&mut cmd);
    let tool = format!(
        "{} kustomize ({label} at commit {short})",
        kubectl.display()
    );
    let output = crate::child::output(cmd, &tool, &crate::child::KUSTOMIZE)?.map_err(|e| {
        Error::refused(format!("cannot run {}: {e}", kubectl.display()))
            .hint("rendering a kustomization needs kubectl; install it or set KUBECTL_PATH")
    })?;
    if !output.status.success() {
        let stderr = kubectl_message(&String::from_utf8_lossy(&output.stderr), tmp.path());
        return Err(Error::invalid(format!(
            "{label} at commit {short} failed ({}):\n{stderr}",
            output.status
        )));
    }
    parse_yaml_stream(&label, &output.stdout)
}

/// kubectl's error output without klog decoration (`E1121 12:00:00.000000 123 run.go:72]
/// "command failed" err=...`) and with paths in the export shown relative to the repository.
fn kubectl_message(stderr: &str, export: &Path) -> String {
    let root = export.display().to_string();
    let text = stderr.replace(&format!("{root}/"), "").replace(&root, ".");
    let mut lines = Vec::new();
    for line in text.lines() {
        let mut line = line;
        let klog = line.len() > 5
            && line.starts_with(['E', 'W', 'I', 'F'])
            && line.as_bytes()[1..5].iter().all(u8::is_ascii_digit);
        if klog && let Some((_, rest)) = line.split_once("] ") {
            line = rest;
        }
        line = line.strip_prefix("\"command failed\" err=").unwrap_or(line);
        if matches!(line.trim(), "<" | ">") {
            continue;
        }
        let line = line.strip_prefix('\t').unwrap_or(line);
        match line.strip_prefix('"').and_then(|l| l.strip_suffix('"')) {
            Some(quoted) => lines.push(quoted.replace("\\\"", "\"").replace("\\\\", "\\")),
            None => lines.push(line.to_string()),
        }
    }
    lines.join("\n").trim().to_string()
}

/// Whether a kustomize reference names something to download rather than a path.
fn is_remote(reference: &str) -> bool {
    let r = reference.trim();
    let first = r.split('/').next().unwrap_or_default();
    r.contains("://")
        || r.starts_with("git@")
        || r.starts_with("git::")
        || r.starts_with("github.com/")
        || r.starts_with("gitlab.com/")
        || r.starts_with("bitbucket.org/")
        || r.contains("?ref=")
        || r.contains("&ref=")
        || r.contains("?version=")
        || r.contains("?submodules=")
        || r.contains("?timeout=")
        // scp-like `user@host:repo`
        || (first.contains('@') && first.contains(':'))
}

/// Checks every kustomization reachable from `path` for references that would make kustomize
/// download something. Entries kustomize tries as a path first and a remote second must
/// exist in the export, or it would go on to fetch them.
fn check_kustomizations_are_local(root: &Path, path: &str, short: &str) -> Result<()> {
    let mut queue = vec![path.to_string()];
    let mut seen = HashSet::new();
    while let Some(dir) = queue.pop() {
        if !seen.insert(dir.clone()) {
            continue;
        }
        let dir_path = if dir.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&dir)
        };
        let Some((name, bytes)) = KUSTOMIZATION_FILES
            .iter()
            .find_map(|name| std::fs::read(dir_path.join(name)).ok().map(|b| (*name, b)))
        else {
            continue;
        };
        let file = join(&dir, name);
        let doc: Value = with_parser_stack(|| {
            serde_saphyr::from_slice_with_options(&bytes, yaml_options())
                .map_err(|e| Error::invalid(format!("{file}: {}", yaml_message(&e.to_string()))))
        })?;
        let refuse_remote = |field: &str, reference: &str| -> Result<()> {
            if is_remote(reference) {
                return Err(Error::invalid(format!(
                    "{file}: {field} entry {reference:?} is remote; rendering must not reach the network"
                ))
                .hint("vendor the remote base into the repository and reference it by path"));
            }
            Ok(())
        };
        let strings = |field: &str| -> Vec<String> {
            match doc.get(field) {
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
                Some(Value::String(s)) => vec![s.clone()],
                _ => Vec::new(),
            }
        };

        // Kustomize falls back to a remote fetch for these when the path does not exist.
        for field in ["resources", "bases", "components"] {
            for reference in strings(field) {
                refuse_remote(field, &reference)?;
                let Some(target) = resolve_link(&join(&dir, "x"), reference.as_bytes()) else {
                    return Err(Error::invalid(format!(
                        "{file}: {field} entry {reference:?} points outside the repository"
                    )));
                };
                let on_disk = root.join(&target);
                if on_disk.is_dir() {
                    queue.push(target);
                } else if !on_disk.exists() {
                    return Err(Error::invalid(format!(
                        "{file}: {field} entry {reference:?} does not exist at commit {short}"
                    ))
                    .hint("kustomize would try to download a missing entry; commit it or fix the path"));
                }
            }
        }
        // Plugin configurations may be files or kustomization directories of their own.
        for field in ["generators", "transformers", "validators"] {
            for reference in strings(field) {
                if reference.contains('\n') {
                    continue; // an inline configuration, not a reference
                }
                refuse_remote(field, &reference)?;
                if let Some(target) = resolve_link(&join(&dir, "x"), reference.as_bytes())
                    && root.join(&target).is_dir()
                {
                    queue.push(target);
                }
            }
        }
        // Plain file references, which kustomize fetches when given a URL.
        for field in ["crds", "configurations", "patchesStrategicMerge"] {
            for reference in strings(field) {
                if !reference.contains('\n') {
                    refuse_remote(field, &reference)?;
                }
            }
        }
        for field in ["patches", "patchesJson6902", "replacements"] {
            if let Some(Value::Array(items)) = doc.get(field) {
                for path in items.iter().filter_map(|i| i.get("path")?.as_str()) {
                    refuse_remote(field, path)?;
                }
            }
        }
        if let Some(path) = doc
            .get("openapi")
            .and_then(|o| o.get("path"))
            .and_then(Value::as_str)
        {
            refuse_remote("openapi", path)?;
        }
        for field in ["configMapGenerator", "secretGenerator"] {
            let Some(Value::Array(generators)) = doc.get(field) else {
                continue;
            };
            for generator in generators {
                for key in ["files", "envs", "env"] {
                    let entries: Vec<&str> = match generator.get(key) {
                        Some(Value::Array(items)) => {
                            items.iter().filter_map(Value::as_str).collect()
                        }
                        Some(Value::String(s)) => vec![s.as_str()],
                        _ => Vec::new(),
                    };
                    for entry in entries {
                        // `files` entries may be `key=path`.
                        let path = entry.split_once('=').map_or(entry, |(_, p)| p);
                        refuse_remote(field, path)?;
                    }
                }
            }
        }
        if let Some(Value::Array(charts)) = doc.get("helmCharts") {
            for chart in charts {
                if let Some(repo) = chart.get("repo").and_then(Value::as_str) {
                    return Err(Error::invalid(format!(
                        "{file}: helmCharts entry from repository {repo:?} would be downloaded; \
                         rendering must not reach the network"
                    ))
                    .hint("vendor the chart into the repository"));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_references_are_recognised() {
        for r in [
            "https://github.com/org/repo//base?ref=v1",
            "github.com/org/repo/base?ref=main",
            "git@github.com:org/repo.git",
            "git::https://example.com/repo",
            "ssh://git@example.com/repo",
            "example.com/org/repo//dir?ref=v1",
            "user@host:repo",
        ] {
            assert!(is_remote(r), "{r}");
        }
        for r in [
            "../../bases/web",
            "deployment.yaml",
            "dir/with:colon",
            "./a@b",
        ] {
            assert!(!is_remote(r), "{r}");
        }
    }

    #[test]
    fn kubectl_errors_lose_klog_decoration_and_temporary_paths() {
        let export = Path::new("/tmp/gitops-kustomize-abc");
        let single = "E1121 23:44:24.100346   31356 run.go:72] \"command failed\" err=\"accumulating resources from 'missing.yaml': lstat /tmp/gitops-kustomize-abc/deploy/missing.yaml: \\\"x\\\"\"\n";
        assert_eq!(
            kubectl_message(single, export),
            "accumulating resources from 'missing.yaml': lstat deploy/missing.yaml: \"x\""
        );
        let multi = "E1121 23:44:24.043715   31351 run.go:72] \"command failed\" err=<\n\ttrouble configuring builtin PatchTransformer\n\tpath: /tmp/gitops-kustomize-abc/patch.yaml\n >\n";
        assert_eq!(
            kubectl_message(multi, export),
            "trouble configuring builtin PatchTransformer\npath: patch.yaml"
        );
        assert_eq!(
            kubectl_message("error: unknown\n", export),
            "error: unknown"
        );
    }
}
