//! The configuration error shared by every module that checks configuration
//! at load time.

use std::fmt;

/// A configuration error: the JSON field path that is wrong and why.
///
/// Paths use dots for object members and `[i]` for array items, e.g.
/// `providers.studeo.audiences[0]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where in the configuration the problem is.
    pub path: String,
    /// What is wrong, lowercase, no trailing period.
    pub message: String,
}

impl ConfigError {
    /// Creates an error for `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Joins a parent path and a member name: `join("providers", "a")` is `providers.a`.
pub fn join(parent: &str, member: &str) -> String {
    if parent.is_empty() {
        member.to_owned()
    } else {
        format!("{parent}.{member}")
    }
}

/// An array item path: `index("audiences", 0)` is `audiences[0]`.
pub fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}
