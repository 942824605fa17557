//! Rendering a Helm chart with `helm template`. The commit's tree is exported as for kustomize
//! (same path and symlink rules); dependencies come only from the chart's `charts/` directory,
//! so what is deployed is what is in git; Helm runs with empty, temporary configuration and
//! cache directories, an empty kubeconfig and no usable proxy, so it can reach no repository,
//! registry or cluster. The work is split in two because the render needs the server's
//! discovery: [`prepare`] does everything that can fail on the commit alone (before Helm runs;
//! sync calls it once the tag's signature is checked, so nothing of an untrusted tag is
//! read), [`Chart::render`] runs Helm with the cluster's version and APIs.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use shared::config::{Helm as HelmSettings, resolve_in_repo};
use shared::error::{Error, Result};
use shared::git::Repo;

use super::Manifest;
use super::export::{export_commit, without_network};
use super::parse::{parse_yaml_stream, with_parser_stack, yaml_message, yaml_options};
use super::tree::join;

/// A directory holding this file is a chart.
pub const CHART_FILE: &str = "Chart.yaml";

const INSTALL_HINT: &str = "install Helm 3.8 or newer (https://helm.sh/docs/intro/install/), \
     or set HELM_PATH to the helm binary";

/// What decides a render besides the chart: the environment's entry in gitops.yaml and the
/// command line.
#[derive(Debug, Clone, Default)]
pub struct Values {
    /// The environment whose manifests these are: the default release name.
    pub env: Option<String>,
    /// The environment's `helm:` block.
    pub settings: Option<HelmSettings>,
    /// `--values FILE`: repository paths, read after the environment's values.
    pub files: Vec<String>,
    /// `--set key=value`, read last.
    pub set: Vec<String>,
}

impl Values {
    /// What asks for a chart, if anything: a path without one is then an error, not a
    /// directory of manifests rendered without the values someone meant to apply.
    pub fn asked_for(&self) -> Option<String> {
        if let (Some(env), Some(_)) = (&self.env, &self.settings) {
            return Some(format!(
                "environment {env} has a helm: block in gitops.yaml"
            ));
        }
        if !self.files.is_empty() || !self.set.is_empty() {
            return Some("--values/--set were given".into());
        }
        None
    }
}

/// What `Capabilities` shows templates: the server's version and every `group/version` and
/// `group/version/Kind` it serves.
#[derive(Debug, Clone)]
pub struct Capabilities {
    pub kube_version: String,
    pub api_versions: Vec<String>,
}

/// A chart exported from a commit and checked, ready to render.
pub struct Chart {
    /// `repo/` (the export), `home/` (Helm's configuration, cache and data, empty) and the
    /// values file written from gitops.yaml.
    tmp: tempfile::TempDir,
    path: String,
    short: String,
    name: String,
    helm: PathBuf,
    release: String,
    /// `--values`/`--set` arguments, in the order Helm reads them.
    value_args: Vec<OsString>,
}

/// Exports the commit, finds helm, and checks the chart: its metadata, vendored dependencies,
/// the release name and every values file.
pub(super) fn prepare(
    repo: &Repo,
    root: &gix::Tree<'_>,
    path: &str,
    short: &str,
    values: &Values,
) -> Result<Chart> {
    let helm = find_helm(path)?;
    let tmp = tempfile::Builder::new()
        .prefix("gitops-helm-")
        .tempdir()
        .map_err(|e| Error::context("creating a temporary directory", e))?;
    let export = tmp.path().join("repo");
    let home = tmp.path().join("home");
    for dir in [&export, &home] {
        std::fs::create_dir(dir)
            .map_err(|e| Error::context("creating a temporary directory", e))?;
    }
    // Helm reads its kubeconfig only for `lookup`; an empty one makes that render empty
    // instead of reaching whatever cluster the user's configuration names.
    std::fs::write(home.join("kubeconfig"), "")
        .map_err(|e| Error::context("writing an empty kubeconfig", e))?;
    export_commit(repo, root, &export)?;
    let mut chart = Chart {
        path: path.to_string(),
        short: short.to_string(),
        name: String::new(),
        helm,
        release: String::new(),
        value_args: Vec::new(),
        tmp,
    };
    let metadata = chart.metadata()?;
    chart.name = metadata.name;
    if metadata.has_dependencies {
        chart.check_dependencies_vendored()?;
    }
    chart.release = release_name(values, &chart.name, path)?;
    chart.value_args = chart.values_arguments(values)?;
    Ok(chart)
}

