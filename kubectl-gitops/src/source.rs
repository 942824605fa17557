//! Where the manifests come from: a tag (or an environment's latest deploy tag) in the config
//! repository, read from git objects, with namespace, path and context defaulting to the
//! environment's entry in gitops.yaml at that tag.

use std::path::{Path, PathBuf};

use crate::manifest::{Content, helm};
use gix::ObjectId;
use shared::git::Repo;
use shared::tag::TagName;
use shared::{Error, Result};

use crate::cli::SourceArgs;

/// Where to read: the repository (default: around the working directory), a tag or an
/// environment's latest deploy tag, and the manifests path (default: the environment's).
pub struct Location<'a> {
    pub repo: Option<&'a Path>,
    pub tag: Option<&'a str>,
    pub env: Option<&'a str>,
    pub path: Option<&'a str>,
    /// `--values FILE` and `--set key=value` for a Helm chart.
    pub values: &'a [String],
    pub set: &'a [String],
}

impl<'a> From<&'a SourceArgs> for Location<'a> {
    fn from(args: &'a SourceArgs) -> Self {
        Location {
            repo: args.repo.as_deref(),
            tag: args.tag.as_deref(),
            env: args.env.as_deref(),
            path: args.path.as_deref(),
            values: &args.values,
            set: &args.set,
        }
    }
}

/// [`Location`], owned, to move to a blocking thread.
#[derive(Clone, Debug, Default)]
pub struct Request {
    pub repo: Option<PathBuf>,
    pub tag: Option<String>,
    pub env: Option<String>,
    pub path: Option<String>,
    pub values: Vec<String>,
    pub set: Vec<String>,
}

impl Request {
    pub fn of(l: &Location<'_>) -> Request {
        Request {
            repo: l.repo.map(Path::to_path_buf),
            tag: l.tag.map(str::to_string),
            env: l.env.map(str::to_string),
            path: l.path.map(str::to_string),
            values: l.values.to_vec(),
            set: l.set.to_vec(),
        }
    }
}

/// [`resolve`] on a blocking thread: reading git objects, parsing, exporting a tree and
/// running `kubectl kustomize` must not hold one of the async runtime's few threads.
pub async fn load(location: Location<'_>) -> Result<Source> {
    let r = Request::of(&location);
    tokio::task::spawn_blocking(move || {
        resolve(Location {
            repo: r.repo.as_deref(),
            tag: r.tag.as_deref(),
            env: r.env.as_deref(),
            path: r.path.as_deref(),
            values: &r.values,
            set: &r.set,
        })
    })
    .await
    .map_err(|e| Error::refused(format!("reading the manifests: {e}")))?
}

pub struct Source {
    pub tag: String,
    pub commit: ObjectId,
    pub path: String,
    pub env: Option<String>,
    pub namespace: Option<String>,
    pub context: Option<String>,
    /// The objects, or a Helm chart to render once the cluster is known.
    pub content: Content,
}

/// `KUBECTL_PATH` is set by kubectl for its plugins; otherwise `kubectl` from PATH.
pub fn kubectl_binary() -> PathBuf {
    std::env::var_os("KUBECTL_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("kubectl"))
}

/// The environment `name`'s entry in gitops.yaml at the tag. A deploy tag (or `--env`) names
/// an environment, whose namespace and context come from there: a gitops.yaml that is broken
/// or lacks the environment is an error (exit 2), never a silent fall-back to the current
/// context's namespace. Only a `--tag` whose commit has no gitops.yaml at all goes on without
/// (with `--path` and `-n`).
fn environment_at(
    repo: &Repo,
    commit: ObjectId,
    tag: &str,
    name: &str,
    required: bool,
) -> Result<Option<shared::config::Environment>> {
    if !required && repo.file_at(commit, shared::config::FILE_NAME)?.is_none() {
        return Ok(None);
    }
    let cfg = repo.config_at(commit, tag)?;
    match cfg.env(name) {
        Some(e) => Ok(Some(e.clone())),
        None => Err(cfg
            .require(name, &format!("gitops.yaml at {tag}"))
            .unwrap_err()),
    }
}

pub fn resolve(args: Location<'_>) -> Result<Source> {
    let dir = match args.repo {
        Some(p) => p.to_path_buf(),
        None => std::env::current_dir()?,
    };
    let repo = Repo::discover(&dir).map_err(|e| {
        Error::invalid(format!("--repo: {}", e.message))
            .hint("pass --repo <path to the config repository>, or run inside it")
    })?;
    let (tag, env_name) = match (args.tag, args.env) {
        (Some(t), _) => {
            repo.require_if_deploy_tag(t)?;
            (
                t.trim_start_matches("refs/tags/").to_string(),
                TagName::parse(t).map(|t| t.env),
            )
        }
        (None, Some(env)) => {
            let latest = repo.deploys(env)?.latest()?.ok_or_else(|| {
                Error::invalid(format!(
                    "environment {env:?} has no deploy tag in {}",
                    repo.git_dir().display()
                ))
                .hint(format!(
                    "tag it with `git deploy tag {env}`, or name a tag with --tag"
                ))
            })?;
            (latest.name, Some(env.to_string()))
        }
        (None, None) => return Err(Error::invalid("give --tag <tag> or --env <environment>")),
    };
    let info = repo.tag_info(&tag).map_err(|e| {
        Error::invalid(format!(
            "tag {tag:?} not found in {}",
            repo.git_dir().display()
        ))
        .hint(e.hint.unwrap_or_default())
    })?;
    let commit = info.commit;
    let env = match &env_name {
        Some(name) => environment_at(&repo, commit, &tag, name, args.env.is_some())?,
        None => None,
    };
    let path = match (args.path, &env) {
        (Some(p), _) => {
            if let Some(problem) = shared::refname::repo_path_problem(p) {
                return Err(Error::invalid(format!("--path {p:?} {problem}")));
            }
            shared::refname::normalize_repo_path(p)
        }
        (None, Some(e)) => e.path.clone(),
        (None, None) => {
            return Err(Error::invalid(format!(
                "--path is needed: {tag} is not a deploy tag of an environment in gitops.yaml"
            ))
            .hint("name the manifests directory with --path, or use --env"));
        }
    };
    let values = helm::Values {
        env: env.as_ref().map(|e| e.name.clone()),
        settings: env.as_ref().and_then(|e| e.helm.clone()),
        files: args.values.to_vec(),
        set: args.set.to_vec(),
    };
    let content = crate::manifest::open_at(&repo, commit, &path, &kubectl_binary(), &values)?;
    Ok(Source {
        tag,
        commit,
        path,
        env: env.as_ref().map(|e| e.name.clone()),
        namespace: env.as_ref().map(|e| e.namespace.clone()),
        context: env.and_then(|e| e.context),
        content,
    })
}
