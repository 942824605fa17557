//! One error type for both tools. Every error carries a kind that decides the exit code, a
//! message that names what is at fault, optionally a hint that says what to do next, and the
//! lower-level error it came from (kept for `-v` output and for callers that must tell causes
//! apart by type, never by matching message text).

use std::fmt;

/// Why an operation stopped. The binaries map these to their documented exit codes, in one
/// place ([`ErrorKind::exit_code`]); nothing decides an exit code by reading a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The user asked for something that cannot be (bad flag, unknown environment, malformed
    /// file). Nothing was written. Exit code 2.
    Invalid,
    /// The request was valid but the tool refused or failed to do it (diverged branches,
    /// locked environment, no terminal to confirm on, an I/O failure). Exit code 1.
    Refused,
    /// Another process changed what we read before we could write. Nothing was written;
    /// retrying is safe. Exit code 3.
    Race,
}

impl ErrorKind {
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::Refused => 1,
            ErrorKind::Invalid => 2,
            ErrorKind::Race => 3,
        }
    }
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
#[error("{message}{}", hint_suffix(.hint))]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    pub hint: Option<String>,
    #[source]
    pub source: Option<Source>,
}

fn hint_suffix(hint: &Option<String>) -> String {
    hint.as_ref()
        .map(|h| format!("\nhint: {h}"))
        .unwrap_or_default()
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            hint: None,
            source: None,
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Invalid, message)
    }
    pub fn refused(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Refused, message)
    }
    pub fn race(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Race, message)
    }
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    /// Keeps the lower-level error this one was made from.
    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
    }
    pub fn exit_code(&self) -> i32 {
        self.kind.exit_code()
    }
    /// Wraps a lower-level failure (I/O, object database) with what we were doing; the
    /// failure stays reachable as the source.
    pub fn context<E>(what: impl fmt::Display, err: E) -> Self
    where
        E: fmt::Display + Into<Source>,
    {
        let message = format!("{what}: {err}");
        Error::refused(message).with_source(err)
    }
    /// The chain of causes below this error, outermost first.
    pub fn causes(&self) -> impl Iterator<Item = &(dyn std::error::Error + 'static)> {
        let first = self
            .source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static));
        std::iter::successors(first, |e| e.source())
    }
}

impl From<gix::Error> for Error {
    fn from(err: gix::Error) -> Self {
        Error::refused(format!("git: {err}")).with_source(err)
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        Error::refused(format!("I/O error: {err}")).with_source(err)
    }
}
