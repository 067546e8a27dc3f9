//! Bearer tokens: generated, compared in constant time, taken from
//! requests, and required of HTTP requests by [`require_token`].
//!
//! The token lives here, not in the engine: exec-core runs processes and
//! knows nothing of who may ask; every server that authenticates a client
//! (over HTTP, or in-band as webterm and webexec's `%` do) uses this type.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
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

/// Who holds a valid token, for servers whose tokens are more than one
/// configured string (webexec also reads its authorized file).
pub trait TokenCheck: Send + Sync + 'static {
    /// False when every request is let in (`--no-auth`).
    fn required(&self) -> bool;
    /// True when `token` is a valid one.
    fn accepts(&self, token: &str) -> bool;
}

impl TokenCheck for Option<AccessToken> {
    fn required(&self) -> bool {
        self.is_some()
    }

    fn accepts(&self, token: &str) -> bool {
        self.as_ref().is_none_or(|t| t.matches(token))
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
/// `401 Unauthorized` — before any WebSocket upgrade.
pub async fn require_token(
    State(gate): State<TokenGate>,
    request: Request,
    next: Next,
) -> Response {
    if !gate.check.required() {
        return next.run(request).await;
    }
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let given = request_token(authorization, request.uri().query());
    match given {
        Some(t) if gate.check.accepts(&t) => next.run(request).await,
        Some(_) => {
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
        assert!(none.accepts("anything"));
        let some = Some(AccessToken::new("t"));
        assert!(some.required());
        assert!(some.accepts("t"));
        assert!(!some.accepts("u"));
    }
}
