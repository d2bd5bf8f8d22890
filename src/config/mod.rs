//! The configuration file (docs/config.md): YAML → a validated [`Config`].
//!
//! The way through: [`yaml`] reads the text into a tree whose every node knows its line,
//! [`raw`] checks its shape and types, [`validate`] its values (with [`expand`] for `${VAR}`
//! and [`cards`] for cards files), collecting every problem as a [`ConfigError`] with key path
//! and line; a file with problems gives [`ConfigErrors`]. [`redact`] decides what may be shown
//! (`/config`, URLs, unknown keys), [`budget`] plans the upstream request rate, and [`check`]
//! is the `check-config` command.

mod budget;
mod cards;
mod check;
mod duration;
mod error;
mod expand;
mod model;
mod raw;
mod redact;
mod validate;
mod yaml;

pub(crate) use budget::{RequestBudget, TargetCounts};
pub use cards::{
    BadLine, ICCID_MAX_LEN, ICCID_MIN_LEN, IccidError, ListFileError, check_iccid, excerpt,
    iccid_list_entries, is_valid_iccid, parse_iccid_lines, read_cards_file, read_list_file,
};
pub use check::check_config_command;
pub use duration::{format_duration, parse_duration};
pub use error::{ConfigError, ConfigErrors};
pub use expand::{EnvLookup, expand};
pub use model::{Account, Auth, CollectConfig, Config, HistoryConfig};
pub use validate::{is_valid_account_name, is_valid_pool_code};

use error::Problems;
use std::path::Path;

/// The config file used when `--config.file` is not given.
pub const DEFAULT_CONFIG_FILE: &str = "tibiot-exporter.yml";

impl Config {
    /// Reads and validates the file at `path` (`${VAR}` from the process environment).
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                "",
                format!("cannot read config file {}: {}", path.display(), e.kind()),
            )
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut cfg = Self::parse_with_env(&text, base, &|k| std::env::var(k).ok())?;
        cfg.source = Some(path.to_path_buf());
        Ok(cfg)
    }

    /// Parses YAML text; relative paths resolve against `base_dir`.
    pub fn parse(yaml: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
        Self::parse_with_env(yaml, base_dir, &|k| std::env::var(k).ok())
    }

    /// Parses YAML text with a given environment; every problem is reported.
    pub fn parse_with_env(
        yaml: &str,
        base_dir: &Path,
        env: EnvLookup,
    ) -> Result<Config, ConfigErrors> {
        let doc = yaml::parse(yaml)?;
        let mut problems = Problems::default();
        let raw = raw::read(&doc, &mut problems);
        let cfg = validate::validate(raw, base_dir, env, &mut problems);
        match (ConfigErrors::from_problems(problems.0), cfg) {
            (Some(errors), _) => Err(errors),
            (None, Some(cfg)) => Ok(cfg),
            // validation reports a problem whenever it gives no configuration
            (None, None) => Err(ConfigError::new("", "invalid configuration").into()),
        }
    }
}

#[cfg(test)]
mod tests;
