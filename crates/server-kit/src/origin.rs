//! Which web pages may use a server: the `Origin` and `Host` checks every
//! server applies, before its token check and before any WebSocket upgrade.
//!
//! Browsers let any page open a WebSocket to any address and send simple
//! `POST`s anywhere; they only tell the server who asks, in `Origin`. So a
//! server that runs commands without authentication on loopback would run
//! them for every web site its user visits (cross-site WebSocket hijacking),
//! and a site whose DNS name is rebound to 127.0.0.1 even looks same-origin
//! (DNS rebinding). The rule:
//!
//! - **With authentication**, the token is the proof: any origin is served
//!   (real clients run from their own origins), unless the operator listed
//!   origins with `--allow-origin`.
//! - **Without authentication**, a request with an `Origin` is served only
//!   when it comes from the server's own pages or a listed origin; on a
//!   loopback listener, a `Host` that is not a loopback name is refused.
//! - Requests without `Origin` (command-line clients, services) are served:
//!   browsers always send it on WebSocket upgrades and on every request
//!   that is not a `GET` or `HEAD`.
//!
//! [`OriginPolicy::check`] is the decision, pure and tested here; the axum
//! middleware [`check_origin`] applies it.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use crate::Error;
use crate::metrics::Probe;

/// A web origin, `scheme://host[:port]`, as browsers send it in `Origin`
/// and as operators give it to `--allow-origin`. Scheme and host are
/// lower case; a scheme's default port is left out, so
/// `http://localhost:80` and `http://localhost` are the same origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    authority: Authority,
}

/// `host[:port]`: the host part of an origin, or a `Host` header.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Authority {
    /// Lower case; an IPv6 address in brackets and canonical form.
    host: String,
    port: Option<u16>,
}

impl Authority {
    /// Parses `host[:port]`; `None` for anything else (paths, user names,
    /// empty hosts, bad ports).
    fn parse(text: &str) -> Option<Authority> {
        let (host, port) = if let Some(bracketed) = text.strip_prefix('[') {
            let (address, rest) = bracketed.split_once(']')?;
            let address: Ipv6Addr = address.parse().ok()?;
            let port = match rest {
                "" => None,
                _ => Some(rest.strip_prefix(':')?),
            };
            (format!("[{address}]"), port)
        } else {
            let (host, port) = match text.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (text, None),
            };
            let valid = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
            if !valid {
                return None;
            }
            (host.to_ascii_lowercase(), port)
        };
        let port = match port {
            None => None,
            Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                Some(digits.parse().ok()?)
            }
            Some(_) => return None,
        };
        Some(Authority { host, port })
    }

    /// The port, with `default` when none is given.
    fn port_or(&self, default: u16) -> u16 {
        self.port.unwrap_or(default)
    }

    fn ip(&self) -> Option<std::net::IpAddr> {
        match self.host.strip_prefix('[') {
            Some(v6) => v6
                .strip_suffix(']')
                .and_then(|a| a.parse::<Ipv6Addr>().ok())
                .map(Into::into),
            None => self.host.parse::<Ipv4Addr>().ok().map(Into::into),
        }
    }

    /// `localhost`, a name under `.localhost` (browsers resolve both to
    /// loopback themselves, without asking DNS), `127.0.0.0/8` or `[::1]`.
    fn is_loopback(&self) -> bool {
        self.host == "localhost"
            || self.host.ends_with(".localhost")
            || self.ip().is_some_and(|ip| ip.to_canonical().is_loopback())
    }

    /// An address, or a loopback name: nothing a DNS server could rebind
    /// to this machine.
    fn cannot_be_rebound(&self) -> bool {
        self.is_loopback() || self.ip().is_some()
    }
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.host)?;
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

/// The port a scheme implies when an origin names none.
fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

