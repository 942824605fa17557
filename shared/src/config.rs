//! `gitops.yaml`: the ordered environments of a config repository.
//!
//! Both tools read it through this module, always from a specific commit (the one being
//! deployed), so what is promoted and how it is deployed come from the same snapshot.

use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::error::Error;
use crate::refname;

/// The file name at the root of a config repository.
pub const FILE_NAME: &str = "gitops.yaml";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// In promotion order: each environment is promoted from the one before it.
    pub environments: Vec<Environment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    pub name: String,
    /// Short branch name, e.g. `env/prod`.
    pub branch: String,
    /// Manifests directory relative to the repository root, normalised (no `./`, no trailing
    /// `/`; the empty string means the root).
    pub path: String,
    pub namespace: String,
    pub context: Option<String>,
    /// How a Helm chart at `path` is rendered for this environment (`helm:`).
    pub helm: Option<Helm>,
    /// What a deploy must have shown before it is promoted *into* this environment.
    pub gates: Gates,
    /// Where sync and revert of this environment send one event per run, besides `--notify`.
    pub notify: Vec<NotifyTarget>,
}

/// A webhook of `notify:` (README: notifications).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyTarget {
    /// `url: https://...`, written in the file: anyone who can read the repository can post to
    /// it, so `env` is usually the better choice.
    Url(String),
    /// `env: NAME`: the URL is read from this environment variable by the run.
    Env(String),
}

/// Promotion gates of an environment, checked on the source deploy when promoting into it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gates {
    /// The source deploy was verified healthy in the source environment
    /// (`kubectl gitops verify`), recorded as a note on its tag.
    pub verified: bool,
    /// ...and has stayed the source environment's deploy this long since its first
    /// verification (with `verified`) or since it was tagged.
    pub soak: Option<Duration>,
}

impl Gates {
    pub fn is_empty(&self) -> bool {
        !self.verified && self.soak.is_none()
    }

    /// Each gate at its strictest of the two: where several descriptions of an environment
    /// apply, loosening a gate in one of them does not loosen it.
    pub fn strictest(&self, other: &Gates) -> Gates {
        Gates {
            verified: self.verified || other.verified,
            soak: self.soak.max(other.soak),
        }
    }
}

