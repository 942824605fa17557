//! `-v` logging to stderr. Messages name objects and actions only, never object content, so
//! no verbosity level can print a Secret value.

use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

static LEVEL: AtomicU8 = AtomicU8::new(0);

pub fn set_level(level: u8) {
    LEVEL.store(level, Ordering::Relaxed);
}

pub fn info(level: u8, msg: impl std::fmt::Display) {
    if LEVEL.load(Ordering::Relaxed) >= level {
        let _ = writeln!(anstream::stderr(), "{msg}");
    }
}

pub fn warn(msg: impl std::fmt::Display) {
    shared::output::warn(msg);
}