impl Origin {
    fn parse(text: &str) -> Result<Origin, &'static str> {
        if text == "null" {
            return Err("the null origin (sandboxed frames, file:// pages) cannot be allowed");
        }
        let (scheme, rest) = text.split_once("://").ok_or("no scheme")?;
        let scheme_ok = scheme
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if !scheme_ok {
            return Err("bad scheme");
        }
        if rest.contains(['/', '?', '#']) {
            return Err("an origin has no path, query or fragment");
        }
        if rest.contains('@') {
            return Err("an origin has no user name");
        }
        let mut authority = Authority::parse(rest).ok_or("bad host or port")?;
        let scheme = scheme.to_ascii_lowercase();
        if authority.port.is_some() && authority.port == default_port(&scheme) {
            authority.port = None;
        }
        Ok(Origin { scheme, authority })
    }

    /// True when this origin is the very address a request was sent to
    /// (`http://` and its `Host`), and that address cannot be rebound: a
    /// page the server itself served there (webexec's demo page, pow's
    /// docs). `localhost` and `127.0.0.1` are different origins, as they
    /// are to browsers.
    fn is_own(&self, host: Option<&Authority>) -> bool {
        let Some(host) = host else {
            return false;
        };
        self.scheme == "http"
            && self.authority.host == host.host
            && self.authority.port_or(80) == host.port_or(80)
            && host.cannot_be_rebound()
    }
}

impl FromStr for Origin {
    type Err = Error;

    /// Parses `scheme://host[:port]` (`http://localhost:3000`,
    /// `https://app.example`); a path, even `/` alone, is refused, since an
    /// origin has none and a silent fix could hide a typo.
    fn from_str(text: &str) -> Result<Origin, Error> {
        Origin::parse(text).map_err(|why| Error::BadOrigin {
            given: text.to_owned(),
            why,
        })
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.authority)
    }
}

/// The origin and host rule of one listener. See the module documentation.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    allowed: Arc<[Origin]>,
    auth: bool,
    /// The listener is on a loopback address: without authentication,
    /// `Host` must name loopback. Off on other addresses (`--insecure` on
    /// a LAN), where clients use whatever name the host has; there, pages
    /// reached by a DNS name must be listed.
    host_check: bool,
    /// Where refusals are counted, if anywhere.
    probe: Option<Probe>,
}

/// True when a server admits pages of every origin: authentication on
/// and no origin listed ([`OriginPolicy::admits_any_origin`]), known
/// before any listener, for a server's CORS answer (`*`).
pub fn admits_any_origin(allowed: &[Origin], auth: bool) -> bool {
    auth && allowed.is_empty()
}

impl OriginPolicy {
    /// The policy of a listener on `listen`: `allowed` from
    /// `--allow-origin`, `auth` when the server requires a token.
    pub fn new(allowed: &[Origin], auth: bool, listen: SocketAddr) -> OriginPolicy {
        OriginPolicy {
            allowed: allowed.into(),
            auth,
            host_check: !auth && listen.ip().to_canonical().is_loopback(),
            probe: None,
        }
    }

    /// The same policy, counting what [`check_origin`] refuses in `probe`'s
    /// `origin_refusals`.
    pub fn counted(self, probe: &Probe) -> OriginPolicy {
        OriginPolicy {
            probe: Some(probe.clone()),
            ..self
        }
    }

    /// True when every origin is served (authentication on, none listed):
    /// what a server's CORS answer may then say (`*`).
    pub fn admits_any_origin(&self) -> bool {
        admits_any_origin(&self.allowed, self.auth)
    }

    /// Decides on a request from its `Origin` and `Host` headers (`None`
    /// when absent; a header that is not text counts as an unusable value,
    /// not as absent).
    pub fn check(&self, origin: Option<&str>, host: Option<&str>) -> Result<(), Refusal> {
        let authority = host.and_then(Authority::parse);
        if self.host_check
            && let Some(given) = host
        {
            let admitted = authority
                .as_ref()
                .is_some_and(|a| a.is_loopback() || self.lists_host(a));
            if !admitted {
                return Err(Refusal::Host(given.to_owned()));
            }
        }
        let Some(origin) = origin else {
            return Ok(());
        };
        if self.admits_any_origin() {
            return Ok(());
        }
        let admitted = Origin::parse(origin)
            .is_ok_and(|o| self.allowed.contains(&o) || o.is_own(authority.as_ref()));
        if admitted {
            Ok(())
        } else {
            Err(Refusal::Origin {
                origin: origin.to_owned(),
                auth: self.auth,
            })
        }
    }

    /// A listed origin names this host (any port): a reverse proxy in
    /// front of a loopback server passes the public name on.
    fn lists_host(&self, host: &Authority) -> bool {
        self.allowed.iter().any(|o| o.authority.host == host.host)
    }
}