/// `HELM_PATH`, else `helm` on PATH.
fn find_helm(chart: &str) -> Result<PathBuf> {
    let shown = if chart.is_empty() { "." } else { chart };
    if let Some(p) = std::env::var_os("HELM_PATH").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if is_executable(&p) {
            return Ok(p);
        }
        return Err(Error::refused(format!(
            "HELM_PATH={} is not an executable file; the Helm chart at {shown} is rendered with `helm template`",
            p.display()
        ))
        .hint(INSTALL_HINT));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("helm"))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| {
            Error::refused(format!(
                "helm is not installed (not on PATH, and HELM_PATH is not set): the Helm chart at \
                 {shown} is rendered with `helm template`"
            ))
            .hint(INSTALL_HINT)
        })
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    p.is_file()
}

struct Metadata {
    name: String,
    has_dependencies: bool,
}

/// The release: gitops.yaml's `helm.release`, else the environment's name, else (a tag
/// without an environment) the chart's name.
fn release_name(values: &Values, chart_name: &str, path: &str) -> Result<String> {
    let (release, from) = match (&values.settings, &values.env) {
        (
            Some(HelmSettings {
                release: Some(r), ..
            }),
            _,
        ) => (r.clone(), "helm.release in gitops.yaml"),
        (_, Some(env)) => (env.clone(), "the environment's name"),
        (_, None) => (chart_name.to_string(), "the chart's name (no environment)"),
    };
    if let Some(problem) = shared::refname::helm_release_problem(&release) {
        return Err(Error::invalid(format!(
            "Helm release name {release:?} (from {from}) {problem}"
        ))
        .hint(format!(
            "set helm.release for the environment in gitops.yaml (chart {})",
            if path.is_empty() { "." } else { path }
        )));
    }
    Ok(release)
}

impl Chart {
    /// The chart directory, repository-relative (`""` for the root).
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn release(&self) -> &str {
        &self.release
    }

    fn shown_path(&self) -> &str {
        if self.path.is_empty() {
            "."
        } else {
            &self.path
        }
    }

    fn export(&self) -> PathBuf {
        self.tmp.path().join("repo")
    }

    fn dir(&self) -> PathBuf {
        if self.path.is_empty() {
            self.export()
        } else {
            self.export().join(&self.path)
        }
    }

