//! The real deployment components of the deploy scenarios: nginx and
//! coturn, each started as this user from the files under `deploy/`, with
//! its configuration and every file it writes in a fresh directory, on
//! free ports, and ended with the test.
//!
//! The shipped files are used as they are but for what a test must change
//! (addresses, ports, certificate paths, one timeout); each change names
//! the text it replaces and fails the test when that text is gone, so the
//! files and the tests cannot drift apart.

use std::net::{SocketAddr, UdpSocket};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use server_kit::Tls;

/// The repository's `deploy/` directory.
pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// The program `name` (searched in `PATH`, then `/usr/sbin` and `/sbin`,
/// where Debian puts nginx). Missing, it is `None` after saying so, so
/// that the test passes, except under CI, where it fails: CI installs it.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = find(name);
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the deploy tests: install {name} (.ci/run does)"
        );
        eprintln!("skipped: no {name} (apt-get install nginx coturn)");
    }
    found
}

/// The program `name` in `PATH`, `/usr/sbin` or `/sbin`, if there.
pub fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// A fresh directory under the system's temporary one, removed when
/// dropped.
#[derive(Debug)]
pub struct Scratch(PathBuf);

impl Scratch {
    /// Makes `execwire-NAME-PID-N`.
    pub fn new(name: &str) -> Scratch {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "execwire-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `text` with each `(from, to)` replaced (every occurrence); fails when
/// `from` does not occur, naming it.
pub fn render(text: &str, changes: &[(&str, String)]) -> String {
    let mut out = text.to_owned();
    for (from, to) in changes {
        assert!(out.contains(from), "the deploy file no longer has {from:?}");
        out = out.replace(from, to);
    }
    out
}

/// A child process in its own process group, the group killed and the
/// child reaped when dropped (nginx's workers outlive a killed master
/// otherwise).
#[derive(Debug)]
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pid) = i32::try_from(self.0.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = self.0.wait();
    }
}

/// A self-signed certificate for `127.0.0.1` and `localhost`, written as
/// `gateway.crt` and `gateway.key` into `dir`; the [`Tls`] is what clients
/// trust ([`crate::tls::https_client`], a wsep `--ca` file: the `.crt`).
pub fn gateway_certificate(dir: &Path) -> (Tls, PathBuf) {
    let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(names)
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let crt = dir.join("gateway.crt");
    let pem_key = dir.join("gateway.key");
    std::fs::write(&crt, cert.pem()).unwrap();
    std::fs::write(&pem_key, key.serialize_pem()).unwrap();
    (Tls::from_pem_files(&crt, &pem_key).unwrap(), crt)
}

/// nginx running `deploy/nginx/execwire.conf` as a TLS gateway on
/// `127.0.0.1:port`.
#[derive(Debug)]
pub struct Gateway {
    /// Where it listens (TLS).
    pub addr: SocketAddr,
    /// Its certificate, for clients to trust.
    pub tls: Tls,
    /// Its certificate's PEM file (wsep's `--ca`).
    pub ca_file: PathBuf,
    _nginx: Group,
    dir: Scratch,
}

impl Gateway {
    /// Starts `nginx` with the shipped site file, its upstream addresses
    /// replaced as `upstreams` says (the address in the file, the one to
    /// use) and `proxy_read_timeout` set to `read_timeout` (nginx syntax:
    /// `2s`).
    ///
    /// The test binds the listening socket and nginx inherits it (its
    /// `NGINX` variable, the mechanism of its binary upgrade): no port is
    /// picked and freed for another to take, and connections wait in the
    /// socket's backlog until nginx accepts them, so nothing waits for
    /// nginx to be ready.
    pub fn start(nginx: &Path, upstreams: &[(&str, SocketAddr)], read_timeout: &str) -> Gateway {
        let dir = Scratch::new("nginx");
        let d = dir.path();
        let (tls, ca_file) = gateway_certificate(d);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let snippet = deploy_dir().join("nginx/execwire-proxy.conf");
        let mut changes = vec![
            ("listen 443 ssl;", format!("listen {addr} ssl;")),
            (
                "/etc/execwire/tls/gateway.crt",
                d.join("gateway.crt").display().to_string(),
            ),
            (
                "/etc/execwire/tls/gateway.key",
                d.join("gateway.key").display().to_string(),
            ),
            (
                "include snippets/execwire-proxy.conf;",
                format!("include {};", snippet.display()),
            ),
            (
                "proxy_read_timeout 1h;",
                format!("proxy_read_timeout {read_timeout};"),
            ),
        ];
        for (from, to) in upstreams {
            changes.push((from, format!("server {to};")));
        }
        let site = std::fs::read_to_string(deploy_dir().join("nginx/execwire.conf")).unwrap();
        std::fs::write(d.join("execwire.conf"), render(&site, &changes)).unwrap();
        let main = format!(
            "worker_processes 1;\n\
             error_log {d}/error.log info;\n\
             pid {d}/nginx.pid;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n\
             access_log {d}/access.log;\n\
             client_body_temp_path {d}/client_body;\n\
             proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\n\
             scgi_temp_path {d}/scgi;\n\
             include {d}/execwire.conf;\n\
             }}\n",
            d = d.display()
        );
        std::fs::write(d.join("nginx.conf"), main).unwrap();
        let args = |cmd: &mut Command| {
            cmd.arg("-p")
                .arg(d)
                .arg("-c")
                .arg(d.join("nginx.conf"))
                .arg("-e")
                .arg(d.join("error.log"))
                .arg("-g")
                .arg("daemon off;");
        };
        // Check first, so a bad file fails here with nginx's own words.
        let mut check = Command::new(nginx);
        args(&mut check);
        let checked = check.arg("-t").output().unwrap();
        assert!(
            checked.status.success(),
            "nginx -t: {}",
            String::from_utf8_lossy(&checked.stderr)
        );
        let mut cmd = Command::new(nginx);
        args(&mut cmd);
        use command_fds::{CommandFdExt as _, FdMapping};
        cmd.fd_mappings(vec![FdMapping {
            parent_fd: listener.into(),
            child_fd: 3,
        }])
        .unwrap();
        let child = cmd
            .env("NGINX", "3;")
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        Gateway {
            addr,
            tls,
            ca_file,
            _nginx: Group(child),
            dir,
        }
    }

