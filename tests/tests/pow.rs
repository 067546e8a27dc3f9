//! pow-1 over WebSocket end to end: the real server on port 0, a real
//! WebSocket client offering the `pow-1` subprotocol.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use execwire_tests::pow::{call, connect, outcome, signal};
use execwire_tests::{
    FILTER_FRAME, FILTER_FRAMES, FILTER_LINE, FILTER_NET, FilterCheck, TestServer, Ws, alive,
    filter_frame, filter_line_position, filter_sha256, wait_gone,
};
use futures_util::{SinkExt, StreamExt};
use pow_proto::{Outcome, Signal};
use pow_server::{CancelCause, Echo, GetError, Io, PowProcess, Registry};
use serde_json::{Value, json};
use server_kit::CommonConfig as _;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

/// What the test process reports.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Started,
    Stopped(Option<CancelCause>),
}

/// A process that ignores its input and reports when it starts and why it
/// was cancelled.
struct Sleeper {
    seen: mpsc::UnboundedSender<Seen>,
}

#[async_trait]
impl PowProcess for Sleeper {
    async fn run(self: Box<Self>, io: Io) -> Result<Value, String> {
        let _ = self.seen.send(Seen::Started);
        io.cancel.cancelled().await;
        let cause = io.cancel.cause();
        let _ = self.seen.send(Seen::Stopped(cause));
        Err(format!("stopped: {cause:?}"))
    }
}

/// Writes its params' bytes in chunks of one byte, so every multi-byte
/// character reaches the server split across chunks.
struct Trickle {
    text: String,
}

#[async_trait]
impl PowProcess for Trickle {
    async fn run(self: Box<Self>, io: Io) -> Result<Value, String> {
        for byte in self.text.into_bytes() {
            io.output
                .write(vec![byte])
                .await
                .map_err(|e| e.to_string())?;
        }
        // A lone lead byte at the very end: it can never complete.
        io.output
            .write(&b"\xe2"[..])
            .await
            .map_err(|e| e.to_string())?;
        Ok(Value::Null)
    }
}

async fn server(config: pow_server::Config) -> (TestServer, mpsc::UnboundedReceiver<Seen>) {
    let (causes, seen) = mpsc::unbounded_channel();
    let mut registry = Registry::new();
    registry.register("echo", |params| Ok(Box::new(Echo::new(params))));
    registry.register("sleep", move |_| {
        Ok(Box::new(Sleeper {
            seen: causes.clone(),
        }))
    });
    registry.register("trickle", |params| {
        Ok(Box::new(Trickle {
            text: params.concat(),
        }))
    });
    registry.register("picky", |params| {
        if params.len() == 1 {
            Ok(Box::new(Echo::new(params)))
        } else {
            Err(GetError::InvalidParams("exactly one parameter".into()))
        }
    });
    (TestServer::pow_with(config, Arc::new(registry)).await, seen)
}

fn rejected(reason: &str) -> Outcome {
    Outcome::Rejected {
        reason: reason.into(),
    }
}

#[tokio::test]
async fn echo_round_trip_with_params() {
    let (server, _) = server(pow_server::Config::default()).await;
    let mut ws = connect(&server, Some("pow-1")).await.unwrap();
    ws.send(call("echo", &["a", "b"])).await.unwrap();
    ws.send(Message::Text("hello ".into())).await.unwrap();
    ws.send(Message::Text("world".into())).await.unwrap();
    ws.send(signal(Signal::Close)).await.unwrap();
    let (text, result) = outcome(&mut ws).await;
    assert_eq!(text, "hello world");
    assert_eq!(
        result,
        Outcome::Fulfilled {
            value: json!(["a", "b"])
        }
    );
}

#[tokio::test]
async fn input_before_the_call_is_kept_in_order() {
    let (server, _) = server(pow_server::Config::default()).await;
    let mut ws = connect(&server, Some("pow-1")).await.unwrap();
    let mut expected = String::new();
    for i in 0..500 {
        let line = format!("{i},");
        expected.push_str(&line);
        ws.send(Message::Text(line.into())).await.unwrap();
    }
    ws.send(call("echo", &[])).await.unwrap();
    ws.send(signal(Signal::Close)).await.unwrap();
    ws.send(Message::Text("after close: dropped".into()))
        .await
        .unwrap();
    let (text, result) = outcome(&mut ws).await;
    assert_eq!(text, expected);
    assert_eq!(result, Outcome::Fulfilled { value: json!([]) });
}

