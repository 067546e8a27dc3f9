//! The origin and host rule, one scenario run over every server's command
//! paths: real servers on port 0, real clients (tokio-tungstenite for the
//! WebSockets, reqwest for REST, the `webrtc` crate for webexec) sending
//! the `Origin` and `Host` a browser would, and a marker file that exists
//! only when the command ran.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use execwire_tests::webexec::{Client, ConnectError, Signaling};
use execwire_tests::{Kind, TestServer, Ws};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

/// A way to run a command: each server's, each transport.
#[derive(Debug, Clone, Copy)]
enum Route {
    Wsep,
    PowWebSocket,
    PowRest,
    Webterm,
    WebexecOffer,
    /// The seed's `/connect`.
    WebexecConnect,
}

/// What a request carries besides the command.
#[derive(Debug, Clone, Copy, Default)]
struct Req<'a> {
    origin: Option<&'a str>,
    /// Replaces the `Host` the client would send.
    host: Option<&'a str>,
    token: bool,
}

/// What came of a try.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The command ran to its end.
    Ran,
    /// Refused over HTTP with this status and body.
    Refused(u16, String),
    /// Connected, but the command was refused (in-band authentication).
    NotRun,
}

/// The listed origin of these scenarios.
const LISTED: &str = "https://app.example";

async fn start(route: Route, auth: bool, allowed: &[&str]) -> TestServer {
    let kind = match route {
        Route::Wsep => Kind::Wsep,
        Route::PowWebSocket | Route::PowRest => Kind::Pow,
        Route::Webterm => Kind::Webterm,
        Route::WebexecOffer | Route::WebexecConnect => Kind::Webexec,
    };
    TestServer::of_kind(kind, auth, allowed).await
}

/// A fresh marker path in a directory of this test run.
fn marker() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("execwire-origins-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("marker-{}", NEXT.fetch_add(1, Ordering::Relaxed)))
}

/// A WebSocket handshake request to `server` carrying `req`.
fn ws_request(
    server: &TestServer,
    req: Req<'_>,
    subprotocol: Option<&str>,
) -> tungstenite::handshake::client::Request {
    let mut request = server.url().into_client_request().unwrap();
    let headers = request.headers_mut();
    if let Some(origin) = req.origin {
        headers.insert("origin", origin.parse().unwrap());
    }
    if let Some(host) = req.host {
        headers.insert("host", host.parse().unwrap());
    }
    if req.token {
        let bearer = format!("Bearer {}", server.token);
        headers.insert("authorization", bearer.parse().unwrap());
    }
    if let Some(p) = subprotocol {
        headers.insert("sec-websocket-protocol", p.parse().unwrap());
    }
    request
}

async fn ws_connect(request: tungstenite::handshake::client::Request) -> Result<Ws, Outcome> {
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err(Outcome::Refused(response.status().as_u16(), body))
        }
        Err(e) => panic!("handshake failed: {e}"),
    }
}

/// The close frame's code, reading past everything before it.
async fn close_code(ws: &mut Ws) -> u16 {
    while let Some(msg) = ws.next().await {
        if let Message::Close(frame) = msg.unwrap() {
            return frame.map_or(1005, |f| f.code.into());
        }
    }
    panic!("no close frame")
}

/// A reqwest request builder carrying `req`.
fn http_request(
    server: &TestServer,
    req: Req<'_>,
    builder: reqwest::RequestBuilder,
) -> reqwest::RequestBuilder {
    let mut builder = builder;
    if let Some(origin) = req.origin {
        builder = builder.header("origin", origin);
    }
    if let Some(host) = req.host {
        builder = builder.header("host", host);
    }
    if req.token {
        builder = builder.bearer_auth(&server.token);
    }
    builder
}