    /// `https://127.0.0.1:PORT{path}`.
    pub fn https(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    /// `wss://127.0.0.1:PORT{path}`.
    pub fn wss(&self, path: &str) -> String {
        format!("wss://{}{path}", self.addr)
    }

    /// nginx's error log so far, for a failing test's message.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

/// coturn running `deploy/coturn/turnserver.conf` on `127.0.0.1:port`
/// (UDP), relaying on `127.0.0.1`, with a fresh REST-API secret.
#[derive(Debug)]
pub struct Turn {
    /// Its UDP port.
    pub port: u16,
    /// The shared secret (what webexec-server's `--turn-secret` takes).
    pub secret: String,
    _turnserver: Group,
    dir: Scratch,
}

impl Turn {
    /// Starts `turnserver` and waits until it answers a STUN binding
    /// request.
    ///
    /// coturn cannot inherit its socket, so the port is one the system
    /// just gave a socket of this process, closed before coturn binds it.
    pub async fn start(turnserver: &Path) -> Turn {
        let dir = Scratch::new("coturn");
        let d = dir.path();
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let secret = server_kit::AccessToken::generate()
            .unwrap()
            .expose()
            .to_owned();
        let conf = std::fs::read_to_string(deploy_dir().join("coturn/turnserver.conf")).unwrap();
        let conf = render(
            &conf,
            &[
                ("listening-port=3478", format!("listening-port={port}")),
                (
                    "static-auth-secret=CHANGE-ME-to-the-same-secret-as-webexec-server",
                    format!("static-auth-secret={secret}"),
                ),
            ],
        );
        std::fs::write(d.join("turnserver.conf"), conf).unwrap();
        let child = Command::new(turnserver)
            .arg("-c")
            .arg(d.join("turnserver.conf"))
            // Loopback only: the relay, its listener and its peers.
            .args([
                "--listening-ip=127.0.0.1",
                "--relay-ip=127.0.0.1",
                "--allow-loopback-peers",
                "--no-cli",
                // Only the UDP port was found free.
                "--no-tcp",
            ])
            .arg(format!("--pidfile={}", d.join("turnserver.pid").display()))
            .arg(format!("--userdb={}", d.join("turndb").display()))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(d.join("turnserver.log")).unwrap())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let turn = Turn {
            port,
            secret,
            _turnserver: Group(child),
            dir,
        };
        turn.answers_stun().await;
        turn
    }

    /// `turn:127.0.0.1:PORT?transport=udp`.
    pub fn url(&self) -> String {
        format!("turn:127.0.0.1:{}?transport=udp", self.port)
    }

    /// Sends STUN binding requests (RFC 8489), again every 50 ms as a STUN
    /// client retransmits, until one is answered; fails after 10 s.
    async fn answers_stun(&self) {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.connect(("127.0.0.1", self.port)).await.unwrap();
        // Binding request, no attributes, the magic cookie, a transaction id.
        let mut request = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
        request.extend_from_slice(b"execwire-tst");
        let mut reply = [0u8; 512];
        // Until coturn binds, the system answers "port unreachable" at
        // once: retransmit on the STUN client's schedule all the same.
        let mut rounds = tokio::time::interval(Duration::from_millis(50));
        for _ in 0..200 {
            rounds.tick().await;
            let _ = socket.send(&request).await;
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(50), socket.recv(&mut reply)).await
                && n >= 20
                && reply[..2] == [0x01, 0x01]
                && reply[8..20] == request[8..20]
            {
                return;
            }
        }
        let log = std::fs::read_to_string(self.dir.path().join("turnserver.log"));
        panic!(
            "coturn never answered on 127.0.0.1:{}; it said:\n{}",
            self.port,
            log.unwrap_or_default()
        );
    }
}
