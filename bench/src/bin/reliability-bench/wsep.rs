//! wsep sessions for the reliability benchmark: the client library, raw
//! WebSockets for what the library never sends, and the `wsep` command as
//! the client process that is killed.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use wsep_client::{Error, Output, Outputs};
use wsep_proto::StartCommand;

use crate::{End, NORMAL_LINES, Streaming, TOKEN, Target};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn command(program: &str, args: &[&str], pty: bool, id: String) -> StartCommand {
    StartCommand {
        command: program.into(),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        tty: pty,
        rows: 24,
        cols: 80,
        id,
        ..StartCommand::default()
    }
}

/// A terminal session of the soak is named (so it outlives its client
/// until the server's idle timeout) when it is not meant to end at once.
fn name(pty: bool, n: u64) -> String {
    if pty {
        format!("soak-{n}")
    } else {
        String::new()
    }
}

async fn raw(url: &str, token: &str) -> anyhow::Result<Ws> {
    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    Ok(tokio_tungstenite::connect_async(request).await?.0)
}

/// The server's close code, reading past anything else.
async fn close_code(ws: &mut Ws) -> anyhow::Result<u16> {
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(Message::Close(Some(frame))) => return Ok(frame.code.into()),
            Ok(Message::Close(None)) => return Ok(1005),
            Ok(_) => continue,
            Err(e) => bail!("connection failed before a close frame: {e}"),
        }
    }
    bail!("connection ended without a close frame")
}

/// Waits for the first output.
async fn first_output(out: &mut Outputs) -> anyhow::Result<()> {
    loop {
        match out.next().await? {
            Some(Output::Stdout(b) | Output::Stderr(b)) if !b.is_empty() => return Ok(()),
            Some(Output::Exit { .. }) | None => bail!("ended before any output"),
            Some(_) => {}
        }
    }
}

fn start_frame(start: &StartCommand) -> Message {
    Message::Binary(
        wsep_proto::ClientMsg::Start(wsep_client::explicit(start.clone()))
            .encode()
            .into(),
    )
}

