//! The flags every server takes, and what a server binary does with them
//! before it serves: logging, TLS, the exposure check, binding, the token.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::Error;
use crate::auth::{AccessToken, check_exposure};
use crate::origin::Origin;
use crate::tls::Tls;

/// What sets one server binary apart from the others in the shared flags.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// The program's name, as it prints it (`wsep-server`).
    pub name: &'static str,
    /// The environment variable `--token` is read from (`WSEP_TOKEN`).
    pub token_env: &'static str,
    /// The environment variable `--view-token` is read from
    /// (`WSEP_VIEW_TOKEN`).
    pub view_token_env: &'static str,
    /// Where it listens without `--listen`.
    pub listen: &'static [SocketAddr],
    /// Other settings that hold secrets (webexec's TURN secret): like the
    /// two tokens, taken out of the environment the commands it runs get
    /// and out of what `ps` shows of its command line
    /// ([`run_main`](crate::run_main)).
    pub secrets: &'static [Secret],
}

/// A setting besides the tokens whose value is a secret.
#[derive(Debug, Clone, Copy)]
pub struct Secret {
    /// Its flag (`--turn-secret`).
    pub flag: &'static str,
    /// The environment variable it may come from instead
    /// (`WEBEXEC_TURN_SECRET`).
    pub env: &'static str,
}

/// `127.0.0.1:port`, for a [`Spec`]'s default.
pub const fn loopback(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

/// `[::1]:port`, for a [`Spec`]'s default.
pub const fn loopback6(port: u16) -> SocketAddr {
    SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, port, 0, 0))
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line, with the span fields (connection id,
    /// peer, protocol) of the event.
    Json,
}

/// The flags every server takes: `#[command(flatten)]` them into a
/// server's own `clap::Parser` and parse with [`Spec::parse`], which fills
/// in the server's token variable and default addresses.
///
/// They are `global`, so that a server with subcommands (webexec) takes
/// them after its subcommand too.
#[derive(Debug, Clone, clap::Args)]
pub struct Flags {
    /// Address to listen on; repeatable.
    #[arg(long, global = true, value_name = "ADDR:PORT")]
    pub listen: Vec<SocketAddr>,
    /// The token clients must present; without it one is generated and printed.
    #[arg(long, global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// A second token, for read-only viewers: it attaches to running
    /// terminals and shows their output, but cannot start anything, type,
    /// resize or signal (refused with the protocol's error). Needs auth on.
    #[arg(
        long,
        global = true,
        hide_env_values = true,
        value_name = "TOKEN",
        conflicts_with = "no_auth"
    )]
    pub view_token: Option<String>,
    /// Serve without authentication (only on a loopback address unless --insecure).
    #[arg(long, global = true, conflicts_with = "token")]
    pub no_auth: bool,
    /// Allow --no-auth on a non-loopback address. Anyone who can reach it can run commands.
    #[arg(long, global = true)]
    pub insecure: bool,
    /// Let web pages of ORIGIN (scheme://host, or scheme://host:port) connect; repeatable.
    /// Without auth only the server's own pages and these may; with auth,
    /// given at all, it restricts browsers to them.
    #[arg(long = "allow-origin", global = true, value_name = "ORIGIN")]
    pub allow_origins: Vec<Origin>,
    /// PEM certificate chain (server certificate first): serve https:// and
    /// wss:// with it and --tls-key.
    #[arg(long, global = true, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, global = true, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve https:// and wss:// with a new self-signed certificate; its
    /// SHA-256 fingerprint is printed for clients to check.
    #[arg(long, global = true, conflicts_with = "tls_cert")]
    pub tls_self_signed: bool,
    /// Log lines as text or JSON (one object per line), on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Send a WebSocket ping on every connection each SECS seconds (0:
    /// never), so that a proxy that cuts idle connections (nginx after
    /// 60 s by default) keeps an idle session.
    #[arg(
        long = "ws-ping",
        global = true,
        value_name = "SECS",
        default_value_t = crate::ws::DEFAULT_WS_PING.as_secs()
    )]
    pub ws_ping: u64,
    /// Serve under this path prefix (e.g. /host-a/wsep/), for a reverse
    /// proxy that passes the path on as it is.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        default_value = "/",
        value_parser = crate::base::parse_base_path
    )]
    pub base_path: String,
}

impl Spec {
    /// Parses the command line into `A` (which flattens [`Flags`]), with
    /// `--token` read from this server's variable and `--listen`'s help
    /// naming its default. Exits with clap's message on bad flags, as
    /// `Parser::parse` does.
    pub fn parse<A: clap::Parser>(&self) -> A {
        let matches = self.command::<A>().get_matches();
        A::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }

