//! Which refs under `refs/tags/deploy/<env>/` are deploys. A tag name is easy to forge
//! (`git tag deploy/dev/20991231T235959Z <any commit>` makes it the newest), so both tools
//! trust a tag only when it is what `git deploy` writes:
//!
//! - an annotated tag object, pointing at a commit, whose own name is the ref's name (a copy
//!   of an older deploy's tag object under a newer name is a replay, not a deploy);
//! - whose record (the trailers of the message's last paragraph, signed tags too) has a
//!   `Deploy-Env` equal to the environment in the name;
//! - whose commit the environment's branch contains. The branch is read from gitops.yaml at
//!   HEAD, the repository's own description of its environments, never from the tagged commit
//!   (whoever made the tag chose that commit's gitops.yaml). Without a local branch of that
//!   name, its remote-tracking branches (`refs/remotes/*/<branch>`) count, as in a fresh clone.
//!
//! A deploy whose commit the branch no longer contains (someone reset or rewrote the branch
//! after it was tagged) is not trusted either: the branch is what the environment is meant to
//! run, so the newest deploy still on it is the latest.
//!
//! Everything else is ignored with one warning line per tag and process (however many times
//! it is looked at), and refused with the reason when named (`--tag`).
//!
//! Deploys of one environment are serialised by `refs/deploy/latest/<env>`, which points at
//! the latest deploy's tag object. It is read *before* the tags are listed, and every new
//! deploy moves it from that value by compare-and-swap in the same transaction that creates
//! the tag (and pushes it with a lease, see `RemoteRule::DeployChain`). Two deploys that read
//! the same latest deploy therefore cannot both be written: the second exits 3, instead of
//! leaving two tags that both name the same previous deploy. The ref is only a token for that
//! compare-and-swap; which deploy is the latest is still decided from the tags above.

use std::cell::{OnceCell, RefCell};
use std::collections::{BTreeSet, HashSet};
use std::sync::Mutex;

use gix::ObjectId;
use gix::bstr::ByteSlice;

use super::plan::{Plan, RemoteRule};
use super::{Repo, TagInfo};
use crate::error::{Error, Result};
use crate::tag::{self, DeployRecord, TagName};

/// A deploy tag that passed every check.
#[derive(Debug, Clone)]
pub struct DeployTag {
    /// Without `refs/tags/`.
    pub name: String,
    pub parsed: TagName,
    /// The annotated tag object.
    pub target: ObjectId,
    /// The commit it deploys.
    pub commit: ObjectId,
}

/// The deploys of one environment, newest first, checked lazily: commands that need only the
/// latest deploy read one or two tag objects, not thousands.
pub struct Deploys<'r> {
    repo: &'r Repo,
    env: String,
    branch: String,
    /// `refs/deploy/latest/<env>` as read before listing the tags.
    token: Option<ObjectId>,
    candidates: Vec<Candidate>,
    reach: RefCell<Reach<'r>>,
}

struct Candidate {
    name: String,
    parsed: Option<TagName>,
    target: Option<ObjectId>,
    verdict: OnceCell<Verdict>,
}

type Verdict = std::result::Result<DeployTag, String>;

impl Repo {
    /// The deploys of environment `env` that both tools trust (see the module comment). The
    /// environment and its branch come from gitops.yaml at HEAD; an unknown environment or a
    /// missing or broken gitops.yaml is an error naming it.
    pub fn deploys(&self, env: &str) -> Result<Deploys<'_>> {
        let (cfg, _) = self.head_config()?;
        let branch = cfg.require(env, "gitops.yaml at HEAD")?.branch.clone();
        Deploys::new(self, env, &branch)
    }

    /// A tag named by the user (`--tag`). One under `deploy/` claims to be a deploy, so it is
    /// refused (exit 2, with the reason) unless it is a trusted deploy of the environment its
    /// name gives; `None` for any other tag.
    pub fn require_if_deploy_tag(&self, name: &str) -> Result<Option<TagInfo>> {
        let short = name.trim_start_matches("refs/tags/");
        if !short.starts_with(&format!("{}/", tag::TAG_NAMESPACE)) {
            return Ok(None);
        }
        match TagName::parse(short) {
            Some(parsed) => self.deploys(&parsed.env)?.require(short).map(Some),
            None => Err(Error::invalid(format!(
                "{short} is under deploy/ but is not a deploy tag name (deploy/<env>/<YYYYMMDD>T<HHMMSS>Z[-N])"
            ))
            .hint("deploy/ holds the tags git deploy writes; name another tag, or use --env")),
        }
    }
}