#[tokio::test]
async fn refusals_are_rejected_results() {
    let (server, _) = server(pow_server::Config::default()).await;
    let cases: Vec<(Message, Outcome)> = vec![
        (
            call("nope", &[]),
            rejected("failed to get process: unknown process"),
        ),
        (
            call("picky", &["a", "b"]),
            rejected("failed to get process: invalid parameters: exactly one parameter"),
        ),
        (
            Message::Binary(b"{not json".to_vec().into()),
            rejected("protocol error occurred"),
        ),
        (
            Message::Binary(br#"{"call":"echo","params":[1]}"#.to_vec().into()),
            rejected("protocol error occurred"),
        ),
    ];
    for (first, expected) in cases {
        let mut ws = connect(&server, Some("pow-1")).await.unwrap();
        ws.send(first).await.unwrap();
        assert_eq!(outcome(&mut ws).await.1, expected);
    }
}

#[tokio::test]
async fn no_call_in_time_is_rejected() {
    let config = pow_server::Config {
        call_timeout: Duration::from_millis(50),
        ..pow_server::Config::default()
    };
    let (server, _) = server(config).await;
    let mut ws = connect(&server, Some("pow-1")).await.unwrap();
    assert_eq!(outcome(&mut ws).await.1, rejected("timeout expired"));
}

#[tokio::test]
async fn missing_subprotocol_is_forbidden() {
    let (server, _) = server(pow_server::Config::default()).await;
    for offered in [None, Some("pow-2")] {
        match connect(&server, offered).await {
            Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
            other => panic!("expected 403, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn bad_token_is_refused_before_the_upgrade() {
    let (server, _) = server(pow_server::Config::default()).await;
    let mut request = server.url().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "pow-1".parse().unwrap());
    request
        .headers_mut()
        .insert("authorization", "Bearer wrong".parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
}

#[tokio::test]
async fn cancel_reaches_a_process_that_ignores_input() {
    let (server, mut causes) = server(pow_server::Config::default()).await;
    let mut ws = connect(&server, Some("pow-1")).await.unwrap();
    ws.send(call("sleep", &[])).await.unwrap();
    // Input nobody reads, queued before the cancel.
    for _ in 0..100 {
        ws.send(Message::Text("x".repeat(1000).into()))
            .await
            .unwrap();
    }
    ws.send(signal(Signal::Cancel)).await.unwrap();
    let (_, result) = outcome(&mut ws).await;
    assert_eq!(result, rejected("stopped: Some(ClientCancel)"));
    assert_eq!(causes.recv().await.unwrap(), Seen::Started);
    assert_eq!(
        causes.recv().await.unwrap(),
        Seen::Stopped(Some(CancelCause::ClientCancel))
    );
}

#[tokio::test]
async fn a_bad_signal_cancels_with_a_protocol_error() {
    let (server, mut causes) = server(pow_server::Config::default()).await;
    let mut ws = connect(&server, Some("pow-1")).await.unwrap();
    ws.send(call("sleep", &[])).await.unwrap();
    ws.send(Message::Binary(br#"{"signal":"explode"}"#.to_vec().into()))
        .await
        .unwrap();
    let (_, result) = outcome(&mut ws).await;
    assert_eq!(result, rejected("stopped: Some(ProtocolError)"));
    assert_eq!(causes.recv().await.unwrap(), Seen::Started);
    assert_eq!(
        causes.recv().await.unwrap(),
        Seen::Stopped(Some(CancelCause::ProtocolError))
    );
}

#[tokio::test]
async fn client_disconnect_cancels_the_process() {
    let (server, mut causes) = server(pow_server::Config::default()).await;
    let mut ws = connect(&server, Some("pow-1")).await.unwrap();
    ws.send(call("sleep", &[])).await.unwrap();
    assert_eq!(causes.recv().await.unwrap(), Seen::Started);
    drop(ws);
    assert_eq!(
        causes.recv().await.unwrap(),
        Seen::Stopped(Some(CancelCause::ClientGone))
    );
}

#[tokio::test]
async fn shutdown_cancels_running_processes() {
    let (server, mut causes) = server(pow_server::Config::default()).await;
    let mut ws = connect(&server, Some("pow-1")).await.unwrap();
    ws.send(call("sleep", &[])).await.unwrap();
    assert_eq!(causes.recv().await.unwrap(), Seen::Started);
    let (_, (_, result)) = tokio::join!(server.shutdown(), outcome(&mut ws));
    assert_eq!(result, rejected("stopped: Some(Shutdown)"));
    assert_eq!(
        causes.recv().await.unwrap(),
        Seen::Stopped(Some(CancelCause::Shutdown))
    );
}

async fn configured(extra: &str) -> TestServer {
    let text = format!("{}\n{extra}", pow_server::DEFAULT_CONFIG);
    let registry = pow_server::registry_from_toml(&text).unwrap();
    TestServer::pow_with(pow_server::Config::default(), Arc::new(registry)).await
}

async fn run_call(
    server: &TestServer,
    name: &str,
    params: &[&str],
    input: &str,
) -> (String, Outcome) {
    let mut ws = connect(server, Some("pow-1")).await.unwrap();
    ws.send(call(name, params)).await.unwrap();
    if !input.is_empty() {
        ws.send(Message::Text(input.into())).await.unwrap();
    }
    ws.send(signal(Signal::Close)).await.unwrap();
    outcome(&mut ws).await
}

#[tokio::test]
async fn configured_commands_stream_stdout_and_report_status() {
    let server = configured("").await;
    let (_, date) = run_call(&server, "date", &[], "").await;
    match date {
        Outcome::Fulfilled {
            value: Value::String(s),
        } => assert!(s.ends_with('Z') && s.len() == 20, "{s}"),
        other => panic!("date: {other:?}"),
    }
    let (listing, result) = run_call(&server, "ls", &["/"], "").await;
    assert!(listing.contains("tmp"), "{listing}");
    assert_eq!(result, Outcome::Fulfilled { value: Value::Null });
    let (_, result) = run_call(&server, "wc", &[], "one two\nthree\n").await;
    assert_eq!(
        result,
        Outcome::Fulfilled {
            value: json!("      2       3      14")
        }
    );
    let (_, result) = run_call(&server, "ls", &["/no/such/dir"], "").await;
    match result {
        Outcome::Rejected { reason } => {
            assert!(reason.starts_with("exit status 2: ls:"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    let (_, result) = run_call(&server, "ls", &["relative"], "").await;
    assert_eq!(
        result,
        rejected("failed to get process: invalid parameters: parameter 0 does not match ^/")
    );
}

#[tokio::test]
async fn cancel_kills_a_configured_command() {
    let server = configured("[process.sleep]\nargv = [\"sleep\", \"30\"]").await;
    let mut ws = connect(&server, Some("pow-1")).await.unwrap();
    ws.send(call("sleep", &[])).await.unwrap();
    ws.send(signal(Signal::Cancel)).await.unwrap();
    let (_, result) = outcome(&mut ws).await;
    assert_eq!(result, rejected("cancelled: the client cancelled"));
}

/// A REST client for one server.
#[derive(Clone)]
struct RestClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl RestClient {
    fn new(server: &TestServer, base_path: &str) -> Self {
        RestClient {
            http: reqwest::Client::new(),
            base: format!("http://{}{base_path}", server.addr),
            token: server.token.clone(),
        }
    }

    async fn post(&self, path: &str, body: &str) -> (u16, String) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    async fn status(&self, id: &str) -> (u16, Option<Value>) {
        let response = self
            .http
            .get(format!("{}/status/{id}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let code = response.status().as_u16();
        let text = response.text().await.unwrap();
        (code, serde_json::from_str(&text).ok())
    }

    async fn new_process(&self, name: &str, params: &[&str]) -> String {
        let (code, body) = self
            .post(
                "/new",
                &serde_json::to_string(&json!({"call": name, "params": params})).unwrap(),
            )
            .await;
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Polls status until the result is no longer pending; each poll is
    /// one real request, so no timing is assumed.
    async fn wait_done(&self, id: &str) -> Value {
        loop {
            let (code, status) = self.status(id).await;
            assert_eq!(code, 200);
            let status = status.unwrap();
            if status["result"]["status"] != "pending" {
                return status;
            }
            tokio::task::yield_now().await;
        }
    }
}

#[tokio::test]
async fn rest_life_cycle() {
    let server = configured("").await;
    let rest = RestClient::new(&server, "");
    let id = rest.new_process("echo", &["x"]).await;
    assert_eq!(
        rest.status(&id).await.1.unwrap(),
        json!({"result": {"status": "pending"}})
    );
    assert_eq!(
        rest.post(&format!("/input/{id}"), "one\ntwo\npartial")
            .await,
        (200, "input sent".into())
    );
    assert_eq!(
        rest.post(&format!("/closeInput/{id}"), "").await,
        (200, "input closed".into())
    );
    assert_eq!(
        rest.post(&format!("/closeInput/{id}"), "").await.0,
        200,
        "repeatable"
    );
    let done = rest.wait_done(&id).await;
    assert_eq!(
        done,
        json!({"buffer": "one\ntwo\n", "result": {"status": "fulfilled", "value": ["x"]}})
    );
    assert_eq!(rest.post(&format!("/input/{id}"), "late").await.0, 500);

    // Unknown names fail in /status, not in /new.
    let id = rest.new_process("nope", &[]).await;
    let done = rest.wait_done(&id).await;
    assert_eq!(
        done["result"],
        json!({"status": "rejected", "reason": "failed to get process: unknown process"})
    );
}

#[tokio::test]
async fn rest_cancel_and_errors() {
    let server = configured("[process.sleep]\nargv = [\"sleep\", \"30\"]").await;
    let rest = RestClient::new(&server, "");
    let id = rest.new_process("sleep", &[]).await;
    assert_eq!(
        rest.post(&format!("/cancel/{id}"), "").await,
        (200, "process cancelled".into())
    );
    let done = rest.wait_done(&id).await;
    assert_eq!(done["result"]["status"], "rejected");

    let unknown = "00000000-0000-4000-8000-000000000000";
    assert_eq!(rest.status(unknown).await.0, 404);
    assert_eq!(rest.status("not-a-uuid").await.0, 404);
    for path in ["/input/", "/closeInput/", "/cancel/"] {
        assert_eq!(
            rest.post(&format!("{path}{unknown}"), "").await.0,
            404,
            "{path}"
        );
    }
    assert_eq!(rest.post("/new", "{not json").await.0, 400);
    assert_eq!(
        rest.post("/new", r#"{"call":"echo","params":[1]}"#).await.0,
        400
    );
    let wrong_method = reqwest::Client::new()
        .get(format!("{}/new", rest.base))
        .bearer_auth(&rest.token)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status().as_u16(), 405);
    let no_token = reqwest::Client::new()
        .post(format!("{}/new", rest.base))
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status().as_u16(), 401);
}

#[tokio::test]
async fn rest_sessions_expire() {
    let config = pow_server::Config {
        rest_timeout: Duration::from_millis(100),
        ..pow_server::Config::default()
    };
    let (server, mut seen) = server(config).await;
    let rest = RestClient::new(&server, "");
    let id = rest.new_process("sleep", &[]).await;
    assert_eq!(seen.recv().await.unwrap(), Seen::Started);
    // Untouched, the session is cancelled for its timeout and forgotten.
    assert_eq!(
        seen.recv().await.unwrap(),
        Seen::Stopped(Some(CancelCause::Timeout))
    );
    assert_eq!(rest.status(&id).await.0, 404);
}

#[tokio::test]
async fn base_path_with_and_without_trailing_slash() {
    for base in ["/api/v1/pow/", "/api/v1/pow"] {
        let config = pow_server::Config::default().with_base_path(base);
        let (server, _) = server(config).await;
        let rest = RestClient::new(&server, "/api/v1/pow");
        let id = rest.new_process("echo", &[]).await;
        assert_eq!(rest.post(&format!("/closeInput/{id}"), "").await.0, 200);
        assert_eq!(rest.wait_done(&id).await["result"]["status"], "fulfilled");
        let outside = RestClient::new(&server, "");
        assert_eq!(outside.post("/new", r#"{"call":"echo"}"#).await.0, 404);
        // The WebSocket API lives under the same base.
        let mut request = format!("ws://{}/api/v1/pow/", server.addr)
            .into_client_request()
            .unwrap();
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {}", server.token).parse().unwrap(),
        );
        request
            .headers_mut()
            .insert("sec-websocket-protocol", "pow-1".parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        ws.send(call("echo", &["b"])).await.unwrap();
        ws.send(signal(Signal::Close)).await.unwrap();
        assert_eq!(
            outcome(&mut ws).await.1,
            Outcome::Fulfilled {
                value: json!(["b"])
            }
        );
    }
}

#[tokio::test]
async fn concurrent_rest_sessions() {
    let server = configured("").await;
    let rest = Arc::new(RestClient::new(&server, ""));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let rest = rest.clone();
        tasks.push(tokio::spawn(async move {
            let id = rest.new_process("echo", &[&i.to_string()]).await;
            rest.post(&format!("/input/{id}"), &format!("line {i}\n"))
                .await;
            rest.post(&format!("/closeInput/{id}"), "").await;
            let done = rest.wait_done(&id).await;
            assert_eq!(done["buffer"], format!("line {i}\n"));
            assert_eq!(done["result"]["value"], json!([i.to_string()]));
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// The served OpenAPI document lists exactly the REST routes, each of which
/// answers its documented method (and 405 for another), under the base path.
#[tokio::test]
async fn openapi_document_matches_the_routes() {
    let config = pow_server::Config::default().with_base_path("/api/v1/pow/");
    let (server, _) = server(config).await;
    let http = reqwest::Client::new();
    let base = format!("http://{}/api/v1/pow", server.addr);
    // Served without a token: it describes the API, it does not use it.
    let response = http
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let doc: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(doc["servers"][0]["url"], "/api/v1/pow");
    assert!(doc["components"]["securitySchemes"]["token"]["scheme"] == "bearer");
    let mut routes: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            routes.push((method.clone(), path.clone()));
        }
    }
    routes.sort();
    let expected = [
        ("get", "/status/{id}"),
        ("post", "/cancel/{id}"),
        ("post", "/closeInput/{id}"),
        ("post", "/input/{id}"),
        ("post", "/new"),
    ];
    assert_eq!(
        routes,
        expected.map(|(m, p)| (m.to_owned(), p.to_owned())).to_vec()
    );
    for (method, path) in &routes {
        let url = format!("{base}{}", path.replace("{id}", "no-such-id"));
        let right = http
            .request(method.to_uppercase().parse().unwrap(), &url)
            .bearer_auth(&server.token)
            .body(r#"{"call":"nothing"}"#)
            .send()
            .await
            .unwrap();
        let documented = &doc["paths"][path][method]["responses"];
        let code = right.status().as_u16().to_string();
        assert!(
            documented.get(&code).is_some(),
            "{method} {path}: {code} is not documented"
        );
        let wrong = if method == "get" { "POST" } else { "GET" };
        let response = http
            .request(wrong.parse().unwrap(), &url)
            .bearer_auth(&server.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{wrong} {path}");
        // Documented 401s are real.
        let response = http
            .request(method.to_uppercase().parse().unwrap(), &url)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{method} {path} without a token");
        assert!(documented.get("401").is_some());
    }
}

/// `/docs/` is one self-contained page: it loads nothing from another host.
#[tokio::test]
async fn docs_page_is_served_and_self_contained() {
    let (server, _) = server(pow_server::Config::default()).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = format!("http://{}", server.addr);
    let response = http.get(format!("{base}/docs")).send().await.unwrap();
    assert_eq!(response.status(), 308);
    assert_eq!(response.headers()["location"], "docs/");
    let response = http.get(format!("{base}/docs/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = response.text().await.unwrap();
    assert!(page.contains("../openapi.json"));
    for remote in ["http://", "https://", "src=\"//", "href=\"//", "@import"] {
        assert!(!page.contains(remote), "the page refers to {remote}");
    }
}

/// Output is cut into chunks anywhere; text frames still carry whole
/// characters, and only bytes that can never be UTF-8 become U+FFFD.
#[tokio::test]
async fn characters_split_across_output_chunks_arrive_whole() {
    let (server, _) = server(pow_server::Config::default()).await;
    let mut ws = connect(&server, Some("pow-1")).await.unwrap();
    let text = "héllo ✓ 🦀";
    ws.send(call("trickle", &[text])).await.unwrap();
    let (output, result) = outcome(&mut ws).await;
    assert_eq!(output, format!("{text}\u{FFFD}"));
    assert_eq!(result, Outcome::Fulfilled { value: Value::Null });
}

/// Processes of the filter scenarios. `filter-sum` copies its input to its
/// output (so output must be drained while input is written) and ends
/// with the SHA-256 of everything it read as its last line.
const FILTERS: &str = r#"
[process.cat]
argv = ["cat"]

[process.filter-sum]
argv = ["sh", "-c", "exec 3>&1; tee /dev/fd/3 | sha256sum"]
result = "last-line"

[process.pid-then-sleep]
argv = ["sh", "-c", "echo $$; exec sleep 1000"]
"#;

/// A filter fed 100 MiB over the WebSocket while the client reads its
/// output: every byte comes back, in order, and the call is fulfilled.
#[tokio::test]
async fn a_filter_fed_100_mib_over_websocket_never_stalls() {
    let server = configured(FILTERS).await;
    let mut ws = connect(&server, Some("pow-1")).await.unwrap();
    ws.send(call("cat", &[])).await.unwrap();
    let (mut sink, mut stream) = ws.split();
    let feed = async move {
        for k in 0..FILTER_FRAMES {
            let frame = filter_frame(k, FILTER_FRAME);
            sink.send(Message::Text(frame.into())).await.unwrap();
        }
        sink.send(signal(Signal::Close)).await.unwrap();
        sink
    };
    let read = async move {
        let mut check = FilterCheck::new(FILTER_FRAMES, FILTER_FRAME);
        let mut result = None;
        while let Some(msg) = stream.next().await {
            match msg.unwrap() {
                Message::Text(t) => {
                    assert!(result.is_none(), "output after the result");
                    check.push(t.as_bytes());
                }
                Message::Binary(b) => result = Some(Outcome::decode(&b).unwrap()),
                Message::Close(frame) => {
                    assert_eq!(frame.map(|f| u16::from(f.code)), Some(1000));
                    break;
                }
                _ => {}
            }
        }
        assert!(stream.next().await.is_none(), "the close handshake ends it");
        (check, result)
    };
    let (_sink, (check, result)) =
        tokio::time::timeout(FILTER_NET, async { tokio::join!(feed, read) })
            .await
            .expect("the filter stalled");
    check.assert_complete();
    assert_eq!(result, Some(Outcome::Fulfilled { value: Value::Null }));
}

/// The pid a process printed as its first line of output.
async fn first_line_pid(ws: &mut Ws) -> u32 {
    let mut text = String::new();
    while !text.contains('\n') {
        match ws.next().await.unwrap().unwrap() {
            Message::Text(t) => text.push_str(&t),
            other => panic!("expected the pid, got {other:?}"),
        }
    }
    text.trim().parse().unwrap()
}

/// A cancel that arrives while the process's stdin is full (it never
/// reads, and it was sent more than its pipe holds) ends the process at
/// once: the call is rejected and the process is gone.
#[tokio::test]
async fn cancel_during_a_blocked_write_ends_the_process() {
    let server = configured(FILTERS).await;
    let mut ws = connect(&server, Some("pow-1")).await.unwrap();
    ws.send(call("pid-then-sleep", &[])).await.unwrap();
    let pid = first_line_pid(&mut ws).await;
    for k in 0..4 {
        let frame = filter_frame(k, FILTER_FRAME);
        ws.send(Message::Text(frame.into())).await.unwrap();
    }
    ws.send(signal(Signal::Cancel)).await.unwrap();
    let (_, result) = tokio::time::timeout(FILTER_NET, outcome(&mut ws))
        .await
        .expect("the cancel was not seen");
    assert_eq!(result, rejected("cancelled: the client cancelled"));
    wait_gone(pid).await;
    assert!(!alive(pid));
}

/// Checks that a status buffer is whole lines of the filter input, each
/// following the one before; returns the position of the last one.
fn consecutive_filter_lines<'a>(lines: impl Iterator<Item = &'a str>) -> Option<(usize, usize)> {
    let per_frame = FILTER_FRAME / FILTER_LINE;
    let mut last: Option<(usize, usize)> = None;
    for line in lines {
        let at = filter_line_position(line)
            .unwrap_or_else(|| panic!("not a line of the input: {line:?}"));
        if let Some((frame, number)) = last {
            let next = if number + 1 == per_frame {
                (frame + 1, 0)
            } else {
                (frame, number + 1)
            };
            assert_eq!(at, next, "lines missing or out of order");
        }
        last = Some(at);
    }
    last
}

/// The same filter over REST: 100 MiB posted in 1 MiB bodies while the
/// server drains the output; between posts, `/status` shows only whole,
/// consecutive lines of the input, and the result (the SHA-256 the
/// process computed of what it read) proves every byte arrived in order.
#[tokio::test]
async fn a_filter_fed_100_mib_over_rest_never_stalls() {
    let server = configured(FILTERS).await;
    let rest = RestClient::new(&server, "");
    let expected = tokio::task::spawn_blocking(|| filter_sha256(FILTER_FRAMES, FILTER_FRAME));
    let id = rest.new_process("filter-sum", &[]).await;
    let run = async {
        for k in 0..FILTER_FRAMES {
            let sent = rest
                .post(&format!("/input/{id}"), &filter_frame(k, FILTER_FRAME))
                .await;
            assert_eq!(sent, (200, "input sent".into()));
            let (code, status) = rest.status(&id).await;
            assert_eq!(code, 200);
            let status = status.unwrap();
            consecutive_filter_lines(status["buffer"].as_str().unwrap_or("").lines());
        }
        assert_eq!(rest.post(&format!("/closeInput/{id}"), "").await.0, 200);
        rest.wait_done(&id).await
    };
    let done = tokio::time::timeout(FILTER_NET, run)
        .await
        .expect("the filter stalled");
    let sum = format!("{}  -", expected.await.unwrap());
    assert_eq!(
        done["result"],
        json!({"status": "fulfilled", "value": sum}),
        "{}",
        done["result"]
    );
    let buffer = done["buffer"].as_str().unwrap();
    let mut lines: Vec<&str> = buffer.lines().collect();
    assert_eq!(lines.pop(), Some(sum.as_str()));
    assert!(lines.len() >= 999, "{} lines of output kept", lines.len());
    assert_eq!(
        consecutive_filter_lines(lines.into_iter()),
        Some((FILTER_FRAMES - 1, FILTER_FRAME / FILTER_LINE - 1)),
        "the output ends with the input's last line"
    );
}

/// REST `/cancel` while the process's stdin is full: answered once the
/// process has ended, and the process is gone.
#[tokio::test]
async fn rest_cancel_during_a_blocked_write_ends_the_process() {
    let server = configured(FILTERS).await;
    let rest = RestClient::new(&server, "");
    let id = rest.new_process("pid-then-sleep", &[]).await;
    let pid: u32 = loop {
        let (_, status) = rest.status(&id).await;
        if let Some(line) = status.unwrap()["buffer"].as_str() {
            break line.trim().parse().unwrap();
        }
        tokio::task::yield_now().await;
    };
    for k in 0..4 {
        let sent = rest
            .post(&format!("/input/{id}"), &filter_frame(k, FILTER_FRAME))
            .await;
        assert_eq!(sent, (200, "input sent".into()));
    }
    // More than the input queue holds: the last of these waits for room
    // that never comes, until the cancel ends the process.
    let waiting: Vec<_> = (4..8)
        .map(|k| {
            let rest = rest.clone();
            let path = format!("/input/{id}");
            tokio::spawn(async move { rest.post(&path, &filter_frame(k, FILTER_FRAME)).await })
        })
        .collect();
    let cancelled = tokio::time::timeout(FILTER_NET, rest.post(&format!("/cancel/{id}"), ""))
        .await
        .expect("the cancel was not seen");
    assert_eq!(cancelled, (200, "process cancelled".into()));
    wait_gone(pid).await;
    assert!(!alive(pid));
    assert_eq!(
        rest.status(&id).await.1.unwrap()["result"],
        json!({"status": "rejected", "reason": "cancelled: the client cancelled"})
    );
    // Eight frames of 1 MiB are more than the process (one held, one in
    // its stdin writer) and the 4 MiB queue take: at least one waited,
    // and was answered when the process ended.
    let mut refused = 0;
    for post in waiting {
        let (status, body) = tokio::time::timeout(FILTER_NET, post)
            .await
            .expect("an input request hung after the cancel")
            .unwrap();
        match (status, body.as_str()) {
            (200, "input sent") => {}
            (500, "input is closed or the process has ended\n") => refused += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(refused >= 1, "every input fit: none waited for the cancel");
}
