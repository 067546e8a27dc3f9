//! What the wsep figures share (wsep-bench, deploy-bench).

use std::time::{Duration, Instant};

use anyhow::bail;
use wsep_client::{Output, Trust};
use wsep_proto::StartCommand;

/// Round trips of one byte through `cat` on a raw terminal, over wsep at
/// `url` trusted as `trust` says, `gap` apart; in ms, sorted.
pub async fn echoes(
    url: &str,
    token: &str,
    trust: &Trust,
    samples: usize,
    gap: Duration,
) -> anyhow::Result<Vec<f64>> {
    let start = StartCommand {
        command: "sh".into(),
        args: vec!["-c".into(), "stty raw -echo; echo ready; exec cat".into()],
        tty: true,
        rows: 24,
        cols: 80,
        ..StartCommand::default()
    };
    let (mut input, mut out) = wsep_client::start_trusting(url, Some(token), start, trust).await?;
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("ready") {
        match out.next().await? {
            Some(Output::Stdout(b)) => seen.extend_from_slice(&b),
            other => bail!("echo session ended early: {other:?}"),
        }
    }
    let mut rtts = Vec::with_capacity(samples);
    for i in 0..samples {
        let byte = b'a' + (i % 26) as u8;
        let t = Instant::now();
        input.write(&[byte]).await?;
        loop {
            match out.next().await? {
                Some(Output::Stdout(b)) if b.contains(&byte) => break,
                Some(Output::Stdout(_)) => continue,
                other => bail!("echo session ended early: {other:?}"),
            }
        }
        rtts.push(t.elapsed().as_secs_f64() * 1000.0);
        if !gap.is_zero() {
            tokio::time::sleep(gap).await;
        }
    }
    input.write(&[4]).await?; // ^D is a byte in raw mode: end with a close instead
    drop(input);
    rtts.sort_by(f64::total_cmp);
    Ok(rtts)
}