    /// Reads `Chart.yaml` (and a v1 chart's `requirements.yaml`) for the chart's name and
    /// whether it declares dependencies.
    fn metadata(&self) -> Result<Metadata> {
        let file = join(&self.path, CHART_FILE);
        let read = |name: &str| std::fs::read(self.dir().join(name)).ok();
        let parse = |file: &str, bytes: Vec<u8>| -> Result<Value> {
            with_parser_stack(|| {
                serde_saphyr::from_slice_with_options::<Value>(&bytes, yaml_options()).map_err(
                    |e| {
                        Error::invalid(format!(
                            "{file} at commit {}: {}",
                            self.short,
                            yaml_message(&e.to_string())
                        ))
                    },
                )
            })
        };
        let chart = parse(&file, read(CHART_FILE).unwrap_or_default())?;
        let name = chart
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "{file} at commit {}: the chart has no name",
                    self.short
                ))
                .hint("a Chart.yaml needs apiVersion, name and version")
            })?
            .to_string();
        let declares = |doc: &Value| {
            doc.get("dependencies")
                .and_then(Value::as_array)
                .is_some_and(|d| !d.is_empty())
        };
        let mut has_dependencies = declares(&chart);
        if let Some(bytes) = read("requirements.yaml") {
            let requirements = parse(&join(&self.path, "requirements.yaml"), bytes)?;
            has_dependencies |= declares(&requirements);
        }
        Ok(Metadata {
            name,
            has_dependencies,
        })
    }

    /// Every dependency must be in `charts/` (a directory or a `.tgz`): Helm's own
    /// `helm dependency list`, which reads only the chart, decides.
    fn check_dependencies_vendored(&self) -> Result<()> {
        let mut command = self.helm_command();
        command.arg("dependency").arg("list").arg(self.dir());
        let output = self.run(command)?;
        if !output.status.success() {
            return Err(Error::invalid(format!(
                "helm dependency list of the chart at {} (commit {}) failed:\n{}",
                self.shown_path(),
                self.short,
                self.helm_message(&output.stderr)
            )));
        }
        let missing = missing_dependencies(&String::from_utf8_lossy(&output.stdout));
        if missing.is_empty() {
            return Ok(());
        }
        let charts = join(&self.path, "charts/");
        Err(Error::invalid(format!(
            "the chart at {} (commit {}) depends on {} not vendored in {charts}: {}; \
             rendering never downloads charts",
            self.shown_path(),
            self.short,
            if missing.len() == 1 { "a chart" } else { "charts" },
            missing.join(", ")
        ))
        .hint(format!(
            "run `helm dependency build {}` and commit {charts} (what is deployed must be what is in git)",
            self.shown_path()
        )))
    }

    /// `--values` for gitops.yaml's values files, then its inline values, then the command
    /// line's files, then `--set`: Helm merges them in that order, the last winning.
    fn values_arguments(&self, values: &Values) -> Result<Vec<OsString>> {
        let mut args = Vec::new();
        let env = values.env.as_deref().unwrap_or("?");
        if let Some(settings) = &values.settings {
            for entry in &settings.values_files {
                let resolved = resolve_in_repo(&self.path, entry).ok_or_else(|| {
                    Error::invalid(format!(
                        "gitops.yaml: environment {env}: helm.valuesFiles entry {entry:?} points outside the repository"
                    ))
                })?;
                let file = self.values_file(&resolved, || {
                    format!("gitops.yaml: environment {env}: helm.valuesFiles entry {entry:?}")
                })?;
                args.push("--values".into());
                args.push(file.into_os_string());
            }
            if let Some(inline) = &settings.values {
                let file = self.tmp.path().join("values-from-gitops.yaml");
                // JSON is YAML, and keeps every value's type exactly.
                let text = serde_json::to_vec(inline).expect("values always serialise");
                std::fs::write(&file, text)
                    .map_err(|e| Error::context("writing gitops.yaml's helm.values", e))?;
                args.push("--values".into());
                args.push(file.into_os_string());
            }
        }
        for entry in &values.files {
            if let Some(problem) = shared::refname::repo_path_problem(entry) {
                return Err(Error::invalid(format!("--values {entry:?} {problem}")));
            }
            let resolved = shared::refname::normalize_repo_path(entry);
            let file = self.values_file(&resolved, || format!("--values {entry:?}"))?;
            args.push("--values".into());
            args.push(file.into_os_string());
        }
        for set in &values.set {
            args.push("--set".into());
            args.push(set.into());
        }
        Ok(args)
    }

    /// The exported file at repository path `resolved`, which must be a file of the commit.
    fn values_file(&self, resolved: &str, what: impl Fn() -> String) -> Result<PathBuf> {
        let file = self.export().join(resolved);
        if resolved.is_empty() || !file.is_file() {
            return Err(Error::invalid(format!(
                "{}: {resolved} is not a file at commit {}",
                what(),
                self.short
            ))
            .hint("values files are read from the commit being deployed; commit the file or fix the path"));
        }
        Ok(file)
    }

    /// `helm` with nothing of the user's environment: empty configuration, cache and data
    /// directories (no repositories, registries or plugins), an empty kubeconfig, and no
    /// usable proxy.
    fn helm_command(&self) -> Command {
        let home = self.tmp.path().join("home");
        let mut command = Command::new(&self.helm);
        command
            .env_clear()
            .env("HOME", &home)
            .env("TMPDIR", self.tmp.path())
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .env("HELM_PLUGINS", home.join("plugins"))
            .env("KUBECONFIG", home.join("kubeconfig"))
            .current_dir(self.export())
            .stdin(Stdio::null());
        without_network(&mut command);
        command
    }

    /// Runs helm within its time limit ([`crate::child::HELM`]): a chart whose templates
    /// never finish rendering is stopped and named, never waited for.
    fn run(&self, command: Command) -> Result<Output> {
        let tool = format!(
            "{} for the Helm chart at {}",
            self.helm.display(),
            self.shown_path()
        );
        crate::child::output(command, &tool, &crate::child::HELM)?.map_err(|e| {
            Error::refused(format!(
                "cannot run {} for the Helm chart at {}: {e}",
                self.helm.display(),
                self.shown_path()
            ))
            .hint(INSTALL_HINT)
        })
    }

    /// `helm template` for `namespace` with the cluster's capabilities. The objects come
    /// back named by the chart file that rendered them. Hooks stay in: [`crate::phases`] puts
    /// them in their phase and wave as it does Argo CD's (`test` hooks are left out by
    /// `--skip-tests` here and, should one remain, never applied there).
    pub fn render(&self, caps: &Capabilities, namespace: &str) -> Result<Vec<Manifest>> {
        let mut command = self.helm_command();
        command
            .arg("template")
            .arg(&self.release)
            .arg(self.dir())
            .arg("--namespace")
            .arg(namespace)
            .arg("--kube-version")
            .arg(&caps.kube_version)
            .arg("--include-crds")
            // `helm test` Pods are for `helm test`, never for a deploy.
            .arg("--skip-tests");
        if !caps.api_versions.is_empty() {
            command
                .arg("--api-versions")
                .arg(caps.api_versions.join(","));
        }
        command.args(&self.value_args);
        crate::log::info(
            2,
            format!(
                "helm template {} {} --namespace {namespace} --kube-version {} ({} API versions, {} values arguments)",
                self.release,
                self.shown_path(),
                caps.kube_version,
                caps.api_versions.len(),
                self.value_args.len() / 2
            ),
        );
        let output = self.run(command)?;
        if !output.status.success() {
            return Err(Error::invalid(format!(
                "helm template of the chart at {} (commit {}) failed:\n{}",
                self.shown_path(),
                self.short,
                self.helm_message(&output.stderr)
            )));
        }
        for line in self.helm_message(&output.stderr).lines() {
            if !line.trim().is_empty() {
                shared::output::warn(format!("helm: {line}"));
            }
        }
        let label = format!("helm template {}", self.shown_path());
        let mut manifests = parse_yaml_stream(&label, &output.stdout)?;
        self.name_sources(&String::from_utf8_lossy(&output.stdout), &mut manifests);
        Ok(manifests)
    }

    /// Names each object's source by the chart file Helm's `# Source:` comment gives, as a
    /// repository path.
    fn name_sources(&self, stdout: &str, manifests: &mut [Manifest]) {
        let sources: Vec<(usize, String)> = stdout
            .lines()
            .enumerate()
            .filter_map(|(i, line)| {
                let file = line.strip_prefix("# Source: ")?.trim();
                Some((i + 1, self.repo_path_of(file)))
            })
            .collect();
        for m in manifests {
            if let Some((_, file)) = sources.iter().rev().find(|(line, _)| *line < m.source.line) {
                m.source.file = format!("{file} (rendered by helm template)");
            }
        }
    }

    /// `podinfo/templates/x.yaml` (how Helm names chart files: by the chart's name) as the
    /// repository path `deploy/podinfo/templates/x.yaml`.
    fn repo_path_of(&self, helm_file: &str) -> String {
        match helm_file.strip_prefix(&format!("{}/", self.name)) {
            Some(rest) => join(&self.path, rest),
            None => helm_file.to_string(),
        }
    }

    /// Helm's error output as the user should read it: chart files as repository paths,
    /// no temporary directories, no advice to use flags we do not pass on.
    fn helm_message(&self, stderr: &[u8]) -> String {
        let text = String::from_utf8_lossy(stderr);
        let export = format!("{}/", self.export().display());
        let text = text.replace(&export, "");
        let text = text.replace(&self.tmp.path().display().to_string(), "<tmp>");
        let lines: Vec<String> = text
            .lines()
            .filter(|l| !l.starts_with("Use --debug flag"))
            .map(|l| {
                let l = l.strip_prefix("Error: ").unwrap_or(l);
                as_repo_paths(l, &self.name, &self.path)
            })
            .collect();
        lines.join("\n").trim().to_string()
    }
}

