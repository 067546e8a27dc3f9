//! TLS and metrics, on every server: a session over `wss://`/`https://`
//! with a generated certificate that the client trusts, `/metrics` refused
//! without the token and moving when the session ran, and a bad handshake
//! that leaves the server serving.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use execwire_tests::tls::{https_client, identity, metric, ws_connector};
use execwire_tests::webexec::{Client, Signaling};
use execwire_tests::{Kind, TestServer};

/// A safety net against a hung server; never reached when things work.
const NET: Duration = Duration::from_secs(20);

type Wss =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A `wss://` connection to `server` trusting `tls`, with the token and,
/// for pow, its subprotocol.
async fn wss(server: &TestServer, tls: &server_kit::Tls, protocol: Option<&str>) -> Wss {
    let url = format!("wss://127.0.0.1:{}/", server.addr.port());
    let mut request = url.into_client_request().unwrap();
    let bearer = HeaderValue::from_str(&format!("Bearer {}", server.token)).unwrap();
    request.headers_mut().insert("authorization", bearer);
    if let Some(protocol) = protocol {
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_str(protocol).unwrap(),
        );
    }
    let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        request,
        None,
        false,
        Some(ws_connector(tls)),
    )
    .await
    .unwrap();
    ws
}

/// The next data message, or `None` once the server closed.
async fn next(ws: &mut Wss) -> Option<Message> {
    loop {
        let msg = tokio::time::timeout(NET, ws.next())
            .await
            .expect("server went silent");
        match msg? {
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => return Some(m),
            Ok(_) => {}
        }
    }
}

/// `GET /metrics` over `https://`: refused without the token, the text
/// with it.
async fn metrics(server: &TestServer, tls: &server_kit::Tls) -> String {
    let http = https_client(tls);
    let url = format!("https://127.0.0.1:{}/metrics", server.addr.port());
    let refused = http.get(&url).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let wrong = http.get(&url).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let response = http
        .get(&url)
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let kind = response.headers()["content-type"].to_str().unwrap();
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    response.text().await.unwrap()
}

/// What every server's metrics must show after one session that ran one
/// process and sent output: the counters moved, under its protocol, and
/// the two refused `/metrics` requests were counted.
fn check_counted(text: &str, protocol: &str) {
    let series = |name: &str| format!("execwire_{name}{{protocol=\"{protocol}\"}}");
    let value = |name: &str| metric(text, &series(name));
    assert_eq!(value("connections_total"), Some(1.0), "{text}");
    assert_eq!(value("processes_started_total"), Some(1.0), "{text}");
    assert!(value("sent_bytes_total").unwrap() > 0.0, "{text}");
    assert_eq!(value("auth_failures_total"), Some(2.0), "{text}");
    assert_eq!(value("tls_handshake_failures_total"), Some(0.0), "{text}");
}

#[tokio::test]
async fn wsep_over_wss() {
    let tls = identity();
    let server = TestServer::with_tls(Kind::Wsep, tls.clone()).await;
    let mut ws = wss(&server, &tls, None).await;
    let start = wsep_proto::StartCommand {
        command: "echo".into(),
        args: vec!["over tls".into()],
        ..wsep_proto::StartCommand::default()
    };
    let start = wsep_proto::ClientMsg::Start(start).encode();
    ws.send(Message::Binary(start.into())).await.unwrap();
    let mut stdout = Vec::new();
    let mut exit = None;
    while let Some(msg) = next(&mut ws).await {
        match wsep_proto::ServerMsg::decode(&msg.into_data()).unwrap() {
            wsep_proto::ServerMsg::Stdout(b) => stdout.extend_from_slice(&b),
            wsep_proto::ServerMsg::ExitCode { code, .. } => exit = Some(code),
            _ => {}
        }
    }
    assert_eq!(stdout, b"over tls\n");
    assert_eq!(exit, Some(0));
    let text = metrics(&server, &tls).await;
    check_counted(&text, "wsep");
    assert!(metric(&text, "execwire_received_bytes_total{protocol=\"wsep\"}").unwrap() > 0.0);
}

