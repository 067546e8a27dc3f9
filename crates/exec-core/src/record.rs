//! Session recording: a terminal pane's output as an asciicast v2 file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::command::{Command, PtySize};
use crate::text::TextDecoder;

/// Longest a recorded event waits in memory before it is written: what a
/// crash of the server can lose.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Buffered events that are written at once rather than at the next tick,
/// so a fast producer does not pile up a second of output in memory.
const FLUSH_BYTES: usize = 64 * 1024;

/// Where and how much a pane records (see [`Recorder`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordConfig {
    /// The directory the `.cast` files go to; it must exist.
    pub dir: PathBuf,
    /// Most bytes one pane's file may hold (header included); the recording
    /// stops before the event that would pass it, the pane runs on.
    pub max_bytes: u64,
}

/// A pane's output and resizes, written as an asciicast v2 file
/// (`DIR/<id>-<start>.cast`, `start` a compact UTC time such as
/// `20261130T130359Z`) that `asciinema play` and `asciinema cat` read.
///
/// The pane's reader task hands it every chunk it moves into the ring, so
/// the file holds exactly what the process wrote whatever its clients do.
/// That task must never wait for a disk: [`Recorder::output`] only formats
/// the event into a buffer in memory, and a task of the recorder's own
/// writes the buffer out through `spawn_blocking` at least every
/// [`FLUSH_EVERY`] (sooner once 64 KiB are waiting), so a crash loses at
/// most the last second. The buffer cannot grow past the byte limit.
///
/// Event data is a JSON string, so output is decoded as UTF-8 on the way: a
/// character split between two reads waits for the rest, and bytes that are
/// not UTF-8 are recorded as U+FFFD (the one way the file differs from the
/// bytes produced). A file that cannot be created or written is logged and
/// the recording stops; the pane never notices.
#[derive(Debug)]
pub struct Recorder {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Signalled when the buffer is large or the recording ends.
    wake: Notify,
    path: PathBuf,
}

#[derive(Debug)]
struct State {
    started: Instant,
    decoder: TextDecoder,
    /// Events not yet written.
    buf: Vec<u8>,
    /// Bytes given to the file so far, `buf` included.
    size: u64,
    max_bytes: u64,
    /// Past the limit, or the file failed: nothing more is recorded.
    stopped: bool,
    /// The pane ended: the writer writes what is left and stops.
    finished: bool,
}