    /// The `clap::Command` [`Spec::parse`] parses with, for a server that
    /// also needs the matches themselves (to tell a flag given on the
    /// command line from its default, when a file may set it too).
    pub fn command<A: clap::Parser>(&self) -> clap::Command {
        let defaults = self
            .listen
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        A::command()
            .mut_arg("token", |a| a.env(self.token_env))
            .mut_arg("view_token", |a| a.env(self.view_token_env))
            .mut_arg("listen", |a| {
                a.help(format!(
                    "Address to listen on; repeatable [default: {defaults}]"
                ))
            })
    }
}

/// What a server binary has once its flags are applied.
#[derive(Debug)]
pub struct Started {
    /// One bound listener per address.
    pub listeners: Vec<TcpListener>,
    /// The token clients need; `None` with `--no-auth`.
    pub token: Option<AccessToken>,
    /// The TLS identity, when serving TLS.
    pub tls: Option<Tls>,
}

impl Flags {
    /// How often to ping WebSocket clients: `None` for `--ws-ping 0`.
    pub fn ws_ping(&self) -> Option<Duration> {
        (self.ws_ping > 0).then(|| Duration::from_secs(self.ws_ping))
    }

    /// The addresses to listen on: `--listen`, else the server's defaults.
    pub fn addresses(&self, spec: &Spec) -> Vec<SocketAddr> {
        if self.listen.is_empty() {
            spec.listen.to_vec()
        } else {
            self.listen.clone()
        }
    }

    /// The TLS identity the flags ask for, if any: the PEM files, or a
    /// self-signed certificate for `addrs` and `localhost`, whose
    /// fingerprint is printed on stdout.
    pub fn tls(&self, addrs: &[SocketAddr]) -> Result<Option<Tls>, Error> {
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            let tls = Tls::from_pem_files(cert, key)?;
            println!("TLS certificate SHA-256 fingerprint: {}", tls.fingerprint());
            return Ok(Some(tls));
        }
        if !self.tls_self_signed {
            return Ok(None);
        }
        let mut names = vec![
            "localhost".to_owned(),
            Ipv4Addr::LOCALHOST.to_string(),
            Ipv6Addr::LOCALHOST.to_string(),
        ];
        for ip in addrs.iter().map(SocketAddr::ip) {
            let name = ip.to_string();
            if !ip.is_unspecified() && !names.contains(&name) {
                names.push(name);
            }
        }
        let tls = Tls::self_signed(&names)?;
        println!(
            "TLS self-signed certificate SHA-256 fingerprint: {}",
            tls.fingerprint()
        );
        Ok(Some(tls))
    }

    /// Refuses `--no-auth` on an address others can reach (unless
    /// `--insecure`), and warns about listening on one without TLS.
    pub fn check_address(&self, addr: SocketAddr, tls: bool) -> Result<(), Error> {
        check_exposure(addr, !self.no_auth, self.insecure)?;
        if !tls && !addr.ip().to_canonical().is_loopback() {
            tracing::warn!(
                %addr,
                "listening without TLS on an address others can reach: the token, the \
                 commands and all their input and output cross the network in clear text, \
                 for anyone on the path to read or change; use --tls-cert/--tls-key or \
                 --tls-self-signed"
            );
        }
        Ok(())
    }

    /// Everything before serving: TLS, the exposure check and warning for
    /// each address, the listeners, and the token (generated and printed
    /// as `token: T` unless given or `--no-auth`).
    ///
    /// When the addresses are the defaults, an IPv6 one that cannot be
    /// bound (a host without IPv6) is skipped with a warning.
    pub async fn start(&self, spec: &Spec) -> Result<Started, Error> {
        let (addrs, tls) = self.prepare(spec)?;
        let listeners = self.bind(addrs).await?;
        let token = self.token()?;
        Ok(Started {
            listeners,
            token,
            tls,
        })
    }

    /// The first part of [`Flags::start`], for a server that binds more
    /// in between (webexec's daemon socket): the two tokens told apart,
    /// the addresses, the TLS identity, and the exposure check and warning
    /// for each address.
    pub fn prepare(&self, spec: &Spec) -> Result<(Vec<SocketAddr>, Option<Tls>), Error> {
        // A view token equal to the full token would be the full token.
        if let (Some(full), Some(view)) = (self.token.as_deref(), self.view_token())
            && view.matches(full)
        {
            return Err(Error::SameTokens);
        }
        let addrs = self.addresses(spec);
        let tls = self.tls(&addrs)?;
        for addr in &addrs {
            self.check_address(*addr, tls.is_some())?;
        }
        Ok((addrs, tls))
    }

    /// Binds a listener on each of `addrs`, skipping, with a warning, an
    /// IPv6 one that cannot be bound when they are the defaults (not
    /// `--listen`): a host without IPv6.
    pub async fn bind(&self, addrs: Vec<SocketAddr>) -> Result<Vec<TcpListener>, Error> {
        let defaults = self.listen.is_empty();
        let mut listeners = Vec::new();
        for addr in addrs {
            match TcpListener::bind(addr).await {
                Ok(listener) => listeners.push(listener),
                Err(e) if defaults && addr.is_ipv6() => {
                    tracing::warn!(%addr, error = %e, "not listening on IPv6 loopback");
                }
                Err(error) => return Err(Error::Bind { addr, error }),
            }
        }
        Ok(listeners)
    }

    /// The read-only token to run with: `--view-token` unless empty, and
    /// none with `--no-auth` (everyone may do everything then).
    pub fn view_token(&self) -> Option<AccessToken> {
        if self.no_auth {
            return None;
        }
        self.view_token
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(AccessToken::new)
    }

    /// The token to run with: none with `--no-auth`, the given one, or a
    /// fresh one, printed to stdout as `token: T` (where operators and
    /// scripts read it).
    pub fn token(&self) -> Result<Option<AccessToken>, Error> {
        if self.no_auth {
            return Ok(None);
        }
        match self.token.as_deref().filter(|t| !t.is_empty()) {
            Some(given) => Ok(Some(AccessToken::new(given))),
            None => {
                let token = AccessToken::generate()?;
                println!("token: {}", token.expose());
                Ok(Some(token))
            }
        }
    }
}