/// Why [`OriginPolicy::check`] refused a request; its `Display` is the
/// body of the `403` a browser's user or a developer reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Without authentication on a loopback listener, a `Host` that names
    /// something other than loopback: a page whose DNS name was rebound to
    /// this address.
    Host(String),
    /// A page of an origin that is neither the server's own nor listed.
    Origin {
        /// The `Origin` header as sent.
        origin: String,
        /// The server requires a token (so only the list refused it).
        auth: bool,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Host(host) => write!(
                f,
                "refused: Host {host:?} is not a loopback name; without authentication this \
                 server answers only requests addressed to localhost or a loopback address, so \
                 that a web page whose DNS name points here cannot run commands (DNS \
                 rebinding); list a reverse proxy's origin with --allow-origin ORIGIN"
            ),
            Refusal::Origin {
                origin,
                auth: false,
            } => write!(
                f,
                "refused: pages of origin {origin} may not use this server: without \
                 authentication it serves browsers only on its own pages and on origins listed \
                 with --allow-origin ORIGIN (or give clients a token instead of --no-auth)"
            ),
            Refusal::Origin { origin, auth: true } => write!(
                f,
                "refused: pages of origin {origin} may not use this server: it serves browsers \
                 only on its own pages and on origins listed with --allow-origin ORIGIN"
            ),
        }
    }
}

mod middleware {
    use super::OriginPolicy;
    use axum::extract::{Request, State};
    use axum::http::{HeaderName, StatusCode, header};
    use axum::middleware::Next;
    use axum::response::{IntoResponse, Response};

    /// axum middleware: refuses what [`OriginPolicy::check`] refuses with
    /// `403 Forbidden` and a plain-text reason naming `--allow-origin`.
    /// Layer it outside the token check and any CORS layer, so that it
    /// decides before either, and before any WebSocket upgrade.
    pub async fn check_origin(
        State(policy): State<OriginPolicy>,
        request: Request,
        next: Next,
    ) -> Response {
        // In a block: a borrow of the request (whose body is not `Sync`)
        // held across the await below would make this future not `Send`.
        let verdict = {
            let header = |name: HeaderName| {
                request
                    .headers()
                    .get(name)
                    .map(|v| v.to_str().unwrap_or_default())
            };
            policy.check(header(header::ORIGIN), header(header::HOST))
        };
        match verdict {
            Ok(()) => next.run(request).await,
            Err(refusal) => {
                tracing::info!(%refusal, path = request.uri().path(), "request refused");
                if let Some(probe) = &policy.probe {
                    probe.origin_refused();
                }
                (
                    StatusCode::FORBIDDEN,
                    [
                        (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                    ],
                    format!("{refusal}\n"),
                )
                    .into_response()
            }
        }
    }
}

pub use middleware::check_origin;

#[cfg(test)]
mod tests {
    use super::*;

    fn origins(list: &[&str]) -> Vec<Origin> {
        list.iter().map(|o| o.parse().unwrap()).collect()
    }

    fn loopback() -> SocketAddr {
        "127.0.0.1:8080".parse().unwrap()
    }

    fn lan() -> SocketAddr {
        "0.0.0.0:8080".parse().unwrap()
    }

    #[test]
    fn origins_parse_and_normalize() {
        let o: Origin = "HTTP://LocalHost:80".parse().unwrap();
        assert_eq!(o.to_string(), "http://localhost");
        let o: Origin = "https://app.example:443".parse().unwrap();
        assert_eq!(o.to_string(), "https://app.example");
        let o: Origin = "http://[0:0:0:0:0:0:0:1]:3000".parse().unwrap();
        assert_eq!(o.to_string(), "http://[::1]:3000");
        let o: Origin = "chrome-extension://abcdef".parse().unwrap();
        assert_eq!(o.to_string(), "chrome-extension://abcdef");
        for bad in [
            "null",
            "",
            "localhost:3000",
            "http://",
            "http://localhost:3000/",
            "http://localhost/path",
            "http://user@localhost",
            "http://localhost:",
            "http://localhost:99999",
            "http://local host",
            "http://*.example",
            "http://[::1",
            "http://::1",
            "1http://x",
        ] {
            let err = bad.parse::<Origin>().unwrap_err().to_string();
            assert!(err.contains("scheme://host[:port]"), "{bad}: {err}");
        }
    }

