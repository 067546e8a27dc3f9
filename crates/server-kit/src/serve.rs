//! Serving an axum app: on a [`Listener`] (plain or TLS), with a span per
//! connection, until a shutdown signal; then every WebSocket session is
//! told to end and given a grace period.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::serve::IncomingStream;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::tls::{Io, Listener};

/// Completes on SIGINT or SIGTERM: the shutdown future of a server binary.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}

/// Who is on the other end of a connection, for its log span: an id that
/// names the connection in every line logged for it, the peer's address,
/// and whether it speaks TLS.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// Numbers connections in the order they were accepted, per process.
    pub id: u64,
    /// The client's address.
    pub addr: SocketAddr,
    /// The connection is TLS.
    pub tls: bool,
}

impl Connected<IncomingStream<'_, Listener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, Listener>) -> Peer {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Peer {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            addr: *stream.remote_addr(),
            tls: matches!(stream.io(), Io::Tls(_)),
        }
    }
}

/// Runs each request in a `connection` span (protocol, id, peer, tls).
/// A WebSocket session outlives its request: its handler takes
/// [`tracing::Span::current`] along into the session's task.
async fn connection_span(
    State(protocol): State<&'static str>,
    request: Request,
    next: Next,
) -> Response {
    let span = match request.extensions().get::<ConnectInfo<Peer>>() {
        Some(ConnectInfo(peer)) => tracing::info_span!(
            "connection",
            protocol,
            id = peer.id,
            peer = %peer.addr,
            tls = peer.tls
        ),
        None => tracing::info_span!("connection", protocol),
    };
    next.run(request).instrument(span).await
}

/// Serves `app` on `listener` until `shutdown` completes, each request in
/// its connection's span. Connections already upgraded to WebSockets are
/// not waited for: see [`serve_app`].
pub async fn serve_router(
    listener: Listener,
    protocol: &'static str,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = app.layer(axum::middleware::from_fn_with_state(
        protocol,
        connection_span,
    ));
    axum::serve(listener, app.into_make_service_with_connect_info::<Peer>())
        .with_graceful_shutdown(shutdown)
        .await
}

/// What ends a server's WebSocket sessions: `cancel` fires at shutdown,
/// the sessions run in `tracker`, and get `grace` to finish.
#[derive(Debug, Clone)]
pub struct Sessions {
    /// Fired when the server shuts down.
    pub cancel: CancellationToken,
    /// Where the sessions run.
    pub tracker: TaskTracker,
    /// How long shutdown waits for them.
    pub grace: Duration,
}

impl Sessions {
    /// A fresh set with `grace` to finish at shutdown.
    pub fn new(grace: Duration) -> Sessions {
        Sessions {
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
            grace,
        }
    }
}

/// The TCP listeners a server's `serve` is given: one, or several (every
/// `--listen`), so that `serve(listener, ..)` and `serve(vec![a, b], ..)`
/// both read naturally.
#[derive(Debug)]
pub struct Listeners(pub Vec<TcpListener>);

impl From<TcpListener> for Listeners {
    fn from(listener: TcpListener) -> Listeners {
        Listeners(vec![listener])
    }
}

impl From<Vec<TcpListener>> for Listeners {
    fn from(listeners: Vec<TcpListener>) -> Listeners {
        Listeners(listeners)
    }
}

/// One app per listener, each behind the origin rule for its own address
/// (the rule's Host check depends on it) and on TLS when `tls` is given:
/// what [`serve_app`] takes.
pub fn per_listener(
    listeners: Listeners,
    app: &Router,
    allowed: &[crate::Origin],
    auth: bool,
    tls: Option<&crate::Tls>,
    probe: &crate::Probe,
) -> std::io::Result<Vec<(Listener, Router)>> {
    let mut served = Vec::new();
    for listener in listeners.0 {
        let origins =
            crate::OriginPolicy::new(allowed, auth, listener.local_addr()?).counted(probe);
        let app = app.clone().layer(axum::middleware::from_fn_with_state(
            origins,
            crate::check_origin,
        ));
        served.push((Listener::new(listener, tls, probe), app));
    }
    Ok(served)
}

/// Serves each app on its listener until `shutdown` completes (one app
/// per listener, since the origin rule depends on the address). Then
/// `sessions.cancel` fires (so WebSocket sessions, which the HTTP server
/// no longer tracks once upgraded, end their processes and close), and
/// the sessions get up to `sessions.grace` to finish. If one listener
/// fails, the others stop too and its error is returned.
pub async fn serve_app(
    served: Vec<(Listener, Router)>,
    protocol: &'static str,
    shutdown: impl Future<Output = ()> + Send + 'static,
    sessions: Sessions,
) -> std::io::Result<()> {
    let stop = sessions.cancel.clone();
    tokio::spawn(async move {
        shutdown.await;
        stop.cancel();
    });
    let mut servers = tokio::task::JoinSet::new();
    for (listener, app) in served {
        let stop = sessions.cancel.clone();
        servers.spawn(
            serve_router(listener, protocol, app, stop.cancelled_owned())
                .instrument(tracing::Span::current()),
        );
    }
    let mut result = Ok(());
    while let Some(joined) = servers.join_next().await {
        let failed = match joined {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(e) => std::io::Error::other(e.to_string()),
        };
        sessions.cancel.cancel();
        if result.is_ok() {
            result = Err(failed);
        }
    }
    sessions.cancel.cancel();
    sessions.tracker.close();
    if tokio::time::timeout(sessions.grace, sessions.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("sessions still open after the shutdown grace period");
    }
    result
}

/// Serves `router` (a protocol's routes, its token gate and metrics
/// included) on every listener under the origin rule for its address and
/// on TLS as `common` says, until `shutdown` completes; then as
/// [`serve_app`]: `sessions.cancel` fires and the sessions get their
/// grace. Authentication, for the origin rule, is on when `common` has a
/// token.
pub async fn serve(
    listeners: impl Into<Listeners>,
    router: Router,
    common: &crate::Common,
    protocol: &'static str,
    shutdown: impl Future<Output = ()> + Send + 'static,
    sessions: Sessions,
) -> std::io::Result<()> {
    let probe = common.metrics.probe(protocol);
    let served = per_listener(
        listeners.into(),
        &router,
        &common.allowed_origins,
        common.token.is_some(),
        common.tls.as_ref(),
        &probe,
    )?;
    serve_app(served, protocol, shutdown, sessions).await
}
