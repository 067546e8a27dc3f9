//! `GET /openapi.json` and the `/docs/` page that lets a user try the REST
//! API from a browser.
//!
//! Both are served without a token: they describe the API, they do not use
//! it. The page is one self-contained file — no CDN, nothing fetched but the
//! document and the API itself — so it works on a host with no internet
//! access.

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// The docs page: reads `../openapi.json` and renders a form per operation.
const PAGE: &str = include_str!("../assets/docs.html");

/// Routes for the document and the page, relative to the base path.
pub(crate) fn router(doc: &utoipa::openapi::OpenApi) -> Router {
    let json = match doc.to_pretty_json() {
        Ok(json) => json,
        // Serializing our own document cannot fail; if it ever did, say so
        // on the route rather than refusing to start.
        Err(e) => serde_json::json!({ "error": e.to_string() }).to_string(),
    };
    Router::new()
        .route(
            "/openapi.json",
            get(move || async move { typed(json, "application/json") }),
        )
        .route(
            "/docs/",
            get(|| async { typed(PAGE.into(), "text/html; charset=utf-8") }),
        )
        // Relative, so it works under any base path.
        .route("/docs", get(|| async { Redirect::permanent("docs/") }))
}

fn typed(body: String, content_type: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}
