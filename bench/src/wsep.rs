//! What the wsep figures share (wsep-bench, deploy-bench).

use std::time::{Duration, Instant};

use anyhow::bail;
use wsep_client::{Input, Output, Outputs, Trust};
use wsep_proto::StartCommand;

/// `cat` on a raw terminal over wsep, ready to echo keystrokes.
#[derive(Debug)]
pub struct Echo {
    input: Input,
    out: Outputs,
    sent: usize,
}

impl Echo {
    /// Starts the terminal at `url`, trusted as `trust` says, and waits
    /// until it echoes.
    pub async fn open(url: &str, token: &str, trust: &Trust) -> anyhow::Result<Echo> {
        let start = StartCommand {
            command: "sh".into(),
            args: vec!["-c".into(), "stty raw -echo; echo ready; exec cat".into()],
            tty: true,
            rows: 24,
            cols: 80,
            ..StartCommand::default()
        };
        let (input, mut out) = wsep_client::start_trusting(url, Some(token), start, trust).await?;
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).contains("ready") {
            match out.next().await? {
                Some(Output::Stdout(b)) => seen.extend_from_slice(&b),
                other => bail!("echo session ended early: {other:?}"),
            }
        }
        Ok(Echo {
            input,
            out,
            sent: 0,
        })
    }

    /// One keystroke's round trip, in ms.
    pub async fn round_trip(&mut self) -> anyhow::Result<f64> {
        let byte = b'a' + (self.sent % 26) as u8;
        self.sent += 1;
        let t = Instant::now();
        self.input.write(&[byte]).await?;
        loop {
            match self.out.next().await? {
                Some(Output::Stdout(b)) if b.contains(&byte) => break,
                Some(Output::Stdout(_)) => continue,
                other => bail!("echo session ended early: {other:?}"),
            }
        }
        Ok(t.elapsed().as_secs_f64() * 1000.0)
    }

    /// Ends the terminal.
    pub async fn close(mut self) -> anyhow::Result<()> {
        self.input.write(&[4]).await?; // ^D is a byte in raw mode: end with a close instead
        Ok(())
    }
}

/// Round trips of one byte through `cat` on a raw terminal, over wsep at
/// `url` trusted as `trust` says, `gap` apart; in ms, sorted.
pub async fn echoes(
    url: &str,
    token: &str,
    trust: &Trust,
    samples: usize,
    gap: Duration,
) -> anyhow::Result<Vec<f64>> {
    let mut echo = Echo::open(url, token, trust).await?;
    let mut rtts = Vec::with_capacity(samples);
    for _ in 0..samples {
        rtts.push(echo.round_trip().await?);
        if !gap.is_zero() {
            tokio::time::sleep(gap).await;
        }
    }
    echo.close().await?;
    rtts.sort_by(f64::total_cmp);
    Ok(rtts)
}

/// `cat FILE` without a terminal over wsep at `url`, every byte of its
/// stdout received and compared with `expected`, then its exit. CPU time
/// is this process's and the server's (with its `cat`).
pub async fn time_output(
    server: &crate::Server,
    url: &str,
    token: &str,
    file: &std::path::Path,
    expected: &[u8],
) -> anyhow::Result<crate::Run> {
    let cpu = crate::cpu_seconds("self")? + server.cpu()?;
    let start = Instant::now();
    let command = StartCommand {
        command: "cat".into(),
        args: vec![file.display().to_string()],
        stdin: Some(false),
        ..StartCommand::default()
    };
    let (_input, mut out) = wsep_client::start(url, Some(token), command).await?;
    let (mut received, mut intact) = (0, true);
    loop {
        match out.next().await? {
            Some(Output::Stdout(b)) => {
                let end = received + b.len();
                intact &= expected.get(received..end) == Some(b.as_ref());
                received = end;
            }
            Some(Output::Exit { code: 0, .. }) => break,
            other => bail!("cat over wsep ended with {other:?}"),
        }
    }
    let wall = start.elapsed().as_secs_f64();
    if received != expected.len() || !intact {
        bail!(
            "cat over wsep: {received} of {} bytes (intact: {intact})",
            expected.len()
        );
    }
    let cpu = crate::cpu_seconds("self")? + server.cpu()? - cpu;
    Ok(crate::Run { wall, cpu })
}
