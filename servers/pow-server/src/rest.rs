//! The pow-1 REST API: the same processes, driven by plain HTTP requests.
//!
//! `POST /new` starts a process and answers its id; `GET /status/{id}`
//! shows the last complete lines of output and the result (pending while it
//! runs); `/input`, `/closeInput` and `/cancel` drive it. The processes live
//! in an [`exec_core::Session`] keyed by their uuid: one that no request
//! used for the configured time is cancelled and forgotten. A view token
//! ([`Access::View`]) may read `/status` only: the others answer it
//! `403` and count it (`viewer_refusals`).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use exec_core::{EndReason, Entry, Lease, Session, SessionConfig};
use pow_proto::{Call, LineBuffer, Outcome, ResultState, Status};
use server_kit::{Access, Open, Probe};
use tokio::sync::watch;
use uuid::Uuid;

use crate::process::{Cancel, CancelCause, Handler, io_pair};

/// Lines and bytes of output kept for `/status`.
const STATUS_LINES: usize = 1000;
const STATUS_BYTES: usize = 1 << 20;

/// Input sent with `/input` that the process has not read yet: a few of
/// the largest bodies. An `/input` waits while the queue is full (and is
/// answered `500` if the process ends meanwhile).
const INPUT_BYTES: usize = 4 << 20;

/// Output on its way to the `/status` buffer.
const OUTPUT_BYTES: usize = 256 * 1024;

/// Shared by all REST requests of one server.
#[derive(Clone)]
pub(crate) struct Rest {
    handler: Arc<dyn Handler>,
    /// The processes by uuid (their name in the session).
    processes: Session<RestProcess>,
    probe: Probe,
}

/// One process started by `/new`, as the session holds it.
#[derive(Clone)]
struct RestProcess(Arc<ProcessState>);

struct ProcessState {
    input: tokio::sync::Mutex<Option<exec_core::ByteSender<bytes::Bytes>>>,
    cancel: Cancel,
    buffer: Mutex<LineBuffer>,
    result: watch::Sender<Option<Outcome>>,
    /// A REST process is a session while the server remembers it.
    _counted: Open,
}

impl Entry for RestProcess {
    fn end(&self, why: EndReason) {
        self.0.cancel.cancel(match why {
            EndReason::Idle => CancelCause::Timeout,
            EndReason::Shutdown => CancelCause::Shutdown,
        });
    }
}

/// A process while a request uses it: the lease holds its idle timeout
/// off, which starts again when the request is done.
struct InUse {
    process: RestProcess,
    _lease: Lease,
}

impl std::ops::Deref for InUse {
    type Target = ProcessState;

