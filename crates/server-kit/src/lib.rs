//! What every execwire server shares, so that each server is only its
//! protocol: the common flags, logging, the token and the origin rule, TLS,
//! metrics, the WebSocket [`Transport`](exec_core::Transport) adapter (with
//! its keep-alive pings), serving under a base path, and serving with a
//! graceful shutdown.
//!
//! A server's `main.rs` flattens [`Flags`] into its own arguments, parses
//! them with its [`Spec`], calls [`init_logging`] and [`Flags::start`]
//! (TLS, the exposure check, binding, the token), and hands the result to
//! its library's `serve`. The library builds an axum `Router` and serves it
//! with [`serve_app`] on a [`Listener`], which speaks TLS when given a
//! [`Tls`]; it applies [`check_origin`] and [`require_token`] before
//! anything runs, adds [`Metrics::route`] under its token check, and counts
//! what happens in a [`Probe`] of its protocol.
//!
//! It knows no wire protocol and no process: those are the servers' and
//! exec-core's. The one exception is shared wording: how a process ended,
//! in the Go text the wsep and pow-1 references print ([`go_exit_text`]).

mod auth;
mod base;
mod error;
mod exit;
mod flags;
mod logging;
mod metrics;
mod origin;
mod serve;
mod tls;
mod ws;

pub use auth::{AccessToken, TokenCheck, TokenGate, check_exposure, request_token, require_token};
pub use base::{base_prefix, under_base};
pub use error::Error;
pub use exit::{go_exit_code, go_exit_text};
pub use flags::{Flags, LogFormat, Spec, Started, loopback, loopback6, url};
pub use logging::init_logging;
pub use metrics::{Metrics, Open, Probe};
pub use origin::{Origin, OriginPolicy, Refusal, check_origin};
pub use serve::{
    Listeners, Peer, Sessions, per_listener, serve_app, serve_router, shutdown_signal,
};
pub use tls::{Io, Listener, Tls};
pub use ws::{DEFAULT_WS_PING, WsRx, WsTransport, WsTx, close_code, close_reason};
