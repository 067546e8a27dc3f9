//! webexec sessions for the reliability benchmark: the `webrtc` crate as
//! the peer (the tests' client), over loopback UDP.
//!
//! A pane outlives its peers by design (a reconnect finds it), so every
//! command the soak starts ends by itself: a disconnect leaves a pane
//! running until its command ends, never for ever.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use execwire_tests::webexec::{Client, ClientChannel, Msg, Signaling};
use serde_json::json;

use crate::{End, NORMAL_LINES, Streaming, TOKEN, Target};

/// Nothing from a channel in this long is a failure.
const SILENCE: Duration = Duration::from_secs(20);

async fn client(addr: &str, token: &str) -> anyhow::Result<Client> {
    let addr: SocketAddr = addr.parse()?;
    Client::connect(addr, Some(token), &Signaling::Offer)
        .await
        .map_err(|e| anyhow::anyhow!("connect: {e:?}"))
}

async fn recv(ch: &ClientChannel) -> anyhow::Result<Option<Msg>> {
    tokio::time::timeout(SILENCE, ch.recv_forever())
        .await
        .context("the channel went silent")
}

/// Opens a pane channel and reads its id.
async fn pane(client: &Client, label: &str) -> anyhow::Result<(ClientChannel, String)> {
    let ch = client
        .try_open(label)
        .await
        .context("channel closed before it opened")?;
    match recv(&ch).await? {
        Some(Msg::Binary(id)) => Ok((ch, String::from_utf8_lossy(&id).into_owned())),
        other => bail!("expected the pane id, got {other:?}"),
    }
}

fn label(pty: bool, argv: &str) -> String {
    if pty {
        format!("24x80,{argv}")
    } else {
        argv.to_owned()
    }
}

async fn first_output(ch: &ClientChannel) -> anyhow::Result<()> {
    loop {
        match recv(ch).await? {
            Some(m) if !m.bytes().is_empty() => return Ok(()),
            Some(_) => {}
            None => bail!("closed before any output"),
        }
    }
}

fn http() -> anyhow::Result<reqwest::Client> {
    execwire_tests::tls::install_provider();
    Ok(reqwest::Client::builder().build()?)
}

