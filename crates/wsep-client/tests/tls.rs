//! The `wsep` command against a real server over `wss://`: trusting a CA
//! file, or the certificate's fingerprint, and refusing otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use server_kit::{AccessToken, CommonConfig as _, Tls};

struct Secure {
    url: String,
    token: String,
    ca: PathBuf,
    fingerprint: String,
}

/// A wsep server with TLS from PEM files (made here, as an operator's
/// would be) on its own runtime thread.
fn server(name: &str) -> Secure {
    let dir = std::env::temp_dir().join(format!("wsep-tls-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let (ca, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&ca, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let tls = Tls::from_pem_files(&ca, &key).unwrap();
    let fingerprint = tls.fingerprint().to_owned();
    let token = AccessToken::generate().unwrap();
    let exposed = token.expose().to_owned();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let config = wsep_server::Config::default()
                .with_token(Some(token))
                .with_tls(tls);
            wsep_server::serve(listener, config, std::future::pending())
                .await
                .unwrap();
        });
    });
    Secure {
        url: format!("wss://{addr}/"),
        token: exposed,
        ca,
        fingerprint,
    }
}

fn wsep(server: &Secure, trust: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wsep"))
        .arg(&server.url)
        .args(trust)
        .args(["--", "echo", "secure"])
        .env("WSEP_TOKEN", &server.token)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn trusts_a_ca_file() {
    let server = server("ca");
    let out = wsep(&server, &["--ca", server.ca.to_str().unwrap()]);
    assert_eq!(out.stdout, b"secure\n", "{out:?}");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn trusts_a_fingerprint_with_or_without_colons() {
    let server = server("fingerprint");
    let out = wsep(&server, &["--fingerprint", &server.fingerprint]);
    assert_eq!(out.stdout, b"secure\n", "{out:?}");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let bare = server.fingerprint.replace(':', "").to_lowercase();
    let out = wsep(&server, &["--fingerprint", &bare]);
    assert_eq!(out.stdout, b"secure\n", "{out:?}");
}

#[test]
fn refuses_an_untrusted_certificate() {
    let server = server("untrusted");
    // The system's roots do not know a self-signed certificate.
    let out = wsep(&server, &[]);
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    assert!(out.stdout.is_empty());
    let wrong = "00".repeat(32);
    let out = wsep(&server, &["--fingerprint", &wrong]);
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fingerprint"), "{err}");
}
