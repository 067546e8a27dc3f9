//! The pow-1 REST API: the same processes, driven by plain HTTP requests.
//!
//! `POST /new` starts a process and answers its id; `GET /status/{id}`
//! shows the last complete lines of output and the result (pending while it
//! runs); `/input`, `/closeInput` and `/cancel` drive it. A session that no
//! request touched for the configured time is cancelled and forgotten.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use pow_proto::{Call, LineBuffer, Outcome, ResultState, Status};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use uuid::Uuid;

use crate::process::{Cancel, CancelCause, Handler, io_pair};

/// Lines and bytes of output kept for `/status`.
const STATUS_LINES: usize = 1000;
const STATUS_BYTES: usize = 1 << 20;

/// Shared by all REST requests of one server.
#[derive(Clone)]
pub(crate) struct Rest {
    handler: Arc<dyn Handler>,
    sessions: Arc<Mutex<HashMap<Uuid, Arc<Session>>>>,
    timeout: Duration,
}

struct Session {
    input: tokio::sync::Mutex<Option<mpsc::Sender<bytes::Bytes>>>,
    cancel: Cancel,
    buffer: Mutex<LineBuffer>,
    result: watch::Sender<Option<Outcome>>,
    last_used: Mutex<Instant>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (status, body).into_response()
}

impl Rest {
    pub(crate) fn new(handler: Arc<dyn Handler>, timeout: Duration) -> Self {
        Rest {
            handler,
            sessions: Arc::default(),
            timeout,
        }
    }

    /// The REST routes.
    pub(crate) fn router(self) -> Router {
        Router::new()
            .route("/new", post(new))
            .route("/status/{id}", get(status))
            .route("/input/{id}", post(input))
            .route("/closeInput/{id}", post(close_input))
            .route("/cancel/{id}", post(cancel))
            .with_state(self)
    }

    /// Cancels and forgets sessions idle for longer than the timeout; runs
    /// until the server stops.
    pub(crate) async fn reap(self, stop: tokio_util::sync::CancellationToken) {
        let period = (self.timeout / 4).max(Duration::from_millis(10));
        loop {
            tokio::select! {
                () = tokio::time::sleep(period) => {}
                () = stop.cancelled() => {
                    for session in lock(&self.sessions).drain().map(|(_, s)| s) {
                        session.cancel.cancel(CancelCause::Shutdown);
                    }
                    return;
                }
            }
            let now = Instant::now();
            let expired: Vec<Arc<Session>> = {
                let mut sessions = lock(&self.sessions);
                let ids: Vec<Uuid> = sessions
                    .iter()
                    .filter(|(_, s)| now.duration_since(*lock(&s.last_used)) > self.timeout)
                    .map(|(id, _)| *id)
                    .collect();
                ids.iter().filter_map(|id| sessions.remove(id)).collect()
            };
            for session in expired {
                session.cancel.cancel(CancelCause::Timeout);
            }
        }
    }

    fn session(&self, id: &str) -> Option<Arc<Session>> {
        let id = Uuid::parse_str(id).ok()?;
        let session = lock(&self.sessions).get(&id).cloned()?;
        *lock(&session.last_used) = Instant::now();
        Some(session)
    }
}

async fn new(State(rest): State<Rest>, body: Bytes) -> Response {
    let call = match Call::decode(&body) {
        Ok(call) => call,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("bad call: {e}\n")).into_response();
        }
    };
    let (io, input, mut output) = io_pair(8, 8);
    let session = Arc::new(Session {
        input: tokio::sync::Mutex::new(Some(input)),
        cancel: io.cancel.clone(),
        buffer: Mutex::new(LineBuffer::new(STATUS_LINES, STATUS_BYTES)),
        result: watch::Sender::new(None),
        last_used: Mutex::new(Instant::now()),
    });
    let id = Uuid::new_v4();
    lock(&rest.sessions).insert(id, session.clone());
    // Unknown names and refusals show in /status, as in the reference.
    let process = rest.handler.get(&call.call, &call.params).await;
    tokio::spawn(async move {
        let outcome = match process {
            Err(e) => Outcome::Rejected {
                reason: format!("failed to get process: {e}"),
            },
            Ok(process) => {
                let mut task = tokio::spawn(process.run(io));
                let joined = loop {
                    tokio::select! {
                        joined = &mut task => break joined,
                        Some(chunk) = output.recv() => lock(&session.buffer).push(&chunk),
                    }
                };
                while let Ok(chunk) = output.try_recv() {
                    lock(&session.buffer).push(&chunk);
                }
                match joined {
                    Ok(Ok(value)) => Outcome::Fulfilled { value },
                    Ok(Err(reason)) => Outcome::Rejected { reason },
                    Err(_) => Outcome::Rejected {
                        reason: "process failed".into(),
                    },
                }
            }
        };
        *session.input.lock().await = None;
        session.result.send_replace(Some(outcome));
    });
    axum::Json(id.to_string()).into_response()
}

async fn status(State(rest): State<Rest>, Path(id): Path<String>) -> Response {
    let Some(session) = rest.session(&id) else {
        return text(StatusCode::NOT_FOUND, "no such process\n");
    };
    let result = match session.result.borrow().clone() {
        Some(outcome) => ResultState::Done(outcome),
        None => ResultState::pending(),
    };
    let status = Status {
        buffer: lock(&session.buffer).text(),
        result,
    };
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        status.encode(),
    )
        .into_response()
}

async fn input(State(rest): State<Rest>, Path(id): Path<String>, body: Bytes) -> Response {
    let Some(session) = rest.session(&id) else {
        return text(StatusCode::NOT_FOUND, "no such process\n");
    };
    let sender = session.input.lock().await.clone();
    match sender {
        Some(tx) if tx.send(body).await.is_ok() => text(StatusCode::OK, "input sent"),
        _ => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "input is closed or the process has ended\n",
        ),
    }
}

async fn close_input(State(rest): State<Rest>, Path(id): Path<String>) -> Response {
    let Some(session) = rest.session(&id) else {
        return text(StatusCode::NOT_FOUND, "no such process\n");
    };
    *session.input.lock().await = None;
    text(StatusCode::OK, "input closed")
}

async fn cancel(State(rest): State<Rest>, Path(id): Path<String>) -> Response {
    let Some(session) = rest.session(&id) else {
        return text(StatusCode::NOT_FOUND, "no such process\n");
    };
    session.cancel.cancel(CancelCause::ClientCancel);
    *session.input.lock().await = None;
    let mut result = session.result.subscribe();
    let _ = result.wait_for(Option::is_some).await;
    text(StatusCode::OK, "process cancelled")
}
