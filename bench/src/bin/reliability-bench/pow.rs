//! pow-1 sessions for the reliability benchmark, over WebSocket.

use std::sync::Arc;

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use pow_proto::{Call, Outcome};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use crate::{End, NORMAL_LINES, Streaming, TOKEN, Target};

/// The processes the benchmark calls (`--config`).
pub(crate) const CONFIG: &str = r#"
[process.seq]
argv = ["seq", "1", "{0}"]
params = 1

[process.cat]
argv = ["cat"]

[process.nonl]
argv = ["sh", "-c", "head -c \"$0\" /dev/zero | tr '\\0' x", "{0}"]
params = 1

[process.load]
argv = ["sh", "-c", "read x; exec seq 1 \"$0\"", "{0}"]
params = 1
"#;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: &str, token: &str) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut request = format!("ws://{addr}/").into_client_request()?;
    let headers = request.headers_mut();
    if let Ok(auth) = format!("Bearer {token}").parse() {
        headers.insert("authorization", auth);
    }
    headers.insert("sec-websocket-protocol", http_value("pow-1"));
    Ok(tokio_tungstenite::connect_async(request).await?.0)
}

fn http_value(s: &'static str) -> tokio_tungstenite::tungstenite::http::HeaderValue {
    tokio_tungstenite::tungstenite::http::HeaderValue::from_static(s)
}

fn call(name: &str, params: &[&str]) -> Message {
    let call = Call {
        call: name.into(),
        params: params.iter().map(|p| (*p).to_owned()).collect(),
    };
    Message::Binary(call.encode().into())
}

/// Output and result until the server's close (1000 with an empty reason).
async fn outcome(ws: &mut Ws) -> anyhow::Result<(Vec<u8>, Outcome)> {
    let mut text = Vec::new();
    let mut result = None;
    while let Some(msg) = ws.next().await {
        match msg? {
            Message::Text(t) => text.extend_from_slice(t.as_bytes()),
            Message::Binary(b) => result = Some(Outcome::decode(&b)?),
            Message::Close(frame) => {
                let code = frame.map(|f| u16::from(f.code)).unwrap_or(1005);
                if code != 1000 {
                    bail!("closed with {code}");
                }
                break;
            }
            _ => {}
        }
    }
    Ok((text, result.context("no result before the close")?))
}

async fn first_text(ws: &mut Ws) -> anyhow::Result<()> {
    loop {
        match ws.next().await.context("closed before output")?? {
            Message::Text(_) => return Ok(()),
            Message::Binary(b) => bail!("result before output: {:?}", Outcome::decode(&b)),
            _ => {}
        }
    }
}

pub(crate) async fn cycle(t: &Target, end: End, n: u64) -> anyhow::Result<()> {
    let addr = t.addr.as_str();
    match end {
        End::Normal => {
            let mut ws = connect(addr, TOKEN).await?;
            ws.send(call("seq", &[&NORMAL_LINES.to_string()])).await?;
            let (text, result) = outcome(&mut ws).await?;
            let expected = t.expected.first().context("expected")?;
            if &text != expected || !matches!(result, Outcome::Fulfilled { .. }) {
                bail!("got {} bytes of {}, {result:?}", text.len(), expected.len());
            }
            Ok(())
        }
        End::MidOutput => {
            let mut ws = connect(addr, TOKEN).await?;
            ws.send(call("seq", &["2000000"])).await?;
            first_text(&mut ws).await?;
            drop(ws);
            Ok(())
        }
        End::MidInput => {
            let mut ws = connect(addr, TOKEN).await?;
            ws.send(call("cat", &[])).await?;
            for _ in 0..4 {
                ws.send(Message::text("x".repeat(4096))).await?;
            }
            drop(ws);
            Ok(())
        }
        End::Kill9 => crate::kill_when_streaming(t.client_process(false, None)).await,
        End::Malformed => {
            let mut ws = connect(addr, TOKEN).await?;
            let bad: &[u8] = if n.is_multiple_of(2) {
                b"{\"call\":\"seq\",\"para"
            } else {
                b"{\"call\":\"seq\",\"params\":[2000]}"
            };
            ws.send(Message::Binary(bad.to_vec().into())).await?;
            match outcome(&mut ws).await? {
                (_, Outcome::Rejected { reason }) if reason.contains("protocol error") => Ok(()),
                (_, other) => bail!("answered {other:?}"),
            }
        }
        End::Oversized => {
            let mut ws = connect(addr, TOKEN).await?;
            ws.send(call("cat", &[])).await?;
            // The server may close before it read it all.
            let _ = ws.send(Message::text("x".repeat(2 << 20))).await;
            // pow answers a message it cannot read with a rejection that
            // says so, then closes; the reset the unread bytes cause may
            // cut either short, so an end without them counts too.
            loop {
                match ws.next().await {
                    Some(Ok(Message::Binary(b))) => match Outcome::decode(&b)? {
                        Outcome::Rejected { reason } if reason.contains("broke the protocol") => {
                            return Ok(());
                        }
                        other => bail!("answered {other:?}"),
                    },
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return Ok(()),
                    Some(Ok(_)) => continue,
                }
            }
        }
        End::WrongToken => match connect(addr, "wrong-token").await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 401 => Ok(()),
            Err(e) => bail!("refused as {e}, not 401"),
            Ok(_) => bail!("a wrong token was accepted"),
        },
    }
}

/// The `client` mode for pow: a long output, `streaming` at its first
/// frame, then read on.
pub(crate) async fn stream_client(addr: &str, token: &str) -> anyhow::Result<()> {
    let mut ws = connect(addr, token).await?;
    ws.send(call("seq", &["100000000"])).await?;
    first_text(&mut ws).await?;
    crate::say_streaming();
    while let Some(Ok(_)) = ws.next().await {}
    Ok(())
}

pub(crate) async fn open_load(
    t: &Target,
    lines: u64,
    expected: Arc<Vec<u8>>,
) -> anyhow::Result<Vec<Streaming>> {
    let mut ws = connect(&t.addr, TOKEN).await?;
    ws.send(call("load", &[&lines.to_string()])).await?;
    Ok(vec![Box::pin(async move {
        ws.send(Message::text("go\n")).await?;
        let (text, result) = outcome(&mut ws).await?;
        if text != *expected || !matches!(result, Outcome::Fulfilled { .. }) {
            bail!("got {} bytes of {}, {result:?}", text.len(), expected.len());
        }
        Ok(text.len() as u64)
    })])
}

pub(crate) async fn nonl(t: &Target, bytes: u64) -> anyhow::Result<u64> {
    let mut ws = connect(&t.addr, TOKEN).await?;
    ws.send(call("nonl", &[&bytes.to_string()])).await?;
    let mut got = 0;
    loop {
        match ws.next().await.context("closed before the result")?? {
            Message::Text(t) => crate::count_x(&mut got, t.as_bytes())?,
            Message::Binary(b) => match Outcome::decode(&b)? {
                Outcome::Fulfilled { .. } => return Ok(got),
                other => bail!("{other:?}"),
            },
            _ => {}
        }
    }
}