impl<'r> Deploys<'r> {
    fn new(repo: &'r Repo, env: &str, branch: &str) -> Result<Deploys<'r>> {
        // Before the listing: a deploy written after this read moves the token, so a plan
        // built from a listing that missed it fails its compare-and-swap.
        let token = repo.ref_target(&latest_ref(env))?;
        let mut candidates = Vec::new();
        let prefix = format!("refs/tags/{}/{env}/", tag::TAG_NAMESPACE);
        let platform = repo.inner.references()?;
        for r in platform.prefixed(prefix.as_str())? {
            let r = r.map_err(|e| Error::context(format!("reading tags under {prefix}"), e))?;
            let full = r.name().as_bstr().to_str_lossy().into_owned();
            candidates.push(Candidate {
                name: full.trim_start_matches("refs/tags/").to_string(),
                parsed: TagName::parse(&full).filter(|p| p.env == env),
                target: r.target().try_id().map(|id| id.to_owned()),
                verdict: OnceCell::new(),
            });
        }
        // Newest first by the name's time; names that do not parse sort last (and are
        // never trusted).
        candidates.sort_by_key(|c| std::cmp::Reverse(c.parsed.as_ref().map(TagName::order_key)));
        Ok(Deploys {
            repo,
            env: env.to_string(),
            branch: branch.to_string(),
            token,
            candidates,
            reach: RefCell::new(Reach::new(repo, branch)?),
        })
    }

    pub fn env(&self) -> &str {
        &self.env
    }

    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// The newest trusted deploy.
    pub fn latest(&self) -> Result<Option<DeployTag>> {
        self.iter().next().transpose()
    }

    /// What a new deploy of this environment follows: the latest deploy, and the
    /// compare-and-swap that makes the new one the latest.
    pub fn succession(&self) -> Result<Succession> {
        Ok(Succession {
            env: self.env.clone(),
            previous: self.latest()?,
            token: self.token,
        })
    }

    /// Trusted deploys, newest first; untrusted tags met on the way are warned about.
    pub fn iter(&self) -> impl Iterator<Item = Result<DeployTag>> + '_ {
        (0..self.candidates.len()).filter_map(move |i| match self.verdict(i) {
            Ok(Ok(t)) => Some(Ok(t.clone())),
            Ok(Err(_)) => None,
            Err(e) => Some(Err(e)),
        })
    }

    /// The newest trusted deploy of `commit`, without checking every other tag's ancestry.
    pub fn of_commit(&self, commit: ObjectId) -> Result<Option<DeployTag>> {
        for (i, c) in self.candidates.iter().enumerate() {
            let Some(target) = c.target else { continue };
            if c.parsed.is_none() || self.repo.peel_to_commit(target).ok() != Some(commit) {
                continue;
            }
            if let Ok(t) = self.verdict(i)? {
                return Ok(Some(t.clone()));
            }
        }
        Ok(None)
    }

    /// The deploy tag `name` (with or without `refs/tags/`), refused (exit 2) with the reason
    /// when it is not a trusted deploy of this environment.
    pub fn require(&self, name: &str) -> Result<TagInfo> {
        let short = name.trim_start_matches("refs/tags/");
        let Some(i) = self.candidates.iter().position(|c| c.name == short) else {
            return Err(
                Error::invalid(format!("no tag named {short:?}")).hint(format!(
                    "`git deploy log {}` lists the deploy tags of {}",
                    self.env, self.env
                )),
            );
        };
        match self.verdict_quiet(i)? {
            Ok(t) => self.repo.tag_info_at(&t.name, t.target),
            Err(why) => Err(Error::invalid(format!(
                "{short} is not a deploy of {}: {why}",
                self.env
            ))
            .hint("only annotated tags written by `git deploy` on the environment's branch count")),
        }
    }

    fn verdict(&self, i: usize) -> Result<&Verdict> {
        let v = self.verdict_quiet(i)?;
        if let Err(why) = v {
            warn_once(&format!("ignoring tag {}: {why}", self.candidates[i].name));
        }
        Ok(v)
    }

    fn verdict_quiet(&self, i: usize) -> Result<&Verdict> {
        let c = &self.candidates[i];
        if let Some(v) = c.verdict.get() {
            return Ok(v);
        }
        let v = self.check(c)?;
        Ok(c.verdict.get_or_init(|| v))
    }

