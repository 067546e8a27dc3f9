//! Bearer tokens: generated, compared in constant time, taken from requests;
//! and the origin and host rule that keeps web pages of other sites from
//! using a server ([`OriginPolicy`]).

use std::fmt;
use std::net::SocketAddr;

use subtle::ConstantTimeEq;

mod origin;

#[cfg(feature = "axum")]
pub use origin::check_origin;
pub use origin::{Origin, OriginPolicy, Refusal};

/// A secret shared between a server and its clients.
#[derive(Clone)]
pub struct AccessToken(String);

impl AccessToken {
    /// Wraps a configured token.
    pub fn new(token: impl Into<String>) -> Self {
        AccessToken(token.into())
    }

    /// 32 bytes from the operating system's random source, hex encoded.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw)?;
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

/// Why a server refuses to start with the given exposure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExposureError(pub SocketAddr);

impl fmt::Display for ExposureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "refusing to serve {} without authentication: anyone who can reach it could run \
             commands as this user; listen on a loopback address, drop --no-auth, or add --insecure",
            self.0
        )
    }
}

impl std::error::Error for ExposureError {}

/// Authentication may be off only where nobody else can connect, unless the
/// operator explicitly says `insecure`.
pub fn check_exposure(addr: SocketAddr, auth: bool, insecure: bool) -> Result<(), ExposureError> {
    if auth || insecure || addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(ExposureError(addr))
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

#[cfg(test)]
mod tests {
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
        let any: SocketAddr = "0.0.0.0:1".parse().unwrap();
        assert!(check_exposure(lo, false, false).is_ok());
        assert!(check_exposure(any, false, false).is_err());
        assert!(check_exposure(any, true, false).is_ok());
        assert!(check_exposure(any, false, true).is_ok());
    }
}

#[cfg(feature = "axum")]
mod middleware {
    use super::{AccessToken, request_token};
    use axum::extract::{Request, State};
    use axum::http::{StatusCode, header};
    use axum::middleware::Next;
    use axum::response::{IntoResponse, Response};

    /// axum middleware: refuses a request without the right token with
    /// `401 Unauthorized` — before any WebSocket upgrade. `None` = no auth.
    pub async fn require_token(
        State(token): State<Option<AccessToken>>,
        request: Request,
        next: Next,
    ) -> Response {
        let Some(expected) = token else {
            return next.run(request).await;
        };
        let authorization = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let given = request_token(authorization, request.uri().query());
        match given {
            Some(t) if expected.matches(&t) => next.run(request).await,
            Some(_) => unauthorized("invalid token"),
            None => unauthorized(
                "missing token: send `Authorization: Bearer <token>` or `?token=<token>`",
            ),
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
}

#[cfg(feature = "axum")]
pub use middleware::require_token;
