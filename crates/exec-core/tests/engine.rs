//! The engine against real processes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use exec_core::{
    Claim, Command, Event, Events, Pane, PaneConfig, PaneEvent, Process, PtySize, Replay, Session,
    SessionConfig, Signal,
};

async fn run(cmd: Command) -> (Vec<u8>, Vec<u8>, exec_core::ExitStatus) {
    let mut events = Events::new(Process::spawn(&cmd).unwrap());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    loop {
        match events.next().await.unwrap().unwrap() {
            Event::Stdout(b) => out.extend_from_slice(&b),
            Event::Stderr(b) => err.extend_from_slice(&b),
            Event::Exit(status) => return (out, err, status),
        }
    }
}

fn sh(script: &str) -> Command {
    Command::new("sh").arg("-c").arg(script)
}

#[tokio::test]
async fn stdout_stderr_and_exit_code() {
    let (out, err, status) = run(sh("echo out; echo err >&2; exit 3")).await;
    assert_eq!(out, b"out\n");
    assert_eq!(err, b"err\n");
    assert_eq!(status.code, Some(3));
}

#[tokio::test]
async fn env_and_cwd() {
    let cmd = sh("echo $FOO; pwd").env("FOO", "bar").current_dir("/tmp");
    let (out, _, _) = run(cmd).await;
    assert_eq!(out, b"bar\n/tmp\n");
}

#[tokio::test]
async fn killed_by_signal() {
    let (_, _, status) = run(sh("kill -9 $$")).await;
    assert_eq!(status.signal, Some(Signal::KILL));
    assert_eq!(status.code, None);
}

#[tokio::test]
async fn missing_program_fails_to_spawn() {
    let err = Process::spawn(&Command::new("/no/such/program")).unwrap_err();
    assert!(err.to_string().contains("/no/such/program"), "{err}");
}

#[tokio::test]
async fn background_job_holding_the_pipe_does_not_hang_exit() {
    // The leader exits at once; `sleep` keeps stdout open and is killed with the group.
    let (out, _, status) = run(sh("echo before; sleep 30 & echo after")).await;
    assert_eq!(out, b"before\nafter\n");
    assert_eq!(status.code, Some(0));
}

#[tokio::test]
async fn stdin_round_trip_and_close() {
    let mut p = Process::spawn(&Command::new("cat")).unwrap();
    let mut stdin = p.take_stdin().unwrap();
    let mut events = Events::new(p);
    stdin.write_all(b"hello\n").await.unwrap();
    assert_eq!(
        events.next().await.unwrap().unwrap(),
        Event::Stdout("hello\n".into())
    );
    stdin.close().await.unwrap();
    assert!(matches!(events.next().await.unwrap().unwrap(), Event::Exit(s) if s.success()));
}

