//! The `execwire` binary as an operator runs it: its help, what it
//! prints, and its configuration file (a flag from the file, a flag that
//! overrides the file, pow's processes from the file, an unknown key
//! refused). Real binary, `127.0.0.1:0`, real HTTP.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_execwire");

/// A fresh directory for this test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("execwire-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The daemon started with `args` (on port 0, any UDP port, no token in
/// the environment), and what it printed up to its metrics line.
struct Daemon {
    child: Child,
    printed: String,
    /// `http://127.0.0.1:PORT`
    base: String,
}

impl Daemon {
    async fn start(args: &[&str]) -> Daemon {
        Self::start_env(args, &[]).await
    }

    /// Started with `args` and the variables `env` (a service's
    /// environment file).
    async fn start_env(args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut child = Command::new(BIN)
            .args(["--listen", "127.0.0.1:0", "--udp-ports", "0-0"])
            .args(args)
            .env_remove("EXECWIRE_TOKEN")
            .env_remove("EXECWIRE_VIEW_TOKEN")
            .env_remove("WEBEXEC_TURN_SECRET")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut printed = String::new();
        let mut base = None;
        while let Some(line) = lines.next_line().await.unwrap() {
            printed.push_str(&line);
            printed.push('\n');
            if let Some(url) = line.strip_prefix("execwire listening on ") {
                base = Some(url.trim_end_matches('/').to_owned());
            }
            if line.trim_start().starts_with("metrics:") {
                break;
            }
        }
        let base = base.unwrap_or_else(|| panic!("no listening line in {printed:?}"));
        Daemon {
            child,
            printed,
            base,
        }
    }

    /// `GET path` with `token`: the status and the body.
    async fn get(&self, path: &str, token: &str) -> (u16, String) {
        let response = http()
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    async fn stop(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }
}

/// An HTTP client. In a workspace build reqwest gets rustls without a
/// provider of its own (see `tests/src/tls.rs`): make ring the process's
/// first.
fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[tokio::test]
async fn help_names_every_flag() {
    let out = Command::new(BIN).arg("--help").output().await.unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--listen",
        "--token",
        "--no-auth",
        "--insecure",
        "--allow-origin",
        "--tls-cert",
        "--tls-key",
        "--tls-self-signed",
        "--log-format",
        "--ws-ping",
        "--base-path",
        "--config",
        "--no-webexec",
        "--no-wsep",
        "--no-pow",
        "--no-webterm",
        "--shell",
        "--wsep-session-timeout",
        "--webterm-html-output",
        "--udp-ports",
        "--ice-server",
        "--turn-secret",
        "--turn-url",
        "--turn-ttl",
        "--webrtc-certificate",
        "--record",
        "--record-max-bytes",
        "EXECWIRE_TOKEN",
        "--view-token",
        "EXECWIRE_VIEW_TOKEN",
        "127.0.0.1:7777",
    ] {
        assert!(help.contains(flag), "{flag} missing from\n{help}");
    }
}

/// It prints every protocol's URL, the page's with the generated token.
#[tokio::test]
async fn prints_each_protocols_url_with_the_token() {
    let daemon = Daemon::start(&[]).await;
    let token = daemon
        .printed
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .expect("a generated token")
        .to_owned();
    let base = &daemon.base;
    let ws = base.replacen("http://", "ws://", 1);
    for expected in [
        format!("{base}/#token={token}"),
        format!("{ws}/wsep"),
        format!("wsep --token {token} {ws}/wsep"),
        format!("{ws}/pow/"),
        format!("{base}/pow/docs/"),
        format!("{ws}/webterm"),
        format!("{base}/panes"),
        format!("{base}/metrics"),
    ] {
        assert!(
            daemon.printed.contains(&expected),
            "{expected} in\n{}",
            daemon.printed
        );
    }
    assert_eq!(daemon.get("/metrics", &token).await.0, 200);
    let (status, panes) = daemon.get("/panes", &token).await;
    assert_eq!((status, panes.as_str()), (200, "[]"));
    daemon.stop().await;
}

