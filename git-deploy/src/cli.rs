//! Command-line surface of `git deploy`. The man page and shell completions are generated from
//! these definitions, so help text here is the documentation.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub const EXIT_CODES: &str = "\
Exit codes:
  0  success (also: nothing to do)
  1  refused or failed (unmet gates of the target, diverged branches, locked environment, no
     terminal to confirm, push refused)
  2  invalid input or usage (unknown environment or tag, untrusted deploy tag, malformed gitops.yaml,
     not a repository, shallow clone)
  3  lost a race: a ref changed between reading and writing, or the remote has changes this clone
     lacks; nothing was written, retry (after a fetch)";

#[derive(Parser, Debug)]
#[command(
    name = "git-deploy",
    bin_name = "git deploy",
    version,
    about = "Promote GitOps configuration across environment branches, with an audit trail in annotated tags",
    long_about = "Promote GitOps configuration across environment branches, with an audit trail in annotated tags.\n\n\
The environments, their branches and manifest paths are read from gitops.yaml at the root of the \
repository, from the commit being deployed. Every deploy is an annotated tag \
deploy/<env>/<YYYYMMDD>T<HHMMSS>Z whose trailers (Deploy-Env, Deploy-Action, Deploy-Source-*, \
Deploy-Previous-*, Deploy-Branch, Deploy-Tool) record what happened. Branches only move forward: \
rollback adds a commit, it never rewrites history.",
    after_help = EXIT_CODES,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Run as if started in <path> (like `git -C <path>`)
    #[arg(short = 'C', value_name = "path", global = true)]
    pub dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write gitops.yaml (if none exists), commit it, and create missing environment branches
    #[command(after_help = EXIT_CODES)]
    Init(InitArgs),
    /// Show each environment: branch head, latest deploy tag, and pending promotions
    #[command(after_help = EXIT_CODES)]
    Status(StatusArgs),
    /// Create a deploy tag on an environment's branch head (or a commit on that branch)
    #[command(after_help = EXIT_CODES)]
    Tag(TagArgs),
    /// Move an environment's branch to what the previous environment deployed, and tag it
    #[command(after_help = EXIT_CODES)]
    Promote(PromoteArgs),
    /// Add a commit restoring an earlier deploy's tree, and tag it (never rewrites history)
    #[command(after_help = EXIT_CODES)]
    Rollback(RollbackArgs),
    /// List the deploy tags of an environment, newest first
    #[command(after_help = EXIT_CODES)]
    Log(LogArgs),
    /// Show commits and file changes in one environment that another lacks
    #[command(after_help = EXIT_CODES)]
    Diff(DiffArgs),
    /// Show what a deploy tag records, and its signature as `git tag -v` would judge it
    #[command(after_help = EXIT_CODES)]
    Show(ShowArgs),
    /// Lock an environment: promote, rollback and tag refuse until it is unlocked
    #[command(after_help = EXIT_CODES)]
    Lock(LockArgs),
    /// Remove an environment's lock
    #[command(after_help = EXIT_CODES)]
    Unlock(UnlockArgs),
    /// Print shell completions (bash, zsh, fish, elvish, powershell) to stdout
    Completions(CompletionsArgs),
    /// Print the git-deploy(1) man page (roff) to stdout, or write all man pages to a directory
    Man(ManArgs),
}

pub use shared::output::Format as Output;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Strategy {
    /// Fast-forward only; refuse when the target has commits the source lacks
    Ff,
    /// Three-way merge commit of the source into the target (keeps the target's hotfixes)
    Merge,
    /// One commit on the target whose tree equals the source's (drops the target's own changes;
    /// no conflicts, no history rewrite)
    Tree,
}

/// Flags shared by every command that writes refs.
#[derive(Args, Debug, Clone)]
pub struct WriteArgs {
    /// Print exactly the ref updates that would be made, and write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Push everything this writes in one `git push --atomic` (tag commands take the branch
    /// along), each ref leased on what the remote has (git ls-remote); a remote with changes
    /// this clone lacks stops it (exit 3). The remote defaults to `origin`: --push=<remote>
    #[arg(long, value_name = "remote", num_args = 0..=1, require_equals = true, default_missing_value = "origin")]
    pub push: Option<String>,
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// An environment, in promotion order: NAME=BRANCH[:PATH[:NAMESPACE]]. PATH defaults to
    /// deploy/<NAME>, NAMESPACE to NAME. Without --env: dev, staging and prod on env/<name>
    #[arg(long = "env", value_name = "NAME=BRANCH[:PATH[:NAMESPACE]]")]
    pub envs: Vec<String>,
    /// Print what would be written and created, and change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Output format
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Args, Debug)]
pub struct TagArgs {
    /// Environment to tag
    pub env: String,
    /// Commit to tag; must be on the environment's branch (default: the branch head)
    pub rev: Option<String>,
    /// Message added to the tag, below its subject line
    #[arg(short, long, value_name = "msg")]
    pub message: Option<String>,
    /// Sign the tag as `git tag -s` does (also when the git config tag.gpgSign is true): with
    /// gpg, or with ssh-keygen when gpg.format=ssh; the key is user.signingKey (for SSH a key
    /// file or a literal `key::ssh-ed25519 AAAA...` whose private key is in ssh-agent)
    #[arg(long)]
    pub sign: bool,
    /// Tag even if the environment is locked
    #[arg(long)]
    pub ignore_lock: bool,
    #[command(flatten)]
    pub write: WriteArgs,
}

