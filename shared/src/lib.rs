//! What `git-deploy` and `kubectl-gitops` share: the `gitops.yaml` model, deploy tag names and
//! messages, read access to the config repository, and the error type both binaries map to
//! their documented exit codes.

pub mod applyset;
pub mod config;
pub mod error;
pub mod gates;
pub mod git;
pub mod manifest;
pub mod normalize;
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
