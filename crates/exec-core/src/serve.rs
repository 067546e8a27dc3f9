//! What every server binary and `serve` function of the workspace share.

use crate::auth::AccessToken;

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

/// The token a server runs with, from its flags: none with `--no-auth`,
/// the given one, or a fresh one (the flag tells the caller to print it).
fn token_from_flags(
    no_auth: bool,
    given: Option<String>,
) -> Result<Option<(AccessToken, bool)>, getrandom::Error> {
    Ok(match (no_auth, given) {
        (true, _) => None,
        (false, Some(t)) if !t.is_empty() => Some((AccessToken::new(t), false)),
        (false, _) => Some((AccessToken::generate()?, true)),
    })
}

/// [`token_from_flags`] for a server binary: a generated token is printed
/// to stdout as `token: T`, where operators and scripts read it, before the
/// server says where it listens.
pub fn startup_token(
    no_auth: bool,
    given: Option<String>,
) -> Result<Option<AccessToken>, getrandom::Error> {
    Ok(token_from_flags(no_auth, given)?.map(|(token, generated)| {
        if generated {
            println!("token: {}", token.expose());
        }
        token
    }))
}

/// Serves `app` on `listener` until `shutdown` completes. Then `cancel`
/// fires (so WebSocket sessions, which the HTTP server no longer tracks once
/// upgraded, end their processes and close), and the sessions in `tracker`
/// get up to `grace` to finish.
#[cfg(feature = "axum")]
pub async fn serve_app(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    cancel: tokio_util::sync::CancellationToken,
    tracker: tokio_util::task::TaskTracker,
    grace: std::time::Duration,
) -> std::io::Result<()> {
    let stop = cancel.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            stop.cancel();
        })
        .await?;
    cancel.cancel();
    tracker.close();
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!("sessions still open after the shutdown grace period");
    }
    Ok(())
}
