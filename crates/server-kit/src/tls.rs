//! TLS for every server: a certificate from PEM files or a fresh
//! self-signed one, and a [`Listener`] that axum serves, doing each
//! connection's handshake beside the accept loop.
//!
//! A handshake runs in a task of its own with a deadline, so a client that
//! connects and says nothing, or speaks something other than TLS, costs
//! one task for a while and never holds up the next connection; a failed
//! handshake is logged, counted, and forgotten.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::Error;
use crate::metrics::Probe;

/// How long a client has to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress at once; beyond this the listener stops
/// accepting until one ends, so a flood of silent connections is bounded.
const MAX_HANDSHAKES: usize = 256;

/// A server's TLS identity: the certificate chain and key, ready to accept
/// connections, and the SHA-256 fingerprint of the certificate.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
    certificate: CertificateDer<'static>,
    fingerprint: String,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads a PEM certificate chain (the server's certificate first) and
    /// its PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Tls, Error> {
        let file_error = |path: &Path, why: String| Error::TlsFile {
            path: path.to_owned(),
            why,
        };
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|e| file_error(cert, e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| file_error(cert, e.to_string()))?;
        if chain.is_empty() {
            return Err(file_error(cert, "no certificate in the file".into()));
        }
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| file_error(key, e.to_string()))?;
        Tls::new(chain, key)
    }

    /// A fresh self-signed certificate for `names` (DNS names and IP
    /// addresses), with a new key that lives only in this process.
    pub fn self_signed(names: &[String]) -> Result<Tls, Error> {
        let made = rcgen::generate_simple_self_signed(names.to_vec())
            .map_err(|e| Error::Tls(format!("making a self-signed certificate: {e}")))?;
        let key = PrivatePkcs8KeyDer::from(made.signing_key.serialize_der());
        Tls::new(vec![made.cert.der().clone()], key.into())
    }

    fn new(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<Tls, Error> {
        let certificate = chain
            .first()
            .cloned()
            .ok_or_else(|| Error::Tls("no certificate".into()))?;
        let mut config = ServerConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| Error::Tls(e.to_string()))?;
        // The servers speak HTTP/1.1 only (WebSocket upgrades need it).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // Ours, not the client's: see `provider`.
        config.ignore_client_order = true;
        let fingerprint = fingerprint(&certificate);
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            certificate,
            fingerprint,
        })
    }

    /// SHA-256 of the certificate, as `AB:CD:...` (what `openssl x509
    /// -fingerprint -sha256` prints, and what `wsep --fingerprint` takes).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The server's certificate, DER encoded: what a client that pins
    /// this very certificate adds to its roots (tests do).
    pub fn certificate_der(&self) -> &[u8] {
        self.certificate.as_ref()
    }
}

/// ring's cryptography, AES-128-GCM first: as safe as AES-256 for this
/// use, and cheaper per byte on the terminal output and uploads a server
/// streams (rustls's clients list AES-256 first; browsers already put
/// AES-128 first).
fn provider() -> rustls::crypto::CryptoProvider {
    use rustls::crypto::ring::cipher_suite;
    let mut provider = rustls::crypto::ring::default_provider();
    let rank = |suite: &rustls::SupportedCipherSuite| {
        let preferred = [
            cipher_suite::TLS13_AES_128_GCM_SHA256.suite(),
            cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256.suite(),
            cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256.suite(),
        ];
        !preferred.contains(&suite.suite())
    };
    provider.cipher_suites.sort_by_key(rank);
    provider
}

/// SHA-256 of DER bytes, as upper-case hex pairs joined by colons.
pub(crate) fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A TCP listener that axum serves, speaking TLS when given a [`Tls`].
pub struct Listener {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
    probe: Probe,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("local_addr", &self.tcp.local_addr().ok())
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Listener {
    /// Serves `tcp`, over TLS when `tls` is given; failed handshakes are
    /// counted in `probe`.
    pub fn new(tcp: TcpListener, tls: Option<&Tls>, probe: &Probe) -> Listener {
        Listener {
            tcp,
            tls: tls.map(|t| t.acceptor.clone()),
            handshakes: JoinSet::new(),
            probe: probe.clone(),
        }
    }

    /// True when connections are TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Where it listens.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// Accepted connections send at once (`TCP_NODELAY`): with Nagle's
/// algorithm a keystroke's echo written while earlier output is still
/// unacknowledged waits for that acknowledgement, which the client's
/// kernel delays up to 40 ms; the reliability benchmark's slow-client run
/// saw echo round trips of 40-100 ms on a terminal streaming output.
async fn accept_tcp(tcp: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match tcp.accept().await {
            Ok(accepted) => {
                // Only latency depends on it: a socket that refuses the
                // option is still served.
                let _ = accepted.0.set_nodelay(true);
                return accepted;
            }
            Err(e) => accept_failed(e).await,
        }
    }
}

/// What axum does with a failed accept: a connection that went away
/// before it was accepted is nothing; anything else (out of file
/// descriptors) is logged and waited out.
async fn accept_failed(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

async fn handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    probe: Probe,
) -> Option<(TlsStream<TcpStream>, SocketAddr)> {
    // Fallible: a failed handshake hands the socket back, so it is closed
    // only after the failure was counted.
    let accept = acceptor.accept(tcp).into_fallible();
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept).await {
        Ok(Ok(stream)) => Some((stream, peer)),
        Ok(Err((e, tcp))) => {
            probe.tls_handshake_failed();
            tracing::info!(%peer, error = %e, "TLS handshake failed");
            drop(tcp);
            None
        }
        Err(_) => {
            probe.tls_handshake_failed();
            tracing::info!(%peer, "TLS handshake timed out");
            None
        }
    }
}

