//! HTTP signaling: the seed's `POST /connect` and today's WHIP-like
//! `POST /offer` with trickled candidates, CORS for browsers, the demo
//! page and the ICE servers it should use (`GET /ice-servers`, with
//! freshly minted TURN credentials), all under the base path, and
//! `GET /metrics` behind the token at the root. Pages of other origins are
//! refused as [`server_kit::OriginPolicy`] says.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use server_kit::{Access, Metrics, TokenGate, require_token};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::Instrument as _;
use uuid::Uuid;

use crate::host::Host;
use crate::rtc::{Peer, Rtc, WeakPeer};

/// How long a `/offer` session accepts trickled candidates (the
/// reference's 30 s).
const CANDIDATE_WINDOW: Duration = Duration::from_secs(30);

/// Largest signaling body: an SDP offer is a few KiB.
const MAX_BODY: usize = 64 * 1024;

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) host: Arc<Host>,
    pub(crate) rtc: Rtc,
    /// Requests on this router come from a trusted channel (the daemon's
    /// unix socket, reachable only by its user): no token needed.
    pub(crate) trusted: bool,
    /// Requests arrive over TLS: URLs given back are `https://`.
    pub(crate) tls: bool,
    pub(crate) sessions: Arc<Mutex<HashMap<Uuid, (WeakPeer, Instant)>>>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tracker: TaskTracker,
    /// Where the routes live: `""` or e.g. `/host-a/webexec` (see
    /// [`server_kit::base_prefix`]).
    pub(crate) base: String,
}