    /// Why `c` is not a deploy, or what it deploys. Errors are failures to read the
    /// repository, not verdicts.
    fn check(&self, c: &Candidate) -> Result<Verdict> {
        let Some(parsed) = c.parsed.clone() else {
            return Ok(Err(format!(
                "not a deploy tag name (deploy/{}/<YYYYMMDD>T<HHMMSS>Z[-N])",
                self.env
            )));
        };
        let Some(target) = c.target else {
            return Ok(Err("a symbolic ref, not a tag".into()));
        };
        let object = self.repo.inner.find_object(target)?;
        if object.kind != gix::object::Kind::Tag {
            return Ok(Err(format!(
                "a lightweight tag on a {}; deploys are annotated tags made by git deploy",
                object.kind
            )));
        }
        let tag = object.into_tag();
        let decoded = tag.decode()?;
        if decoded.name.as_bstr() != c.name.as_bytes().as_bstr() {
            return Ok(Err(format!(
                "the tag object in it is named {:?}: a copy of another tag under a new name",
                decoded.name.to_str_lossy()
            )));
        }
        if decoded.target_kind != gix::object::Kind::Commit {
            return Ok(Err(format!(
                "it tags a {}, not a commit",
                decoded.target_kind
            )));
        }
        let commit = decoded.target();
        match DeployRecord::parse(&decoded.message.to_str_lossy()) {
            None => {
                return Ok(Err(
                    "its message has no Deploy-Env trailer in its last paragraph (not made by git deploy)"
                        .into(),
                ));
            }
            Some(rec) if rec.env != self.env => {
                return Ok(Err(format!(
                    "its Deploy-Env trailer says {:?}, not {:?}",
                    rec.env, self.env
                )));
            }
            Some(_) => {}
        }
        let mut reach = self.reach.borrow_mut();
        if reach.tips.is_empty() {
            return Ok(Err(format!(
                "branch {} of environment {} does not exist here, so nothing shows it was deployed there",
                self.branch, self.env
            )));
        }
        if !reach.contains(commit)? {
            return Ok(Err(format!(
                "its commit {} is not on {} (was the branch reset or rewritten after this deploy?)",
                self.repo.short(commit),
                reach.described
            )));
        }
        Ok(Ok(DeployTag {
            name: c.name.clone(),
            parsed,
            target,
            commit,
        }))
    }
}

/// `refs/deploy/latest/<env>`: the token that serialises the deploys of `env`.
pub fn latest_ref(env: &str) -> String {
    format!("refs/deploy/latest/{env}")
}

/// The deploy a new deploy follows, owned so a command can keep it while it writes.
#[derive(Debug, Clone)]
pub struct Succession {
    env: String,
    /// The latest trusted deploy when the plan was made: the new tag's previous deploy.
    pub previous: Option<DeployTag>,
    token: Option<ObjectId>,
}

impl Succession {
    /// Adds the move of `refs/deploy/latest/<env>` to the new deploy's tag object `tag`.
    pub fn add_to(&self, plan: &mut Plan, tag: ObjectId) {
        plan.add_with(
            latest_ref(&self.env),
            self.token,
            Some(tag),
            format!("latest deploy of {}", self.env),
            RemoteRule::DeployChain {
                previous: self.previous.as_ref().map(|p| p.target),
            },
        );
    }
}

/// The commits of a branch, walked newest first only as far as a question needs: the
/// commit of a recent deploy is usually found within a few steps.
struct Reach<'r> {
    tips: Vec<ObjectId>,
    described: String,
    seen: HashSet<ObjectId>,
    walk: Option<gix::revision::Walk<'r>>,
}

impl<'r> Reach<'r> {
    fn new(repo: &'r Repo, branch: &str) -> Result<Reach<'r>> {
        let (tips, described) = match repo.branch_head(branch)? {
            Some(head) => (vec![head], branch.to_string()),
            None => {
                let mut tips = Vec::new();
                let mut names = Vec::new();
                for r in repo.inner.references()?.prefixed("refs/remotes/")? {
                    let r = r.map_err(|e| Error::context("reading remote-tracking branches", e))?;
                    let name = r.name().as_bstr().to_str_lossy().into_owned();
                    let Some((_remote, rest)) = name["refs/remotes/".len()..].split_once('/')
                    else {
                        continue;
                    };
                    if rest != branch {
                        continue;
                    }
                    if let Some(id) = r.target().try_id() {
                        tips.push(id.to_owned());
                        names.push(name["refs/remotes/".len()..].to_string());
                    }
                }
                (tips, names.join(", "))
            }
        };
        let walk = if tips.is_empty() {
            None
        } else {
            Some(
                repo.inner
                    .rev_walk(tips.iter().copied())
                    .sorting(gix::revision::walk::Sorting::ByCommitTime(
                        Default::default(),
                    ))
                    .all()?,
            )
        };
        Ok(Reach {
            tips,
            described,
            seen: HashSet::new(),
            walk,
        })
    }

    fn contains(&mut self, commit: ObjectId) -> Result<bool> {
        if self.seen.contains(&commit) {
            return Ok(true);
        }
        while let Some(walk) = &mut self.walk {
            match walk.next() {
                Some(info) => {
                    let info = info.map_err(|e| {
                        Error::context(format!("walking the history of {}", self.described), e)
                    })?;
                    self.seen.insert(info.id);
                    if info.id == commit {
                        return Ok(true);
                    }
                }
                None => self.walk = None,
            }
        }
        Ok(false)
    }
}

/// One line per distinct warning per process: the same untrusted tag is looked at several
/// times by one command (latest, then the previous deploy, then a listing).
fn warn_once(line: &str) {
    static SEEN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if seen.insert(line.to_string()) {
        eprintln!("warning: {line}");
    }
}
