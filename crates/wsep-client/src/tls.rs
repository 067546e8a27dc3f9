//! Which servers a `wss://` connection trusts: the system's roots, the
//! certificates of a CA file, or one certificate by its SHA-256
//! fingerprint (what `wsep-server --tls-self-signed` prints).

use std::path::PathBuf;
use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_tungstenite::Connector;

use crate::Error;

/// What a `wss://` connection trusts. `ws://` ignores it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Trust {
    /// The system's root certificates (a certificate from a public CA, or
    /// one the host's administrator installed).
    #[default]
    System,
    /// The certificates in this PEM file, and no others (a private CA, or
    /// the server's own certificate).
    Ca(PathBuf),
    /// Exactly the certificate with this SHA-256 fingerprint, whatever its
    /// name or issuer: hex, colons and case optional.
    Fingerprint(String),
}

impl Trust {
    /// The connector for this trust; `None` lets tungstenite use the
    /// system's roots.
    pub(crate) fn connector(&self) -> Result<Option<Connector>, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?;
        let config = match self {
            Trust::System => return Ok(None),
            Trust::Ca(path) => {
                let mut roots = rustls::RootCertStore::empty();
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
                for cert in certs {
                    roots
                        .add(cert)
                        .map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
                }
                if roots.is_empty() {
                    return Err(Error::Tls(format!("{}: no certificate", path.display())));
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            Trust::Fingerprint(given) => {
                let expected = parse_fingerprint(given)?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(Pinned { expected, provider }))
                    .with_no_client_auth()
            }
        };
        Ok(Some(Connector::Rustls(Arc::new(config))))
    }
}

/// 32 bytes from hex with optional colons, any case.
fn parse_fingerprint(text: &str) -> Result<[u8; 32], Error> {
    let bad = || {
        Error::Tls(format!(
            "bad fingerprint {text:?}: expected 64 hex digits (SHA-256)"
        ))
    };
    let digits: Vec<u8> = text.bytes().filter(|b| *b != b':').collect();
    let mut out = [0u8; 32];
    if digits.len() != 64 {
        return Err(bad());
    }
    for (byte, pair) in out.iter_mut().zip(digits.chunks(2)) {
        let pair = std::str::from_utf8(pair).map_err(|_| bad())?;
        *byte = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// Trusts one certificate by its SHA-256, and checks the handshake's
/// signatures as usual: the pinned key must really be the server's.
#[derive(Debug)]
struct Pinned {
    expected: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let digest = ring::digest::digest(&ring::digest::SHA256, end_entity.as_ref());
        if digest.as_ref() == self.expected {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the server's certificate does not have the expected fingerprint".into(),
            ))
        }
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

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn fingerprints_parse_with_or_without_colons() {
        let hex = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
        let colons = hex
            .as_bytes()
            .chunks(2)
            .map(|p| std::str::from_utf8(p).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        let a = parse_fingerprint(hex).unwrap();
        assert_eq!(a, parse_fingerprint(&colons).unwrap());
        assert_eq!(a, parse_fingerprint(&hex.to_lowercase()).unwrap());
        assert_eq!(a[0], 0xE3);
        assert!(parse_fingerprint("E3B0").is_err());
        assert!(parse_fingerprint(&"zz".repeat(32)).is_err());
    }
}
