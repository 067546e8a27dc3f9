//! Bearer tokens: generated, compared in constant time, taken from
//! requests, and required of HTTP requests by [`require_token`], which
//! tells the handler what the token lets its holder do ([`Access`]).
//!
//! The token lives here, not in the engine: exec-core runs processes and
//! knows nothing of who may ask; every server that authenticates a client
//! (over HTTP, or in-band as webterm and webexec's `%` do) uses this type.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::Error;
use crate::metrics::Probe;

/// A secret shared between a server and its clients.
#[derive(Clone)]
pub struct AccessToken(String);

impl AccessToken {
    /// Wraps a configured token.
    pub fn new(token: impl Into<String>) -> Self {
        AccessToken(token.into())
    }

    /// 32 bytes from the operating system's random source, hex encoded.
    pub fn generate() -> Result<Self, Error> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(Error::Random)?;
        Ok(AccessToken(
            raw.iter().map(|b| format!("{b:02x}")).collect(),
        ))
    }

    /// Compares without leaking, through timing, how much of a guess was right.
    pub fn matches(&self, candidate: &str) -> bool {
        self.0.as_bytes().ct_eq(candidate.as_bytes()).into()
    }

    /// The token itself, to print for the operator.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(..)")
    }
}

/// What a client may do, as the token it presented says. Handlers get
/// it from [`require_token`] (as a request extension, and as an axum
/// extractor) or from their own in-band check, and refuse a viewer's
/// every request that would start or change something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Everything the protocol offers: start processes, write input,
    /// resize, signal. The full token's holders, and everyone when
    /// authentication is off.
    Full,
    /// Watch what already runs: attach to a live terminal and read its
    /// output and redraws; never start, write, resize or signal. The
    /// view token's holders (`--view-token`).
    View,
}

impl Access {
    /// True for a read-only client.
    pub fn is_view(self) -> bool {
        self == Access::View
    }
}

/// The access level of a request that went through [`require_token`].
/// A route outside that gate has none: the request is answered `500`,
/// so that a route forgotten behind no gate fails closed.
impl<S: Send + Sync> FromRequestParts<S> for Access {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Access>().copied().ok_or((
            StatusCode::INTERNAL_SERVER_ERROR,
            "no access level: the route is not behind the token check\n",
        ))
    }
}

/// The configured tokens: the full one and the read-only one.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    /// The token that may do everything; `None` turns authentication
    /// off (then everyone has [`Access::Full`]).
    pub full: Option<AccessToken>,
    /// The token that may only watch (`--view-token`).
    pub view: Option<AccessToken>,
}

impl Tokens {
    /// What `candidate` lets its holder do; `None` for a wrong token.
    /// Both tokens are always compared, each in constant time, so the
    /// time taken tells nothing of which one, if any, was close.
    pub fn access(&self, candidate: &str) -> Option<Access> {
        let Some(full) = &self.full else {
            return Some(Access::Full);
        };
        let is_full = full.matches(candidate);
        let is_view = self.view.as_ref().is_some_and(|v| v.matches(candidate));
        match (is_full, is_view) {
            (true, _) => Some(Access::Full),
            (false, true) => Some(Access::View),
            (false, false) => None,
        }
    }
}

/// Authentication may be off only where nobody else can connect, unless the
/// operator explicitly says `insecure`.
pub fn check_exposure(addr: SocketAddr, auth: bool, insecure: bool) -> Result<(), Error> {
    if auth || insecure || addr.ip().to_canonical().is_loopback() {
        Ok(())
    } else {
        Err(Error::Exposed(addr))
    }
}

/// The token a request carries: `Authorization: Bearer <t>`, else the
/// `token` query parameter (browsers cannot set headers on a WebSocket).
pub fn request_token<'a>(authorization: Option<&'a str>, query: Option<&'a str>) -> Option<String> {
    if let Some(value) = authorization {
        let mut parts = value.splitn(2, ' ');
        if let (Some(scheme), Some(token)) = (parts.next(), parts.next())
            && scheme.eq_ignore_ascii_case("bearer")
        {
            return Some(token.trim().to_owned());
        }
    }
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}

/// Who holds a valid token, and what it lets them do, for servers whose
/// tokens are more than one configured string (webexec also reads its
/// authorized file).
pub trait TokenCheck: Send + Sync + 'static {
    /// False when every request is let in (`--no-auth`).
    fn required(&self) -> bool;
    /// What `token` lets its holder do; `None` when it is not a valid one.
    fn access(&self, token: &str) -> Option<Access>;
}

impl TokenCheck for Option<AccessToken> {
    fn required(&self) -> bool {
        self.is_some()
    }

