//! Config errors: each names the file, the field path and what is wrong.

use std::fmt;

/// One problem in a config file, e.g.
/// `canary.toml: service[1].canary[0]: "198.18.0.300:80" is not an address: ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// Path of the field, e.g. `daemon.interfaces[0]`; empty for problems
    /// with the file as a whole (unreadable, TOML syntax).
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.field, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one file, so a user fixes them in one pass.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Gathers the errors of one file while validation goes on past each one.
pub(crate) struct Collector<'a> {
    file: &'a str,
    errors: Vec<ConfigError>,
}

impl<'a> Collector<'a> {
    pub(crate) fn new(file: &'a str) -> Self {
        Collector {
            file,
            errors: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            field: field.into(),
            message: message.into(),
        });
    }

    pub(crate) fn len(&self) -> usize {
        self.errors.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub(crate) fn finish(mut self) -> ConfigErrors {
        // Validators report before they give up on a value; this only guards
        // against a future one that forgets, so a failure never comes back empty.
        debug_assert!(!self.errors.is_empty(), "config rejected without an error");
        if self.errors.is_empty() {
            self.push("", "the configuration is invalid");
        }
        ConfigErrors(self.errors)
    }
}
