//! One error type for both tools. Every error carries a kind that decides the exit code, a
//! message that names what is at fault, and optionally a hint that says what to do next.

use std::fmt;

/// Why an operation stopped. The binaries map these to their documented exit codes.
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

#[derive(Debug)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    pub hint: Option<String>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(message: impl Into<String>) -> Self {
        Error {
            kind: ErrorKind::Invalid,
            message: message.into(),
            hint: None,
        }
    }
    pub fn refused(message: impl Into<String>) -> Self {
        Error {
            kind: ErrorKind::Refused,
            message: message.into(),
            hint: None,
        }
    }
    pub fn race(message: impl Into<String>) -> Self {
        Error {
            kind: ErrorKind::Race,
            message: message.into(),
            hint: None,
        }
    }
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    pub fn exit_code(&self) -> i32 {
        self.kind.exit_code()
    }
    /// Wraps a lower-level failure (I/O, object database) with what we were doing.
    pub fn context(what: impl fmt::Display, err: impl fmt::Display) -> Self {
        Error::refused(format!("{what}: {err}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\nhint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

impl From<gix::Error> for Error {
    fn from(err: gix::Error) -> Self {
        Error::refused(format!("git: {err}"))
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        Error::refused(format!("I/O error: {err}"))
    }
}