/// The routes, for browsers too. On a TCP listener the origin rule
/// ([`server_kit::OriginPolicy`], added by the listener) refuses pages of
/// other origins before anything else, their CORS preflights included;
/// CORS then answers the origins it admits: any (`*`) when `any_origin`
/// (a token is required and no origin listed, or the daemon's socket,
/// which no web page can reach), else the request's own, which the rule
/// has already vetted. `metrics`, on a TCP listener, adds `GET /metrics`
/// behind the authorized tokens.
pub(crate) fn router(state: AppState, any: bool, metrics: Option<&Metrics>) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(if any {
            AllowOrigin::any()
        } else {
            AllowOrigin::mirror_request()
        })
        .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .expose_headers([header::LOCATION]);
    let base = state.base.clone();
    let at = |path: &str| format!("{base}{path}");
    let mut router = Router::new()
        .route(&at("/"), get(page))
        .route(&at("/assets/{file}"), get(asset))
        .route(&at("/ice-servers"), get(ice_servers))
        .route(&at("/connect"), post(connect))
        .route(&at("/offer"), post(offer))
        .route(
            &at("/candidates/{id}"),
            patch(add_candidate).delete(end_candidates),
        );
    if !base.is_empty() {
        // The page's URLs are relative to its directory: send `/base` to
        // `/base/` rather than load it where `assets/app.js` would miss.
        let page_dir = at("/");
        router = router.route(
            &base,
            get(move || async move { axum::response::Redirect::permanent(&page_dir) }),
        );
    }
    let router = router
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(cors)
        .with_state(state.clone());
    match metrics {
        Some(metrics) => router.merge(metrics.route().layer(axum::middleware::from_fn_with_state(
            TokenGate::new(state.host.authorized.clone(), &state.host.probe),
            require_token,
        ))),
        None => router,
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

impl AppState {
    /// What a request with these headers and this offer may do: run
    /// commands (trusted socket, bearer token, or the offer's certificate
    /// fingerprint in the authorized set), watch (a view token), or
    /// nothing yet (`None`).
    fn authorized(
        &self,
        headers: &HeaderMap,
        sdp: &str,
        fingerprint: Option<&str>,
    ) -> Option<Access> {
        if self.trusted {
            return Some(Access::Full);
        }
        let from_sdp = webexec_proto::sdp_fingerprint(sdp);
        let fingerprint = from_sdp.as_deref().or(fingerprint);
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let token = server_kit::request_token(authorization, None);
        self.host.authorized.access(token.as_deref(), fingerprint)
    }

    /// Answers the offer and starts serving the peer.
    async fn accept(
        &self,
        sdp: String,
        authenticated: Option<Access>,
    ) -> Result<(String, Peer), Response> {
        if self.shutdown.is_cancelled() {
            return Err(text(StatusCode::SERVICE_UNAVAILABLE, "shutting down"));
        }
        let (answer, peer, channels) = self.rtc.answer(sdp).await.map_err(|e| {
            let status = match e {
                crate::Error::Offer(_) => {
                    self.host.probe.protocol_error();
                    StatusCode::BAD_REQUEST
                }
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            text(status, e.to_string())
        })?;
        // The peer lives on after this request: it keeps the request's
        // span (connection id, client address) for its log lines.
        self.tracker.spawn(
            crate::peer::run(
                self.host.clone(),
                peer.clone(),
                channels,
                authenticated,
                self.shutdown.clone(),
            )
            .instrument(tracing::Span::current()),
        );
        Ok((answer, peer))
    }
}

/// Seed signaling: the offer in (JSON with a base64 offer, or the offer as
/// text), base64 of the JSON answer out, after ICE gathering. A peer that
/// presents no authorized token or fingerprint here must send `auth` on
/// the control channel before anything runs.
async fn connect(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let request = match webexec_proto::decode_connect(&body) {
        Ok(request) => request,
        Err(e) => {
            state.host.probe.protocol_error();
            return text(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    let authenticated = state.authorized(&headers, &request.sdp, request.fingerprint.as_deref());
    match state.accept(request.sdp, authenticated).await {
        Ok((answer, _)) => text(
            StatusCode::OK,
            webexec_proto::encode_connect_answer(&answer),
        ),
        Err(response) => response,
    }
}

/// Current signaling: raw SDP in, `201` with the answer SDP and the
/// `Location` to trickle candidates to.
async fn offer(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(sdp) = String::from_utf8(body.to_vec()) else {
        state.host.probe.protocol_error();
        return text(StatusCode::BAD_REQUEST, "the offer is not UTF-8");
    };
    if !sdp.trim_start().starts_with("v=0") {
        state.host.probe.protocol_error();
        return text(StatusCode::BAD_REQUEST, "the body must be an SDP offer");
    }
    let Some(access) = state.authorized(&headers, &sdp, None) else {
        state.host.probe.auth_failed();
        tracing::info!("offer refused: no authorized token or fingerprint");
        return text(StatusCode::UNAUTHORIZED, "unauthorized");
    };
    let (answer, peer) = match state.accept(sdp, Some(access)).await {
        Ok(answered) => answered,
        Err(response) => return response,
    };
    let id = Uuid::new_v4();
    {
        let mut sessions = state.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, (peer, at)| peer.is_alive() && at.elapsed() < CANDIDATE_WINDOW);
        sessions.insert(id, (peer.downgrade(), Instant::now()));
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    // Behind a proxy that ends TLS, the client's scheme is the proxy's
    // (`X-Forwarded-Proto`): an `http://` URL would be blocked as mixed
    // content on an `https://` page. The header only shapes the URL given
    // back to the same client, so believing it grants nothing.
    let forwarded = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|v| matches!(*v, "http" | "https"));
    let scheme = forwarded.unwrap_or(if state.tls { "https" } else { "http" });
    let location = format!("{scheme}://{host}{}/candidates/{id}", state.base);
    let mut response = (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/sdp")],
        answer,
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn session(state: &AppState, id: &str) -> Option<Peer> {
    let id = Uuid::parse_str(id).ok()?;
    let mut sessions = state.sessions.lock().unwrap_or_else(|e| e.into_inner());
    sessions.retain(|_, (peer, at)| peer.is_alive() && at.elapsed() < CANDIDATE_WINDOW);
    sessions.get(&id).and_then(|(peer, _)| peer.upgrade())
}

async fn add_candidate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let candidate = match webexec_proto::decode_candidate(&body) {
        Ok(candidate) => candidate,
        Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let Some(peer) = session(&state, &id) else {
        return text(StatusCode::NOT_FOUND, "no such session");
    };
    // The end-of-candidates marker (an empty candidate) needs no work.
    if candidate.candidate.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    match peer.add_candidate(candidate).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => text(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// Ends trickling for a session; the connection itself lives on.
async fn end_candidates(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let removed = Uuid::parse_str(&id).ok().and_then(|id| {
        state
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id)
    });
    match removed {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => text(StatusCode::NOT_FOUND, "no such session"),
    }
}

/// The ICE servers a client should use, as `RTCConfiguration.iceServers`:
/// the configured STUN/TURN servers and TURN relays with credentials
/// minted now. Relay credentials are worth keeping from strangers, so the
/// request needs an authorized token, as an offer does.
async fn ice_servers(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !state.trusted {
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let token = server_kit::request_token(authorization, None);
        if state
            .host
            .authorized
            .access(token.as_deref(), None)
            .is_none()
        {
            state.host.probe.auth_failed();
            return text(StatusCode::UNAUTHORIZED, "unauthorized");
        }
    }
    let servers: Vec<serde_json::Value> = state
        .rtc
        .ice_servers()
        .into_iter()
        .map(|s| {
            if s.username.is_empty() && s.credential.is_empty() {
                serde_json::json!({ "urls": [s.url] })
            } else {
                serde_json::json!({
                    "urls": [s.url],
                    "username": s.username,
                    "credential": s.credential,
                })
            }
        })
        .collect();
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        serde_json::json!({ "iceServers": servers }).to_string(),
    )
        .into_response()
}

async fn page() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("../assets/index.html"),
    )
        .into_response()
}

async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind): (&'static str, &str) = match file.as_str() {
        "xterm.js" => (include_str!("../assets/vendor/xterm.js"), "text/javascript"),
        "xterm.css" => (include_str!("../assets/vendor/xterm.css"), "text/css"),
        "addon-fit.js" => (
            include_str!("../assets/vendor/addon-fit.js"),
            "text/javascript",
        ),
        "app.js" => (include_str!("../assets/app.js"), "text/javascript"),
        _ => return text(StatusCode::NOT_FOUND, "no such file"),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}