impl axum::serve::Listener for Listener {
    type Io = Io;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Io, SocketAddr) {
        let Listener {
            tcp,
            tls,
            handshakes,
            probe,
        } = self;
        let Some(acceptor) = tls else {
            let (tcp, peer) = accept_tcp(tcp).await;
            return (Io::Plain(tcp), peer);
        };
        loop {
            let room = handshakes.len() < MAX_HANDSHAKES;
            tokio::select! {
                (tcp, peer) = accept_tcp(tcp), if room => {
                    handshakes.spawn(handshake(acceptor.clone(), tcp, peer, probe.clone()));
                }
                Some(done) = handshakes.join_next() => {
                    if let Ok(Some((stream, peer))) = done {
                        return (Io::Tls(Box::new(stream)), peer);
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// A served connection: plain TCP or TLS over it.
#[derive(Debug)]
pub enum Io {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS, after a completed handshake.
    Tls(Box<TlsStream<TcpStream>>),
}

/// A TLS connection that ends says so (`close_notify`), as TLS asks: a
/// client such as rustls otherwise reports the end as a truncation, even
/// after a clean WebSocket close. An upgraded connection is dropped rather
/// than shut down, so the alert goes out here, as far as the socket takes
/// it without waiting.
impl Drop for Io {
    fn drop(&mut self) {
        let Io::Tls(stream) = self else {
            return;
        };
        let (tcp, connection) = stream.get_mut();
        connection.send_close_notify();
        let mut socket = Nonblocking(tcp);
        while connection.wants_write() {
            match connection.write_tls(&mut socket) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

/// Writes what the socket takes now, never waiting.
struct Nonblocking<'a>(&'a TcpStream);

impl io::Write for Nonblocking<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::metrics::Metrics;
    use axum::serve::Listener as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[test]
    fn fingerprints_are_colon_separated_sha256() {
        // SHA-256 of the empty string.
        let f = fingerprint(b"");
        assert!(f.starts_with("E3:B0:C4:42:98:FC:1C:14"), "{f}");
        assert_eq!(f.len(), 32 * 3 - 1);
    }

    #[test]
    fn pem_files_load_and_bad_ones_say_which() {
        let dir = std::env::temp_dir().join(format!("server-kit-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        let tls = Tls::from_pem_files(&cert, &key).unwrap();
        assert_eq!(tls.certificate_der(), made.cert.der().as_ref());
        assert_eq!(tls.fingerprint(), fingerprint(made.cert.der()));
        let err = Tls::from_pem_files(&key, &key).unwrap_err().to_string();
        assert!(err.contains("key.pem"), "{err}");
        let err = Tls::from_pem_files(&cert, &cert).unwrap_err().to_string();
        assert!(err.contains("cert.pem"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Served connections do not wait to coalesce small writes (an echo
    /// behind unacknowledged output), plain or TLS.
    #[tokio::test]
    async fn accepted_connections_send_at_once() {
        let metrics = Metrics::new();
        let probe = metrics.probe("test");
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let mut listener = Listener::new(tcp, None, &probe);
        let _client = TcpStream::connect(addr).await.unwrap();
        let (io, _) = listener.accept().await;
        let nodelay = match &io {
            Io::Plain(stream) => stream.nodelay(),
            Io::Tls(stream) => stream.get_ref().0.nodelay(),
        };
        assert!(nodelay.unwrap());
    }

    /// A client that speaks no TLS, and one that says nothing, do not
    /// stop the next one from being served.
    #[tokio::test]
    async fn bad_handshakes_do_not_stop_the_listener() {
        let tls = Tls::self_signed(&["localhost".to_owned()]).unwrap();
        let metrics = Metrics::new();
        let probe = metrics.probe("test");
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let mut listener = Listener::new(tcp, Some(&tls), &probe);
        let server = tokio::spawn(async move {
            let (mut io, _) = listener.accept().await;
            io.write_all(b"hello").await.unwrap();
            io.shutdown().await.unwrap();
        });
        let _silent = TcpStream::connect(addr).await.unwrap();
        let mut garbage = TcpStream::connect(addr).await.unwrap();
        garbage
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        // The server answers garbage with an alert and closes.
        let mut sink = Vec::new();
        let _ = garbage.read_to_end(&mut sink).await;

        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(tls.certificate_der().to_vec()))
            .unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut stream = connector.connect(name, tcp).await.unwrap();
        let mut got = Vec::new();
        stream.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");
        server.await.unwrap();
        assert!(
            metrics
                .encode()
                .contains("execwire_tls_handshake_failures_total{protocol=\"test\"} 1")
        );
    }
}