impl Recorder {
    /// Starts recording a pane that runs `cmd` at `size`; `id` names the
    /// file. Creating the file happens on the writer's task; if it fails,
    /// that is logged there.
    pub fn start(config: &RecordConfig, id: u64, cmd: &Command, size: PtySize) -> Recorder {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let path = config.dir.join(format!("{id}-{}.cast", compact_utc(now)));
        let command = cmd.argv().join(" ");
        let header = serde_json::json!({
            "version": 2,
            "width": size.cols,
            "height": size.rows,
            "timestamp": now,
            "command": command,
        });
        let mut buf = header.to_string().into_bytes();
        buf.push(b'\n');
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                started: Instant::now(),
                decoder: TextDecoder::new(),
                size: buf.len() as u64,
                stopped: buf.len() as u64 > config.max_bytes,
                buf,
                max_bytes: config.max_bytes,
                finished: false,
            }),
            wake: Notify::new(),
            path,
        });
        if lock(&shared.state).stopped {
            lock(&shared.state).buf.clear();
            tracing::warn!(path = %shared.path.display(), "recording limit is below the header: not recording");
        }
        let writer = tokio::spawn(write(shared.clone()));
        Recorder {
            shared,
            writer: Mutex::new(Some(writer)),
        }
    }

    /// The file this recorder writes.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Records output, in the order the pane produced it. Never waits.
    pub fn output(&self, chunk: &Bytes) {
        let mut state = lock(&self.shared.state);
        if state.stopped || state.finished {
            return;
        }
        let text = state.decoder.push(chunk);
        drop(self.event(state, "o", &text));
    }

    /// Records a resize to `size`.
    pub fn resize(&self, size: PtySize) {
        let state = lock(&self.shared.state);
        if state.stopped || state.finished {
            return;
        }
        let data = format!("{}x{}", size.cols, size.rows);
        drop(self.event(state, "r", data.as_bytes()));
    }

    /// Ends the recording: what a split character held back (as U+FFFD)
    /// and every buffered event are written before this returns.
    pub async fn finish(&self) {
        {
            let mut state = lock(&self.shared.state);
            if !state.stopped && !state.finished {
                let rest = state.decoder.finish();
                state = self.event(state, "o", &rest);
            }
            state.finished = true;
        }
        self.shared.wake.notify_one();
        let writer = lock(&self.writer).take();
        if let Some(writer) = writer
            && let Err(e) = writer.await
        {
            tracing::warn!(error = %e, path = %self.shared.path.display(), "recording writer failed");
        }
    }

    /// Appends one event line; one that would pass the limit is cut to
    /// what fits (at a character), and the recording stops there.
    fn event<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        code: &str,
        data: &[u8],
    ) -> MutexGuard<'a, State> {
        if data.is_empty() {
            return state;
        }
        let seconds = state.started.elapsed().as_secs_f64();
        let text = String::from_utf8_lossy(data);
        let line = |text: &str| {
            format!(
                "[{seconds:.6}, \"{code}\", {}]\n",
                serde_json::Value::from(text)
            )
        };
        let room = state.max_bytes.saturating_sub(state.size);
        let mut line_text = line(&text);
        if line_text.len() as u64 > room {
            state.stopped = true;
            // Shorten the text by what is over (escapes make a character
            // longer on the line, never shorter) until the line fits.
            let mut cut = text.len();
            while line_text.len() as u64 > room && cut > 0 {
                let over = usize::try_from(line_text.len() as u64 - room).unwrap_or(cut);
                cut = cut.saturating_sub(over);
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                line_text = line(text.get(..cut).unwrap_or_default());
            }
            if cut > 0 && code == "o" {
                state.size += line_text.len() as u64;
                state.buf.extend_from_slice(line_text.as_bytes());
            }
            tracing::warn!(
                path = %self.shared.path.display(),
                max_bytes = state.max_bytes,
                "recording reached its byte limit: the rest of the pane's output is not recorded"
            );
            return state;
        }
        state.size += line_text.len() as u64;
        state.buf.extend_from_slice(line_text.as_bytes());
        if state.buf.len() >= FLUSH_BYTES {
            self.shared.wake.notify_one();
        }
        state
    }
}

/// The recorder's writer: creates the file, then writes the buffer every
/// tick, when it grew large, and at the end.
async fn write(shared: Arc<Shared>) {
    let path = shared.path.clone();
    let created = tokio::task::spawn_blocking(move || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
    })
    .await;
    let mut file = match created {
        Ok(Ok(file)) => file,
        Ok(Err(e)) => return give_up(&shared, &e.to_string()),
        Err(e) => return give_up(&shared, &e.to_string()),
    };
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shared.wake.notified() => {}
        }
        let (data, finished) = {
            let mut state = lock(&shared.state);
            (std::mem::take(&mut state.buf), state.finished)
        };
        if !data.is_empty() {
            let written = tokio::task::spawn_blocking(move || {
                let result = file.write_all(&data);
                (file, result)
            })
            .await;
            match written {
                Ok((f, Ok(()))) => file = f,
                Ok((_, Err(e))) => return give_up(&shared, &e.to_string()),
                Err(e) => return give_up(&shared, &e.to_string()),
            }
        }
        if finished {
            return;
        }
    }
}

/// The file failed: log it once and record nothing more.
fn give_up(shared: &Shared, error: &str) {
    let mut state = lock(&shared.state);
    state.stopped = true;
    state.buf = Vec::new();
    drop(state);
    tracing::warn!(path = %shared.path.display(), %error, "cannot write the recording: the pane runs unrecorded");
}

