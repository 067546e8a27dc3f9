//! What every execwire server shares, so that each server is only its
//! protocol: the common flags, logging, the token and the origin rule, TLS,
//! metrics, the WebSocket [`Transport`](exec_core::Transport) adapter (with
//! its keep-alive pings), serving under a base path, and serving with a
//! graceful shutdown.
//!
//! A server's `main.rs` flattens [`Flags`] into its own arguments, parses
//! them with its [`Spec`], and calls [`launch`] (logging, TLS, the exposure
//! check, binding, the token, the URLs printed), which gives its listeners
//! and the [`Common`] settings its `Config` embeds. Its library builds the
//! protocol's axum `Router` (behind [`require_token`], with
//! [`Metrics::route`], accepting WebSockets with one [`WsAccept`] and
//! counting in a [`Probe`] of its protocol) and hands it to [`serve`],
//! which puts each listener under [`check_origin`] for its address, on
//! TLS when given a [`Tls`], and ends the [`Sessions`] at shutdown. The
//! router is apart from serving so that one listener can serve several
//! protocols, each under a path.
//!
//! It knows no wire protocol and no process: those are the servers' and
//! exec-core's. The one exception is shared wording: how a process ended,
//! in the Go text the wsep and pow-1 references print ([`go_exit_text`]).

mod accept;
mod alloc;
mod auth;
mod base;
mod common;
mod error;
mod exit;
mod flags;
mod logging;
mod metrics;
mod origin;
mod serve;
mod tls;
mod ws;

pub use accept::{Refused, WsAccept, WsLimits, websocket_only};
pub use alloc::tune_allocator;
pub use auth::{
    Access, AccessToken, TokenCheck, TokenGate, Tokens, check_exposure, request_token,
    require_token,
};
pub use base::{base_prefix, parse_base_path, under_base};
pub use common::{
    Announce, Common, CommonConfig, Launched, exit_code, init_process, launch, run_main,
};
pub use error::Error;
pub use exit::{go_exit_code, go_exit_text};
pub use flags::{Flags, LogFormat, Secret, Spec, Started, loopback, loopback6, url};
pub use logging::init_logging;
pub use metrics::{Metrics, Open, Probe};
pub use origin::{Origin, OriginPolicy, Refusal, admits_any_origin, check_origin};
pub use serve::{
    Listeners, Peer, Sessions, per_listener, serve, serve_app, serve_router, shutdown_signal,
};
pub use tls::{Io, Listener, Tls};
pub use ws::{DEFAULT_WS_PING, WsRx, WsTransport, WsTx, close_code, close_reason};