/// Chart files in `line` named as Helm names them (`web/templates/x.yaml`, by the chart's
/// name) rewritten as repository paths (`deploy/web/templates/x.yaml`, `path` being the chart
/// directory).
fn as_repo_paths(line: &str, name: &str, path: &str) -> String {
    let mut out = line.to_string();
    for entry in ["templates/", "crds/", "charts/", "values.yaml", CHART_FILE] {
        let helm = format!("{name}/{entry}");
        let repo = join(path, entry);
        let mut result = String::new();
        let mut rest = out.as_str();
        while let Some(i) = rest.find(&helm) {
            let starts_a_path = rest[..i]
                .chars()
                .last()
                .is_none_or(|c| !(c.is_alphanumeric() || matches!(c, '/' | '-' | '_' | '.')));
            result.push_str(&rest[..i]);
            result.push_str(if starts_a_path { &repo } else { &helm });
            rest = &rest[i + helm.len()..];
        }
        result.push_str(rest);
        out = result;
    }
    out
}

/// Dependencies `helm dependency list` reports as `missing`, as `name version (repository)`.
fn missing_dependencies(table: &str) -> Vec<String> {
    table
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('\t').map(str::trim).collect();
            match cells.as_slice() {
                [name, version, repository, status] if *status == "missing" && *name != "NAME" => {
                    Some(if repository.is_empty() {
                        format!("{name} {version}")
                    } else {
                        format!("{name} {version} ({repository})")
                    })
                }
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helm_messages_name_chart_files_by_their_repository_path() {
        let message =
            "web/templates/cm.yaml:6:15\n  executing \"web/templates/cm.yaml\" at <.Values.x>: nil";
        let lines: Vec<String> = message
            .lines()
            .map(|l| as_repo_paths(l, "web", "deploy/web"))
            .collect();
        assert_eq!(
            lines,
            [
                "deploy/web/templates/cm.yaml:6:15",
                "  executing \"deploy/web/templates/cm.yaml\" at <.Values.x>: nil"
            ]
        );
        assert_eq!(
            as_repo_paths("web/charts/db/templates/s.yaml", "web", ""),
            "charts/db/templates/s.yaml"
        );
        // Only where a path starts: another chart whose name ends alike is left alone.
        assert_eq!(
            as_repo_paths("myweb/templates/a.yaml", "web", "deploy/web"),
            "myweb/templates/a.yaml"
        );
    }

    #[test]
    fn missing_dependencies_are_read_from_helms_table() {
        let table = "NAME \tVERSION\tREPOSITORY                \tSTATUS  \n\
                     redis\t1.2.3  \thttps://charts.example.com\tmissing\n\
                     common\t2.x   \tfile://../common         \tok     \n\
                     local\t0.1.0  \t                          \tunpacked\n\n";
        assert_eq!(
            missing_dependencies(table),
            ["redis 1.2.3 (https://charts.example.com)"]
        );
        assert!(missing_dependencies("WARNING: no dependencies at x/charts\n").is_empty());
    }

    #[test]
    fn release_names_come_from_gitops_yaml_then_the_environment_then_the_chart() {
        let mut v = Values::default();
        assert_eq!(release_name(&v, "podinfo", "c").unwrap(), "podinfo");
        v.env = Some("dev".into());
        assert_eq!(release_name(&v, "podinfo", "c").unwrap(), "dev");
        v.settings = Some(HelmSettings {
            release: Some("web".into()),
            ..Default::default()
        });
        assert_eq!(release_name(&v, "podinfo", "c").unwrap(), "web");
        v.settings = None;
        v.env = Some("Prod_1".into());
        let e = release_name(&v, "podinfo", "c").unwrap_err();
        assert!(
            e.message.contains("the environment's name"),
            "{}",
            e.message
        );
        assert!(e.hint.unwrap().contains("helm.release"));
    }
}
