//! Shared library.
