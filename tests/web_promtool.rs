//! Parity with `promtool check web-config` (Prometheus' own validator of the exporter-toolkit
//! format): every web config the real promtool accepts we accept, every one it rejects we
//! reject. A few configurations promtool accepts but that cannot work with rustls (or would
//! silently trust the system CAs) we reject on purpose, with an error that says so.

mod web_support;

use std::path::Path;
use std::process::Command;
use web_support::*;

fn promtool_accepts(file: &Path) -> (bool, String) {
    let out = Command::new("promtool")
        .arg("check")
        .arg("web-config")
        .arg(file)
        .output()
        .expect("promtool is installed (apt-get install prometheus; .ci/run does it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn we_accept(file: &Path) -> Result<(), String> {
    tibiot_web::check_file(file).map_err(|e| e.to_string())
}

const TLS: &str = "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n";

fn cases() -> (Vec<String>, Vec<String>) {
    let h = hash("pw");
    let h2a = bcrypt::hash_with_result("pw", 5)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoA);
    let h2y = bcrypt::hash_with_result("pw", 6)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY);
    let accepted = vec![
        String::new(),
        "# only a comment\n".into(),
        format!("basic_auth_users:\n  a: {h}\n  b: {h2a}\n  c: '{h2y}'\n"),
        TLS.into(),
        format!(
            "{TLS}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  \
             min_version: TLS12\n  max_version: TLS13\n  \
             cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]\n  \
             curve_preferences: [X25519, CurveP256]\n  prefer_server_cipher_suites: false\n\
             http_server_config:\n  http2: false\n  headers:\n    \
             Strict-Transport-Security: max-age=63072000\n    X-Content-Type-Options: nosniff\n    \
             X-Frame-Options: sameorigin\n    X-XSS-Protection: '1; mode=block'\n    \
             Content-Security-Policy: default-src 'self'\n\
             basic_auth_users:\n  prometheus: {h}\n"
        ),
        format!("{TLS}  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.pem\n"),
        format!("{TLS}  client_auth_type: RequestClientCert\n"),
        format!("{TLS}  client_auth_type: RequireAnyClientCert\n"),
        format!("{TLS}  client_auth_type: NoClientCert\n"),
        format!("{TLS}  min_version: TLS10\n"),
        "tls_server_config:\n  min_version: TLS13\n".into(),
        "http_server_config:\n  http2: yes\n".into(),
        "basic_auth_users:\n".into(),
    ];
    let rejected = vec![
        "basic_auth_users:\n  u: my-plaintext-password\n".into(),
        "basic_auth_users:\n  u: ''\n".into(),
        format!(
            "basic_auth_users:\n  u: {}\n",
            h.replacen("$04$", "$03$", 1)
        ),
        format!(
            "basic_auth_users:\n  u: {}\n",
            h.replacen("$2b$", "$3b$", 1)
        ),
        format!("basic_auth_users:\n  u: {h}\n  u: {h}\n"),
        "unknown_key: 1\n".into(),
        format!("{TLS}  client_allowed_sans: [x]\n"),
        format!("{TLS}  cert: inline\n"),
        "http_server_config:\n  headers:\n    X-Foo: bar\n".into(),
        "http_server_config:\n  headers:\n    x-frame-options: deny\n".into(),
        "http_server_config:\n  headers:\n    X-Frame-Options: DENY\n".into(),
        "http_server_config:\n  http2: 1\n".into(),
        "tls_server_config:\n  cert_file: server.pem\n".into(),
        "tls_server_config:\n  key_file: server.key\n".into(),
        "tls_server_config:\n  cert_file: server.pem\n  key_file: other-client.key\n".into(),
        "tls_server_config:\n  cert_file: missing.pem\n  key_file: server.key\n".into(),
        format!("{TLS}  client_ca_file: ca.pem\n"),
        format!("{TLS}  client_auth_type: Bogus\n"),
        format!(
            "{TLS}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: missing.pem\n"
        ),
        format!("{TLS}  min_version: TLS14\n"),
        format!("{TLS}  cipher_suites: [NOT_A_SUITE]\n"),
        format!("{TLS}  curve_preferences: [NOT_A_CURVE]\n"),
        "tls_server_config: [1, 2]\n".into(),
    ];
    (accepted, rejected)
}

#[test]
fn same_verdict_as_promtool() {
    let pki = Pki::new();
    let (accepted, rejected) = cases();
    let mut failures = Vec::new();
    for (yaml, want) in accepted
        .iter()
        .map(|y| (y, true))
        .chain(rejected.iter().map(|y| (y, false)))
    {
        let file = pki.write_web_config(yaml);
        let (promtool, ptext) = promtool_accepts(&file);
        assert_eq!(
            promtool, want,
            "the case list is wrong about promtool for:\n{yaml}\npromtool: {ptext}"
        );
        let ours = we_accept(&file);
        if ours.is_ok() != promtool {
            failures.push(format!(
                "--- config:\n{yaml}promtool: {ptext}ours: {ours:?}\n"
            ));
        }
        if let Err(e) = &ours {
            assert!(!e.contains("my-plaintext-password"), "value echoed: {e}");
        }
    }
    assert!(
        failures.is_empty(),
        "verdicts differ:\n{}",
        failures.join("\n")
    );
}

#[test]
fn stricter_than_promtool_where_rustls_cannot_comply() {
    let pki = Pki::new();
    for (yaml, why) in [
        (
            format!("{TLS}  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA]\n"),
            "unsupported",
        ),
        (
            format!("{TLS}  curve_preferences: [CurveP521]\n"),
            "unsupported",
        ),
        (format!("{TLS}  max_version: TLS11\n"), "unsupported"),
        (
            format!("{TLS}  min_version: TLS13\n  max_version: TLS12\n"),
            "above max_version",
        ),
        (
            format!("{TLS}  client_auth_type: RequireAndVerifyClientCert\n"),
            "client_ca_file is required",
        ),
    ] {
        let file = pki.write_web_config(&yaml);
        let (promtool, ptext) = promtool_accepts(&file);
        assert!(promtool, "promtool accepts:\n{yaml}{ptext}");
        let e = we_accept(&file).expect_err(&yaml);
        assert!(e.contains(why), "{yaml}: {e}");
        assert!(e.contains("tls_server_config."), "names the key: {e}");
    }
}
