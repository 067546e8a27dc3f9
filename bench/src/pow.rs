//! What the pow-1 figures share (pow-bench, execwire-bench): a WebSocket
//! client of the protocol, output timed and checked, keystroke echoes.

use std::time::Instant;

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use pow_proto::{Call, Outcome, Signal};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use crate::{Run, Server, cpu_seconds};

/// A pow-1 WebSocket.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a pow-1 WebSocket at `url` (`ws://ADDR/` for pow-server,
/// `ws://ADDR/pow/` for the daemon) with `token` as a bearer header.
pub async fn connect(url: &str, token: &str) -> anyhow::Result<Ws> {
    let mut request = url.into_client_request()?;
    let headers = request.headers_mut();
    headers.insert("authorization", format!("Bearer {token}").parse()?);
    headers.insert("sec-websocket-protocol", "pow-1".parse()?);
    let (ws, _) = tokio_tungstenite::connect_async(request).await?;
    Ok(ws)
}

/// The message that calls process `name` without parameters.
pub fn call(name: &str) -> Message {
    let call = Call {
        call: name.into(),
        params: Vec::new(),
    };
    Message::Binary(call.encode().into())
}

/// Calls `name` (a process printing `expected`, its input closed at once)
/// over a WebSocket: every byte of output received and compared, then the
/// result. CPU time is this process's and the server's (with its child).
pub async fn time_output(
    server: &Server,
    url: &str,
    token: &str,
    name: &str,
    expected: &[u8],
) -> anyhow::Result<Run> {
    let cpu = cpu_seconds("self")? + server.cpu()?;
    let start = Instant::now();
    let mut ws = connect(url, token).await?;
    ws.send(call(name)).await?;
    ws.send(Message::Binary(Signal::Close.encode().into()))
        .await?;
    let mut received = 0;
    let mut intact = true;
    let outcome = loop {
        match ws
            .next()
            .await
            .context("connection ended before the result")??
        {
            Message::Text(text) => {
                let end = received + text.len();
                intact &= expected.get(received..end) == Some(text.as_bytes());
                received = end;
            }
            Message::Binary(frame) => break Outcome::decode(&frame)?,
            _ => {}
        }
    };
    let wall = start.elapsed().as_secs_f64();
    let _ = ws.close(None).await;
    if received != expected.len() || !intact || !matches!(outcome, Outcome::Fulfilled { .. }) {
        bail!(
            "{name} over pow-1: {received} of {} bytes (intact: {intact}), {outcome:?}",
            expected.len()
        );
    }
    // The server reaps the process just before it sends the result.
    let cpu = cpu_seconds("self")? + server.cpu()? - cpu;
    Ok(Run { wall, cpu })
}

/// Round trips of one short line through process `name` (a `cat` on
/// pipes: pow-1 has no terminal), input as text frames, in ms, sorted.
pub async fn echoes(url: &str, token: &str, name: &str, n: usize) -> anyhow::Result<Vec<f64>> {
    let mut ws = connect(url, token).await?;
    ws.send(call(name)).await?;
    let mut rtts = Vec::with_capacity(n);
    for i in 0..n {
        let line = format!("{}\n", i % 10);
        let t = Instant::now();
        ws.send(Message::text(line.clone())).await?;
        let mut seen = String::new();
        while !seen.contains(&line) {
            match ws.next().await.context("echo session ended")?? {
                Message::Text(text) => seen.push_str(&text),
                Message::Binary(frame) => bail!("echo ended: {:?}", Outcome::decode(&frame)),
                _ => {}
            }
        }
        rtts.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ws.send(Message::Binary(Signal::Close.encode().into()))
        .await?;
    let _ = ws.close(None).await;
    rtts.sort_by(f64::total_cmp);
    Ok(rtts)
}