    #[test]
    fn without_auth_only_own_and_listed_origins() {
        let p = OriginPolicy::new(&origins(&["https://app.example"]), false, loopback());
        let host = Some("127.0.0.1:8080");
        // Not a browser.
        assert_eq!(p.check(None, host), Ok(()));
        assert_eq!(p.check(None, None), Ok(()));
        // The server's own page, under each loopback name it was reached by.
        assert_eq!(p.check(Some("http://127.0.0.1:8080"), host), Ok(()));
        assert_eq!(
            p.check(Some("http://localhost:8080"), Some("localhost:8080")),
            Ok(())
        );
        assert_eq!(
            p.check(Some("http://[::1]:8080"), Some("[::1]:8080")),
            Ok(())
        );
        assert_eq!(
            p.check(Some("http://localhost"), Some("localhost:80")),
            Ok(())
        );
        // Listed.
        assert_eq!(p.check(Some("https://app.example"), host), Ok(()));
        // Everything else.
        for foreign in [
            "https://evil.example",
            "http://evil.example:8080",
            "null",
            "",
            // Same host, other scheme or port: another origin.
            "https://127.0.0.1:8080",
            "http://127.0.0.1:8081",
            // localhost and 127.0.0.1 are different origins to a browser.
            "http://localhost:8080",
        ] {
            assert!(
                matches!(
                    p.check(Some(foreign), host),
                    Err(Refusal::Origin { auth: false, .. })
                ),
                "{foreign}"
            );
        }
        let why = p.check(Some("null"), host).unwrap_err().to_string();
        assert!(why.contains("--allow-origin"), "{why}");
    }

    #[test]
    fn without_auth_on_loopback_the_host_must_be_loopback() {
        let p = OriginPolicy::new(&origins(&["https://term.example"]), false, loopback());
        for ok in [
            "localhost:8080",
            "LOCALHOST",
            "app.localhost:8080",
            "127.0.0.1:8080",
            "127.1.2.3",
            "[::1]:8080",
            "[::ffff:127.0.0.1]:8080",
            // A reverse proxy for a listed origin passes its name on.
            "term.example",
        ] {
            assert_eq!(p.check(None, Some(ok)), Ok(()), "{ok}");
        }
        for rebound in [
            "evil.example:8080",
            "localhost.evil.example",
            "10.0.0.1:8080",
            "[::2]",
            "",
            "localhost:8080/x",
        ] {
            assert_eq!(
                p.check(None, Some(rebound)),
                Err(Refusal::Host(rebound.to_owned())),
                "{rebound}"
            );
        }
        // A rebound page looks same-origin; the Host gives it away.
        assert!(matches!(
            p.check(Some("http://evil.example:8080"), Some("evil.example:8080")),
            Err(Refusal::Host(_))
        ));
        let why = p.check(None, Some("evil.example")).unwrap_err().to_string();
        assert!(
            why.contains("--allow-origin") && why.contains("rebinding"),
            "{why}"
        );
    }

    #[test]
    fn without_auth_on_a_lan_any_host_but_named_pages_must_be_listed() {
        let p = OriginPolicy::new(&[], false, lan());
        // Command-line clients use whatever name the machine has.
        assert_eq!(p.check(None, Some("box.lan:8080")), Ok(()));
        // A page served on an address is the server's own.
        assert_eq!(
            p.check(Some("http://192.168.1.5:8080"), Some("192.168.1.5:8080")),
            Ok(())
        );
        // One served under a DNS name could be a rebound one: list it.
        assert!(
            p.check(Some("http://box.lan:8080"), Some("box.lan:8080"))
                .is_err()
        );
        let listed = OriginPolicy::new(&origins(&["http://box.lan:8080"]), false, lan());
        assert_eq!(
            listed.check(Some("http://box.lan:8080"), Some("box.lan:8080")),
            Ok(())
        );
    }

    #[test]
    fn with_auth_any_origin_unless_listed() {
        let p = OriginPolicy::new(&[], true, loopback());
        assert!(p.admits_any_origin());
        assert_eq!(p.check(Some("https://evil.example"), Some("x:1")), Ok(()));
        assert_eq!(p.check(Some("null"), Some("localhost:8080")), Ok(()));
        // No Host check: the token is the proof, and proxies pass names on.
        assert_eq!(p.check(None, Some("term.example")), Ok(()));

        let p = OriginPolicy::new(&origins(&["https://app.example"]), true, loopback());
        assert!(!p.admits_any_origin());
        let host = Some("127.0.0.1:8080");
        assert_eq!(p.check(Some("https://app.example"), host), Ok(()));
        assert_eq!(p.check(Some("http://127.0.0.1:8080"), host), Ok(()));
        assert_eq!(p.check(None, host), Ok(()));
        assert_eq!(
            p.check(Some("https://evil.example"), host),
            Err(Refusal::Origin {
                origin: "https://evil.example".into(),
                auth: true
            })
        );
    }
}
