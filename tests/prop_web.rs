//! Property tests (bounded fuzzing) of the web layer's parsers of untrusted input: the web
//! configuration file (`--web.config.file`) and `Authorization: Basic` headers. None may
//! panic; a password (hash or plaintext) never appears in an error. (`/probe` parameters are
//! validated inside the HTTP handler: `prop_probe.rs` fuzzes them over HTTP.)
//!
//! Cases per property: `PROPTEST_CASES` (default 256).

use axum::http::HeaderValue;
use base64::Engine;
use proptest::prelude::*;
use std::path::Path;
use std::sync::LazyLock;
use tibiot_web::WebConfig;
use tibiot_web::parse_basic;

fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// A real bcrypt hash (cost 4: fast), made once.
static HASH: LazyLock<String> = LazyLock::new(|| bcrypt::hash("correct horse", 4).expect("bcrypt"));

fn valid_web_config() -> String {
    format!(
        "basic_auth_users:\n  alice: {}\n  bob: {}\nhttp_server_config:\n  http2: true\n  headers:\n    X-Frame-Options: deny\n    X-Content-Type-Options: nosniff\n",
        *HASH, *HASH
    )
}

fn parse(text: &str) -> Result<WebConfig, String> {
    WebConfig::parse(text, Path::new("/nonexistent-dir")).map_err(|e| format!("{e} {e:?}"))
}

/// A YAML-ish mutation of one line: deletion, insertion, replacement, re-indentation.
fn mutate(text: &str, ops: &[(prop::sample::Index, u8, String)]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for (i, kind, frag) in ops {
        let li = i.index(lines.len());
        let l = &mut lines[li];
        match kind % 4 {
            0 => {
                let mut cut = i.index(l.len() + 1);
                while !l.is_char_boundary(cut) {
                    cut -= 1;
                }
                l.truncate(cut);
            }
            1 => {
                let mut at = i.index(l.len() + 1);
                while !l.is_char_boundary(at) {
                    at -= 1;
                }
                l.insert_str(at, frag);
            }
            2 => *l = frag.clone(),
            _ => *l = format!("{}{}", " ".repeat(frag.len() % 6), l.trim_start()),
        }
    }
    lines.join("\n") + "\n"
}

fn arb_fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(":".to_owned()),
        Just("- ".to_owned()),
        Just("[".to_owned()),
        Just("{".to_owned()),
        Just("\"".to_owned()),
        Just("|".to_owned()),
        Just(">-".to_owned()),
        Just("tls_server_config:".to_owned()),
        Just("  cert_file: x.pem".to_owned()),
        Just("  client_auth_type: RequireAndVerifyClientCert".to_owned()),
        Just("  min_version: TLS10".to_owned()),
        Just("  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]".to_owned()),
        Just("  curve_preferences: [CurveP521]".to_owned()),
        Just("  http2: maybe".to_owned()),
        Just("    Server: x".to_owned()),
        "[a-z_]{1,16}: [^\n]{0,16}",
        ".{0,10}",
    ]
}

proptest! {
    #![proptest_config(config(256))]

    /// Arbitrary text never panics the web config parser.
    #[test]
    fn web_config_arbitrary_text(text in prop_oneof![".{0,200}", "(\\PC{0,40}\n){0,8}"]) {
        let _ = parse(&text);
    }

    /// Mutated valid web configs never panic, and no error shows the bcrypt hash.
    #[test]
    fn web_config_mutations(ops in proptest::collection::vec(
        (any::<prop::sample::Index>(), any::<u8>(), arb_fragment()), 1..5)
    ) {
        let text = mutate(&valid_web_config(), &ops);
        if let Err(e) = parse(&text) {
            prop_assert!(!e.contains(HASH.as_str()), "hash in error: {e}\n---\n{text}");
            prop_assert!(!e.contains(&HASH[7..29]), "part of the hash in error: {e}");
        }
    }

    /// A value in `basic_auth_users` that is not a bcrypt hash — quite possibly a plaintext
    /// password pasted by mistake — is refused without being echoed, whatever its YAML type.
    #[test]
    fn plaintext_passwords_are_not_echoed(
        user in "[a-z]{1,10}",
        password in prop_oneof![
            "[A-Za-z0-9!%&*+,./;<=>?@^_~-]{8,24}",
            "[1-9][0-9]{7,15}",
            "\\$2[aby]\\$[0-9]{2}\\$[A-Za-z0-9./]{10,40}",
        ],
        form in 0u8..4,
    ) {
        let value = match form {
            0 => serde_json::to_string(&password).unwrap(),
            1 => format!("'{}'", password.replace('\'', "''")),
            2 => format!("[{}]", serde_json::to_string(&password).unwrap()),
            _ => password.clone(),
        };
        let text = format!("basic_auth_users:\n  {user}: {value}\n");
        match parse(&text) {
            Err(e) => prop_assert!(!e.contains(&password), "password echoed: {e}"),
            Ok(c) => {
                // accepted only as a hash bcrypt can check
                let h = c.password_hash(&user).expect("user kept");
                prop_assert!(bcrypt::verify("probe", h).is_ok(), "accepted a non-hash {h:?}");
            }
        }
    }

    /// `Authorization: Basic` parsing never panics and round-trips user and password.
    #[test]
    fn basic_auth_header(
        junk in proptest::collection::vec(any::<u8>(), 0..80),
        user in "[^:]{0,20}",
        password in proptest::collection::vec(any::<u8>(), 0..40),
        scheme in prop_oneof![Just("Basic"), Just("basic"), Just("BASIC"), Just("Bearer")],
    ) {
        if let Ok(v) = HeaderValue::from_bytes(&junk) {
            let _ = parse_basic(&v);
        }
        let mut raw = user.as_bytes().to_vec();
        raw.push(b':');
        raw.extend_from_slice(&password);
        let header = format!("{scheme} {}", base64::engine::general_purpose::STANDARD.encode(&raw));
        let v = HeaderValue::from_str(&header).unwrap();
        let got = parse_basic(&v);
        if scheme == "Bearer" {
            prop_assert_eq!(got, None);
        } else {
            prop_assert_eq!(got, Some((user, password)));
        }
    }
}

/// Regression (found by `web_config_mutations` in CI): a `|` on the first line makes the whole
/// file one block-scalar string, and serde's "invalid type: string \"…\"" quoted the file,
/// hashes included.
#[test]
fn a_file_turned_into_one_string_is_not_echoed() {
    let text = valid_web_config().replacen("basic_auth_users:", "|", 1);
    let e = parse(&text).expect_err("a string is not a web config");
    assert!(!e.contains(&HASH[7..29]), "hash in error: {e}");
    assert!(e.contains("invalid type: a string"), "{e}");
}
