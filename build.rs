//! Build script of the exporter package: records the git revision of the build in the
//! `TIBIOT_REVISION` compile-time variable (`--version` of both binaries,
//! `tibiot_exporter_build_info` and the landing page read it). Sources, first found wins:
//!
//! 1. `TIBIOT_REVISION` in the environment (a container build passes it, since its build
//!    context has no `.git`);
//! 2. `git rev-parse` of the checkout this package is the top of (a clone, a worktree, or
//!    cargo's own checkout for `cargo install --git`);
//! 3. `.cargo_vcs_info.json`, which `cargo package` writes into a packaged crate;
//! 4. `unknown` (a tarball without any of these).
//!
//! It never fails the build and has no dependencies. It runs again only when the checked-out
//! commit may have changed (HEAD, its reflog, the branch ref), so edits do not rebuild the
//! package for it. A modified work tree is not flagged: the revision is the commit built on.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=TIBIOT_REVISION");
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let revision = std::env::var("TIBIOT_REVISION")
        .ok()
        .and_then(|r| clean(&r))
        .or_else(|| git_revision(&dir))
        .or_else(|| vcs_info(&dir))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=TIBIOT_REVISION={revision}");
}

/// A revision as it may appear in a label value and a version line: 1–64 characters of
/// `0-9 a-z A-Z . _ - +`; anything else is ignored.
fn clean(r: &str) -> Option<String> {
    let r = r.trim();
    let ok = !r.is_empty()
        && r.len() <= 64
        && r.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'));
    ok.then(|| r.to_owned())
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?;
    Some(s.trim().to_owned())
}

/// The commit checked out, when `dir` is the top of a git work tree (not a folder inside
/// some other repository, e.g. a vendored copy).
fn git_revision(dir: &Path) -> Option<String> {
    let top = git(dir, &["rev-parse", "--show-toplevel"])?;
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same(Path::new(&top), dir) {
        return None;
    }
    let rev = clean(&git(dir, &["rev-parse", "--short=12", "HEAD"])?)?;
    // Run again when the commit changes: HEAD itself (checkout, detached HEAD), its reflog
    // (every commit, reset and checkout appends to it) and the branch ref, loose or packed.
    // Only existing files are named: a missing one would make cargo run this every build.
    let mut watch = vec![
        "HEAD".to_owned(),
        "logs/HEAD".to_owned(),
        "packed-refs".to_owned(),
    ];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watch.push(branch);
    }
    for name in watch {
        if let Some(p) = git(dir, &["rev-parse", "--git-path", &name]) {
            let p = dir.join(p);
            if p.is_file() {
                println!("cargo:rerun-if-changed={}", p.display());
            }
        }
    }
    Some(rev)
}

/// `{"git": {"sha1": "…"}, …}` of a packaged crate, shortened like `git rev-parse --short=12`.
fn vcs_info(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(".cargo_vcs_info.json")).ok()?;
    let after = &text[text.find("\"sha1\"")? + "\"sha1\"".len()..];
    let value = after.trim_start().strip_prefix(':')?.trim_start();
    let value = value.strip_prefix('"')?;
    let sha = &value[..value.find('"')?];
    clean(&sha[..sha.len().min(12)])
}
