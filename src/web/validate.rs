//! Validation of request parameters that reach the upstream API (`/probe`): a parameter is
//! checked for shape before any upstream call, and the answer to bad input is a plain 400
//! message that echoes at most a bounded, sanitised form of the value.
//!
//! Rules (the same as the configuration file's, `crate::config`): account = a configured
//! account name; pool code = 1–64 characters of `A-Z a-z 0-9 _ - .`; ICCID = 18–22 digits;
//! exactly one of `pool` and `card`.

/// What a `/probe` request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeTarget {
    Pool(String),
    Card(String),
}

/// A 400 answer: a plain message without secrets or unbounded input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

pub use crate::config::{is_valid_iccid, is_valid_pool_code};

/// A value safe to put in a message: at most 64 printable ASCII characters.
pub fn shown(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if s.chars().count() > 64 {
        out.push('…');
    }
    format!("{out:?}")
}

/// Checks `/probe` parameters. `accounts` are the configured account names.
pub fn probe_params<'a>(
    account: Option<&str>,
    pool: Option<&str>,
    card: Option<&str>,
    accounts: impl IntoIterator<Item = &'a str>,
) -> Result<(String, ProbeTarget), BadRequest> {
    let names: Vec<&str> = accounts.into_iter().collect();
    let account = match account {
        Some(a) => a,
        // One configured account: it is the default, as on the command line.
        None if names.len() == 1 => names[0],
        None => {
            return Err(BadRequest(
                "missing parameter 'account' (several accounts are configured)".into(),
            ));
        }
    };
    if !names.contains(&account) {
        return Err(BadRequest(format!(
            "unknown account {}: not in the configuration",
            shown(account)
        )));
    }
    let target = match (pool, card) {
        (Some(_), Some(_)) => {
            return Err(BadRequest("give either 'pool' or 'card', not both".into()));
        }
        (None, None) => return Err(BadRequest("missing parameter 'pool' or 'card'".into())),
        (Some(p), None) => {
            if !is_valid_pool_code(p) {
                return Err(BadRequest(format!(
                    "invalid pool code {}: 1-64 characters of A-Z a-z 0-9 _ - .",
                    shown(p)
                )));
            }
            ProbeTarget::Pool(p.to_string())
        }
        (None, Some(c)) => {
            if !is_valid_iccid(c) {
                return Err(BadRequest(format!(
                    "invalid ICCID {}: 18-22 digits",
                    shown(c)
                )));
            }
            ProbeTarget::Card(c.to_string())
        }
    };
    Ok((account.to_string(), target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_rules() {
        let acc = ["main", "backup"];
        let ok = probe_params(Some("main"), Some("POOL-1.a_b"), None, acc).unwrap();
        assert_eq!(ok, ("main".into(), ProbeTarget::Pool("POOL-1.a_b".into())));
        let ok = probe_params(Some("backup"), None, Some("89860000000000000001"), acc).unwrap();
        assert_eq!(ok.1, ProbeTarget::Card("89860000000000000001".into()));
        assert_eq!(
            probe_params(None, Some("P"), None, ["only"]).unwrap().0,
            "only"
        );
        for (a, p, c) in [
            (None, Some("P"), None),
            (Some("nope"), Some("P"), None),
            (Some("main"), None, None),
            (Some("main"), Some("P"), Some("89860000000000000001")),
            (Some("main"), Some(""), None),
            (Some("main"), Some("P/../x"), None),
            (Some("main"), Some(&"P".repeat(65)), None),
        ] {
            assert!(probe_params(a, p, c, acc).is_err(), "{a:?} {p:?} {c:?}");
        }
        assert!(probe_params(Some("main"), None, Some("898600000000000000"), acc).is_ok());
        for bad in [
            "1234",
            "8986000000000000000x",
            "89860000000000000000000",
            "８９８６００００００００００００００００",
        ] {
            assert!(
                probe_params(Some("main"), None, Some(bad), acc).is_err(),
                "{bad}"
            );
        }
        let e = probe_params(Some("a\nb\u{7}"), Some("P"), None, acc).unwrap_err();
        assert!(!e.0.contains('\n'), "{e}");
    }
}
