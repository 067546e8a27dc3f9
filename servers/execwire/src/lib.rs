//! `execwire`: one daemon that serves every protocol of the workspace on
//! one listener, each under a path of its own with its reference
//! behaviour unchanged: webexec's signaling and demo page at the root
//! (`/`, `/offer`, `/candidates/…`, `/connect`, `/ice-servers`), wsep at
//! [`WSEP_PATH`], pow-1 (WebSocket, REST, OpenAPI and docs) under
//! [`POW_PATH`], Web-Terminal v3 at [`WEBTERM_PATH`], and one
//! `GET /metrics` for all of them.
//!
//! Each protocol is its server's own router ([`wsep_server::router`] and
//! the like), given the daemon's [`Common`] settings with the protocol's
//! path as its base path, so that every URL it prints or documents (pow's
//! OpenAPI servers, webexec's page assets) is the one a client uses. The
//! routers are mounted by path without stripping it (a dispatch by
//! prefix, not `nest`): each one still sees the path its client sent and
//! answers refusals as it does alone. They share one [`Metrics`](server_kit::Metrics)
//! (its series are labelled by protocol) and one set of
//! [`Sessions`], so one shutdown ends them all.
//!
//! wsep and webexec share one table of panes (an [`exec_core::Session`]):
//! a terminal started by either is attached from the other by its number
//! (webexec's `reconnect_pane` and `>ID`, wsep's `start` with `tty` and
//! `id: "ID"`), every client attached sees its output and may type, and
//! the newest resize wins. Each pane keeps the idle rule of the protocol
//! that started it: a webexec pane lives until it exits; a wsep terminal
//! ends after wsep's session timeout with nobody attached, where an
//! attached webexec peer counts as somebody. `GET /panes` (behind the
//! token) lists them, with the clients attached by protocol.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use server_kit::{Common, Listeners, Sessions, TokenGate, require_token};

mod file;
mod panes;

pub use file::{FileConfig, FileError};

/// Where wsep is served (under the daemon's base path).
pub const WSEP_PATH: &str = "/wsep";
/// Where pow-1 is served: its WebSocket, REST, `openapi.json` and `docs/`.
pub const POW_PATH: &str = "/pow";
/// Where Web-Terminal v3 is served.
pub const WEBTERM_PATH: &str = "/webterm";

/// The name the daemon's own routes (`/metrics`) and listener count under
/// in metrics and logs.
const PROTOCOL: &str = "execwire";

