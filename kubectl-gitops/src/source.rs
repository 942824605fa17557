//! Where the manifests come from: a tag (or an environment's latest deploy tag) in the config
//! repository, read from git objects, with namespace, path and context defaulting to the
//! environment's entry in gitops.yaml at that tag. The tag is read once ([`locate`]); its
//! manifests are loaded at the commit its signature check names ([`Located::load`]).

use std::path::{Path, PathBuf};

use crate::manifest::{Content, helm};
use gix::ObjectId;
use shared::git::Repo;
use shared::signature::{self, TagRef};
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

/// A tag resolved once: what its ref pointed at when it was read (the object a signature check
/// judges) and where its manifests are. Manifests are loaded separately, at the commit a trust
/// decision names ([`Located::load`]), so what is checked is what is deployed even if the ref
/// moves meanwhile.
pub struct Located {
    repo: Repo,
    pub tag: TagRef,
    pub path: String,
    pub env: Option<String>,
    pub namespace: Option<String>,
    pub context: Option<String>,
    /// The environment's `notify:` webhooks in gitops.yaml at the tag.
    pub notify: Vec<shared::config::NotifyTarget>,
    /// What decides a Helm chart's render besides the chart (the environment's `helm:` block
    /// at the tag, `--values`, `--set`).
    values: helm::Values,
}

impl Located {
    pub fn name(&self) -> &str {
        &self.tag.name
    }

    /// The commit the tag pointed at when it was read.
    pub fn commit(&self) -> ObjectId {
        self.tag.commit.id
    }

    /// The objects at `commit` (the commit a trust decision names; [`Located::commit`]), or
    /// the Helm chart there, checked and ready to render once the cluster is known.
    pub fn load(&self, commit: ObjectId) -> Result<Content> {
        crate::manifest::open_at(
            &self.repo,
            commit,
            &self.path,
            &kubectl_binary(),
            &self.values,
        )
    }
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

/// Finds the tag and reads it once (ref, tag object, commit); the environment's entry in
/// gitops.yaml at that commit gives namespace, path and context defaults. Loads no manifests.
pub fn locate(args: Location<'_>) -> Result<Located> {
    let dir = match args.repo {
        Some(p) => p.to_path_buf(),
        None => std::env::current_dir()?,
    };
    let repo = Repo::discover(&dir).map_err(|e| {
        Error::invalid(format!("--repo: {}", e.message))
            .hint("pass --repo <path to the config repository>, or run inside it")
    })?;
    // (short name, environment, what the ref points at): a deploy tag's target comes from
    // the same listing that judged it a deploy.
    let (tag, env_name, target) = match (args.tag, args.env) {
        (Some(t), _) => {
            let short = t.trim_start_matches("refs/tags/").to_string();
            let target = match repo.require_if_deploy_tag(t)? {
                Some(info) => info.tag_object.unwrap_or(info.commit),
                None => {
                    repo.tag_target(&short)
                        .map_err(|e| {
                            Error::invalid(format!(
                                "tag {short:?} not found in {}",
                                repo.git_dir().display()
                            ))
                            .hint(e.hint.unwrap_or_default())
                        })?
                        .1
                }
            };
            (short, TagName::parse(t).map(|t| t.env), target)
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
            (latest.name, Some(env.to_string()), latest.target)
        }
        (None, None) => return Err(Error::invalid("give --tag <tag> or --env <environment>")),
    };
    let tag_ref = signature::read_tag_at(&repo.inner, &tag, target)?;
    let commit = tag_ref.commit.id;
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
    Ok(Located {
        repo,
        tag: tag_ref,
        path,
        env: env.as_ref().map(|e| e.name.clone()),
        namespace: env.as_ref().map(|e| e.namespace.clone()),
        notify: env.as_ref().map(|e| e.notify.clone()).unwrap_or_default(),
        context: env.and_then(|e| e.context),
        values,
    })
}