/// The `helm:` block of an environment: the release and its values, for a `path` that holds a
/// Helm chart.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Helm {
    /// The release name; `None` means the environment's name.
    pub release: Option<String>,
    /// Values files relative to the chart directory, in the order Helm reads them.
    pub values_files: Vec<String>,
    /// Values given inline, read after the files (highest precedence).
    pub values: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Helm {
    /// The release name for environment `env`.
    pub fn release_for<'a>(&'a self, env: &'a str) -> &'a str {
        self.release.as_deref().unwrap_or(env)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    environments: Spanned<Vec<RawEnvironment>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvironment {
    name: Spanned<String>,
    branch: Spanned<String>,
    path: Spanned<String>,
    namespace: Spanned<String>,
    #[serde(default)]
    context: Option<Spanned<String>>,
    #[serde(default)]
    notify: Option<Vec<Spanned<RawNotify>>>,
    #[serde(default)]
    helm: Option<Spanned<RawHelm>>,
    #[serde(default)]
    gates: Option<RawGates>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    #[serde(default)]
    url: Option<Spanned<String>>,
    #[serde(default)]
    env: Option<Spanned<String>>,
}

/// A `notify:` entry: exactly one of `url` and `env`, each well formed. Messages never quote
/// a URL (it often carries a token).
fn notify_target(file: &str, raw: Spanned<RawNotify>) -> Result<NotifyTarget, Error> {
    let hint = "each notify entry is `url: https://...` or `env: NAME` (the URL read from that environment variable)";
    match (raw.value.url, raw.value.env) {
        (Some(url), None) => match refname::webhook_url_problem(&url.value) {
            Some(problem) => {
                Err(at(file, url.referenced, format!("notify url {problem}")).hint(hint))
            }
            None => Ok(NotifyTarget::Url(url.value)),
        },
        (None, Some(env)) => match refname::env_var_problem(&env.value) {
            Some(problem) => Err(at(
                file,
                env.referenced,
                format!("notify env {:?} {problem}", env.value),
            )
            .hint(hint)),
            None => Ok(NotifyTarget::Env(env.value)),
        },
        _ => Err(at(
            file,
            raw.referenced,
            "a notify entry needs exactly one of url and env",
        )
        .hint(hint)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawHelm {
    #[serde(default)]
    release: Option<Spanned<String>>,
    #[serde(default)]
    values_files: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    values: Option<Spanned<serde_json::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGates {
    #[serde(default)]
    verified: Option<bool>,
    #[serde(default)]
    soak: Option<Spanned<String>>,
}

const FIELDS_HINT: &str = "each environment needs name, branch, path and namespace, and may have context, helm (release, valuesFiles, values), gates (verified, soak) and notify (url or env); see the gitops.yaml reference in the README";

fn at(file: &str, loc: serde_saphyr::Location, message: impl std::fmt::Display) -> Error {
    Error::invalid(format!("{file}:{}:{}: {message}", loc.line(), loc.column()))
}

impl Config {
    /// Parses and validates `text`; `file` names the source in errors (for example
    /// `gitops.yaml at env/prod (abc1234)`).
    pub fn parse(file: &str, text: &str) -> Result<Config, Error> {
        let raw: RawConfig = serde_saphyr::from_str(text).map_err(|err| {
            let msg = first_line(&err.to_string());
            match err.location() {
                Some(loc) => at(file, loc, msg),
                None => Error::invalid(format!("{file}: {msg}")),
            }
            .hint(FIELDS_HINT)
        })?;
        if raw.environments.value.is_empty() {
            return Err(
                at(file, raw.environments.referenced, "`environments` is empty")
                    .hint("list at least one environment, in promotion order"),
            );
        }
        let mut environments: Vec<Environment> = Vec::new();
        let mut seen: Vec<(String, String, serde_saphyr::Location)> = Vec::new();
        for env in raw.environments.value {
            let check = |field: &str, value: &Spanned<String>, problem: Option<&str>| match problem
            {
                Some(problem) => Err(at(
                    file,
                    value.referenced,
                    format!("{field} {:?} {problem}", value.value),
                )),
                None => Ok(()),
            };
            check(
                "environment name",
                &env.name,
                refname::env_name_problem(&env.name.value),
            )?;
            check(
                "branch",
                &env.branch,
                refname::branch_problem(&env.branch.value),
            )?;
            check(
                "path",
                &env.path,
                refname::repo_path_problem(&env.path.value),
            )?;
            check(
                "namespace",
                &env.namespace,
                refname::dns_label_problem(&env.namespace.value),
            )?;
            if let Some(ctx) = &env.context
                && ctx.value.trim().is_empty()
            {
                return Err(at(
                    file,
                    ctx.referenced,
                    "context is empty; remove the key to use the current kube context",
                ));
            }
            let helm = match env.helm {
                Some(raw) => Some(helm_block(file, &env.name, &env.path.value, raw)?),
                None => None,
            };
            for (name, branch, loc) in &seen {
                if *name == env.name.value {
                    return Err(at(
                        file,
                        env.name.referenced,
                        format!(
                            "duplicate environment name {:?} (first defined at line {})",
                            name,
                            loc.line()
                        ),
                    )
                    .hint("environment names must be unique"));
                }
                if *branch == env.branch.value {
                    return Err(at(
                        file,
                        env.branch.referenced,
                        format!(
                            "branch {:?} is used by two environments ({} and {})",
                            branch, name, env.name.value
                        ),
                    )
                    .hint("each environment needs its own branch"));
                }
            }
            let notify = env
                .notify
                .into_iter()
                .flatten()
                .map(|raw| notify_target(file, raw))
                .collect::<Result<Vec<_>, _>>()?;
            let gates = match env.gates {
                Some(raw) => Gates {
                    verified: raw.verified.unwrap_or(false),
                    soak: match raw.soak {
                        Some(soak) => parse_soak(&soak.value).map_err(|why| {
                            at(file, soak.referenced, format!("gates.soak: {why}"))
                        })?,
                        None => None,
                    },
                },
                None => Gates::default(),
            };
            seen.push((
                env.name.value.clone(),
                env.branch.value.clone(),
                env.name.referenced,
            ));
            environments.push(Environment {
                name: env.name.value,
                branch: env.branch.value,
                path: refname::normalize_repo_path(&env.path.value),
                namespace: env.namespace.value,
                context: env.context.map(|c| c.value),
                helm,
                gates,
                notify,
            });
        }
        Ok(Config { environments })
    }

    pub fn env(&self, name: &str) -> Option<&Environment> {
        self.environments.iter().find(|e| e.name == name)
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.environments.iter().position(|e| e.name == name)
    }

    /// The environment `name` is promoted to by default.
    pub fn next_after(&self, name: &str) -> Option<&Environment> {
        self.index_of(name)
            .and_then(|i| self.environments.get(i + 1))
    }

    /// The environment `name` is promoted from.
    pub fn previous_of(&self, name: &str) -> Option<&Environment> {
        self.index_of(name)
            .and_then(|i| i.checked_sub(1))
            .map(|i| &self.environments[i])
    }

    /// `name`, or an error that lists the environments that do exist.
    pub fn require(&self, name: &str, source: &str) -> Result<&Environment, Error> {
        self.env(name).ok_or_else(|| {
            Error::invalid(format!("unknown environment {name:?} in {source}"))
                .hint(format!("environments are: {}", self.names().join(", ")))
        })
    }

    pub fn names(&self) -> Vec<&str> {
        self.environments.iter().map(|e| e.name.as_str()).collect()
    }

    /// Renders the file `git deploy init` writes. Values are validated names, so quoting is
    /// only needed to keep YAML from reading them as something other than strings.
    pub fn to_yaml(&self) -> String {
        let mut out = String::from(
            "# Environments of this config repository, in promotion order.\n\
             # Read by `git deploy` and `kubectl gitops` from the commit being deployed.\n\
             environments:\n",
        );
        for env in &self.environments {
            out.push_str(&format!("  - name: {}\n", quote(&env.name)));
            out.push_str(&format!("    branch: {}\n", quote(&env.branch)));
            let path = if env.path.is_empty() {
                "."
            } else {
                env.path.as_str()
            };
            out.push_str(&format!("    path: {}\n", quote(path)));
            out.push_str(&format!("    namespace: {}\n", quote(&env.namespace)));
            if let Some(ctx) = &env.context {
                out.push_str(&format!("    context: {}\n", quote(ctx)));
            }
            if env.helm.as_ref() == Some(&Helm::default()) {
                out.push_str("    helm: {}\n");
            } else if let Some(helm) = &env.helm {
                out.push_str("    helm:\n");
                if let Some(release) = &helm.release {
                    out.push_str(&format!("      release: {}\n", quote(release)));
                }
                if !helm.values_files.is_empty() {
                    let files: Vec<String> = helm.values_files.iter().map(|f| quote(f)).collect();
                    out.push_str(&format!("      valuesFiles: [{}]\n", files.join(", ")));
                }
                if let Some(values) = &helm.values {
                    // JSON is YAML in flow style: every value keeps its type.
                    let json = serde_json::to_string(values).expect("values always serialise");
                    out.push_str(&format!("      values: {json}\n"));
                }
            }
            if !env.gates.is_empty() {
                out.push_str("    gates:\n");
                if env.gates.verified {
                    out.push_str("      verified: true\n");
                }
                if let Some(soak) = env.gates.soak {
                    out.push_str(&format!(
                        "      soak: {}\n",
                        quote(&crate::duration::format_duration(soak))
                    ));
                }
            }
            if !env.notify.is_empty() {
                out.push_str("    notify:\n");
            }
            for target in &env.notify {
                match target {
                    NotifyTarget::Url(url) => {
                        out.push_str(&format!("      - url: {}\n", quote(url)))
                    }
                    NotifyTarget::Env(name) => {
                        out.push_str(&format!("      - env: {}\n", quote(name)))
                    }
                }
            }
        }
        out
    }
}

/// Checks an environment's `helm:` block. Values files may use `..` (a values directory beside
/// the chart is common), but must stay inside the repository when resolved from the chart's
/// `path`.
fn helm_block(
    file: &str,
    env: &Spanned<String>,
    chart_path: &str,
    raw: Spanned<RawHelm>,
) -> Result<Helm, Error> {
    let raw_loc = raw.referenced;
    let raw = raw.value;
    if let Some(release) = &raw.release
        && let Some(problem) = refname::helm_release_problem(&release.value)
    {
        return Err(at(
            file,
            release.referenced,
            format!("helm.release {:?} {problem}", release.value),
        )
        .hint(
            "Helm release names are lowercase letters, digits, '-' and '.', at most 53 characters",
        ));
    }
    if raw.release.is_none()
        && let Some(problem) = refname::helm_release_problem(&env.value)
    {
        return Err(at(
            file,
            raw_loc,
            format!(
                "helm.release is needed: the release name defaults to the environment's name, and {:?} {problem}",
                env.value
            ),
        )
        .hint("set helm.release to a lowercase name of letters, digits, '-' and '.'"));
    }
    let mut values_files = Vec::new();
    for entry in raw.values_files.unwrap_or_default() {
        if let Some(problem) = values_file_problem(chart_path, &entry.value) {
            return Err(at(
                file,
                entry.referenced,
                format!("helm.valuesFiles entry {:?} {problem}", entry.value),
            )
            .hint("values files are paths relative to the chart directory (the environment's path), inside the repository"));
        }
        values_files.push(entry.value);
    }
    let values = match raw.values {
        None => None,
        Some(Spanned {
            value: serde_json::Value::Object(map),
            ..
        }) => Some(map),
        Some(Spanned {
            value: serde_json::Value::Null,
            ..
        }) => None,
        Some(other) => {
            return Err(at(
                file,
                other.referenced,
                "helm.values must be a mapping of chart values, e.g. {replicaCount: 2}",
            ));
        }
    };
    Ok(Helm {
        release: raw.release.map(|r| r.value),
        values_files,
        values,
    })
}

/// Why `entry` (relative to the chart at `chart_path`) cannot name a values file.
pub fn values_file_problem(chart_path: &str, entry: &str) -> Option<&'static str> {
    if entry.trim().is_empty() {
        return Some("is empty");
    }
    if entry.starts_with('/') {
        return Some("is absolute; give a path relative to the chart directory");
    }
    if entry.contains('\\') {
        return Some("contains '\\'; use '/' as the separator");
    }
    if entry.contains('\0') || entry.contains("://") {
        return Some("is not a path inside the repository");
    }
    if resolve_in_repo(chart_path, entry).is_none() {
        return Some("points outside the repository");
    }
    None
}

/// `entry` relative to the directory `base` (repository-relative, `""` the root), resolved by
/// path text; `None` when `..` leaves the repository.
pub fn resolve_in_repo(base: &str, entry: &str) -> Option<String> {
    let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
    for part in entry.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

/// A soak time, spelled as every duration of both tools (`crate::duration`); `0` means none.
fn parse_soak(text: &str) -> Result<Option<Duration>, String> {
    crate::duration::parse(text).map(|d| (!d.is_zero()).then_some(d))
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("strings always serialise")
}

/// serde-saphyr's message without its own `error: line N column M:` prefix, which we replace
/// with `file:line:column:`.
fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or_default().trim();
    let line = line.strip_prefix("error:").unwrap_or(line).trim_start();
    if let Some(rest) = line.strip_prefix("line ")
        && let Some((_, msg)) = rest.split_once(": ")
        && rest
            .split_once(':')
            .is_some_and(|(pos, _)| pos.contains(" column "))
    {
        return msg.trim().to_string();
    }
    line.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
environments:
  - name: dev
    branch: env/dev
    path: deploy/overlays/dev/
    namespace: dev
    context: kind-dev
  - name: staging
    branch: env/staging
    path: ./deploy/overlays/staging
    namespace: staging
    notify:
      - env: SLACK_WEBHOOK_URL
      - url: https://chat.example.com/hooks/abc
  - name: prod
    branch: env/prod
    path: deploy/overlays/production
    namespace: production
    gates:
      verified: true
      soak: 30m
";

    #[test]
    fn parses_the_documented_example() {
        let c = Config::parse("gitops.yaml", GOOD).unwrap();
        assert_eq!(c.names(), ["dev", "staging", "prod"]);
        assert_eq!(c.env("dev").unwrap().context.as_deref(), Some("kind-dev"));
        assert_eq!(c.env("dev").unwrap().path, "deploy/overlays/dev");
        assert_eq!(c.env("staging").unwrap().path, "deploy/overlays/staging");
        assert_eq!(c.next_after("dev").unwrap().name, "staging");
        assert_eq!(c.previous_of("prod").unwrap().name, "staging");
        assert!(c.next_after("prod").is_none());
        assert!(c.previous_of("dev").is_none());
        assert_eq!(
            c.env("staging").unwrap().notify,
            [
                NotifyTarget::Env("SLACK_WEBHOOK_URL".into()),
                NotifyTarget::Url("https://chat.example.com/hooks/abc".into())
            ]
        );
        assert!(c.env("dev").unwrap().notify.is_empty());
    }

    #[test]
    fn bad_notify_entries_name_line_and_column_and_never_the_url() {
        let env = "environments:\n  - name: dev\n    branch: env/dev\n    path: d\n    namespace: dev\n    notify:\n";
        let e = err(&format!("{env}      - url: ftp://secret-token@x/y\n"));
        assert!(e.starts_with("gitops.yaml:7:"), "{e}");
        assert!(
            e.contains("notify url is not an http:// or https:// URL"),
            "{e}"
        );
        assert!(!e.contains("secret-token"), "{e}");
        let e = err(&format!("{env}      - env: 'A-B'\n"));
        assert!(e.starts_with("gitops.yaml:7:"), "{e}");
        assert!(e.contains("notify env \"A-B\""), "{e}");
        let e = err(&format!("{env}      - {{url: 'https://x', env: X}}\n"));
        assert!(e.contains("exactly one of url and env"), "{e}");
        let e = err(&format!("{env}      - {{}}\n"));
        assert!(e.contains("exactly one of url and env"), "{e}");
        let e = err(&format!("{env}      - {{channel: x}}\n"));
        assert!(e.contains("channel"), "{e}");
    }

    #[test]
    fn parses_the_gates_of_the_documented_example() {
        let c = Config::parse("gitops.yaml", GOOD).unwrap();
        assert_eq!(
            c.env("prod").unwrap().gates,
            Gates {
                verified: true,
                soak: Some(Duration::from_secs(1800))
            }
        );
        assert!(c.env("staging").unwrap().gates.is_empty());
    }

    #[test]
    fn gates_take_go_and_longer_duration_spellings() {
        let soak = |s: &str| {
            let text = format!(
                "environments:\n  - name: a\n    branch: a\n    path: a\n    namespace: a\n    gates:\n      soak: {s}\n"
            );
            Config::parse("gitops.yaml", &text).map(|c| c.environments[0].gates.soak)
        };
        assert_eq!(soak("1h30m").unwrap(), Some(Duration::from_secs(5400)));
        assert_eq!(soak("\"1h 30m\"").unwrap(), Some(Duration::from_secs(5400)));
        assert_eq!(soak("45s").unwrap(), Some(Duration::from_secs(45)));
        assert_eq!(soak("0").unwrap(), None);
    }

    #[test]
    fn bad_gates_name_line_column_and_what_to_write() {
        let base = "environments:\n  - name: a\n    branch: a\n    path: a\n    namespace: a\n    gates:\n";
        let e = err(&format!("{base}      soak: soon\n"));
        assert!(
            e.starts_with("gitops.yaml:7:13: gates.soak: \"soon\" is not a duration"),
            "{e}"
        );
        assert!(e.contains("a duration such as 30s, 5m, 1h30m or 0"), "{e}");
        let e = err(&format!("{base}      soak: 30\n"));
        assert!(
            e.starts_with("gitops.yaml:7:13: gates.soak: \"30\" has no unit"),
            "{e}"
        );
        let e = err(&format!("{base}      soak: -5m\n"));
        assert!(e.contains("negative"), "{e}");
        let e = err(&format!("{base}      verified: maybe\n"));
        assert!(e.starts_with("gitops.yaml:7:"), "{e}");
        let e = err(&format!("{base}      approved: true\n"));
        assert!(e.starts_with("gitops.yaml:7:"), "{e}");
        assert!(e.contains("approved"), "{e}");
    }

    #[test]
    fn the_strictest_of_two_gates_keeps_each_gate() {
        let a = Gates {
            verified: true,
            soak: Some(Duration::from_secs(60)),
        };
        let b = Gates {
            verified: false,
            soak: Some(Duration::from_secs(600)),
        };
        assert_eq!(
            a.strictest(&b),
            Gates {
                verified: true,
                soak: Some(Duration::from_secs(600))
            }
        );
        assert_eq!(
            Gates::default().strictest(&Gates::default()),
            Gates::default()
        );
    }

    #[test]
    fn round_trips_through_to_yaml() {
        let c = Config::parse("gitops.yaml", GOOD).unwrap();
        assert_eq!(Config::parse("x", &c.to_yaml()).unwrap(), c);
    }

    fn err(text: &str) -> String {
        Config::parse("gitops.yaml", text).unwrap_err().to_string()
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let e = err(
            "environments:\n  - name: dev\n    branch: env/dev\n    path: d\n    namespace: dev\n    colour: red\n",
        );
        assert!(e.starts_with("gitops.yaml:6:"), "{e}");
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn missing_field_is_named() {
        let e = err("environments:\n  - name: dev\n    branch: env/dev\n    namespace: dev\n");
        assert!(e.starts_with("gitops.yaml:"), "{e}");
        assert!(e.contains("path"), "{e}");
    }

    #[test]
    fn duplicates_point_at_the_second_definition() {
        let e = err(
            "environments:\n  - {name: dev, branch: env/dev, path: a, namespace: a}\n  - {name: dev, branch: env/x, path: a, namespace: a}\n",
        );
        assert!(e.starts_with("gitops.yaml:3:"), "{e}");
        assert!(e.contains("duplicate environment name \"dev\""), "{e}");
        let e = err(
            "environments:\n  - {name: a, branch: env/x, path: a, namespace: a}\n  - {name: b, branch: env/x, path: a, namespace: a}\n",
        );
        assert!(
            e.contains("branch \"env/x\" is used by two environments"),
            "{e}"
        );
    }

    #[test]
    fn bad_names_are_rejected_with_the_reason() {
        let e = err("environments:\n  - {name: dev, branch: 'env..dev', path: a, namespace: a}\n");
        assert!(e.contains("branch \"env..dev\" contains '..'"), "{e}");
        let e = err("environments:\n  - {name: ../x, branch: env/dev, path: a, namespace: a}\n");
        assert!(e.contains("environment name"), "{e}");
        let e = err("environments:\n  - {name: -x, branch: env/dev, path: a, namespace: a}\n");
        assert!(e.contains("must start with a letter or digit"), "{e}");
        let e = err("environments:\n  - {name: x, branch: env/dev, path: ../a, namespace: a}\n");
        assert!(e.contains("path"), "{e}");
        let e = err("environments:\n  - {name: x, branch: env/dev, path: a, namespace: Prod}\n");
        assert!(e.contains("namespace"), "{e}");
        let e = err("environments: []\n");
        assert!(e.contains("empty"), "{e}");
        let e = err("environments: [\n");
        assert!(e.starts_with("gitops.yaml:"), "{e}");
    }

    const HELM: &str = "\
environments:
  - name: dev
    branch: env/dev
    path: deploy/podinfo
    namespace: dev
  - name: prod
    branch: env/prod
    path: deploy/podinfo
    namespace: prod
    helm:
      release: podinfo
      valuesFiles: [values.yaml, values-prod.yaml, ../values/prod.yaml]
      values: {replicaCount: 3, ui: {message: \"hello\"}, tags: [a, b]}
";

    #[test]
    fn helm_blocks_parse_and_round_trip() {
        let c = Config::parse("gitops.yaml", HELM).unwrap();
        assert_eq!(c.env("dev").unwrap().helm, None);
        let helm = c.env("prod").unwrap().helm.clone().unwrap();
        assert_eq!(helm.release.as_deref(), Some("podinfo"));
        assert_eq!(helm.release_for("prod"), "podinfo");
        assert_eq!(
            helm.values_files,
            ["values.yaml", "values-prod.yaml", "../values/prod.yaml"]
        );
        let values = helm.values.unwrap();
        assert_eq!(values["replicaCount"], 3);
        assert_eq!(values["ui"]["message"], "hello");
        assert_eq!(values["tags"][1], "b");
        assert_eq!(Config::parse("x", &c.to_yaml()).unwrap(), c);
        let empty =
            "environments:\n  - {name: dev, branch: env/dev, path: c, namespace: dev, helm: {}}\n";
        let c = Config::parse("gitops.yaml", empty).unwrap();
        assert_eq!(c.env("dev").unwrap().helm, Some(Helm::default()));
        assert_eq!(Config::parse("x", &c.to_yaml()).unwrap(), c);
    }

    #[test]
    fn helm_block_errors_name_line_column_and_the_fix() {
        let with = |block: &str| {
            err(&format!(
                "environments:\n  - name: dev\n    branch: env/dev\n    path: deploy/chart\n    namespace: dev\n    helm:\n{block}"
            ))
        };
        let e = with("      relase: web\n");
        assert!(e.starts_with("gitops.yaml:7:"), "{e}");
        assert!(e.contains("relase"), "{e}");
        let e = with("      release: Web_1\n");
        assert!(e.starts_with("gitops.yaml:7:16:"), "{e}");
        assert!(e.contains("helm.release \"Web_1\""), "{e}");
        let e = with("      valuesFiles: [values.yaml, ../../../etc/passwd]\n");
        assert!(e.starts_with("gitops.yaml:7:"), "{e}");
        assert!(e.contains("points outside the repository"), "{e}");
        let e = with("      valuesFiles: [/etc/passwd]\n");
        assert!(e.contains("is absolute"), "{e}");
        let e = with("      values: [1, 2]\n");
        assert!(e.starts_with("gitops.yaml:7:"), "{e}");
        assert!(e.contains("helm.values must be a mapping"), "{e}");
        let e = with("      valuesFiles: values.yaml\n");
        assert!(e.starts_with("gitops.yaml:7:"), "{e}");
        // The release defaults to the environment's name, which must then be a valid one.
        let e = err(
            "environments:\n  - {name: Prod_1, branch: env/p, path: c, namespace: p, helm: {valuesFiles: [v.yaml]}}\n",
        );
        assert!(e.contains("helm.release is needed"), "{e}");
        assert!(Config::parse(
            "gitops.yaml",
            "environments:\n  - {name: Prod_1, branch: env/p, path: c, namespace: p, helm: {release: prod}}\n"
        )
        .is_ok());
    }
}
