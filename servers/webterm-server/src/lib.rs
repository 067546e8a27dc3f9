//! A Web-Terminal WebSocket Protocol v3 server: a client authenticates on
//! the connection, runs shell command lines (several at once), feeds them
//! input and signals, and receives incremental output — including, for
//! requested pipes, the data crossing between pipeline stages.
//!
//! [`serve`] accepts connections on one or more bound listeners (the
//! default binds `localhost` on IPv4 and IPv6) until its shutdown future
//! completes.
//!
//! Web pages of other origins are refused with `403` before the upgrade as
//! [`server_kit::OriginPolicy`] says: with a token configured any
//! origin may connect and authenticate in-band (the original client runs
//! from its own page), unless `--allow-origin` lists some. `GET /metrics`
//! takes the same token as `Authorization: Bearer`; with a TLS identity
//! ([`Common::tls`]) the server speaks `wss://`. [`router`] gives the
//! routes alone, for a listener that serves other protocols too.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, Uri};
use server_kit::{Listeners, Refused, Sessions, TokenGate, WsAccept, WsLimits, require_token};

mod command;
mod session;

/// The settings every server shares, and their builder methods.
pub use server_kit::{Common, CommonConfig};

/// Errors of the webterm server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Accepting connections failed.
    #[error("serve: {0}")]
    Io(#[from] std::io::Error),
}

/// How a server behaves.
#[derive(Debug, Clone)]
pub struct Config {
    /// What every server is configured with. Its token is the one
    /// `authentication` must carry (`None` accepts any); `/metrics` takes
    /// it as `Authorization: Bearer`.
    pub common: Common,
    /// Send output HTML-escaped with `<br>` for newlines unless a
    /// connection asks otherwise (`?output=text`).
    pub html_output: bool,
    /// The shell that runs command lines (`SHELL -c LINE`).
    pub shell: String,
    /// Commands one connection may run at once.
    pub max_commands: usize,
    /// Largest message accepted from a client.
    pub max_message: usize,
    /// Input one command may have waiting for it to read. The protocol
    /// has no flow control for input, so a `stdin` update beyond this is
    /// refused with an error reply rather than holding up the connection
    /// (and the other commands' messages, signals included) behind it.
    pub max_pending_input: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            common: Common::default(),
            html_output: false,
            shell: default_shell(),
            max_commands: 64,
            max_message: 1 << 20,
            max_pending_input: 4 << 20,
        }
    }
}

impl CommonConfig for Config {
    fn common_mut(&mut self) -> &mut Common {
        &mut self.common
    }
}

/// The user's shell (`$SHELL`), else `/bin/sh`.
pub fn default_shell() -> String {
    std::env::var("SHELL")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "/bin/sh".into())
}

/// What the WebSocket layer may hold for a slow client. It must exceed the
/// largest update: a batch of output appears twice (stdout and combined),
/// more with breakpoints, and JSON escaping can grow each byte up to six
/// times. Memory stays bounded by the queue of updates before it.
const MAX_WRITE_BUFFER: usize = 8 << 20;

/// The protocol's name in metrics and logs.
const PROTOCOL: &str = "webterm";

/// webterm's routes: a WebSocket upgrade on every path under the base
/// path (clients authenticate in-band), and `/metrics` behind the token;
/// the origin rule and TLS are the listener's ([`server_kit::serve`]).
/// Its sessions run in `sessions` and end their commands when
/// `sessions.cancel` fires.
pub fn router(config: &Config, sessions: &Sessions) -> Router {
    let common = &config.common;
    let probe = common.metrics.probe(PROTOCOL);
    let limits = WsLimits {
        read_buffer: 32 * 1024,
        max_message: config.max_message,
        write_buffer: None,
        max_write_buffer: MAX_WRITE_BUFFER,
    };
    let shared = session::Shared {
        tokens: common.tokens(),
        shell: Arc::from(config.shell.as_str()),
        max_commands: config.max_commands,
        max_pending_input: config.max_pending_input,
        shutdown: sessions.cancel.clone(),
        probe: probe.clone(),
    };
    let html_output = config.html_output;
    let websocket = WsAccept::new(limits, common.ws_ping, &probe, sessions).router(
        PROTOCOL,
        common.base(),
        move |uri, _| {
            let html = output_mode(uri, html_output)?;
            let shared = shared.clone();
            Ok(move |transport| session::run(transport, shared, html))
        },
    );
    // Clients authenticate in-band, so only the metrics take the token
    // over HTTP.
    let metrics = common
        .metrics
        .route()
        .layer(axum::middleware::from_fn_with_state(
            TokenGate::new(common.tokens(), &probe),
            require_token,
        ));
    if common.serve_metrics {
        websocket.merge(metrics)
    } else {
        websocket
    }
}

/// Serves webterm on every listener until `shutdown` completes; then stops
/// every command and closes every connection (1001).
pub async fn serve(
    listeners: impl Into<Listeners>,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let sessions = Sessions::new(config.common.shutdown_grace);
    let app = router(&config, &sessions);
    server_kit::serve(listeners, app, &config.common, PROTOCOL, shutdown, sessions).await?;
    Ok(())
}

/// Whether a connection gets its output as HTML: `?output=html` or
/// `?output=text`, else the server's default.
fn output_mode(uri: &Uri, mut html: bool) -> Result<bool, Refused> {
    for (key, value) in form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()) {
        if key == "output" {
            match value.as_ref() {
                "html" => html = true,
                "text" => html = false,
                other => {
                    return Err(Refused {
                        status: StatusCode::BAD_REQUEST,
                        text: format!("unknown output mode {other:?}: use html or text\n"),
                    });
                }
            }
        }
    }
    Ok(html)
}
