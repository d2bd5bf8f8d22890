//! The build's identity: the package version and the git revision it was built from (set by
//! the package's `build.rs`; `unknown` without git), and the line `--version` prints in both
//! binaries.

/// The package version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit built (12 hex digits), or `unknown`.
pub(crate) const REVISION: &str = env!("TIBIOT_REVISION");
/// `0.1.0 (revision 0123456789ab)`: what `--version` prints after the program name.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision ",
    env!("TIBIOT_REVISION"),
    ")"
);