#[tokio::test]
async fn dropping_a_process_kills_its_group() {
    let mut p = Process::spawn(&sh("sleep 30 & echo $!; wait")).unwrap();
    let mut out = p.take_stdout().unwrap();
    let line = out.next_chunk().await.unwrap().unwrap();
    let child: i32 = std::str::from_utf8(&line).unwrap().trim().parse().unwrap();
    drop(out);
    drop(p);
    // The grandchild is gone once the kernel delivered SIGKILL; poll its /proc entry.
    let path = format!("/proc/{child}");
    for _ in 0..200 {
        if !std::path::Path::new(&path).exists() || is_zombie(&path) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("grandchild {child} survived its process group");
}

fn is_zombie(proc_path: &str) -> bool {
    std::fs::read_to_string(format!("{proc_path}/stat"))
        .map(|s| s.contains(") Z"))
        .unwrap_or(true)
}

#[tokio::test]
async fn pty_echo_resize_and_screen_redraw() {
    let cmd = Command::new("sh").pty(PtySize { rows: 24, cols: 80 });
    let pane = Pane::spawn(&cmd, PaneConfig::default()).unwrap();
    let mut a = pane.attach(Replay::Screen);
    pane.write(&b"stty size; echo MARK-$((40+2))\n"[..])
        .await
        .unwrap();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("MARK-42") {
        match a.next().await.unwrap() {
            PaneEvent::Output(b) => seen.extend_from_slice(&b),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(String::from_utf8_lossy(&seen).contains("24 80"));

    pane.resize(
        PtySize {
            rows: 30,
            cols: 100,
        },
        "test",
    )
    .unwrap();
    pane.write(&b"stty size\n"[..]).await.unwrap();
    seen.clear();
    while !String::from_utf8_lossy(&seen).contains("30 100") {
        let Some(PaneEvent::Output(b)) = a.next().await else {
            panic!()
        };
        seen.extend_from_slice(&b);
    }

    // A late client gets the screen, not the raw history.
    let mut late = pane.attach(Replay::Screen);
    let Some(PaneEvent::Redraw(screen)) = late.next().await else {
        panic!("no redraw")
    };
    assert!(String::from_utf8_lossy(&screen).contains("MARK-42"));

    pane.write(&b"exit 7\n"[..]).await.unwrap();
    loop {
        match a.next().await.unwrap() {
            PaneEvent::Exit(s) => {
                assert_eq!(s.code, Some(7));
                break;
            }
            _ => continue,
        }
    }
}

#[tokio::test]
async fn shared_pane_fans_out_and_slow_client_does_not_stall_others() {
    let cmd = sh("head -c 4000000 /dev/zero | tr '\\0' x; echo; echo END")
        .pty(PtySize { rows: 24, cols: 80 });
    let config = PaneConfig {
        replay_bytes: 64 * 1024,
        ..PaneConfig::default()
    };
    let pane = Pane::spawn(&cmd, config).unwrap();
    let mut fast = pane.attach(Replay::Live);
    let slow = pane.attach(Replay::Live); // never read
    let mut total = 0usize;
    loop {
        match fast.next().await.unwrap() {
            PaneEvent::Output(b) => total += b.len(),
            PaneEvent::Redraw(_) => panic!("the fast client never lags"),
            PaneEvent::Exit(_) => break,
        }
    }
    assert!(total >= 4_000_000, "fast client got {total} bytes");
    // The slow one lost the evicted output and is resynchronised with a redraw.
    let mut slow = slow;
    assert!(matches!(slow.next().await, Some(PaneEvent::Redraw(_))));
}

#[tokio::test]
async fn single_slow_client_applies_backpressure_without_loss() {
    let cmd = sh("head -c 2000000 /dev/urandom | od -An -v -tx1 | head -c 3000000");
    let config = PaneConfig {
        replay_bytes: 64 * 1024,
        ..PaneConfig::default()
    };
    let pane = Pane::spawn(&cmd, config).unwrap();
    let mut a = pane.attach(Replay::Screen);
    let mut total = 0usize;
    loop {
        match a.next().await.unwrap() {
            PaneEvent::Output(b) => {
                total += b.len();
                tokio::task::yield_now().await;
            }
            PaneEvent::Redraw(_) => panic!("a lone client must never lag"),
            PaneEvent::Exit(_) => break,
        }
    }
    assert_eq!(total, 3_000_000);
}

#[tokio::test]
async fn client_attached_at_spawn_gets_the_first_byte_however_late_it_reads() {
    // ~2 MB of output against a 64 KiB ring: a process nobody waits for
    // would have pushed its first lines out long before the reader starts.
    let cmd = sh("seq 1 300000");
    let config = PaneConfig {
        replay_bytes: 64 * 1024,
        ..PaneConfig::default()
    };
    let (_pane, mut a) = Pane::spawn_attached(&cmd, config).unwrap();
    // Room for the process to run ahead, were it not held back.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut got = Vec::new();
    loop {
        match a.next().await.unwrap() {
            PaneEvent::Output(b) => got.extend_from_slice(&b),
            PaneEvent::Redraw(_) => panic!("a client attached at spawn never lags"),
            PaneEvent::Exit(_) => break,
        }
    }
    let expected: String = (1..=300_000).map(|n| format!("{n}\n")).collect();
    assert!(
        got == expected.as_bytes(),
        "got {} bytes, first {:?}",
        got.len(),
        String::from_utf8_lossy(&got[..got.len().min(20)])
    );
}

#[tokio::test]
async fn idle_pane_is_ended_after_its_timeout() {
    let session = Session::<Pane>::new(SessionConfig::default());
    let claim = Claim {
        client: "test",
        idle_timeout: Some(Duration::from_millis(50)),
    };
    let config = PaneConfig {
        replay_bytes: 1024,
        ..PaneConfig::default()
    };
    let (id, attachment, lease) = session
        .spawn(
            &Command::new("sleep").arg("30"),
            config,
            Some("idle".into()),
            claim,
        )
        .unwrap();
    let pane = attachment.pane();
    drop((attachment, lease));
    let (tx, rx) = tokio::sync::oneshot::channel();
    pane.on_exit(move || {
        let _ = tx.send(());
    });
    rx.await.unwrap();
    assert_eq!(pane.exit_status().unwrap().signal, Some(Signal::HUP));
    assert!(session.get(id).is_none() && session.by_name("idle").is_none());
}

#[tokio::test]
async fn prefixed_chunks_carry_the_prefix_then_the_data() {
    let p = Process::spawn(&sh("printf abc; printf xyz >&2")).unwrap();
    let mut events = Events::with_prefixes(p, b"OUT:", b"ERR:", 64);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    loop {
        match events.next().await.unwrap().unwrap() {
            Event::Stdout(b) => {
                assert!(b.starts_with(b"OUT:"), "{b:?}");
                out.extend_from_slice(&b[4..]);
            }
            Event::Stderr(b) => {
                assert!(b.starts_with(b"ERR:"), "{b:?}");
                err.extend_from_slice(&b[4..]);
            }
            Event::Exit(_) => break,
        }
    }
    assert_eq!((out.as_slice(), err.as_slice()), (&b"abc"[..], &b"xyz"[..]));
}

#[tokio::test]
async fn events_survive_being_cancelled_mid_wait() {
    // Output ends long before the exit: `next` then waits for the exit, and
    // a caller's select! may drop that wait any number of times.
    let p = Process::spawn(&sh("exec >&- 2>&-; sleep 0.3; exit 4")).unwrap();
    let mut events = Events::new(p);
    let mut cancelled = 0;
    let status = loop {
        match tokio::time::timeout(Duration::from_millis(5), events.next()).await {
            Err(_) => cancelled += 1,
            Ok(Some(Ok(Event::Exit(status)))) => break status,
            Ok(Some(Ok(_))) => {}
            Ok(other) => panic!("lost the exit after {cancelled} cancellations: {other:?}"),
        }
    };
    assert!(cancelled > 0, "the wait was never interrupted");
    assert_eq!(status.code, Some(4));
}