/// A URL of a server: `ws://`/`wss://` when `websocket`, else
/// `http://`/`https://`, as `tls` says.
pub fn url(addr: SocketAddr, tls: bool, websocket: bool, path: &str) -> String {
    let scheme = match (websocket, tls) {
        (true, false) => "ws",
        (true, true) => "wss",
        (false, false) => "http",
        (false, true) => "https",
    };
    let host = match addr.ip() {
        IpAddr::V6(ip) => format!("[{ip}]"),
        IpAddr::V4(ip) => ip.to_string(),
    };
    format!("{scheme}://{host}:{}{path}", addr.port())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Args {
        #[command(flatten)]
        flags: Flags,
    }

    #[test]
    fn flags_parse() {
        let args = Args::try_parse_from([
            "x",
            "--listen",
            "127.0.0.1:1",
            "--listen",
            "[::1]:2",
            "--tls-self-signed",
            "--log-format",
            "json",
            "--allow-origin",
            "https://a.example",
        ])
        .unwrap();
        assert_eq!(args.flags.listen.len(), 2);
        assert!(args.flags.tls_self_signed);
        assert_eq!(args.flags.log_format, LogFormat::Json);
        assert_eq!(args.flags.ws_ping(), Some(crate::ws::DEFAULT_WS_PING));
        assert_eq!(args.flags.base_path, "/");
        let args = Args::try_parse_from(["x", "--ws-ping", "0", "--base-path", "/a/b/"]).unwrap();
        assert_eq!(args.flags.ws_ping(), None);
        assert_eq!(args.flags.base_path, "/a/b/");
        assert!(Args::try_parse_from(["x", "--tls-cert", "c.pem"]).is_err());
        assert!(Args::try_parse_from(["x", "--no-auth", "--token", "t"]).is_err());
        assert!(Args::try_parse_from(["x", "--no-auth", "--view-token", "v"]).is_err());
        let args = Args::try_parse_from(["x", "--view-token", "v"]).unwrap();
        assert_eq!(args.flags.view_token().map(|t| t.matches("v")), Some(true));
        let args = Args::try_parse_from(["x", "--view-token", ""]).unwrap();
        assert!(args.flags.view_token().is_none());
        assert!(
            Args::try_parse_from([
                "x",
                "--tls-self-signed",
                "--tls-cert",
                "c",
                "--tls-key",
                "k"
            ])
            .is_err()
        );
    }

    #[test]
    fn urls() {
        assert_eq!(url(loopback(80), true, true, "/"), "wss://127.0.0.1:80/");
        assert_eq!(url(loopback6(8), false, false, "/x/"), "http://[::1]:8/x/");
    }
}