    fn access(&self, token: &str) -> Option<Access> {
        self.as_ref()
            .is_none_or(|t| t.matches(token))
            .then_some(Access::Full)
    }
}

impl TokenCheck for Tokens {
    fn required(&self) -> bool {
        self.full.is_some()
    }

    fn access(&self, token: &str) -> Option<Access> {
        Tokens::access(self, token)
    }
}

/// The state of [`require_token`]: which tokens are valid, and where
/// refusals are counted.
#[derive(Clone)]
pub struct TokenGate {
    check: Arc<dyn TokenCheck>,
    probe: Probe,
}

impl TokenGate {
    /// A gate that lets in the holders of `check`'s tokens and counts
    /// everyone else in `probe`'s `auth_failures`.
    pub fn new(check: impl TokenCheck, probe: &Probe) -> TokenGate {
        TokenGate {
            check: Arc::new(check),
            probe: probe.clone(),
        }
    }
}

impl fmt::Debug for TokenGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenGate")
            .field("required", &self.check.required())
            .finish_non_exhaustive()
    }
}

/// axum middleware: refuses a request without a valid token with
/// `401 Unauthorized` — before any WebSocket upgrade — and hands the
/// handler the token's [`Access`] as a request extension.
pub async fn require_token(
    State(gate): State<TokenGate>,
    mut request: Request,
    next: Next,
) -> Response {
    if !gate.check.required() {
        request.extensions_mut().insert(Access::Full);
        return next.run(request).await;
    }
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let given = request_token(authorization, request.uri().query());
    match given.as_deref().map(|t| gate.check.access(t)) {
        Some(Some(access)) => {
            request.extensions_mut().insert(access);
            next.run(request).await
        }
        Some(None) => {
            gate.probe.auth_failed();
            unauthorized("invalid token")
        }
        None => {
            gate.probe.auth_failed();
            unauthorized("missing token: send `Authorization: Bearer <token>` or `?token=<token>`")
        }
    }
}

fn unauthorized(why: &'static str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        format!("{why}\n"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn generated_tokens_are_distinct_and_long() {
        let a = AccessToken::generate().unwrap();
        let b = AccessToken::generate().unwrap();
        assert_eq!(a.expose().len(), 64);
        assert!(!a.matches(b.expose()));
        assert!(a.matches(a.expose()));
        assert!(!a.matches(""));
    }

    #[test]
    fn token_from_header_or_query() {
        assert_eq!(
            request_token(Some("Bearer abc"), None).as_deref(),
            Some("abc")
        );
        assert_eq!(
            request_token(Some("bearer  abc "), None).as_deref(),
            Some("abc")
        );
        assert_eq!(
            request_token(None, Some("x=1&token=a%2Bb")).as_deref(),
            Some("a+b")
        );
        assert_eq!(request_token(Some("Basic zzz"), None), None);
        assert_eq!(request_token(None, Some("tokens=1")), None);
    }

    #[test]
    fn no_auth_only_on_loopback() {
        let lo: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let lo6: SocketAddr = "[::1]:1".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:1".parse().unwrap();
        assert!(check_exposure(lo, false, false).is_ok());
        assert!(check_exposure(lo6, false, false).is_ok());
        assert!(check_exposure(any, false, false).is_err());
        assert!(check_exposure(any, true, false).is_ok());
        assert!(check_exposure(any, false, true).is_ok());
    }

    #[test]
    fn optional_token_checks() {
        let none: Option<AccessToken> = None;
        assert!(!none.required());
        assert_eq!(none.access("anything"), Some(Access::Full));
        let some = Some(AccessToken::new("t"));
        assert!(some.required());
        assert_eq!(some.access("t"), Some(Access::Full));
        assert_eq!(some.access("u"), None);
    }

    #[test]
    fn the_view_token_gives_view_access_and_only_with_auth_on() {
        let tokens = Tokens {
            full: Some(AccessToken::new("full")),
            view: Some(AccessToken::new("view")),
        };
        assert!(TokenCheck::required(&tokens));
        assert_eq!(tokens.access("full"), Some(Access::Full));
        assert_eq!(tokens.access("view"), Some(Access::View));
        assert_eq!(tokens.access("vie"), None);
        assert_eq!(tokens.access(""), None);
        let open = Tokens {
            full: None,
            view: Some(AccessToken::new("view")),
        };
        assert!(!TokenCheck::required(&open));
        assert_eq!(open.access("view"), Some(Access::Full));
        let no_view = Tokens {
            full: Some(AccessToken::new("full")),
            view: None,
        };
        assert_eq!(no_view.access("view"), None);
    }
}
