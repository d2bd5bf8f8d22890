//! TLS over real connections: a server certificate made with rcgen, client-certificate
//! policies (RequireAndVerifyClientCert, VerifyClientCertIfGiven, RequireAnyClientCert),
//! protocol versions, HTTP/2 negotiation and the configured response headers.

mod web_support;

use web_support::*;

const SERVER: &str = "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n";

#[tokio::test]
async fn tls_serves_with_a_generated_certificate() {
    let pki = Pki::new();
    let cfg = pki.write_web_config(SERVER);
    let srv = start(options(Some(cfg))).await;

    let client = pki.client().build().unwrap();
    let r = client.get(srv.https("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "landing page");
    // The IP SAN works too.
    let r = client
        .get(format!("https://127.0.0.1:{}/metrics", srv.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A client that does not trust the CA refuses the server.
    let untrusting = client_builder().build().unwrap();
    assert!(untrusting.get(srv.https("/")).send().await.is_err());
    // Plain HTTP to the TLS port gets no HTTP answer.
    assert!(plain_client().get(srv.http("/")).send().await.is_err());
    srv.stop().await;
}

#[tokio::test]
async fn require_and_verify_client_cert() {
    let pki = Pki::new();
    let cfg = pki.write_web_config(&format!(
        "{SERVER}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n"
    ));
    let srv = start(options(Some(cfg))).await;

    let no_cert = pki.client().build().unwrap();
    let e = no_cert.get(srv.https("/")).send().await;
    assert!(
        e.is_err(),
        "a client without a certificate is refused: {e:?}"
    );

    let wrong_ca = pki.client_with(&pki.other_identity);
    let e = wrong_ca.get(srv.https("/")).send().await;
    assert!(
        e.is_err(),
        "a certificate from another CA is refused: {e:?}"
    );

    let good = pki.client_with(&pki.client_identity);
    let r = good.get(srv.https("/config")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    srv.stop().await;
}

#[tokio::test]
async fn verify_client_cert_if_given_and_require_any() {
    let pki = Pki::new();
    let cfg = pki.write_web_config(&format!(
        "{SERVER}  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.pem\n"
    ));
    let srv = start(options(Some(cfg))).await;
    let r = pki
        .client()
        .build()
        .unwrap()
        .get(srv.https("/"))
        .send()
        .await;
    assert_eq!(r.unwrap().status(), 200, "no certificate is fine");
    let r = pki
        .client_with(&pki.client_identity)
        .get(srv.https("/"))
        .send()
        .await;
    assert_eq!(r.unwrap().status(), 200, "a good certificate is fine");
    let r = pki
        .client_with(&pki.other_identity)
        .get(srv.https("/"))
        .send()
        .await;
    assert!(r.is_err(), "a certificate from another CA is refused");
    srv.stop().await;

    let cfg = pki.write_web_config(&format!(
        "{SERVER}  client_auth_type: RequireAnyClientCert\n"
    ));
    let srv = start(options(Some(cfg))).await;
    let r = pki
        .client()
        .build()
        .unwrap()
        .get(srv.https("/"))
        .send()
        .await;
    assert!(r.is_err(), "RequireAnyClientCert needs a certificate");
    let r = pki
        .client_with(&pki.other_identity)
        .get(srv.https("/"))
        .send()
        .await;
    assert_eq!(r.unwrap().status(), 200, "any certificate will do");
    srv.stop().await;
}

#[tokio::test]
async fn protocol_versions_and_http2() {
    let pki = Pki::new();
    let cfg = pki.write_web_config(&format!("{SERVER}  min_version: TLS13\n"));
    let srv = start(options(Some(cfg))).await;
    let tls12_only = pki
        .client()
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    assert!(
        tls12_only.get(srv.https("/")).send().await.is_err(),
        "TLS 1.2 refused with min_version TLS13"
    );
    let r = pki
        .client()
        .build()
        .unwrap()
        .get(srv.https("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.version(),
        reqwest::Version::HTTP_2,
        "h2 offered by default"
    );
    srv.stop().await;

    let cfg = pki.write_web_config(&format!(
        "{SERVER}  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n  \
         curve_preferences: [CurveP256]\nhttp_server_config:\n  http2: false\n"
    ));
    let srv = start(options(Some(cfg))).await;
    let r = pki
        .client()
        .build()
        .unwrap()
        .get(srv.https("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_11, "http2: false");
    let tls13_only = pki
        .client()
        .min_tls_version(reqwest::tls::Version::TLS_1_3)
        .build()
        .unwrap();
    assert!(
        tls13_only.get(srv.https("/")).send().await.is_err(),
        "max_version TLS12"
    );
    srv.stop().await;
}

#[tokio::test]
async fn configured_headers_on_every_response() {
    let pki = Pki::new();
    let cfg = pki.write_web_config(&format!(
        "{SERVER}http_server_config:\n  headers:\n    Strict-Transport-Security: max-age=31536000\n    \
         X-Frame-Options: deny\n    X-Content-Type-Options: nosniff\nbasic_auth_users:\n  u: {}\n",
        hash("p")
    ));
    let srv = start(options(Some(cfg))).await;
    let c = pki.client().build().unwrap();
    for req in [
        c.get(srv.https("/")),
        c.get(srv.https("/")).basic_auth("u", Some("p")),
        c.get(srv.https("/no-such-page")).basic_auth("u", Some("p")),
    ] {
        let r = req.send().await.unwrap();
        let h = r.headers();
        assert_eq!(
            h["strict-transport-security"],
            "max-age=31536000",
            "{}",
            r.status()
        );
        assert_eq!(h["x-frame-options"], "deny");
        assert_eq!(h["x-content-type-options"], "nosniff");
    }
    srv.stop().await;
}
