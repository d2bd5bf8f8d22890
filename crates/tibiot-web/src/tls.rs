//! Builds the rustls (ring provider) `ServerConfig` from validated [`TlsSettings`]: PEM
//! certificate chain and key (PKCS#1, PKCS#8, SEC1), the client-certificate policy with its CA,
//! protocol versions, TLS 1.2 cipher suites and key-exchange curves. File and key errors name
//! the `tls_server_config` key they come from.

use crate::config::{ClientAuth, TlsSettings, TlsVersion, WebConfigError};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, SupportedKxGroup, ring};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
    SupportedCipherSuite,
};
use std::path::Path;
use std::sync::Arc;

fn err(key: &str, message: impl Into<String>) -> WebConfigError {
    WebConfigError::new(format!("tls_server_config.{key}"), message)
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, WebConfigError> {
    std::fs::read(path).map_err(|e| err(key, format!("cannot read {}: {e}", path.display())))
}

fn certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, WebConfigError> {
    let bytes = read(key, path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| err(key, format!("{}: bad PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(err(
            key,
            format!("{}: no PEM certificate found", path.display()),
        ));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, WebConfigError> {
    let bytes = read("key_file", path)?;
    // The error text of a key parser is not echoed beyond its kind: it never holds key bytes.
    match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(k) => Ok(k),
        Err(pem::Error::NoItemsFound) => Err(err(
            "key_file",
            format!(
                "{}: no PEM private key found (PKCS#1, PKCS#8 or SEC1)",
                path.display()
            ),
        )),
        Err(_) => Err(err(
            "key_file",
            format!("{}: the PEM private key cannot be parsed", path.display()),
        )),
    }
}

fn suite(name: &str) -> Option<SupportedCipherSuite> {
    use ring::cipher_suite as cs;
    Some(match name {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        _ => return None,
    })
}

fn curve(name: &str) -> Option<&'static dyn SupportedKxGroup> {
    use ring::kx_group as kx;
    Some(match name {
        "X25519" => kx::X25519,
        "CurveP256" => kx::SECP256R1,
        "CurveP384" => kx::SECP384R1,
        _ => return None,
    })
}

/// The ring provider restricted to the configured suites and curves.
fn provider(s: &TlsSettings) -> CryptoProvider {
    let mut p = ring::default_provider();
    if !s.cipher_suites.is_empty() {
        // TLS 1.3 suites stay enabled (as in Go); TLS 1.2 ones are those listed, in order.
        let tls12: Vec<_> = s.cipher_suites.iter().filter_map(|n| suite(n)).collect();
        let mut suites: Vec<_> = p
            .cipher_suites
            .iter()
            .copied()
            .filter(|c| matches!(c, SupportedCipherSuite::Tls13(_)))
            .collect();
        suites.extend(tls12);
        p.cipher_suites = suites;
    }
    if !s.curve_preferences.is_empty() {
        p.kx_groups = s
            .curve_preferences
            .iter()
            .filter_map(|n| curve(n))
            .collect();
    }
    p
}

/// Accepts any client certificate but still checks that the client holds its key
/// (`RequestClientCert`, `RequireAnyClientCert`).
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Reads the files and builds the server configuration. `http2` decides the ALPN offer.
pub(crate) fn server_config(s: &TlsSettings, http2: bool) -> Result<ServerConfig, WebConfigError> {
    let provider = Arc::new(provider(s));
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    if s.max_version >= TlsVersion::Tls13 {
        versions.push(&rustls::version::TLS13);
    }
    let has_tls12_suite = provider
        .cipher_suites
        .iter()
        .any(|c| matches!(c, SupportedCipherSuite::Tls12(_)));
    if s.min_version <= TlsVersion::Tls12 && has_tls12_suite {
        versions.push(&rustls::version::TLS12);
    }
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| err("min_version", format!("unusable TLS settings: {e}")))?;

    let verifier: Option<Arc<dyn ClientCertVerifier>> = match s.client_auth {
        ClientAuth::NoClientCert => None,
        ClientAuth::RequestClientCert | ClientAuth::RequireAnyClientCert => {
            Some(Arc::new(AnyClientCert {
                mandatory: s.client_auth == ClientAuth::RequireAnyClientCert,
                provider: provider.clone(),
            }))
        }
        ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert => {
            let Some(ca) = &s.client_ca_file else {
                return Err(err(
                    "client_ca_file",
                    "required to verify client certificates",
                ));
            };
            let mut roots = RootCertStore::empty();
            for c in certs("client_ca_file", ca)? {
                roots.add(c).map_err(|e| {
                    err(
                        "client_ca_file",
                        format!("{}: not a usable CA certificate: {e}", ca.display()),
                    )
                })?;
            }
            let b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let b = if s.client_auth == ClientAuth::VerifyClientCertIfGiven {
                b.allow_unauthenticated()
            } else {
                b
            };
            Some(
                b.build()
                    .map_err(|e| err("client_ca_file", format!("{}: {e}", ca.display())))?,
            )
        }
    };
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let chain = certs("cert_file", &s.cert_file)?;
    let key = private_key(&s.key_file)?;
    let mut cfg = builder.with_single_cert(chain, key).map_err(|e| {
        err(
            "key_file",
            format!(
                "{} and {} are not a usable certificate and key pair: {e}",
                s.cert_file.display(),
                s.key_file.display()
            ),
        )
    })?;
    cfg.ignore_client_order = s.prefer_server_cipher_suites;
    cfg.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(cfg)
}