#[derive(Args, Debug)]
pub struct PromoteArgs {
    /// Environment to promote from
    pub from: String,
    /// Environment to promote to (default: the one after <from> in gitops.yaml)
    pub to: Option<String>,
    /// Deploy tag of <from> to promote (default: its latest deploy tag); only trusted deploy
    /// tags are accepted (annotated, made by git deploy, on <from>'s branch)
    #[arg(long, value_name = "tag")]
    pub tag: Option<String>,
    /// How to move the target branch when it has commits the source lacks
    #[arg(long, value_enum, default_value_t = Strategy::Ff)]
    pub strategy: Strategy,
    /// Message added to the tag, below its subject line
    #[arg(short, long, value_name = "msg")]
    pub message: Option<String>,
    /// Do not ask for confirmation
    #[arg(short, long)]
    pub yes: bool,
    /// Sign the tag as `git tag -s` does (also when the git config tag.gpgSign is true): with
    /// gpg, or with ssh-keygen when gpg.format=ssh; the key is user.signingKey (for SSH a key
    /// file or a literal `key::ssh-ed25519 AAAA...` whose private key is in ssh-agent)
    #[arg(long)]
    pub sign: bool,
    /// Refuse to promote unless the source deploy tag carries a signature git's own
    /// configuration trusts, as `git tag -v` judges it: a key in gpg.ssh.allowedSignersFile
    /// (SSH) or in your GPG keyring (OpenPGP). Also when the git config deploy.verifySource is
    /// true
    #[arg(long)]
    pub verify_source: bool,
    /// Promote even if the target environment is locked
    #[arg(long)]
    pub ignore_lock: bool,
    /// Promote even if gates of the target (gitops.yaml `gates:`) are unmet; the reason is
    /// recorded in the new tag as its Deploy-Gate-Override trailer
    #[arg(long, value_name = "reason")]
    pub override_gates: Option<String>,
    /// Output format: text prints the new tag's name on stdout; json prints one document
    /// with the gates, the ref updates and the tag (also with --dry-run, and when gates refuse)
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    #[command(flatten)]
    pub write: WriteArgs,
}

#[derive(Args, Debug)]
pub struct RollbackArgs {
    /// Environment to roll back
    pub env: String,
    /// Deploy tag to restore (default: the latest earlier deploy whose tree differs from the
    /// current one); only trusted deploy tags are accepted
    pub tag: Option<String>,
    /// Message added to the tag, below its subject line
    #[arg(short, long, value_name = "msg")]
    pub message: Option<String>,
    /// Do not ask for confirmation
    #[arg(short, long)]
    pub yes: bool,
    /// Sign the tag as `git tag -s` does (also when the git config tag.gpgSign is true): with
    /// gpg, or with ssh-keygen when gpg.format=ssh; the key is user.signingKey (for SSH a key
    /// file or a literal `key::ssh-ed25519 AAAA...` whose private key is in ssh-agent)
    #[arg(long)]
    pub sign: bool,
    /// Roll back even if the environment is locked
    #[arg(long)]
    pub ignore_lock: bool,
    #[command(flatten)]
    pub write: WriteArgs,
}

#[derive(Args, Debug)]
pub struct LogArgs {
    /// Environment whose deploys to list
    pub env: String,
    /// Show at most N deploys
    #[arg(short = 'n', long = "max-count", value_name = "N")]
    pub max_count: Option<usize>,
    /// Output format
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// Environment whose branch has the changes
    pub a: String,
    /// Environment the changes are compared against
    pub b: String,
    /// Show only the list of changed files with line counts, not their content
    #[arg(long)]
    pub stat: bool,
    /// Output format
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// Deploy tag (with or without refs/tags/)
    pub tag: String,
    /// Output format
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Args, Debug)]
pub struct LockArgs {
    /// Environment to lock
    pub env: String,
    /// Why it is locked (shown to whoever is refused)
    #[arg(short, long, value_name = "reason", required = true)]
    pub message: String,
    #[command(flatten)]
    pub write: WriteArgs,
}

#[derive(Args, Debug)]
pub struct UnlockArgs {
    /// Environment to unlock
    pub env: String,
    #[command(flatten)]
    pub write: WriteArgs,
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// Shell to generate completions for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Write git-deploy.1 and one page per subcommand (git-deploy-<cmd>.1) into this directory
    #[arg(long, value_name = "dir")]
    pub output_dir: Option<PathBuf>,
}
