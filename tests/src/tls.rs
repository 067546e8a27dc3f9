//! Clients that trust one server's certificate: what the TLS scenarios
//! connect with (a browser would need the certificate installed; these
//! take it as their only root).

use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use server_kit::Tls;

/// Makes ring the process's rustls provider, once; later calls do nothing.
///
/// The HTTPS scenarios give reqwest its rustls without a provider of its
/// own (its default one, aws-lc-rs, needs a C toolchain build), and then
/// every `reqwest::Client` in the process, plain `http://` ones included,
/// takes the process's provider. The harness calls this before any client
/// is built: in [`TestServer`](crate::TestServer)'s start, the webexec
/// client, [`https_client`].
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A fresh self-signed identity for `127.0.0.1` and `localhost`.
pub fn identity() -> Tls {
    Tls::self_signed(&["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap()
}

/// A rustls client configuration whose only root is `tls`'s certificate.
pub fn client_config(tls: &Tls) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(tls.certificate_der().to_vec()))
        .unwrap();
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// A tokio-tungstenite connector for `wss://` that trusts `tls`.
pub fn ws_connector(tls: &Tls) -> tokio_tungstenite::Connector {
    tokio_tungstenite::Connector::Rustls(Arc::new(client_config(tls)))
}

/// A reqwest client for `https://` that trusts `tls`.
pub fn https_client(tls: &Tls) -> reqwest::Client {
    install_provider();
    reqwest::Client::builder()
        .tls_backend_preconfigured(client_config(tls))
        .build()
        .unwrap()
}

/// The value of the series `name` (with its labels, as printed) in a
/// metrics text; `None` when absent.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter_map(|line| line.rsplit_once(' '))
        .find(|(series, _)| *series == name)
        .and_then(|(_, value)| value.parse().ok())
}