/// Errors of the daemon.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration file is wrong (unreadable, not TOML, an unknown
    /// key, a bad value).
    #[error(transparent)]
    File(#[from] FileError),
    /// webexec could not be set up (its certificate, its UDP ports).
    #[error("webexec: {0}")]
    Webexec(#[from] webexec_server::Error),
    /// Accepting connections failed.
    #[error("serve: {0}")]
    Io(#[from] std::io::Error),
}

/// pow-1's part of the daemon: its settings and what runs its calls.
#[derive(Clone)]
pub struct Pow {
    /// pow's own settings; its `common` is replaced by the daemon's.
    pub config: pow_server::Config,
    /// The processes clients may call.
    pub handler: Arc<dyn pow_server::Handler>,
}

impl std::fmt::Debug for Pow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pow")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// How the daemon behaves: the settings all protocols share, and each
/// protocol's own, `None` for a protocol switched off (its paths answer
/// `404`). Each protocol's `common` is replaced by [`Config::common`] with
/// the protocol's path as base path.
#[derive(Debug, Clone)]
pub struct Config {
    /// Token, origins, TLS, metrics, pings, base path and shutdown grace,
    /// for every protocol.
    pub common: Common,
    /// webexec, at the base path itself.
    pub webexec: Option<webexec_server::Config>,
    /// wsep, at [`WSEP_PATH`].
    pub wsep: Option<wsep_server::Config>,
    /// pow-1, under [`POW_PATH`].
    pub pow: Option<Pow>,
    /// Web-Terminal v3, at [`WEBTERM_PATH`].
    pub webterm: Option<webterm_server::Config>,
}

impl Config {
    /// Every protocol with its defaults (pow with its built-in
    /// processes), sharing `common`.
    pub fn all(common: Common) -> Result<Config, Error> {
        let registry = pow_server::registry_from_toml(pow_server::DEFAULT_CONFIG)
            .map_err(FileError::Processes)?;
        Ok(Config {
            common,
            webexec: Some(webexec_server::Config::default()),
            wsep: Some(wsep_server::Config::default()),
            pow: Some(Pow {
                config: pow_server::Config::default(),
                handler: Arc::new(registry),
            }),
            webterm: Some(webterm_server::Config::default()),
        })
    }
}

impl server_kit::CommonConfig for Config {
    fn common_mut(&mut self) -> &mut Common {
        &mut self.common
    }
}

/// The daemon's settings for one protocol: the shared ones, under `path`
/// (below the daemon's base path), without a `/metrics` of its own.
fn mounted(common: &Common, path: &str) -> Common {
    Common {
        base_path: format!("{}{path}/", common.base()),
        serve_metrics: false,
        ..common.clone()
    }
}

/// The protocols served under a path of their own: each prefix (the
/// base path and the protocol's path, as [`server_kit::base_prefix`]
/// makes it) with its router.
type Mounts = Arc<Vec<(String, Router)>>;

/// Hands a request no route of the root took to the protocol whose path
/// it is under, path untouched; `404` when none. (Not axum's `nest`,
/// which strips the prefix, nor a `{*rest}` route, whose parameter the
/// protocol's own `Path` extractors would see.)
async fn dispatch(mounts: Mounts, request: axum::extract::Request) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    use tower::ServiceExt as _;
    let path = request.uri().path();
    let Some((_, router)) = mounts
        .iter()
        .find(|(prefix, _)| server_kit::under_base(path, prefix))
    else {
        return server_kit::Refused::no_such_route().into_response();
    };
    // A Router is always ready and never fails (`Infallible`).
    match router.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// The daemon's routes: every protocol switched on, under its path, and
/// `GET /metrics` (behind the token) at the root. The origin rule and TLS
/// are the listener's ([`server_kit::serve`]). Every protocol's sessions
/// run in `sessions` and end when `sessions.cancel` fires. Call it inside
/// a tokio runtime (the servers spawn the tasks that end their sessions).
pub fn router(config: &Config, sessions: &Sessions) -> Result<Router, Error> {
    let common = &config.common;
    let base = common.base();
    let mut app = Router::new();
    // The panes wsep and webexec share; they end with `sessions`.
    let panes = exec_core::Session::default();
    if let Some(webexec) = &config.webexec {
        let mut webexec = webexec_server::Config {
            common: mounted(common, ""),
            ..webexec.clone()
        };
        // One token for every protocol: webexec admits anyone exactly when
        // the daemon runs without one, so that its own check and the
        // listener's origin rule (which follows the token) never disagree.
        webexec.authorized.open = common.token.is_none();
        let server = webexec_server::Server::with_panes(webexec, sessions, panes.clone())?;
        app = app.merge(server.router());
    }
    let mut mounts = Vec::new();
    if let Some(wsep) = &config.wsep {
        let wsep = wsep_server::Config {
            common: mounted(common, WSEP_PATH),
            ..wsep.clone()
        };
        let routes = wsep_server::router_with(&wsep, sessions, panes.clone());
        mounts.push((format!("{base}{WSEP_PATH}"), routes));
    }
    if let Some(pow) = &config.pow {
        let pow_config = pow_server::Config {
            common: mounted(common, POW_PATH),
            ..pow.config.clone()
        };
        let routes = pow_server::router(&pow_config, pow.handler.clone(), sessions);
        mounts.push((format!("{base}{POW_PATH}"), routes));
    }
    if let Some(webterm) = &config.webterm {
        let webterm = webterm_server::Config {
            common: mounted(common, WEBTERM_PATH),
            ..webterm.clone()
        };
        let routes = webterm_server::router(&webterm, sessions);
        mounts.push((format!("{base}{WEBTERM_PATH}"), routes));
    }
    let mounts: Mounts = Arc::new(mounts);
    app = app.fallback(move |request| dispatch(mounts.clone(), request));
    let probe = common.metrics.probe(PROTOCOL);
    let listing = Router::new()
        .route("/panes", axum::routing::get(panes::list))
        .with_state(panes);
    // `route_layer`: the token guards `/metrics` and `/panes` only (a view
    // token may read them: they change nothing); a path no protocol
    // serves stays `404` for everyone.
    let daemon =
        common
            .metrics
            .route()
            .merge(listing)
            .route_layer(axum::middleware::from_fn_with_state(
                TokenGate::new(common.tokens(), &probe),
                require_token,
            ));
    Ok(app.merge(daemon))
}

/// Serves every protocol of `config` on `listeners` until `shutdown`
/// completes; then every protocol's sessions are told to end (clients
/// closed, processes and panes ended) and get the grace period.
pub async fn serve(
    listeners: impl Into<Listeners>,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let sessions = Sessions::new(config.common.shutdown_grace);
    let app = router(&config, &sessions)?;
    server_kit::serve(listeners, app, &config.common, PROTOCOL, shutdown, sessions).await?;
    Ok(())
}