    fn deref(&self) -> &ProcessState {
        &self.process.0
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (status, body.into()).into_response()
}

impl Rest {
    pub(crate) fn new(handler: Arc<dyn Handler>, timeout: Duration, probe: &Probe) -> Self {
        Rest {
            handler,
            processes: Session::new(SessionConfig {
                idle_timeout: Some(timeout),
            }),
            probe: probe.clone(),
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

    /// Cancels every process when the server stops.
    pub(crate) async fn end_on(self, stop: tokio_util::sync::CancellationToken) {
        stop.cancelled().await;
        self.processes.end_all();
    }

    /// `403` for a viewer, who may not do `what`, counted and logged.
    fn refuse_viewer(&self, access: Access, what: &str) -> Option<Response> {
        if !access.is_view() {
            return None;
        }
        self.probe.viewer_refused();
        tracing::info!(what, "viewer refused");
        Some(text(
            StatusCode::FORBIDDEN,
            format!("read-only (view token): {what} is not allowed\n"),
        ))
    }

    fn process(&self, id: &str) -> Option<InUse> {
        // Only ids of the uuid form were ever handed out.
        let id = Uuid::parse_str(id).ok()?;
        let (key, process) = self.processes.by_name(&id.to_string())?;
        let lease = self.processes.lease(key, "pow")?;
        Some(InUse {
            process,
            _lease: lease,
        })
    }
}

/// Start a process.
///
/// Answers the new process's id at once; a name the server does not know,
/// or a call it refuses, shows as a rejected result in `/status`.
#[utoipa::path(
    post,
    path = "/new",
    request_body(content = Call, content_type = "application/json"),
    responses(
        (status = 200, description = "The process id", body = String, content_type = "application/json",
            links(
                ("status" = (operation_id = "status", parameters(("id" = "$response.body")))),
                ("input" = (operation_id = "input", parameters(("id" = "$response.body")))),
                ("closeInput" = (operation_id = "close_input", parameters(("id" = "$response.body")))),
                ("cancel" = (operation_id = "cancel", parameters(("id" = "$response.body"))))
            ),
            example = json!("0f8fad5b-d9cb-469f-a165-70867728950e")),
        (status = 400, description = "The body is not a call", body = String, content_type = "text/plain"),
        (status = 401, description = "Missing or wrong token", body = String, content_type = "text/plain"),
        (status = 403, description = "A view token: read-only", body = String, content_type = "text/plain"),
    ),
)]
async fn new(State(rest): State<Rest>, access: Access, body: Bytes) -> Response {
    if let Some(refused) = rest.refuse_viewer(access, "starting a process") {
        return refused;
    }
    let call = match Call::decode(&body) {
        Ok(call) => call,
        Err(e) => {
            rest.probe.protocol_error();
            return (StatusCode::BAD_REQUEST, format!("bad call: {e}\n")).into_response();
        }
    };
    let (io, input, mut output) = io_pair(INPUT_BYTES, OUTPUT_BYTES);
    let session = Arc::new(ProcessState {
        input: tokio::sync::Mutex::new(Some(input)),
        cancel: io.cancel.clone(),
        buffer: Mutex::new(LineBuffer::new(STATUS_LINES, STATUS_BYTES)),
        result: watch::Sender::new(None),
        _counted: rest.probe.session(),
    });
    let id = Uuid::new_v4();
    let inserted = rest
        .processes
        .insert(RestProcess(session.clone()), Some(id.to_string()));
    if let Err(e) = inserted {
        // A uuid collision: practically impossible, but not a panic.
        tracing::error!(error = %e, "cannot register the process");
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot register the process\n",
        );
    }
    // Unknown names and refusals show in /status, as in the reference.
    let process = rest.handler.get(&call.call, &call.params).await;
    let probe = rest.probe.clone();
    tokio::spawn(async move {
        let outcome = match process {
            Err(e) => Outcome::Rejected {
                reason: format!("failed to get process: {e}"),
            },
            Ok(process) => {
                let _running = probe.process();
                let mut task = tokio::spawn(process.run(io));
                let joined = loop {
                    tokio::select! {
                        joined = &mut task => break joined,
                        Some(chunk) = output.recv() => lock(&session.buffer).push(&chunk),
                    }
                };
                while let Some(chunk) = output.try_recv() {
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

/// Read a process's output and result.
///
/// `buffer` holds the last complete lines of output (omitted while there
/// are none); `result` is pending until the process ends.
#[utoipa::path(
    get,
    path = "/status/{id}",
    params(("id" = String, Path, description = "Process id from `/new`")),
    responses(
        (status = 200, description = "Output so far and the result", body = Status),
        (status = 401, description = "Missing or wrong token", body = String, content_type = "text/plain"),
        (status = 404, description = "No such process, or it expired", body = String, content_type = "text/plain"),
    ),
)]
async fn status(State(rest): State<Rest>, Path(id): Path<String>) -> Response {
    let Some(session) = rest.process(&id) else {
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

/// Send input to a process.
///
/// The body is passed to the process's input unchanged. While the
/// process has more than a few MiB of input unread, the request waits.
#[utoipa::path(
    post,
    path = "/input/{id}",
    params(("id" = String, Path, description = "Process id from `/new`")),
    request_body(content = String, content_type = "text/plain"),
    responses(
        (status = 200, description = "Input delivered", body = String, content_type = "text/plain", example = "input sent"),
        (status = 401, description = "Missing or wrong token", body = String, content_type = "text/plain"),
        (status = 403, description = "A view token: read-only", body = String, content_type = "text/plain"),
        (status = 404, description = "No such process, or it expired", body = String, content_type = "text/plain"),
        (status = 500, description = "Input is closed or the process has ended", body = String, content_type = "text/plain"),
    ),
)]
async fn input(
    State(rest): State<Rest>,
    access: Access,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Some(refused) = rest.refuse_viewer(access, "input") {
        return refused;
    }
    let Some(session) = rest.process(&id) else {
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

/// Close a process's input.
///
/// Later input is refused; closing twice is fine.
#[utoipa::path(
    post,
    path = "/closeInput/{id}",
    params(("id" = String, Path, description = "Process id from `/new`")),
    responses(
        (status = 200, description = "Input closed", body = String, content_type = "text/plain", example = "input closed"),
        (status = 401, description = "Missing or wrong token", body = String, content_type = "text/plain"),
        (status = 403, description = "A view token: read-only", body = String, content_type = "text/plain"),
        (status = 404, description = "No such process, or it expired", body = String, content_type = "text/plain"),
    ),
)]
async fn close_input(State(rest): State<Rest>, access: Access, Path(id): Path<String>) -> Response {
    if let Some(refused) = rest.refuse_viewer(access, "closing input") {
        return refused;
    }
    let Some(session) = rest.process(&id) else {
        return text(StatusCode::NOT_FOUND, "no such process\n");
    };
    *session.input.lock().await = None;
    text(StatusCode::OK, "input closed")
}

/// Cancel a process.
///
/// Closes its input, cancels it and waits until it has returned; its
/// result stays readable in `/status`.
#[utoipa::path(
    post,
    path = "/cancel/{id}",
    params(("id" = String, Path, description = "Process id from `/new`")),
    responses(
        (status = 200, description = "The process has ended", body = String, content_type = "text/plain", example = "process cancelled"),
        (status = 401, description = "Missing or wrong token", body = String, content_type = "text/plain"),
        (status = 403, description = "A view token: read-only", body = String, content_type = "text/plain"),
        (status = 404, description = "No such process, or it expired", body = String, content_type = "text/plain"),
    ),
)]
async fn cancel(State(rest): State<Rest>, access: Access, Path(id): Path<String>) -> Response {
    if let Some(refused) = rest.refuse_viewer(access, "cancelling") {
        return refused;
    }
    let Some(session) = rest.process(&id) else {
        return text(StatusCode::NOT_FOUND, "no such process\n");
    };
    session.cancel.cancel(CancelCause::ClientCancel);
    *session.input.lock().await = None;
    let mut result = session.result.subscribe();
    let _ = result.wait_for(Option::is_some).await;
    text(StatusCode::OK, "process cancelled")
}

/// The OpenAPI document of the routes above, generated from their
/// annotations so it cannot drift from the code.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "pow-1 REST API",
        description = "Run the server's named processes over HTTP: start one with `/new`, \
            poll `/status/{id}`, feed it with `/input/{id}` and `/closeInput/{id}`, stop it \
            with `/cancel/{id}`. The same processes are served over a WebSocket with the \
            `pow-1` subprotocol on the same base path. A process untouched for the server's \
            timeout is cancelled and forgotten."
    ),
    paths(new, status, input, close_input, cancel)
)]
struct ApiDoc;

