//! Web-Terminal v3 sessions for the reliability benchmark.

// Indexing a `serde_json::Value` yields `Null` for what is missing; it never panics.
#![allow(clippy::indexing_slicing)]

use std::sync::Arc;

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::{End, NORMAL_LINES, Streaming, TOKEN, Target};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next(ws: &mut Ws) -> anyhow::Result<Value> {
    loop {
        match ws.next().await.context("connection closed")?? {
            Message::Text(t) => return Ok(serde_json::from_str(&t)?),
            Message::Close(f) => bail!("connection closed: {f:?}"),
            _ => {}
        }
    }
}

async fn connect(url: &str, token: &str) -> anyhow::Result<(Ws, Value)> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    ws.send(Message::text(
        json!({"type":"authentication","payload":{"token":token}}).to_string(),
    ))
    .await?;
    let reply = next(&mut ws).await?;
    Ok((ws, reply))
}

async fn authed(url: &str) -> anyhow::Result<Ws> {
    let (ws, reply) = connect(url, TOKEN).await?;
    if reply["payload"]["result"] != "ok" {
        bail!("authentication failed: {reply}");
    }
    Ok(ws)
}

/// Starts `line`; returns its serverId.
async fn command(ws: &mut Ws, line: &str) -> anyhow::Result<u64> {
    ws.send(Message::text(
        json!({"type":"command","payload":{"command":line,"clientId":1}}).to_string(),
    ))
    .await?;
    let ack = next(ws).await?;
    if ack["payload"]["result"] != "ok" {
        bail!("command refused: {ack}");
    }
    ack["payload"]["serverId"].as_u64().context("no serverId")
}

/// stdout until the command completes, and its exit code.
async fn finish(ws: &mut Ws) -> anyhow::Result<(Vec<u8>, Option<i64>)> {
    let mut out = Vec::new();
    loop {
        let msg = next(ws).await?;
        let p = &msg["payload"];
        if let Some(s) = p["output"]["stdout"].as_str() {
            out.extend_from_slice(s.as_bytes());
        }
        if p["status"] == "completed" {
            return Ok((out, p["exitCode"].as_i64()));
        }
    }
}

async fn first_output(ws: &mut Ws) -> anyhow::Result<()> {
    loop {
        let msg = next(ws).await?;
        if msg["payload"]["output"]["stdout"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
        {
            return Ok(());
        }
        if msg["payload"]["status"] == "completed" {
            bail!("completed before any output");
        }
    }
}

pub(crate) async fn cycle(t: &Target, end: End, n: u64) -> anyhow::Result<()> {
    let url = t.addr.as_str();
    match end {
        End::Normal => {
            let mut ws = authed(url).await?;
            command(&mut ws, &format!("seq 1 {NORMAL_LINES}")).await?;
            let (out, code) = finish(&mut ws).await?;
            let expected = t.expected.first().context("expected")?;
            if &out != expected || code != Some(0) {
                bail!(
                    "got {} bytes of {}, exit {code:?}",
                    out.len(),
                    expected.len()
                );
            }
            let _ = ws.close(None).await;
            Ok(())
        }
        End::MidOutput => {
            let mut ws = authed(url).await?;
            command(&mut ws, "seq 1 2000000").await?;
            first_output(&mut ws).await?;
            drop(ws);
            Ok(())
        }
        End::MidInput => {
            let mut ws = authed(url).await?;
            let id = command(&mut ws, "cat").await?;
            for _ in 0..4 {
                let input = "x".repeat(4096);
                ws.send(Message::text(
                    json!({"type":"update","payload":{"type":"stdin","serverId":id,"input":input}})
                        .to_string(),
                ))
                .await?;
            }
            drop(ws);
            Ok(())
        }
        End::Kill9 => crate::kill_when_streaming(t.client_process(false, None)).await,
        End::Malformed => {
            let mut ws = authed(url).await?;
            command(&mut ws, "cat").await?;
            let bad = if n.is_multiple_of(2) {
                r#"{"type":"command","payload":{"command":"#
            } else {
                r#"{"type":"command","payload":{"command":42,"clientId":1}}"#
            };
            ws.send(Message::text(bad)).await?;
            let reply = next(&mut ws).await?;
            if reply["payload"]["result"] != "error" {
                bail!("answered {reply}");
            }
            drop(ws);
            Ok(())
        }
        End::Oversized => {
            let mut ws = authed(url).await?;
            crate::oversized_ends_the_connection(&mut ws).await
        }
        End::WrongToken => {
            let (_ws, reply) = connect(url, "wrong-token").await?;
            if reply["type"] != "authentication" || reply["payload"]["result"] != "error" {
                bail!("answered {reply}");
            }
            Ok(())
        }
    }
}

/// The `client` mode for webterm: a long output, `streaming` at its first
/// update, then read on.
pub(crate) async fn stream_client(url: &str, token: &str) -> anyhow::Result<()> {
    let (mut ws, reply) = connect(url, token).await?;
    if reply["payload"]["result"] != "ok" {
        bail!("authentication failed: {reply}");
    }
    command(&mut ws, "seq 1 100000000").await?;
    first_output(&mut ws).await?;
    crate::say_streaming();
    while let Some(Ok(_)) = ws.next().await {}
    Ok(())
}

pub(crate) async fn open_load(
    t: &Target,
    lines: u64,
    expected: Arc<Vec<u8>>,
) -> anyhow::Result<Vec<Streaming>> {
    let mut ws = authed(&t.addr).await?;
    let id = command(&mut ws, &format!("read x; exec seq 1 {lines}")).await?;
    Ok(vec![Box::pin(async move {
        ws.send(Message::text(
            json!({"type":"update","payload":{"type":"stdin","serverId":id,"input":"go\n","eof":true}})
                .to_string(),
        ))
        .await?;
        let (out, code) = finish(&mut ws).await?;
        if out != *expected || code != Some(0) {
            bail!(
                "got {} bytes of {}, exit {code:?}",
                out.len(),
                expected.len()
            );
        }
        Ok(out.len() as u64)
    })])
}

pub(crate) async fn nonl(t: &Target, bytes: u64) -> anyhow::Result<u64> {
    let mut ws = authed(&t.addr).await?;
    command(&mut ws, &crate::no_newline_line(bytes)).await?;
    let mut got = 0;
    loop {
        let msg = next(&mut ws).await?;
        let p = &msg["payload"];
        if let Some(s) = p["output"]["stdout"].as_str() {
            crate::count_x(&mut got, s.as_bytes())?;
        }
        if p["status"] == "completed" {
            return Ok(got);
        }
    }
}
