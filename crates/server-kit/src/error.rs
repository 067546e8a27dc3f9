use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything that can go wrong while a server starts or serves.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `--no-auth` on an address others can reach, without `--insecure`.
    #[error(
        "refusing to serve {0} without authentication: anyone who can reach it could run \
         commands as this user; listen on a loopback address, drop --no-auth, or add --insecure"
    )]
    Exposed(SocketAddr),
    /// `--view-token` is the full token: viewers would get full access.
    #[error("--view-token must differ from --token: its holders would get full access")]
    SameTokens,
    /// An origin given to a server (`--allow-origin`) is not one.
    #[error(
        "bad origin {given:?}: {why}; expected scheme://host[:port], e.g. http://localhost:3000"
    )]
    BadOrigin {
        /// What was given.
        given: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The operating system's random source failed (generating a token).
    #[error("random source: {0}")]
    Random(getrandom::Error),
    /// A certificate or key file could not be read or parsed.
    #[error("{}: {why}", path.display())]
    TlsFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The certificate and key do not make a TLS configuration (a key that
    /// does not match, an unsupported algorithm), or a self-signed one
    /// could not be made.
    #[error("tls: {0}")]
    Tls(String),
    /// Binding a listener failed.
    #[error("listening on {addr}: {error}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the system said: part of the message, so not also its
        /// `source` (printed with its causes, `{:#}`, it would come twice).
        error: std::io::Error,
    },
    /// Logging was already set up in this process.
    #[error("logging: {0}")]
    Logging(String),
    /// Serving failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