pub(crate) async fn cycle(t: &Target, end: End, pty: bool, n: u64) -> anyhow::Result<()> {
    let url = t.addr.as_str();
    match end {
        End::Normal => {
            let lines = NORMAL_LINES.to_string();
            let start = command("seq", &["1", &lines], pty, String::new());
            let (mut input, mut out) = wsep_client::start(url, Some(TOKEN), start).await?;
            if !pty {
                input.close_stdin().await?;
            }
            let mut got = Vec::new();
            let mut code = None;
            while let Some(o) = out.next().await? {
                match o {
                    Output::Stdout(b) | Output::Stderr(b) => got.extend_from_slice(&b),
                    Output::Exit { code: c, .. } => code = Some(c),
                }
            }
            let expected = t.expected.get(usize::from(pty)).context("expected")?;
            if &got != expected || code != Some(0) {
                bail!(
                    "got {} bytes of {}, exit {code:?}",
                    got.len(),
                    expected.len()
                );
            }
            Ok(())
        }
        End::MidOutput => {
            let start = command("seq", &["1", "2000000"], pty, name(pty, n));
            let (input, mut out) = wsep_client::start(url, Some(TOKEN), start).await?;
            first_output(&mut out).await?;
            drop((input, out));
            Ok(())
        }
        End::MidInput => {
            let start = command("cat", &[], pty, name(pty, n));
            let (mut input, out) = wsep_client::start(url, Some(TOKEN), start).await?;
            for _ in 0..4 {
                input.write(&[b'x'; 4096]).await?;
            }
            drop((input, out));
            Ok(())
        }
        End::Kill9 => {
            let cli = t.wsep_cli.as_ref().context("no wsep command")?;
            let mut cmd = tokio::process::Command::new(cli);
            cmd.arg(url).env("WSEP_TOKEN", TOKEN);
            if pty {
                cmd.arg("--tty");
            }
            cmd.args(["--", "sh", "-c", "echo streaming; exec seq 1 100000000"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true);
            crate::kill_when_streaming(cmd).await
        }
        End::Malformed => {
            let mut ws = raw(url, TOKEN).await?;
            let start = command("cat", &[], pty, String::new());
            ws.send(start_frame(&start)).await?;
            let bad: &[u8] = if n.is_multiple_of(2) {
                b"{\"type\":\"resize\",\"rows\":\"tall\""
            } else {
                b"{\"type\":7}"
            };
            ws.send(Message::Binary(bad.to_vec().into())).await?;
            let code = close_code(&mut ws).await?;
            if code != 1008 {
                bail!("closed with {code}, not 1008");
            }
            Ok(())
        }
        End::Oversized => {
            let mut ws = raw(url, TOKEN).await?;
            let start = command("cat", &[], pty, String::new());
            ws.send(start_frame(&start)).await?;
            let mut huge = b"{\"type\":\"stdin\"}\n".to_vec();
            huge.resize(100_000, b'x');
            // The server may close before it read it all.
            let _ = ws.send(Message::Binary(huge.into())).await;
            match close_code(&mut ws).await {
                Ok(1009) => Ok(()),
                Ok(code) => bail!("closed with {code}, not 1009"),
                Err(e) => bail!("{e}"),
            }
        }
        End::WrongToken => {
            let start = command("echo", &["never"], pty, String::new());
            match wsep_client::start(url, Some("wrong-token"), start).await {
                Err(Error::Unauthorized) => Ok(()),
                Err(e) => bail!("refused as {e}, not 401"),
                Ok(_) => bail!("a wrong token was accepted"),
            }
        }
    }
}

/// The `client` mode for wsep: start a long output (or attach to session
/// `attach`), say `streaming` at the first output, read on.
pub(crate) async fn stream_client(
    url: &str,
    token: &str,
    pty: bool,
    attach: Option<&str>,
) -> anyhow::Result<()> {
    let start = match attach {
        Some(id) => command("true", &[], true, id.to_owned()),
        None => command("seq", &["1", "100000000"], pty, String::new()),
    };
    let (_input, mut out) = wsep_client::start(url, Some(token), start).await?;
    first_output(&mut out).await?;
    crate::say_streaming();
    while out.next().await?.is_some() {}
    Ok(())
}

pub(crate) async fn open_load(
    t: &Target,
    lines: u64,
    expected: Arc<Vec<u8>>,
) -> anyhow::Result<Vec<Streaming>> {
    let script = format!("read x; exec seq 1 {lines}");
    let start = command("sh", &["-c", &script], false, String::new());
    let (mut input, mut out) = wsep_client::start(&t.addr, Some(TOKEN), start).await?;
    Ok(vec![Box::pin(async move {
        input.write(b"go\n").await?;
        input.close_stdin().await?;
        let mut got = Vec::with_capacity(expected.len());
        let mut code = None;
        while let Some(o) = out.next().await? {
            match o {
                Output::Stdout(b) | Output::Stderr(b) => got.extend_from_slice(&b),
                Output::Exit { code: c, .. } => code = Some(c),
            }
        }
        if got != *expected || code != Some(0) {
            bail!(
                "got {} bytes of {}, exit {code:?}",
                got.len(),
                expected.len()
            );
        }
        Ok(got.len() as u64)
    })])
}

/// Waits for `needle` in the output.
async fn read_until(out: &mut Outputs, needle: &[u8]) -> anyhow::Result<()> {
    let mut seen = Vec::new();
    loop {
        match out.next().await? {
            Some(Output::Stdout(b)) => {
                if b.windows(needle.len()).any(|w| w == needle) || {
                    seen.extend_from_slice(&b);
                    seen.windows(needle.len()).any(|w| w == needle)
                } {
                    return Ok(());
                }
                let keep = seen.len().saturating_sub(needle.len());
                seen.drain(..keep);
            }
            other => bail!("session ended: {other:?}"),
        }
    }
}

pub(crate) async fn slow(t: &Target, echoes: usize, stall_secs: u64) -> anyhow::Result<()> {
    let id = "shared-pane";
    let start = command("sh", &["-c", crate::SHARED_PANE], true, id.to_owned());
    let (input, mut out) = wsep_client::start(&t.addr, Some(TOKEN), start).await?;
    read_until(&mut out, b"ready").await?;
    let mut b = crate::spawn_streaming(t.client_process(true, Some(id))).await?;
    let (out, input) = (tokio::sync::Mutex::new(out), tokio::sync::Mutex::new(input));
    let (out, input) = (&out, &input);
    crate::slow_phases(t, &mut b, stall_secs, echoes, move |n| async move {
        let mut out = out.lock().await;
        let mut input = input.lock().await;
        let mut rtts = Vec::with_capacity(n);
        for i in 0..n {
            let byte = b'a' + (i % 26) as u8;
            let t0 = Instant::now();
            input.write(&[byte]).await?;
            loop {
                match out.next().await? {
                    Some(Output::Stdout(b)) if b.contains(&byte) => break,
                    Some(_) => continue,
                    None => bail!("session ended"),
                }
            }
            rtts.push(t0.elapsed().as_secs_f64() * 1000.0);
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        rtts.sort_by(f64::total_cmp);
        Ok(rtts)
    })
    .await
}

pub(crate) async fn nonl(t: &Target, bytes: u64) -> anyhow::Result<u64> {
    let line = crate::no_newline_line(bytes);
    let start = command("sh", &["-c", &line], false, String::new());
    let (mut input, mut out) = wsep_client::start(&t.addr, Some(TOKEN), start).await?;
    input.close_stdin().await?;
    let mut got = 0;
    while let Some(o) = out.next().await? {
        match o {
            Output::Stdout(b) => crate::count_x(&mut got, &b)?,
            Output::Stderr(b) => bail!("stderr: {}", String::from_utf8_lossy(&b)),
            Output::Exit { code, .. } if code != 0 => bail!("exit {code}"),
            Output::Exit { .. } => {}
        }
    }
    Ok(got)
}
