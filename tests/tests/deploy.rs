//! The deployment of `deploy/` with the real components: nginx ending TLS
//! in front of the daemon (host-a, every protocol under one base path) and
//! of the single servers (host-b, one base path each), coturn relaying
//! WebRTC for a browser that may only use relayed candidates, a fleet of
//! the two hosts behind one gateway, and the systemd units.
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

/// pow's one process for these tests: `say WORD` prints the word.
fn say_registry() -> Arc<dyn pow_server::Handler> {
    let toml = "[process.say]\nargv = [\"echo\", \"{0}\"]\nparams = 1\n";
    Arc::new(pow_server::registry_from_toml(toml).unwrap())
}

/// The daemon with every protocol under `base_path` (pow's one process
/// `say`, webterm's shell `/bin/sh`), pinging its WebSocket clients every
/// `ws_ping`, as `execwire --base-path` runs it.
async fn daemon(base_path: &str, ws_ping: Option<Duration>) -> TestServer {
    let mut config = execwire_tests::execwire_matrix_config()
        .with_base_path(base_path)
        .with_ws_ping(ws_ping);
    if let Some(pow) = &mut config.pow {
        pow.handler = say_registry();
    }
    TestServer::execwire_auth(config, true, "").await
}

/// Through `gateway`: the wsep CLI's client (over wss:// to nginx, ws://
/// from nginx on) runs a command at `wsep` (a path), and pow's REST API
/// under `pow` (a path ending in `/`) runs `say` with a 100 KiB word (a
/// body past every limit but pow's 2 MiB: nginx refuses it with `413`
/// where the location's `client_max_body_size` does not fit pow), answers
/// its status, and serves its docs and an OpenAPI document that names that
/// path.
async fn wsep_and_pow_rest(gateway: &Gateway, wsep: (&str, &str), pow: (&str, &str)) {
    let (wsep_path, wsep_token) = wsep;
    let (pow_path, pow_token) = pow;
    let url = gateway.wss(wsep_path);
    let said = wsep_run(gateway, &url, wsep_token, "echo via-$((6*7))").await;
    assert_eq!(said, "via-42\n");

    let http = execwire_tests::tls::https_client(&gateway.tls);
    let word = format!("through-nginx-{}", "x".repeat(100 << 10));
    let new = http
        .post(gateway.https(&format!("{pow_path}new")))
        .bearer_auth(pow_token)
        .body(json!({"call": "say", "params": [word]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(new.status(), 200, "{}", gateway.error_log());
    let id: String = serde_json::from_str(&new.text().await.unwrap()).unwrap();
    let done = loop {
        // Each poll is one real request: no timing assumed.
        let status = json_of(
            http.get(gateway.https(&format!("{pow_path}status/{id}")))
                .bearer_auth(pow_token),
        )
        .await;
        if status["result"]["status"] != "pending" {
            break status;
        }
    };
    assert_eq!(done["buffer"], format!("{word}\n"));
    assert_eq!(done["result"]["status"], "fulfilled");
    let docs = http
        .get(gateway.https(&format!("{pow_path}docs/")))
        .send()
        .await
        .unwrap();
    assert_eq!(docs.status(), 200);
    let openapi = json_of(http.get(gateway.https(&format!("{pow_path}openapi.json")))).await;
    let named = pow_path.trim_end_matches('/');
    assert!(openapi.to_string().contains(named), "{openapi}");
}

/// One server per protocol, as on host-b: each under its own path.
#[tokio::test]
async fn wsep_and_pow_rest_through_nginx_over_tls_under_a_base_path() {
    let Some(nginx) = tool("nginx") else { return };
    let wsep = TestServer::wsep_with(wsep_config("/host-b/wsep/", None)).await;
    let pow_config = pow_server::Config::default().with_base_path("/host-b/pow/");
    let pow = TestServer::pow_with(pow_config, say_registry()).await;
    let gateway = Gateway::start(
        &nginx,
        &[
            ("server 10.0.0.2:8080;", wsep.addr),
            ("server 10.0.0.2:3000;", pow.addr),
        ],
        "1h",
    );
    wsep_and_pow_rest(
        &gateway,
        ("/host-b/wsep/", &wsep.token),
        ("/host-b/pow/", &pow.token),
    )
    .await;
    // Outside its base path the server has nothing (and nginx no route).
    let direct = format!("ws://{}/elsewhere", wsep.addr);
    assert!(
        wsep_client::start(&direct, Some(&wsep.token), sh("true"))
            .await
            .is_err()
    );
}

/// The daemon, as on host-a: every protocol under `/host-a/` through one
/// location, with one token.
#[tokio::test]
async fn the_daemon_runs_wsep_and_pow_rest_through_nginx_under_a_base_path() {
    let Some(nginx) = tool("nginx") else { return };
    let daemon = daemon("/host-a/", None).await;
    let gateway = Gateway::start(&nginx, &[("server 10.0.0.1:7777;", daemon.addr)], "1h");
    let token = daemon.token.as_str();
    wsep_and_pow_rest(&gateway, ("/host-a/wsep", token), ("/host-a/pow/", token)).await;
    // The protocols are under the base path only: at the root, nothing.
    let direct = format!("ws://{}{}", daemon.addr, execwire::WSEP_PATH);
    assert!(
        wsep_client::start(&direct, Some(token), sh("true"))
            .await
            .is_err()
    );
}

/// Web-Terminal v3 through `gateway` at `path` (wss:// to nginx, trusting
/// only its certificate): authenticates with `token` and runs a command to
/// its end.
async fn webterm_run(gateway: &Gateway, path: &str, token: &str) {
    let url = gateway.wss(path);
    let connector = execwire_tests::tls::ws_connector(&gateway.tls);
    let mut client =
        execwire_tests::webterm::Client::connect_url(&url, token.into(), Some(connector))
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}\nnginx:\n{}", gateway.error_log()));
    let reply = client
        .request(json!({"type":"authentication","payload":{"token":token}}))
        .await;
    assert_eq!(reply["payload"]["result"], "ok", "{reply}");
    let id = client
        .run("echo via-$((6*7)); exit 3", json!("gw"), &[])
        .await;
    let run = client.finish(id).await;
    assert_eq!(run.stdout, "via-42\n", "{run:?}");
    assert_eq!(run.exit_code, Some(3), "{run:?}");
}

/// Web-Terminal v3 behind the gateway, both ways a host serves it:
/// webterm-server under its own path (host-b) and the daemon's under
/// `/host-a/`, in one nginx.
#[tokio::test]
async fn webterm_runs_through_nginx_over_tls_under_a_base_path() {
    let Some(nginx) = tool("nginx") else { return };
    let config = webterm_server::Config {
        shell: "/bin/sh".into(),
        ..webterm_server::Config::default()
    }
    .with_base_path("/host-b/webterm/");
    let single = TestServer::webterm_with(config).await;
    let daemon = daemon("/host-a/", None).await;
    let gateway = Gateway::start(
        &nginx,
        &[
            ("server 10.0.0.1:7777;", daemon.addr),
            ("server 10.0.0.2:6969;", single.addr),
        ],
        "1h",
    );
    webterm_run(&gateway, "/host-b/webterm/", &single.token).await;
    webterm_run(&gateway, "/host-a/webterm", &daemon.token).await;
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
/// on when the server pings (every 1 s: the daemon on host-a); the same
/// session on a server that does not ping (wsep-server on host-b) is cut,
/// which shows the timeout is real.
#[tokio::test]
async fn an_idle_session_outlives_the_proxy_timeout_when_the_server_pings() {
    let Some(nginx) = tool("nginx") else { return };
    let pinging = daemon("/host-a/", Some(Duration::from_secs(1))).await;
    let silent = TestServer::wsep_with(wsep_config("/host-b/wsep/", None)).await;
    let gateway = Gateway::start(
        &nginx,
        &[
            ("server 10.0.0.1:7777;", pinging.addr),
            ("server 10.0.0.2:8080;", silent.addr),
        ],
        "2s",
    );
    let trust = Trust::Ca(gateway.ca_file.clone());
    let script = "read line; echo got-$line";
    let (mut input, mut out) = wsep_client::start_trusting(
        &gateway.wss("/host-a/wsep"),
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

/// The demo page in Chromium through nginx (https, base path) runs a
/// command on each layout of the site: the daemon's webexec at `/host-a/`
/// and webexec-server at `/host-b/webexec/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_through_nginx_runs_a_command() {
    let Some(nginx) = tool("nginx") else { return };
    let Some((chromium, dir)) = execwire_tests::browser() else {
        return;
    };
    let daemon = daemon("/host-a/", None).await;
    let config = webexec_server::Config::default().with_base_path("/host-b/webexec/");
    let webexec = TestServer::webexec_with(config).await;
    let gateway = Gateway::start(
        &nginx,
        &[
            ("server 10.0.0.1:7777;", daemon.addr),
            ("server 10.0.0.2:7777;", webexec.addr),
        ],
        "1h",
    );
    let pages: Vec<Value> = [
        ("/host-a/", &daemon.token, "daemon"),
        ("/host-b/webexec/", &webexec.token, "server"),
    ]
    .iter()
    .map(|(path, token, who)| {
        json!({
            "url": gateway.https(&format!("{path}#token={token}")),
            "type": format!("echo {who}-$((6*7))"),
            "expect": format!("{who}-42"),
        })
    })
    .collect();
    browse(&chromium, &dir, &Value::Array(pages)).await;
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
/// (see [`FleetHost::start`]), its commands seeing
/// `EXECWIRE_FLEET_HOST=NAME`, until its stdin closes: the daemon under
/// `/NAME/` when `EXECWIRE_FLEET_DAEMON` is set, else wsep-server and
/// webexec-server under `/NAME/wsep/` and `/NAME/webexec/`. Not a test by
/// itself: without `EXECWIRE_FLEET_HOST` it does nothing.
#[test]
#[ignore = "run by the fleet test as a separate process"]
fn fleet_host_process() {
    let Ok(name) = std::env::var("EXECWIRE_FLEET_HOST") else {
        return;
    };
    let token = std::env::var("EXECWIRE_FLEET_TOKEN").unwrap();
    let daemon = std::env::var_os("EXECWIRE_FLEET_DAEMON").is_some();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let stopped = |mut stop: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        let token = Some(server_kit::AccessToken::new(token.as_str()));
        let served = if daemon {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            println!("fleet-host wsep={addr} webexec={addr}");
            let config = execwire::Config::all(server_kit::Common::default())
                .unwrap()
                .with_token(token)
                .with_base_path(format!("/{name}/"));
            tokio::spawn(async move {
                execwire::serve(listener, config, stopped(stop))
                    .await
                    .unwrap();
            })
        } else {
            let wsep = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let webexec = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            println!(
                "fleet-host wsep={} webexec={}",
                wsep.local_addr().unwrap(),
                webexec.local_addr().unwrap()
            );
            let wsep_config = wsep_server::Config::default()
                .with_token(token.clone())
                .with_base_path(format!("/{name}/wsep/"));
            let webexec_config = webexec_server::Config::default()
                .with_token(token)
                .with_base_path(format!("/{name}/webexec/"));
            tokio::spawn(async move {
                let (a, b) = tokio::join!(
                    wsep_server::serve(wsep, wsep_config, stopped(stop.clone())),
                    webexec_server::serve(webexec, webexec_config, stopped(stop)),
                );
                a.unwrap();
                b.unwrap();
            })
        };
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
    /// Where the gateway serves its wsep and its demo page.
    wsep_path: String,
    page_path: String,
    child: tokio::process::Child,
}

impl FleetHost {
    /// Host `name`: the daemon when `daemon`, else one server per
    /// protocol.
    async fn start(name: &str, token: &str, daemon: bool) -> FleetHost {
        let mut command = tokio::process::Command::new(std::env::current_exe().unwrap());
        command
            .args(["fleet_host_process", "--exact", "--ignored", "--nocapture"])
            .env("EXECWIRE_FLEET_HOST", name)
            .env("EXECWIRE_FLEET_TOKEN", token)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        let (wsep_path, page_path) = if daemon {
            command.env("EXECWIRE_FLEET_DAEMON", "1");
            (format!("/{name}/wsep"), format!("/{name}/"))
        } else {
            (format!("/{name}/wsep/"), format!("/{name}/webexec/"))
        };
        let mut child = command.spawn().unwrap();
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
                    wsep_path,
                    page_path,
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

/// The site's own fleet: host-a runs the daemon, host-b one server per
/// protocol; each answers as itself through the one gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_of_two_hosts_behind_one_gateway_each_answer_as_themselves() {
    let Some(nginx) = tool("nginx") else { return };
    let token = server_kit::AccessToken::generate()
        .unwrap()
        .expose()
        .to_owned();
    let (a, b) = tokio::join!(
        FleetHost::start("host-a", &token, true),
        FleetHost::start("host-b", &token, false)
    );
    let gateway = Gateway::start(
        &nginx,
        &[
            ("server 10.0.0.1:7777;", a.webexec),
            ("server 10.0.0.2:8080;", b.wsep),
            ("server 10.0.0.2:7777;", b.webexec),
        ],
        "1h",
    );
    let hosts = [("host-a", &a), ("host-b", &b)];
    for (name, host) in hosts {
        let url = gateway.wss(&host.wsep_path);
        let said = wsep_run(&gateway, &url, &token, "echo I am $EXECWIRE_FLEET_HOST").await;
        assert_eq!(said, format!("I am {name}\n"));
    }
    if let Some((chromium, dir)) = execwire_tests::browser() {
        let pages: Vec<Value> = hosts
            .iter()
            .map(|(name, host)| {
                json!({
                    "url": gateway.https(&format!("{}#token={token}", host.page_path)),
                    "type": "echo marker-$EXECWIRE_FLEET_HOST",
                    "expect": format!("marker-{name}"),
                })
            })
            .collect();
        browse(&chromium, &dir, &Value::Array(pages)).await;
    }
    drop(gateway);
    a.stop().await;
    b.stop().await;
}

/// A unit file of `deploy/systemd/` as `systemd-analyze verify` checks it.
struct Unit {
    /// Its file under `deploy/systemd/`.
    source: &'static str,
    /// The program it starts, replaced by `/bin/true`.
    program: &'static str,
    /// The name it is installed under.
    name: &'static str,
    /// The TLS drop-in installed beside it, if any, under `deploy/systemd/`.
    drop_in: Option<&'static str>,
    /// A user unit (`systemctl --user`).
    user: bool,
}

/// The units, the daemon's and the single servers', system and user, with
/// their TLS drop-ins pass `systemd-analyze verify` (its checks of every
/// option, the hardening ones included) without a word: it only warns of
/// an unknown key or a bad value and still exits 0, so its output must be
/// empty too. The program they start stands in for the installed server.
/// Skipped where systemd-analyze is missing, CI included: containers often
/// lack systemd.
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
    let units = [
        Unit {
            source: "execwire.service",
            program: "/usr/local/bin/execwire",
            name: "execwire.service",
            drop_in: Some("execwire-tls.conf"),
            user: false,
        },
        Unit {
            source: "execwire@.service",
            program: "/usr/local/bin/%i-server",
            name: "execwire@wsep.service",
            drop_in: Some("tls.conf"),
            user: false,
        },
        Unit {
            source: "user/execwire.service",
            program: "%h/.local/bin/execwire",
            name: "execwire.service",
            drop_in: None,
            user: true,
        },
        Unit {
            source: "user/execwire@.service",
            program: "%h/.local/bin/%i-server",
            name: "execwire@wsep.service",
            drop_in: None,
            user: true,
        },
    ];
    let systemd = execwire_tests::deploy::deploy_dir().join("systemd");
    for unit in units {
        let dir = execwire_tests::deploy::Scratch::new("systemd");
        let text = std::fs::read_to_string(systemd.join(unit.source)).unwrap();
        let text = execwire_tests::deploy::render(&text, &[(unit.program, "/bin/true".to_owned())]);
        let path = dir.path().join(unit.name);
        std::fs::write(&path, text).unwrap();
        if let Some(drop_in) = unit.drop_in {
            let drop_ins = dir.path().join(format!("{}.d", unit.name));
            std::fs::create_dir(&drop_ins).unwrap();
            std::fs::copy(systemd.join(drop_in), drop_ins.join("tls.conf")).unwrap();
        }
        let mut command = std::process::Command::new(analyze);
        if unit.user {
            // A user manager needs a runtime directory; the test's own.
            let runtime = dir.path().join("runtime");
            std::fs::create_dir(&runtime).unwrap();
            command.arg("--user").env("XDG_RUNTIME_DIR", runtime);
        }
        let out = command.arg("verify").arg(&path).output().unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && said.trim().is_empty(),
            "systemd-analyze verify {}: {said}",
            unit.source
        );
    }
}
