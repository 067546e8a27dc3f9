//! A pow-1 server with a process written in Rust beside the configured ones.
//!
//! `upper` upper-cases its input line by line, counts the lines, and
//! fulfils with the count; it refuses any parameters, and stops early when
//! the client cancels or leaves.
//!
//! `cargo run -p execwire-examples --bin pow-custom-process` then call
//! `upper` from any pow-1 client (token printed; port 3001).

use std::sync::Arc;

use async_trait::async_trait;
use pow_server::{GetError, Io, PowProcess};
use serde_json::{Value, json};
use server_kit::CommonConfig as _;

struct Upper;

#[async_trait]
impl PowProcess for Upper {
    async fn run(self: Box<Self>, mut io: Io) -> Result<Value, String> {
        let mut lines = 0u64;
        loop {
            tokio::select! {
                chunk = io.input.recv() => {
                    let Some(chunk) = chunk else { break };
                    lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
                    let upper = chunk.to_ascii_uppercase();
                    io.output.write(upper).await.map_err(|e| e.to_string())?;
                }
                () = io.cancel.cancelled() => {
                    return Err(format!("stopped: {:?}", io.cancel.cause()));
                }
            }
        }
        Ok(json!({ "lines": lines }))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Start from the operator's set and add ours.
    let mut registry = pow_server::registry_from_toml(pow_server::DEFAULT_CONFIG)?;
    registry.register("upper", |params| {
        if params.is_empty() {
            Ok(Box::new(Upper))
        } else {
            Err(GetError::InvalidParams("upper takes no parameters".into()))
        }
    });
    let token = exec_token()?;
    println!("token: {}", token.expose());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    println!("pow-1 on ws://{}/ with `upper`", listener.local_addr()?);
    let config = pow_server::Config::default().with_token(Some(token));
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    pow_server::serve(listener, config, Arc::new(registry), shutdown).await?;
    Ok(())
}

fn exec_token() -> anyhow::Result<server_kit::AccessToken> {
    Ok(server_kit::AccessToken::generate()?)
}