/// Settings from the file apply (its token, a protocol off, its pow
/// processes); a flag on the command line wins over the file's.
#[tokio::test]
async fn config_file_and_flags_over_it() {
    let dir = scratch("config");
    let config = write(
        &dir,
        "execwire.toml",
        r#"
token = "from-the-file"
no-webterm = true

[process.greet]
argv = ["echo", "hello from the file"]
"#,
    );
    let daemon = Daemon::start(&["--config", &config]).await;
    assert!(!daemon.printed.contains("webterm"), "{}", daemon.printed);
    assert_eq!(daemon.get("/metrics", "from-the-file").await.0, 200);
    assert_eq!(daemon.get("/webterm", "from-the-file").await.0, 404);
    // pow's REST runs the file's process.
    let status = pow_call(&daemon, "from-the-file", "greet").await;
    assert!(status.contains("hello from the file"), "{status}");
    daemon.stop().await;

    let daemon = Daemon::start(&["--config", &config, "--token", "from-the-flag"]).await;
    assert_eq!(daemon.get("/metrics", "from-the-flag").await.0, 200);
    assert_eq!(daemon.get("/metrics", "from-the-file").await.0, 401);
    daemon.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// As `deploy/systemd/execwire.service` runs it: the token and the TURN
/// secret in the environment (its environment file), the base path and
/// the relay's URL in the file. clap alone would refuse the secret
/// without `--turn-url` on the command line; the page gets credentials
/// for the file's relay, under the file's base path.
#[tokio::test]
async fn turn_secret_from_the_environment_and_relays_from_the_file() {
    let dir = scratch("turn-env");
    let text = "base-path = \"/host-a/\"\nturn-url = [\"turn:127.0.0.1:3478\"]\n";
    let config = write(&dir, "execwire.toml", text);
    let env = [
        ("EXECWIRE_TOKEN", "from-env"),
        ("WEBEXEC_TURN_SECRET", "s3"),
    ];
    let daemon = Daemon::start_env(&["--config", &config], &env).await;
    assert!(daemon.base.ends_with("/host-a"), "{}", daemon.printed);
    let (status, ice) = daemon.get("/ice-servers", "from-env").await;
    assert_eq!(status, 200, "{ice}");
    assert!(ice.contains("turn:127.0.0.1:3478"), "{ice}");
    assert!(ice.contains("credential"), "{ice}");
    daemon.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// webexec's WebRTC certificate is the host's identity, which clients pin:
/// with `webrtc-certificate` it is made once (only its owner may read
/// it) and the same after a restart.
#[tokio::test]
async fn webrtc_certificate_is_kept_across_restarts() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = scratch("certificate");
    let pem = dir.join("webrtc.pem");
    let text = format!("webrtc-certificate = {:?}\n", pem.to_str().unwrap());
    let config = write(&dir, "execwire.toml", &text);
    let daemon = Daemon::start(&["--config", &config]).await;
    let printed = daemon.printed.clone();
    daemon.stop().await;
    assert!(printed.contains("its certificate: sha-256 "), "{printed}");
    let first = std::fs::read(&pem).expect("the certificate was not written");
    let mode = std::fs::metadata(&pem).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    let daemon = Daemon::start(&["--config", &config]).await;
    let again = daemon.printed.clone();
    daemon.stop().await;
    assert_eq!(std::fs::read(&pem).unwrap(), first, "a new certificate");
    let line = |text: &str| {
        text.lines()
            .find(|l| l.contains("its certificate"))
            .map(str::to_owned)
    };
    assert_eq!(line(&printed), line(&again));
    // A file that cannot be made stops it before it listens.
    let refused = refused_before_listening(
        "certificate-bad",
        "webrtc-certificate = \"/dev/null/webrtc.pem\"\n",
    )
    .await;
    assert!(refused.contains("webrtc-certificate"), "{refused}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The commands it runs do not get its secrets: the tokens and the TURN
/// secret came from its environment (a unit's environment file) and are
/// gone from the environment its processes inherit.
#[tokio::test]
async fn commands_do_not_inherit_the_servers_secrets() {
    let dir = scratch("secrets");
    // One line: what the command inherited, then what it reads of its
    // server's own environment block (`/proc/PPID/environ`, the same
    // user's to read).
    let text = "turn-url = [\"turn:127.0.0.1:3478\"]\n\n[process.secrets]\n\
                argv = [\"sh\", \"-c\", \"echo printed $EXECWIRE_PROBE $EXECWIRE_TOKEN_FILE \
                $(printenv EXECWIRE_TOKEN EXECWIRE_VIEW_TOKEN WEBEXEC_TURN_SECRET) \
                server: $(tr '\\\\0' ' ' < /proc/$PPID/environ)\"]\nresult = \"last-line\"\n";
    let config = write(&dir, "execwire.toml", text);
    let env = [
        ("EXECWIRE_TOKEN", "token-from-env"),
        ("EXECWIRE_VIEW_TOKEN", "view-from-env"),
        ("WEBEXEC_TURN_SECRET", "turn-from-env"),
        // Not a secret: the rest of the environment is passed on.
        ("EXECWIRE_PROBE", "the-rest"),
        // Nor is a name that merely starts with a secret's.
        ("EXECWIRE_TOKEN_FILE", "not-a-secret"),
    ];
    let daemon = Daemon::start_env(&["--config", &config], &env).await;
    let status = pow_call(&daemon, "token-from-env", "secrets").await;
    daemon.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.contains("printed the-rest not-a-secret"), "{status}");
    // The server's block was read: the names are there, their values not.
    assert!(status.contains("EXECWIRE_PROBE=the-rest"), "{status}");
    assert!(
        status.contains("EXECWIRE_TOKEN_FILE=not-a-secret"),
        "{status}"
    );
    assert!(status.contains("EXECWIRE_TOKEN="), "{status}");
    for secret in ["token-from-env", "view-from-env", "turn-from-env"] {
        assert!(!status.contains(secret), "{secret} in {status}");
    }
}

/// Secrets given as flags are blanked in the daemon's command line, which
/// `ps` shows every user of the machine, once they were read: the token
/// still opens the door.
#[tokio::test]
async fn secrets_given_as_flags_leave_the_command_line() {
    let dir = scratch("argv");
    let config = write(
        &dir,
        "execwire.toml",
        "[process.greet]\nargv = [\"true\"]\n",
    );
    let daemon = Daemon::start(&[
        "--config",
        &config,
        "--token",
        "flag-token-123",
        "--view-token=flag-view-456",
        "--turn-url",
        "turn:127.0.0.1:3478",
        "--turn-secret",
        "flag-turn-789",
    ])
    .await;
    let pid = daemon.child.id().unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let status = pow_new(&daemon, "flag-token-123").await;
    daemon.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    for secret in ["flag-token-123", "flag-view-456", "flag-turn-789"] {
        assert!(!cmdline.contains(secret), "{secret} in {cmdline}");
    }
    assert!(
        cmdline.contains("--token xxxxxxxxxxxxxx --view-token=xxxxxxxxxxxxx"),
        "{cmdline}"
    );
    assert!(cmdline.contains("--turn-secret xxxxxxxxxxxxx"), "{cmdline}");
    assert_eq!(status, 200);
}

/// Runs pow process `call` (no parameters) through REST and returns its
/// status once it is no longer pending.
async fn pow_call(daemon: &Daemon, token: &str, call: &str) -> String {
    let response = post_new(daemon, token, call).await;
    assert_eq!(response.status().as_u16(), 200);
    let id: String = response.text().await.unwrap().trim_matches('"').to_owned();
    // Each poll is one real request: no timing assumed, but a bound.
    let poll = async {
        loop {
            let (code, status) = daemon.get(&format!("/pow/status/{id}"), token).await;
            assert_eq!(code, 200, "{status}");
            if !status.contains("pending") {
                break status;
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), poll)
        .await
        .expect("the process never finished")
}

/// `POST /pow/new` of process `call`, without parameters, with `token`.
async fn post_new(daemon: &Daemon, token: &str, call: &str) -> reqwest::Response {
    http()
        .post(format!("{}/pow/new", daemon.base))
        .bearer_auth(token)
        .body(format!(r#"{{"call":"{call}","params":[]}}"#))
        .send()
        .await
        .unwrap()
}

/// `POST /pow/new` of `greet` with `token`: the status.
async fn pow_new(daemon: &Daemon, token: &str) -> u16 {
    post_new(daemon, token, "greet").await.status().as_u16()
}

/// The view token from the file (`view_token` as the issue spells it, or
/// `view-token`) and from the flag over it: its holder is refused a start
/// (`403`), a wrong one is `401`; one equal to the token, or with
/// `no-auth`, stops the daemon before it listens.
#[tokio::test]
async fn view_token_from_the_file_and_the_flag() {
    let dir = scratch("view");
    let config = write(
        &dir,
        "execwire.toml",
        "token = \"full\"\nview_token = \"watch\"\n[process.greet]\nargv = [\"true\"]\n",
    );
    let daemon = Daemon::start(&["--config", &config]).await;
    assert_eq!(pow_new(&daemon, "watch").await, 403);
    assert_eq!(pow_new(&daemon, "full").await, 200);
    assert_eq!(pow_new(&daemon, "other").await, 401);
    daemon.stop().await;
    let daemon = Daemon::start(&["--config", &config, "--view-token", "other"]).await;
    assert_eq!(pow_new(&daemon, "other").await, 403);
    assert_eq!(pow_new(&daemon, "watch").await, 401);
    daemon.stop().await;

    for (name, auth) in [
        ("view-no-auth", "no-auth = true"),
        ("view-same", "token = \"same\""),
    ] {
        let text = format!("listen = [\"127.0.0.1:0\"]\n{auth}\nview-token = \"same\"\n");
        let stderr = refused_before_listening(name, &text).await;
        assert!(stderr.contains("view-token"), "{name}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs the daemon with `text` as its config file and expects it to stop
/// before it listens; its stderr.
async fn refused_before_listening(name: &str, text: &str) -> String {
    let dir = scratch(name);
    let config = write(&dir, &format!("{name}.toml"), text);
    let run = Command::new(BIN)
        .args(["--config", &config, "--listen", "127.0.0.1:0"])
        .env_remove("EXECWIRE_TOKEN")
        .env_remove("WEBEXEC_TURN_SECRET")
        .kill_on_drop(true)
        .output();
    // A daemon that took the file would serve on: not forever here.
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), run)
        .await
        .expect("it started instead of refusing the file")
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "it listened: {:?}", out.stdout);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A key the daemon does not know stops it before it listens, with an
/// error that names the key and the file.
#[tokio::test]
async fn unknown_key_is_refused_by_name() {
    let stderr =
        refused_before_listening("bad", "listen = [\"127.0.0.1:0\"]\nno-wsepp = true\n").await;
    assert!(stderr.contains("unknown field `no-wsepp`"), "{stderr}");
    assert!(stderr.contains("bad.toml"), "{stderr}");
}

/// A TURN secret from the file without a relay to use it with stops the
/// daemon before it listens, saying what is missing.
#[tokio::test]
async fn turn_secret_without_relay_is_refused() {
    let stderr = refused_before_listening(
        "turn",
        "listen = [\"127.0.0.1:0\"]\nno-auth = true\nturn-secret = \"s3cret\"\n",
    )
    .await;
    assert!(stderr.contains("--turn-url"), "{stderr}");
    assert!(!stderr.contains("s3cret"), "the secret leaked: {stderr}");
}
