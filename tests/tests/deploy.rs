//! The deployment of `deploy/` with the real components: nginx ending TLS
//! in front of every server under a base path, coturn relaying WebRTC for
//! a browser that may only use relayed candidates, a fleet of two hosts
//! behind one gateway, and the systemd units.
//!
//! nginx and coturn are Debian's (`.ci/run` installs them), started as
//! this user from the shipped files (see `execwire_tests::deploy`). Without
//! them, or without Chromium for the browser scenarios, a test says so and
//! passes, except under CI, where it fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use execwire_tests::TestServer;
use execwire_tests::deploy::{Gateway, Turn, tool};
use serde_json::{Value, json};
use server_kit::CommonConfig as _;
use tokio::io::AsyncBufReadExt as _;
use wsep_client::{Output, Outputs, Trust};
use wsep_proto::StartCommand;

fn sh(script: &str) -> StartCommand {
    StartCommand {
        command: "sh".into(),
        args: vec!["-c".into(), script.into()],
        ..StartCommand::default()
    }
}

/// Everything a command printed on stdout, once it exited 0.
async fn stdout_of(mut out: Outputs) -> String {
    let mut seen = Vec::new();
    while let Some(event) = out.next().await.unwrap() {
        match event {
            Output::Stdout(b) => seen.extend_from_slice(&b),
            Output::Stderr(b) => panic!("stderr: {}", String::from_utf8_lossy(&b)),
            Output::Exit { code, error } => assert_eq!(code, 0, "{error}"),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// Runs `script` through the gateway at `url` (wss://), trusting only the
/// gateway's certificate (the wsep CLI's `--ca`), and returns its stdout.
async fn wsep_run(gateway: &Gateway, url: &str, token: &str, script: &str) -> String {
    let trust = Trust::Ca(gateway.ca_file.clone());
    let (mut input, out) = wsep_client::start_trusting(url, Some(token), sh(script), &trust)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}\nnginx:\n{}", gateway.error_log()));
    input.close_stdin().await.unwrap();
    stdout_of(out).await
}

/// The JSON body of `request`'s answer.
async fn json_of(request: reqwest::RequestBuilder) -> Value {
    let text = request.send().await.unwrap().text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn wsep_config(base_path: &str, ws_ping: Option<Duration>) -> wsep_server::Config {
    wsep_server::Config::default()
        .with_base_path(base_path)
        .with_ws_ping(ws_ping)
}

#[tokio::test]
async fn wsep_and_pow_rest_through_nginx_over_tls_under_a_base_path() {
    let Some(nginx) = tool("nginx") else { return };
    let wsep = TestServer::wsep_with(wsep_config("/host-a/wsep/", None)).await;
    let registry =
        pow_server::registry_from_toml("[process.say]\nargv = [\"echo\", \"{0}\"]\nparams = 1\n")
            .unwrap();
    let pow_config = pow_server::Config::default().with_base_path("/host-a/pow/");
    let pow = TestServer::pow_with(pow_config, Arc::new(registry)).await;
    let gateway = Gateway::start(
        &nginx,
        &[
            ("server 127.0.0.1:8080;", wsep.addr),
            ("server 127.0.0.1:3000;", pow.addr),
        ],
        "1h",
    );

    // The wsep CLI's client, over wss:// to nginx, ws:// from nginx on.
    let url = gateway.wss("/host-a/wsep/");
    let said = wsep_run(&gateway, &url, &wsep.token, "echo via-$((6*7))").await;
    assert_eq!(said, "via-42\n");
    // Outside its base path the server has nothing (and nginx no route).
    let direct = format!("ws://{}/elsewhere", wsep.addr);
    assert!(
        wsep_client::start(&direct, Some(&wsep.token), sh("true"))
            .await
            .is_err()
    );

    // pow's REST API and its docs, under the same gateway.
    let http = execwire_tests::tls::https_client(&gateway.tls);
    let new = http
        .post(gateway.https("/host-a/pow/new"))
        .bearer_auth(&pow.token)
        .body(json!({"call": "say", "params": ["through-nginx"]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(new.status(), 200, "{}", gateway.error_log());
    let id: String = serde_json::from_str(&new.text().await.unwrap()).unwrap();
    let done = loop {
        // Each poll is one real request: no timing assumed.
        let status = json_of(
            http.get(gateway.https(&format!("/host-a/pow/status/{id}")))
                .bearer_auth(&pow.token),
        )
        .await;
        if status["result"]["status"] != "pending" {
            break status;
        }
    };
    assert_eq!(done["buffer"], "through-nginx\n");
    assert_eq!(done["result"]["status"], "fulfilled");
    let docs = http
        .get(gateway.https("/host-a/pow/docs/"))
        .send()
        .await
        .unwrap();
    assert_eq!(docs.status(), 200);
    let openapi = json_of(http.get(gateway.https("/host-a/pow/openapi.json"))).await;
    assert!(openapi.to_string().contains("/host-a/pow"), "{openapi}");
}

/// Without a proxy: an idle session gets the server's pings (every
/// 100 ms here), and tungstenite's pong answers each; the session lives on
/// and runs what it is sent next.
#[tokio::test]
async fn servers_ping_idle_websocket_clients() {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let ping = Some(Duration::from_millis(100));
    let server = TestServer::wsep_with(wsep_config("/", ping)).await;
    let mut request = server.url().into_client_request().unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", server.token).parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let start = wsep_proto::ClientMsg::Start(sh("exec sleep 1000")).encode();
    ws.send(Message::Binary(start.into())).await.unwrap();
    let mut pings = 0;
    while pings < 3 {
        // A safety net, never reached when pings come.
        let next = tokio::time::timeout(Duration::from_secs(20), ws.next()).await;
        match next.expect("no ping within 20 s") {
            Some(Ok(Message::Ping(_))) => pings += 1,
            Some(Ok(Message::Binary(_))) => {}
            other => panic!("the idle session ended: {other:?}"),
        }
    }
}

/// nginx cuts an upstream connection on which nothing arrived for its
/// `proxy_read_timeout` (2 s here). A session left idle for longer lives
/// on when the server pings (every 1 s); the same session on a server
/// that does not ping is cut, which shows the timeout is real.
#[tokio::test]
async fn an_idle_session_outlives_the_proxy_timeout_when_the_server_pings() {
    let Some(nginx) = tool("nginx") else { return };
    let pinging =
        TestServer::wsep_with(wsep_config("/host-a/wsep/", Some(Duration::from_secs(1)))).await;
    let silent = TestServer::wsep_with(wsep_config("/host-b/wsep/", None)).await;
    let gateway = Gateway::start(
        &nginx,
        &[
            ("server 127.0.0.1:8080;", pinging.addr),
            ("server 10.0.0.2:8080;", silent.addr),
        ],
        "2s",
    );
    let trust = Trust::Ca(gateway.ca_file.clone());
    let script = "read line; echo got-$line";
    let (mut input, mut out) = wsep_client::start_trusting(
        &gateway.wss("/host-a/wsep/"),
        Some(&pinging.token),
        sh(script),
        &trust,
    )
    .await
    .unwrap();
    let (_silent_input, mut silent_out) = wsep_client::start_trusting(
        &gateway.wss("/host-b/wsep/"),
        Some(&silent.token),
        sh(script),
        &trust,
    )
    .await
    .unwrap();
    // Idle for 3.5 s, longer than the proxy's timeout: nothing may arrive
    // on the pinged session (pings are not output), and the silent one
    // must be cut in that time.
    let idle = Duration::from_millis(3500);
    let (pinged, cut) = tokio::join!(
        tokio::time::timeout(idle, out.next()),
        tokio::time::timeout(idle, silent_out.next()),
    );
    assert!(pinged.is_err(), "the pinged session ended: {pinged:?}");
    match cut {
        Ok(Err(_) | Ok(None)) => {}
        other => panic!("nginx did not cut the silent session: {other:?}"),
    }
    input.write(b"hello\n").await.unwrap();
    input.close_stdin().await.unwrap();
    assert_eq!(stdout_of(out).await, "got-hello\n");
}

/// Runs `deploy.mjs` with `pages`; fails with what it printed.
async fn browse(chromium: &str, dir: &Path, pages: &Value) -> String {
    let stdout = execwire_tests::run_browser_script(
        chromium,
        &dir.join("deploy.mjs"),
        &[pages.to_string().as_ref()],
    )
    .await;
    assert!(stdout.contains("ok:"), "{stdout}");
    print!("{stdout}");
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_through_nginx_runs_a_command() {
    let Some(nginx) = tool("nginx") else { return };
    let Some((chromium, dir)) = execwire_tests::browser() else {
        return;
    };
    let config = webexec_server::Config::default().with_base_path("/host-a/webexec/");
    let webexec = TestServer::webexec_with(config).await;
    let gateway = Gateway::start(&nginx, &[("server 10.0.0.1:7777;", webexec.addr)], "1h");
    let url = gateway.https(&format!("/host-a/webexec/#token={}", webexec.token));
    let pages =
        json!([{ "url": url, "type": "echo hello-from-$((6*7))", "expect": "hello-from-42" }]);
    browse(&chromium, &dir, &pages).await;
}

/// A webexec server with TURN credentials minted from coturn's secret.
async fn webexec_with_turn(turn: &Turn) -> TestServer {
    let mut config = webexec_server::Config::default();
    config.rtc.turn = Some(webexec_server::TurnSecret {
        urls: vec![turn.url()],
        secret: turn.secret.clone(),
        ttl: Duration::from_secs(600),
        user: "test".into(),
    });
    TestServer::webexec_with(config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_with_relay_only_ice_runs_a_command_through_coturn() {
    let Some(turnserver) = tool("turnserver") else {
        return;
    };
    let Some((chromium, dir)) = execwire_tests::browser() else {
        return;
    };
    let turn = Turn::start(&turnserver).await;
    let webexec = webexec_with_turn(&turn).await;
    let url = format!("http://{}/#token={}", webexec.addr, webexec.token);
    let pages = json!([{
        "url": url,
        "type": "echo relayed-$((6*7))",
        "expect": "relayed-42",
        "relay": true,
    }]);
    browse(&chromium, &dir, &pages).await;
}

/// The credentials the server hands out (to the page, and here to the
/// `webrtc` crate as a client that may only use relayed candidates) are
/// ones coturn accepts: the connection, relayed, runs a command. Without a
/// token there are none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_only_client_with_minted_credentials_runs_a_command() {
    let Some(turnserver) = tool("turnserver") else {
        return;
    };
    let turn = Turn::start(&turnserver).await;
    let webexec = webexec_with_turn(&turn).await;
    let http = reqwest::Client::new();
    let ice = json_of(
        http.get(format!("http://{}/ice-servers", webexec.addr))
            .bearer_auth(&webexec.token),
    )
    .await;
    let server = &ice["iceServers"][0];
    assert_eq!(server["urls"][0], turn.url());
    let unauthorized = http
        .get(format!("http://{}/ice-servers", webexec.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    let relay = execwire_tests::webexec::Relay {
        url: turn.url(),
        username: server["username"].as_str().unwrap().to_owned(),
        credential: server["credential"].as_str().unwrap().to_owned(),
    };
    let base = format!("http://{}", webexec.addr);
    let client = execwire_tests::webexec::Client::connect_relayed(&base, &webexec.token, &relay)
        .await
        .unwrap();
    let channel = client.open("echo,relayed").await;
    assert!(channel.read_until("relayed").await.contains("relayed"));
    client.close().await;
}

/// One host of the fleet: this test binary run again as its own process
/// (see [`FleetHost::start`]), serving wsep and webexec under
/// `/NAME/wsep/` and `/NAME/webexec/`, its commands seeing
/// `EXECWIRE_FLEET_HOST=NAME`, until its stdin closes. Not a test by
/// itself: without that variable it does nothing.
#[test]
#[ignore = "run by the fleet test as a separate process"]
fn fleet_host_process() {
    let Ok(name) = std::env::var("EXECWIRE_FLEET_HOST") else {
        return;
    };
    let token = std::env::var("EXECWIRE_FLEET_TOKEN").unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let wsep = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let webexec = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!(
            "fleet-host wsep={} webexec={}",
            wsep.local_addr().unwrap(),
            webexec.local_addr().unwrap()
        );
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let stopped = |mut stop: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        let token = Some(server_kit::AccessToken::new(token.as_str()));
        let wsep_config = wsep_server::Config::default()
            .with_token(token.clone())
            .with_base_path(format!("/{name}/wsep/"));
        let webexec_config = webexec_server::Config::default()
            .with_token(token)
            .with_base_path(format!("/{name}/webexec/"));
        let served = tokio::spawn(async move {
            let (a, b) = tokio::join!(
                wsep_server::serve(wsep, wsep_config, stopped(stop.clone())),
                webexec_server::serve(webexec, webexec_config, stopped(stop)),
            );
            a.unwrap();
            b.unwrap();
        });
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(_)) = lines.next_line().await {}
        let _ = stop_tx.send(true);
        served.await.unwrap();
    });
}

/// A fleet host's process and where it serves.
struct FleetHost {
    wsep: SocketAddr,
    webexec: SocketAddr,
    child: tokio::process::Child,
}

impl FleetHost {
    async fn start(name: &str, token: &str) -> FleetHost {
        let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
            .args(["fleet_host_process", "--exact", "--ignored", "--nocapture"])
            .env("EXECWIRE_FLEET_HOST", name)
            .env("EXECWIRE_FLEET_TOKEN", token)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("fleet-host ") {
                let addr = |key: &str| -> SocketAddr {
                    rest.split(' ')
                        .find_map(|kv| kv.strip_prefix(key))
                        .unwrap()
                        .parse()
                        .unwrap()
                };
                // libtest prints its result at the end: keep reading, or
                // its write fails and so does the host.
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                return FleetHost {
                    wsep: addr("wsep="),
                    webexec: addr("webexec="),
                    child,
                };
            }
        }
        panic!("the fleet host {name} never said where it serves");
    }

    /// Closes its stdin and waits for it to shut down.
    async fn stop(mut self) {
        drop(self.child.stdin.take());
        let status = self.child.wait().await.unwrap();
        assert!(status.success(), "fleet host: {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_of_two_hosts_behind_one_gateway_each_answer_as_themselves() {
    let Some(nginx) = tool("nginx") else { return };
    let token = server_kit::AccessToken::generate()
        .unwrap()
        .expose()
        .to_owned();
    let (a, b) = tokio::join!(
        FleetHost::start("host-a", &token),
        FleetHost::start("host-b", &token)
    );
    let gateway = Gateway::start(
        &nginx,
        &[
            ("server 127.0.0.1:8080;", a.wsep),
            ("server 10.0.0.1:7777;", a.webexec),
            ("server 10.0.0.2:8080;", b.wsep),
            ("server 10.0.0.2:7777;", b.webexec),
        ],
        "1h",
    );
    for host in ["host-a", "host-b"] {
        let url = gateway.wss(&format!("/{host}/wsep/"));
        let said = wsep_run(&gateway, &url, &token, "echo I am $EXECWIRE_FLEET_HOST").await;
        assert_eq!(said, format!("I am {host}\n"));
    }
    if let Some((chromium, dir)) = execwire_tests::browser() {
        let pages: Vec<Value> = ["host-a", "host-b"]
            .iter()
            .map(|host| {
                json!({
                    "url": gateway.https(&format!("/{host}/webexec/#token={token}")),
                    "type": "echo marker-$EXECWIRE_FLEET_HOST",
                    "expect": format!("marker-{host}"),
                })
            })
            .collect();
        browse(&chromium, &dir, &Value::Array(pages)).await;
    }
    drop(gateway);
    a.stop().await;
    b.stop().await;
}

/// The units pass `systemd-analyze verify` (its checks of every option,
/// the hardening ones included), the program they start standing in for
/// the installed server. Skipped where systemd-analyze is missing, CI
/// included: containers often lack systemd.
#[test]
fn the_systemd_units_verify() {
    let Some(analyze) = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
    else {
        eprintln!("skipped: no systemd-analyze");
        return;
    };
    let dir = execwire_tests::deploy::Scratch::new("systemd");
    let source = execwire_tests::deploy::deploy_dir().join("systemd/execwire@.service");
    let unit = std::fs::read_to_string(source).unwrap();
    let unit = execwire_tests::deploy::render(
        &unit,
        &[("/usr/local/bin/%i-server", "/bin/true".to_owned())],
    );
    let path = dir.path().join("execwire@wsep.service");
    std::fs::write(&path, unit).unwrap();
    let out = std::process::Command::new(analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