/// The locks are held only for non-panicking sections.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Unix seconds as `YYYYMMDDTHHMMSSZ`.
fn compact_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rest = secs % 86_400;
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("exec-core-record-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn cat(events: &[serde_json::Value]) -> String {
        events
            .iter()
            .filter(|e| e[1] == "o")
            .map(|e| e[2].as_str().unwrap())
            .collect()
    }

    #[test]
    fn compact_times() {
        assert_eq!(compact_utc(0), "19700101T000000Z");
        assert_eq!(compact_utc(1_709_210_096), "20240229T123456Z");
        assert_eq!(compact_utc(1_796_043_839), "20261130T130359Z");
    }

    #[tokio::test(start_paused = true)]
    async fn header_events_split_characters_and_resizes() {
        let dir = temp_dir("events");
        let config = RecordConfig {
            dir: dir.clone(),
            max_bytes: 1 << 20,
        };
        let cmd = Command::new("sh").args(["-c", "echo \"hi\""]);
        let rec = Recorder::start(&config, 7, &cmd, PtySize { rows: 24, cols: 80 });
        let name = rec.path().file_name().unwrap().to_str().unwrap().to_owned();
        assert!(name.starts_with("7-") && name.ends_with("Z.cast"), "{name}");
        // "é" split across two reads, a quote and a control character.
        rec.output(&Bytes::from_static(b"a\xc3"));
        tokio::time::advance(Duration::from_millis(250)).await;
        rec.output(&Bytes::from_static(b"\xa9\"\x1b[0m"));
        rec.resize(PtySize {
            rows: 30,
            cols: 100,
        });
        rec.output(&Bytes::from_static(b"bad\xffend\xe2\x82"));
        rec.finish().await;
        let events = lines(rec.path());
        assert_eq!(events[0]["version"], 2);
        assert_eq!(events[0]["width"], 80);
        assert_eq!(events[0]["height"], 24);
        assert_eq!(events[0]["command"], "sh -c echo \"hi\"");
        assert!(events[0]["timestamp"].as_u64().unwrap() > 1_700_000_000);
        assert_eq!(events[1][2], "a");
        assert_eq!(events[2][2], "é\"\x1b[0m");
        assert!(events.iter().skip(1).all(|e| e[0].is_f64()));
        assert_eq!(events[3][1], "r");
        assert_eq!(events[3][2], "100x30");
        assert_eq!(cat(&events), "aé\"\x1b[0mbad\u{fffd}end\u{fffd}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn written_within_a_second_and_bounded() {
        let dir = temp_dir("bounded");
        let config = RecordConfig {
            dir: dir.clone(),
            max_bytes: 4096,
        };
        let rec = Recorder::start(&config, 1, &Command::new("x"), PtySize { rows: 2, cols: 3 });
        rec.output(&Bytes::from_static(b"first"));
        // The writer's next tick puts it in the file, long before the end.
        // (Paused time does not run ahead while its write is in flight.)
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if std::fs::read_to_string(rec.path()).is_ok_and(|t| t.contains("first")) {
                break;
            }
        }
        assert_eq!(cat(&lines(rec.path())), "first");
        for _ in 0..1000 {
            rec.output(&Bytes::from_static(b"0123456789"));
        }
        rec.finish().await;
        let len = std::fs::metadata(rec.path()).unwrap().len();
        assert!(len <= 4096 && len > 4096 - 64, "{len}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_file_that_cannot_be_created_stops_only_the_recording() {
        let config = RecordConfig {
            dir: PathBuf::from("/nonexistent/recordings"),
            max_bytes: 1 << 20,
        };
        let rec = Recorder::start(&config, 1, &Command::new("x"), PtySize { rows: 2, cols: 3 });
        rec.output(&Bytes::from_static(b"lost"));
        rec.finish().await;
        assert!(lock(&rec.shared.state).stopped);
        assert!(!rec.path().exists());
    }
}