pub(crate) async fn cycle(t: &Target, end: End, pty: bool, n: u64) -> anyhow::Result<()> {
    let addr = t.addr.as_str();
    match end {
        End::Normal => {
            let client = client(addr, TOKEN).await?;
            let (ch, _) = pane(&client, &label(pty, &format!("seq,1,{NORMAL_LINES}"))).await?;
            let mut got = Vec::new();
            while let Some(m) = recv(&ch).await? {
                got.extend_from_slice(m.bytes());
            }
            client.close().await;
            let expected = t.expected.get(usize::from(pty)).context("expected")?;
            if &got != expected {
                bail!("got {} bytes of {}", got.len(), expected.len());
            }
            Ok(())
        }
        End::MidOutput => {
            let client = client(addr, TOKEN).await?;
            let (ch, _) = pane(&client, &label(pty, "seq,1,200000")).await?;
            first_output(&ch).await?;
            client.close().await;
            Ok(())
        }
        End::MidInput => {
            let client = client(addr, TOKEN).await?;
            let (ch, _) = pane(&client, &label(pty, "timeout,2,cat")).await?;
            for _ in 0..4 {
                ch.send(&[b'x'; 4096]).await;
            }
            client.close().await;
            Ok(())
        }
        End::Kill9 => crate::kill_when_streaming(t.client_process(pty, None)).await,
        End::Malformed => {
            let mut client = client(addr, TOKEN).await?;
            let reply = if n.is_multiple_of(2) {
                client
                    .control
                    .raw(r#"{"time":1,"message_id":3,"type":"#)
                    .await
            } else {
                client
                    .control
                    .request("resize", json!({"pane_id": "one", "sx": "wide"}))
                    .await
            };
            client.close().await;
            if reply.get("type").and_then(|t| t.as_str()) != Some("nack") {
                bail!("answered {reply}");
            }
            Ok(())
        }
        End::Oversized => {
            // Signaling bodies are limited to 64 KiB.
            let status = http()?
                .post(format!("http://{addr}/offer"))
                .bearer_auth(TOKEN)
                .header("content-type", "application/sdp")
                .body(format!("v=0\r\n{}", "a=x\r\n".repeat(40_000)))
                .send()
                .await?
                .status();
            if status != 413 {
                bail!("answered {status}, not 413");
            }
            Ok(())
        }
        End::WrongToken => {
            let status = http()?
                .post(format!("http://{addr}/offer"))
                .bearer_auth("wrong-token")
                .header("content-type", "application/sdp")
                .body("v=0\r\n")
                .send()
                .await?
                .status();
            if status != 401 {
                bail!("answered {status}, not 401");
            }
            Ok(())
        }
    }
}

/// The `client` mode for webexec: a pane with a long (but finite) output,
/// or pane `attach`; `streaming` at its first output, then read on.
pub(crate) async fn stream_client(
    addr: &str,
    token: &str,
    pty: bool,
    attach: Option<&str>,
) -> anyhow::Result<()> {
    let client = client(addr, token).await?;
    let label = match attach {
        Some(id) => format!(">{id}"),
        None => label(pty, "seq,1,1000000"),
    };
    let (ch, _) = pane(&client, &label).await?;
    first_output(&ch).await?;
    crate::say_streaming();
    while ch.recv_forever().await.is_some() {}
    client.close().await;
    Ok(())
}

/// Panes per peer in the load.
pub(crate) const LOAD_PANES: usize = 10;

/// One peer with [`LOAD_PANES`] panes.
pub(crate) async fn open_load(
    t: &Target,
    lines: u64,
    expected: Arc<Vec<u8>>,
) -> anyhow::Result<Vec<Streaming>> {
    let label = format!("sh,-c,read x; exec seq 1 {lines}");
    let client = Arc::new(client(&t.addr, TOKEN).await?);
    let mut streams: Vec<Streaming> = Vec::with_capacity(LOAD_PANES);
    for _ in 0..LOAD_PANES {
        let ch = client.try_open(&label).await;
        let ch = ch.context("a pane channel closed before it opened")?;
        match recv(&ch).await? {
            Some(Msg::Binary(_)) => {}
            other => bail!("expected the pane id, got {other:?}"),
        }
        let (client, expected) = (client.clone(), expected.clone());
        streams.push(Box::pin(async move {
            let _peer = client;
            ch.send(b"go\n").await;
            let mut got = Vec::with_capacity(expected.len());
            while let Some(m) = recv(&ch).await? {
                got.extend_from_slice(m.bytes());
            }
            if got != *expected {
                bail!("got {} bytes of {}", got.len(), expected.len());
            }
            Ok(got.len() as u64)
        }));
    }
    Ok(streams)
}

pub(crate) async fn slow(t: &Target, echoes: usize, stall_secs: u64) -> anyhow::Result<()> {
    let a = client(&t.addr, TOKEN).await?;
    let (ch, id) = pane(&a, &format!("24x80,sh,-c,{}", crate::SHARED_PANE)).await?;
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("ready") {
        match recv(&ch).await? {
            Some(m) => seen.extend_from_slice(m.bytes()),
            None => bail!("the pane ended"),
        }
    }
    let id = id.split(',').next().unwrap_or_default().to_owned();
    let mut b = crate::spawn_streaming(t.client_process(true, Some(&id))).await?;
    let ch = &ch;
    crate::slow_phases(t, &mut b, stall_secs, echoes, move |n| async move {
        let mut rtts = Vec::with_capacity(n);
        for i in 0..n {
            let byte = b'a' + (i % 26) as u8;
            let t0 = Instant::now();
            ch.send(&[byte]).await;
            loop {
                match recv(ch).await? {
                    Some(m) if m.bytes().contains(&byte) => break,
                    Some(_) => continue,
                    None => bail!("the pane ended"),
                }
            }
            rtts.push(t0.elapsed().as_secs_f64() * 1000.0);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        rtts.sort_by(f64::total_cmp);
        Ok(rtts)
    })
    .await?;
    // The pane outlives its peers; the server ends it when it stops.
    a.close().await;
    Ok(())
}

pub(crate) async fn nonl(t: &Target, bytes: u64) -> anyhow::Result<u64> {
    let client = client(&t.addr, TOKEN).await?;
    let (ch, _) = pane(&client, &format!("sh,-c,{}", crate::no_newline_line(bytes))).await?;
    let mut got = 0;
    while let Some(m) = recv(&ch).await? {
        crate::count_x(&mut got, m.bytes())?;
    }
    client.close().await;
    Ok(got)
}