/// Tries `touch MARKER` over `route`.
async fn touch(route: Route, server: &TestServer, req: Req<'_>, marker: &Path) -> Outcome {
    let path = marker.to_str().unwrap();
    match route {
        Route::Wsep => {
            let mut ws = match ws_connect(ws_request(server, req, None)).await {
                Ok(ws) => ws,
                Err(refused) => return refused,
            };
            let start = wsep_proto::StartCommand {
                command: "touch".into(),
                args: vec!["--".into(), path.into()],
                ..wsep_proto::StartCommand::default()
            };
            let frame = wsep_proto::ClientMsg::Start(start).encode();
            ws.send(Message::Binary(frame.into())).await.unwrap();
            assert_eq!(close_code(&mut ws).await, 1000);
            Outcome::Ran
        }
        Route::PowWebSocket => {
            let request = ws_request(server, req, Some(pow_proto::SUBPROTOCOL));
            let mut ws = match ws_connect(request).await {
                Ok(ws) => ws,
                Err(refused) => return refused,
            };
            let call = pow_proto::Call {
                call: "touch".into(),
                params: vec![path.into()],
            };
            ws.send(Message::Binary(call.encode().into()))
                .await
                .unwrap();
            let mut fulfilled = None;
            while let Some(msg) = ws.next().await {
                match msg.unwrap() {
                    Message::Binary(b) => {
                        let outcome = pow_proto::Outcome::decode(&b).unwrap();
                        fulfilled = Some(matches!(outcome, pow_proto::Outcome::Fulfilled { .. }));
                    }
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            assert_eq!(fulfilled, Some(true));
            Outcome::Ran
        }
        Route::PowRest => {
            let http = reqwest::Client::new();
            let base = format!("http://{}", server.addr);
            let body = json!({"call": "touch", "params": [path]}).to_string();
            let response = http_request(server, req, http.post(format!("{base}/new")))
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            if status != 200 {
                return Outcome::Refused(status, text);
            }
            let id: String = serde_json::from_str(&text).unwrap();
            // Each poll is one real request: no timing assumed.
            loop {
                let response = http_request(server, req, http.get(format!("{base}/status/{id}")))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                let status: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
                match status["result"]["status"].as_str() {
                    Some("pending") => tokio::task::yield_now().await,
                    Some("fulfilled") => return Outcome::Ran,
                    other => panic!("touch over REST: {other:?} {status}"),
                }
            }
        }
        Route::Webterm => {
            let mut ws = match ws_connect(ws_request(server, req, None)).await {
                Ok(ws) => ws,
                Err(refused) => return refused,
            };
            // In-band: the token, or a guess where there is none to give.
            let token = if req.token { &server.token } else { "none" };
            let messages = [
                json!({"type": "authentication", "payload": {"token": token}}),
                json!({"type": "command", "payload": {"command": format!("touch -- '{path}'"), "clientId": 1}}),
            ];
            for m in messages {
                ws.send(Message::text(m.to_string())).await.unwrap();
            }
            while let Some(msg) = ws.next().await {
                let Message::Text(text) = msg.unwrap() else {
                    continue;
                };
                let v: Value = serde_json::from_str(&text).unwrap();
                let p = &v["payload"];
                match v["type"].as_str() {
                    Some("command") if p["result"] != "ok" => return Outcome::NotRun,
                    Some("update") if p["status"] == "completed" => {
                        assert_eq!(p["exitCode"], 0, "{v}");
                        return Outcome::Ran;
                    }
                    _ => {}
                }
            }
            panic!("webterm closed before the command completed")
        }
        Route::WebexecOffer | Route::WebexecConnect => {
            let signaling = match route {
                Route::WebexecOffer => Signaling::Offer,
                _ => Signaling::ConnectJson,
            };
            let mut headers = Vec::new();
            if let Some(origin) = req.origin {
                headers.push(("origin", origin));
            }
            if let Some(host) = req.host {
                headers.push(("host", host));
            }
            let token = req.token.then_some(server.token.as_str());
            let client = match Client::connect_with_headers(
                server.addr,
                token,
                &signaling,
                &headers,
            )
            .await
            {
                Ok(client) => client,
                Err(ConnectError::Http(status, body)) => {
                    return Outcome::Refused(status, body);
                }
                Err(e) => panic!("connect: {e:?}"),
            };
            let channel = client.open(&format!("touch,--,{path}")).await;
            // A pane's first message is its id; a refusal is a reason.
            let first = channel.recv().await.expect("closed without a word");
            let ran = first.bytes().first().is_some_and(u8::is_ascii_digit);
            channel.read_to_close().await;
            client.close().await;
            if ran { Outcome::Ran } else { Outcome::NotRun }
        }
    }
}

/// Tries the route with `req` and checks the outcome, and that the marker
/// exists exactly when the command ran. A `403` must name the flag.
async fn expect(route: Route, server: &TestServer, req: Req<'_>, expected: Expected) {
    let marker = marker();
    let outcome = touch(route, server, req, &marker).await;
    let ran = marker.exists();
    let _ = std::fs::remove_file(&marker);
    let context = format!("{route:?} {req:?}: {outcome:?}");
    match expected {
        Expected::Runs => assert_eq!(outcome, Outcome::Ran, "{context}"),
        Expected::Forbidden => {
            let Outcome::Refused(403, body) = &outcome else {
                panic!("expected 403, {context}")
            };
            assert!(body.contains("--allow-origin"), "{context}");
        }
        Expected::NeedsToken => {
            assert!(
                matches!(outcome, Outcome::Refused(401, _) | Outcome::NotRun),
                "{context}"
            );
        }
    }
    assert_eq!(ran, outcome == Outcome::Ran, "marker vs outcome: {context}");
}

#[derive(Debug, Clone, Copy)]
enum Expected {
    Runs,
    Forbidden,
    /// Passed the origin rule, refused for want of a token.
    NeedsToken,
}

/// The rule, over one route.
async fn scenario(route: Route) {
    use Expected::*;
    let req = Req::default();

    // Without authentication, one origin listed.
    let server = start(route, false, &[LISTED]).await;
    let port = server.addr.port();
    let own = format!("http://{}", server.addr);
    let own_localhost = format!("http://localhost:{port}");
    let localhost = format!("localhost:{port}");
    let rebound = format!("evil.example:{port}");
    let rebound_origin = format!("http://{rebound}");
    let cases = [
        // Not a browser.
        (req, Runs),
        // The server's own page, under either loopback name.
        (
            Req {
                origin: Some(&own),
                ..req
            },
            Runs,
        ),
        (
            Req {
                origin: Some(&own_localhost),
                host: Some(&localhost),
                ..req
            },
            Runs,
        ),
        (
            Req {
                origin: Some(LISTED),
                ..req
            },
            Runs,
        ),
        // Another site's page, a sandboxed one, another port of this host.
        (
            Req {
                origin: Some("https://evil.example"),
                ..req
            },
            Forbidden,
        ),
        (
            Req {
                origin: Some("null"),
                ..req
            },
            Forbidden,
        ),
        (
            Req {
                origin: Some(&own_localhost),
                ..req
            },
            Forbidden,
        ),
        // DNS rebinding: the page looks same-origin, its Host gives it away.
        (
            Req {
                host: Some(&rebound),
                ..req
            },
            Forbidden,
        ),
        (
            Req {
                origin: Some(&rebound_origin),
                host: Some(&rebound),
                ..req
            },
            Forbidden,
        ),
    ];
    for (req, expected) in cases {
        expect(route, &server, req, expected).await;
    }
    drop(server);

    // With authentication: the token is the proof, whatever the origin.
    let server = start(route, true, &[]).await;
    let rebound = format!("evil.example:{}", server.addr.port());
    let token = Req { token: true, ..req };
    let cases = [
        (token, Runs),
        (
            Req {
                origin: Some("https://evil.example"),
                ..token
            },
            Runs,
        ),
        (
            Req {
                origin: Some("null"),
                ..token
            },
            Runs,
        ),
        // No Host check: a reverse proxy may pass its own name on.
        (
            Req {
                host: Some(&rebound),
                ..token
            },
            Runs,
        ),
        (
            Req {
                origin: Some("https://evil.example"),
                ..req
            },
            NeedsToken,
        ),
    ];
    for (req, expected) in cases {
        expect(route, &server, req, expected).await;
    }
    drop(server);

    // With authentication and a list: browsers only from the list (and
    // the server's own pages), token or not.
    let server = start(route, true, &[LISTED]).await;
    let own = format!("http://{}", server.addr);
    let cases = [
        (token, Runs),
        (
            Req {
                origin: Some(LISTED),
                ..token
            },
            Runs,
        ),
        (
            Req {
                origin: Some(&own),
                ..token
            },
            Runs,
        ),
        (
            Req {
                origin: Some("https://evil.example"),
                ..token
            },
            Forbidden,
        ),
        (
            Req {
                origin: Some(LISTED),
                ..req
            },
            NeedsToken,
        ),
    ];
    for (req, expected) in cases {
        expect(route, &server, req, expected).await;
    }
}

#[tokio::test]
async fn wsep_follows_the_origin_rule() {
    scenario(Route::Wsep).await;
}

#[tokio::test]
async fn pow_websocket_follows_the_origin_rule() {
    scenario(Route::PowWebSocket).await;
}

#[tokio::test]
async fn pow_rest_follows_the_origin_rule() {
    scenario(Route::PowRest).await;
}

#[tokio::test]
async fn webterm_follows_the_origin_rule() {
    scenario(Route::Webterm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webexec_offer_follows_the_origin_rule() {
    scenario(Route::WebexecOffer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webexec_connect_follows_the_origin_rule() {
    scenario(Route::WebexecConnect).await;
}

/// pow's docs are the server's own page: served without a token, and
/// without authentication to the page itself but not to another site.
#[tokio::test]
async fn pow_docs_are_served_to_their_own_page() {
    let server = start(Route::PowRest, false, &[]).await;
    let http = reqwest::Client::new();
    let own = format!("http://{}", server.addr);
    for (origin, status) in [
        (None, 200),
        (Some(own.as_str()), 200),
        (Some("https://evil.example"), 403),
    ] {
        let mut request = http.get(format!("{own}/openapi.json"));
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        assert_eq!(request.send().await.unwrap().status(), status, "{origin:?}");
    }
}

/// webexec's CORS follows the rule: any origin (`*`) with authentication,
/// the admitted origin itself with a list or without authentication, and
/// a refused origin's preflight gets `403` and no CORS headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webexec_cors_follows_the_origin_rule() {
    async fn preflight(server: &TestServer, origin: &str) -> reqwest::Response {
        reqwest::Client::new()
            .request(
                reqwest::Method::OPTIONS,
                format!("http://{}/offer", server.addr),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
            .await
            .unwrap()
    }
    let open = start(Route::WebexecOffer, true, &[]).await;
    let r = preflight(&open, "https://evil.example").await;
    assert!(r.status().is_success());
    assert_eq!(r.headers()["access-control-allow-origin"], "*");

    for auth in [true, false] {
        let listed = start(Route::WebexecOffer, auth, &[LISTED]).await;
        let r = preflight(&listed, LISTED).await;
        assert!(r.status().is_success(), "{}", r.status());
        assert_eq!(r.headers()["access-control-allow-origin"], LISTED);
        let allowed = r.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase();
        assert!(allowed.contains("authorization") && allowed.contains("content-type"));
        let r = preflight(&listed, "https://evil.example").await;
        assert_eq!(r.status(), 403);
        assert!(r.headers().get("access-control-allow-origin").is_none());
        // The real answer (here to a bad offer) lets the page read it and
        // its Location.
        let r = http_request(
            &listed,
            Req {
                origin: Some(LISTED),
                host: None,
                token: auth,
            },
            reqwest::Client::new().post(format!("http://{}/offer", listed.addr)),
        )
        .body("not sdp")
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(r.headers()["access-control-allow-origin"], LISTED);
        let exposed = r.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap();
        assert!(
            exposed.to_ascii_lowercase().contains("location"),
            "{exposed}"
        );
    }
}
