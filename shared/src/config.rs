//! `gitops.yaml`: the ordered environments of a config repository.
//!
//! Both tools read it through this module, always from a specific commit (the one being
//! deployed), so what is promoted and how it is deployed come from the same snapshot.

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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    #[serde(default)]
    url: Option<Spanned<String>>,
    #[serde(default)]
    env: Option<Spanned<String>>,
}

const FIELDS_HINT: &str = "each environment needs name, branch, path and namespace, and may have context and notify; see the gitops.yaml reference in the README";

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
}
