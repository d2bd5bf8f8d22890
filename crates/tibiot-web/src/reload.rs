//! Loading the web config file and keeping it current: the file and every file it names
//! (certificate, key, client CA) are fingerprinted and re-checked every `reload_interval`; a
//! changed valid file takes effect for the next connection and request, a changed invalid one
//! is logged once and the previous configuration stays in force.

use crate::config::{WebConfig, WebConfigError};
use crate::guard::{Active, GuardState};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A web config file and the fingerprint of what is in force.
pub(crate) struct WatchedFile {
    path: PathBuf,
    applied: [u8; 32],
    last_bad: Option<[u8; 32]>,
}

/// Hash of the file's bytes and of every file it names (missing files hash as missing).
fn fingerprint(path: &Path) -> ([u8; 32], Result<WebConfig, WebConfigError>) {
    let mut h = Sha256::new();
    let text = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            h.update(b"unreadable");
            let err = WebConfigError::unreadable(&e).in_file(path);
            return (h.finalize().into(), Err(err));
        }
    };
    h.update((text.len() as u64).to_be_bytes());
    h.update(&text);
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let parsed = std::str::from_utf8(&text)
        .map_err(|_| WebConfigError::not_utf8())
        .and_then(|t| WebConfig::parse(t, dir))
        .map_err(|e| e.in_file(path));
    if let Ok(cfg) = &parsed {
        for f in cfg.referenced_files() {
            h.update(f.as_os_str().as_encoded_bytes());
            match std::fs::read(&f) {
                Ok(b) => {
                    h.update((b.len() as u64).to_be_bytes());
                    h.update(&b);
                }
                Err(_) => h.update(b"missing"),
            }
        }
    }
    (h.finalize().into(), parsed)
}

/// Loads and builds a web config file (blocking).
fn load(path: &Path) -> ([u8; 32], Result<Active, WebConfigError>) {
    let (fp, parsed) = fingerprint(path);
    let active = parsed.and_then(|cfg| {
        let a = Active::build(&cfg).map_err(|e| e.in_file(path))?;
        describe(path, &cfg);
        Ok(a)
    });
    (fp, active)
}

fn describe(path: &Path, cfg: &WebConfig) {
    tracing::info!(
        file = %path.display(),
        tls = cfg.tls.is_some(),
        client_auth = ?cfg.tls.as_ref().map(|t| t.client_auth),
        basic_auth_users = cfg.basic_auth_users.len(),
        http2 = cfg.http2,
        "web config loaded"
    );
    if cfg.tls.is_none() && !cfg.basic_auth_users.is_empty() {
        tracing::warn!("basic auth without TLS: passwords cross the network in clear text");
    }
}

/// Checks a web config file completely (YAML, keys, hashes, certificate and key files), as
/// `promtool check web-config` does. Blocking.
pub fn check_file(path: &Path) -> Result<(), WebConfigError> {
    let cfg = WebConfig::load(path)?;
    Active::build(&cfg).map_err(|e| e.in_file(path))?;
    Ok(())
}

/// Loads `path` at start (an invalid file is an error naming the key); returns what to put in
/// force and the watch on the file.
pub(crate) async fn load_initial(
    path: PathBuf,
) -> Result<(Active, Arc<Mutex<WatchedFile>>), WebConfigError> {
    let p = path.clone();
    let (fp, result) = tokio::task::spawn_blocking(move || load(&p))
        .await
        .map_err(|e| WebConfigError::internal(format!("loading failed: {e}")).in_file(&path))?;
    let active = result?;
    let watched = WatchedFile {
        path,
        applied: fp,
        last_bad: None,
    };
    Ok((active, Arc::new(Mutex::new(watched))))
}

/// Re-checks the watched file every `every` until aborted.
pub(crate) fn spawn_reloader(
    watched: Arc<Mutex<WatchedFile>>,
    state: Arc<GuardState>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    let every = every.max(Duration::from_millis(50));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let (w, s) = (watched.clone(), state.clone());
            let _ = tokio::task::spawn_blocking(move || check_reload(&w, &s)).await;
        }
    })
}

/// Applies a changed valid file; logs a changed invalid one once.
fn check_reload(watched: &Mutex<WatchedFile>, state: &GuardState) {
    let Ok(mut w) = watched.lock() else { return };
    let (fp, _) = fingerprint(&w.path);
    if fp == w.applied || Some(fp) == w.last_bad {
        return;
    }
    let (fp, result) = load(&w.path);
    match result {
        Ok(active) => {
            state.replace(active);
            w.applied = fp;
            w.last_bad = None;
            tracing::info!(file = %w.path.display(), "web config reloaded");
        }
        Err(e) => {
            w.last_bad = Some(fp);
            tracing::error!(error = %e, "web config changed but is invalid; keeping the previous one");
        }
    }
}
