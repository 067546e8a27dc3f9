//! Time-limited TURN credentials from a secret shared with the TURN server
//! (coturn's `use-auth-secret`/`static-auth-secret`, the "TURN REST API"
//! scheme of draft-uberti-behave-turn-rest).
//!
//! A host behind NAT is reachable through a relay; handing clients a fixed
//! TURN password would let anyone who once loaded the page relay through
//! it forever. Instead the server mints, per connection, a user name that
//! carries its own expiry and a credential only the secret's holders can
//! make: the TURN server checks both without any state of its own.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;

use crate::IceServer;

/// A shared TURN secret and the relays that accept it.
#[derive(Clone)]
pub struct TurnSecret {
    /// `turn:host:port?transport=udp`, ...: every relay that knows the
    /// secret.
    pub urls: Vec<String>,
    /// The secret (coturn's `static-auth-secret`).
    pub secret: String,
    /// How long minted credentials are valid.
    pub ttl: Duration,
    /// The name after the expiry in user names (coturn logs it).
    pub user: String,
}

impl std::fmt::Debug for TurnSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnSecret")
            .field("urls", &self.urls)
            .field("ttl", &self.ttl)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl TurnSecret {
    /// Credentials valid until `now + ttl`, one [`IceServer`] per relay:
    /// `username = "<expiry unix seconds>:<user>"`, `credential =
    /// base64(HMAC-SHA1(secret, username))`.
    pub fn mint(&self, now: SystemTime) -> Vec<IceServer> {
        let expiry = now
            .checked_add(self.ttl)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let username = format!("{expiry}:{}", self.user);
        let credential = credential(&self.secret, &username);
        self.urls
            .iter()
            .map(|url| IceServer {
                url: url.clone(),
                username: username.clone(),
                credential: credential.clone(),
            })
            .collect()
    }
}

/// base64 of HMAC-SHA1 of `username` keyed by `secret`: what coturn
/// computes to check a REST-API user name. SHA-1 is the scheme's, not our
/// choice; ring keeps it for such legacy uses.
fn credential(secret: &str, username: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    let tag = ring::hmac::sign(&key, username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn rfc2202_vector() {
        // RFC 2202 test case 2: key "Jefe", data "what do ya want for
        // nothing?", HMAC-SHA1 effcdf6ae5eb2fa2d27416d5f184df9c259a7c79.
        assert_eq!(
            credential("Jefe", "what do ya want for nothing?"),
            "7/zfauXrL6LSdBbV8YTfnCWafHk="
        );
    }

    #[test]
    fn user_name_carries_the_expiry() {
        let secret = TurnSecret {
            urls: vec!["turn:127.0.0.1:3478".into(), "turns:relay.example".into()],
            secret: "s".into(),
            ttl: Duration::from_secs(60),
            user: "webexec".into(),
        };
        let minted = secret.mint(UNIX_EPOCH + Duration::from_secs(1000));
        assert_eq!(minted.len(), 2);
        assert_eq!(minted[0].username, "1060:webexec");
        assert_eq!(minted[0].credential, credential("s", "1060:webexec"));
        assert_eq!(minted[1].url, "turns:relay.example");
        assert!(!format!("{secret:?}").contains("\"s\""));
    }
}