#[tokio::test]
async fn pow_over_wss_and_https() {
    let tls = identity();
    let server = TestServer::with_tls(Kind::Pow, tls.clone()).await;
    let mut ws = wss(&server, &tls, Some(pow_proto::SUBPROTOCOL)).await;
    let call = pow_proto::Call {
        call: "date".into(),
        params: Vec::new(),
    };
    ws.send(Message::Binary(call.encode().into()))
        .await
        .unwrap();
    let mut output = String::new();
    let mut outcome = None;
    while let Some(msg) = next(&mut ws).await {
        match msg {
            Message::Text(t) => output.push_str(&t),
            Message::Binary(b) => outcome = Some(pow_proto::Outcome::decode(&b).unwrap()),
            _ => {}
        }
    }
    assert!(!output.trim().is_empty(), "date printed nothing");
    assert!(
        matches!(outcome, Some(pow_proto::Outcome::Fulfilled { .. })),
        "{outcome:?}"
    );
    // The docs page, over https too.
    let docs = format!("https://127.0.0.1:{}/docs/", server.addr.port());
    let page = https_client(&tls).get(docs).send().await.unwrap();
    assert_eq!(page.status(), 200);
    check_counted(&metrics(&server, &tls).await, "pow");
}

#[tokio::test]
async fn webterm_over_wss() {
    let tls = identity();
    let server = TestServer::with_tls(Kind::Webterm, tls.clone()).await;
    let mut ws = wss(&server, &tls, None).await;
    let send = |v: Value| Message::text(v.to_string());
    ws.send(send(
        json!({"type":"authentication","payload":{"token":server.token}}),
    ))
    .await
    .unwrap();
    ws.send(send(
        json!({"type":"command","payload":{"command":"echo over tls","clientId":1}}),
    ))
    .await
    .unwrap();
    let mut stdout = String::new();
    loop {
        let msg = next(&mut ws)
            .await
            .expect("closed before the command ended");
        let v: Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
        let payload = &v["payload"];
        if let Some(out) = payload["output"]["stdout"].as_str() {
            stdout.push_str(out);
        }
        if payload["status"] == "completed" {
            assert_eq!(payload["exitCode"], 0, "{v}");
            break;
        }
    }
    assert_eq!(stdout, "over tls\n");
    let text = metrics(&server, &tls).await;
    check_counted(&text, "webterm");
    // Authenticated in-band: a session.
    assert_eq!(
        metric(&text, "execwire_sessions_open{protocol=\"webterm\"}"),
        Some(1.0)
    );
}

#[tokio::test]
async fn webexec_signals_over_https() {
    let tls = identity();
    let server = TestServer::with_tls(Kind::Webexec, tls.clone()).await;
    let base = format!("https://127.0.0.1:{}", server.addr.port());
    let page = https_client(&tls)
        .get(format!("{base}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let client = Client::connect_via(
        &base,
        https_client(&tls),
        Some(&server.token),
        &Signaling::Trickle,
        &[],
    )
    .await
    .unwrap();
    let pane = client.open("echo,over tls").await;
    let hello = pane.recv().await.expect("no pane id");
    assert!(!hello.bytes().is_empty());
    assert_eq!(pane.read_to_close().await, b"over tls\n");
    let text = metrics(&server, &tls).await;
    check_counted(&text, "webexec");
    client.close().await;
}

/// Neither a client that speaks something else nor one that says nothing
/// keeps the server from serving the next; the failure is counted.
#[tokio::test]
async fn a_bad_handshake_does_not_stop_the_server() {
    let tls = identity();
    let server = TestServer::with_tls(Kind::Wsep, tls.clone()).await;
    let _silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut plain = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    plain
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    // The server gives up on it: closed, with no HTTP answer.
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer).await;
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
    // A client that does not trust the certificate fails its handshake.
    let untrusted = identity();
    let url = format!("wss://127.0.0.1:{}/", server.addr.port());
    let refused = tokio_tungstenite::connect_async_tls_with_config(
        url,
        None,
        false,
        Some(ws_connector(&untrusted)),
    )
    .await;
    assert!(refused.is_err());
    let text = metrics(&server, &tls).await;
    let failures = metric(
        &text,
        "execwire_tls_handshake_failures_total{protocol=\"wsep\"}",
    );
    // The plain client's failure is counted before its socket closes; the
    // untrusting client's is counted when the server reads its alert, which
    // may come after this request.
    assert!(failures.unwrap() >= 1.0, "{text}");
}
