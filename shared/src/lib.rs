//! What `git-deploy` and `kubectl-gitops` share: the `gitops.yaml` model, deploy tag names and
//! messages, ref names, read access to the config repository, the confirmation prompt, the
//! error type both binaries map to their documented exit codes, and the presentation both use.
//! The manifest stack (loading, normalising, ApplySets) is kubectl-gitops' own.

pub mod config;
pub mod duration;
pub mod error;
pub mod gates;
pub mod git;
pub mod output;
pub mod prompt;
pub mod refname;
pub mod render;
pub mod signature;
pub mod tag;
pub mod verification;

pub use config::{Config, Environment, Gates};
pub use error::{Error, ErrorKind, Result};

/// Version string recorded in tags (`Deploy-Tool`) and ApplySet tooling annotations.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