/// The OpenAPI document for a server at `base` (`""` or `/prefix`),
/// declaring bearer authentication when the server requires a token.
pub(crate) fn openapi(base: &str, auth: bool) -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi as _;
    use utoipa::openapi::security::{
        HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
    };
    let mut doc = ApiDoc::openapi();
    if !base.is_empty() {
        doc.servers = Some(vec![utoipa::openapi::Server::new(base)]);
    }
    if auth {
        let scheme = SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "The server's token, as `Authorization: Bearer <token>` (or `?token=<token>`).",
                ))
                .build(),
        );
        doc.components
            .get_or_insert_with(Default::default)
            .security_schemes
            .insert("token".into(), scheme.into());
        doc.security = Some(vec![SecurityRequirement::new(
            "token",
            Vec::<String>::new(),
        )]);
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::openapi;

    #[test]
    fn document_declares_auth_and_base_only_when_configured() {
        let open = openapi("", false);
        assert!(open.security.is_none());
        assert!(open.servers.is_none());
        let guarded = openapi("/api/v1/pow", true);
        let json = serde_json::to_value(&guarded).unwrap();
        assert_eq!(json["security"], serde_json::json!([{"token": []}]));
        assert_eq!(json["servers"][0]["url"], "/api/v1/pow");
        assert_eq!(
            json["components"]["securitySchemes"]["token"]["scheme"],
            "bearer"
        );
    }
}
