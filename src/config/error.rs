//! Configuration problems: [`ConfigError`] is one problem (key path, line, message) and
//! [`ConfigErrors`] every problem found in a file, in file order. Neither ever holds a secret:
//! messages quote only values that cannot be one (see `redact`).

use std::fmt;

/// One configuration problem: the key path it concerns, the line of the config file where
/// known, and what is wrong (with an example of the expected form where that helps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Key path such as `accounts[0].app_secret`; empty for the whole file.
    pub key: String,
    /// 1-based line in the config file.
    pub line: Option<usize>,
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            line: None,
            message: message.into(),
        }
    }

    pub(crate) fn at(mut self, line: Option<usize>) -> Self {
        self.line = self.line.or(line);
        self
    }
}

/// `KEY (line N): message`; `line N: message` for the whole file.
impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.key.is_empty(), self.line) {
            (false, Some(l)) => write!(f, "{} (line {l}): ", self.key)?,
            (false, None) => write!(f, "{}: ", self.key)?,
            (true, Some(l)) => write!(f, "line {l}: ")?,
            (true, None) => {}
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem of a configuration, at least one, ordered by line (problems without a line
/// last, in the order they were found).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    /// Sorts `problems` into file order. `None` when there are none.
    pub(crate) fn from_problems(mut problems: Vec<ConfigError>) -> Option<Self> {
        if problems.is_empty() {
            return None;
        }
        problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
        Some(Self(problems))
    }

    /// The first problem in file order.
    pub fn first(&self) -> &ConfigError {
        &self.0[0]
    }

    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true: a `ConfigErrors` holds at least one problem.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        Self(vec![e])
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// One problem a line.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Problems collected while reading one file.
#[derive(Default)]
pub(crate) struct Problems(pub(crate) Vec<ConfigError>);

impl Problems {
    pub(crate) fn push(
        &mut self,
        key: impl Into<String>,
        line: Option<usize>,
        msg: impl Into<String>,
    ) {
        self.0.push(ConfigError::new(key, msg).at(line));
    }

    pub(crate) fn add(&mut self, e: ConfigError) {
        self.0.push(e);
    }
}
