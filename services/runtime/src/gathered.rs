//! Log lines to stderr, gathered and written by a background thread: a request never waits
//! for the terminal or pipe, and a busy log stream costs one `write(2)` and one thread
//! wake-up per few milliseconds, not one per line.
//!
//! A line is appended to a shared buffer. The writer thread sleeps until the buffer stops
//! being empty, waits [`GATHER`] for more lines to arrive, then writes everything at once.
//! So an idle service wakes nothing, a quiet one writes each line within a few milliseconds,
//! and a flood of verdict lines (a monitor-mode rule matching much traffic) costs a few
//! hundred writes a second at most. If the output is stuck (a full pipe nobody reads) and
//! [`MAX_BUFFERED`] bytes are waiting, further lines are dropped and counted in
//! `sluice_log_lines_dropped_total` instead of blocking requests. Dropping the
//! [`GatheredGuard`] writes what is left.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tracing_subscriber::fmt::MakeWriter;

/// How long the writer thread lets lines gather before writing them.
pub const GATHER: Duration = Duration::from_millis(5);
/// Most bytes waiting for the output before lines are dropped.
pub const MAX_BUFFERED: usize = 8 * 1024 * 1024;

/// The lines waiting and the writer thread's state.
#[derive(Default)]
struct State {
    lines: Vec<u8>,
    /// The writer thread waits for lines (a new line must wake it).
    waiting: bool,
    /// The guard was dropped: write what is left and stop.
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    max_buffered: usize,
    gather: Duration,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A [`MakeWriter`] for `tracing_subscriber::fmt` (cheap to clone).
#[derive(Clone)]
pub struct Gathered {
    shared: Arc<Shared>,
}

/// Keep until exit: dropping it writes the lines still waiting and stops the thread.
pub struct GatheredGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the writer thread for `output` (stderr in the service; anything in tests).
pub fn gathered<W: Write + Send + 'static>(output: W) -> io::Result<(Gathered, GatheredGuard)> {
    gathered_with(output, GATHER, MAX_BUFFERED)
}

/// [`gathered`] with explicit limits.
pub fn gathered_with<W: Write + Send + 'static>(
    mut output: W,
    gather: Duration,
    max_buffered: usize,
) -> io::Result<(Gathered, GatheredGuard)> {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        wake: Condvar::new(),
        max_buffered,
        gather,
    });
    let writer = Arc::clone(&shared);
    let thread = std::thread::Builder::new()
        .name("sluice-log".into())
        .spawn(move || write_loop(&writer, &mut output))?;
    Ok((
        Gathered {
            shared: Arc::clone(&shared),
        },
        GatheredGuard {
            shared,
            thread: Some(thread),
        },
    ))
}

/// The writer thread: waits for lines, lets more gather, writes them all.
fn write_loop(shared: &Shared, output: &mut dyn Write) {
    let mut spare = Vec::new();
    loop {
        let mut state = shared.lock();
        while state.lines.is_empty() && !state.closed {
            state.waiting = true;
            state = shared.wake.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        state.waiting = false;
        if state.lines.is_empty() && state.closed {
            return;
        }
        // Let more lines gather (writers do not wake this wait; closing does).
        let until = Instant::now() + shared.gather;
        while !state.closed {
            let now = Instant::now();
            if now >= until {
                break;
            }
            state = shared
                .wake
                .wait_timeout(state, until - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        std::mem::swap(&mut state.lines, &mut spare);
        drop(state);
        // Nowhere to report a failed write to: the lines are lost, as with a closed stderr.
        let _ = output.write_all(&spare).and_then(|()| output.flush());
        spare.clear();
        if spare.capacity() > 4 * 1024 * 1024 {
            spare = Vec::new();
        }
    }
}

impl Drop for GatheredGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One event's writer: appends what it is given to the shared lines.
pub struct LineWriter<'a> {
    shared: &'a Shared,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut state = self.shared.lock();
        if state.lines.len() + buf.len() > self.shared.max_buffered {
            drop(state);
            metrics::counter!(crate::metrics::names::LOG_LINES_DROPPED).increment(1);
            return Ok(buf.len());
        }
        state.lines.extend_from_slice(buf);
        if state.waiting {
            state.waiting = false;
            drop(state);
            self.shared.wake.notify_one();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Gathered {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            shared: &self.shared,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output the test can read, counting the writes it got.
    #[derive(Clone, Default)]
    struct Sink {
        bytes: Arc<Mutex<Vec<u8>>>,
        writes: Arc<Mutex<usize>>,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.bytes.lock().unwrap().extend_from_slice(buf);
            *self.writes.lock().unwrap() += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8(self.bytes.lock().unwrap().clone()).unwrap()
        }
    }

    fn line(w: &Gathered, text: &str) {
        w.make_writer().write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn a_line_appears_within_the_gather_time() {
        let sink = Sink::default();
        let (w, _guard) = gathered_with(sink.clone(), Duration::from_millis(5), 1 << 20).unwrap();
        line(&w, "one\n");
        let start = Instant::now();
        while sink.text().is_empty() {
            assert!(start.elapsed() < Duration::from_secs(5), "never written");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(sink.text(), "one\n");
    }

    #[test]
    fn a_burst_is_written_in_order_with_few_writes() {
        let sink = Sink::default();
        let (w, guard) = gathered_with(sink.clone(), Duration::from_millis(50), 1 << 20).unwrap();
        let want: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        for i in 0..1000 {
            line(&w, &format!("line {i}\n"));
        }
        drop(guard);
        assert_eq!(sink.text(), want);
        // One write per gathering, not per line.
        assert!(
            *sink.writes.lock().unwrap() <= 3,
            "{}",
            sink.writes.lock().unwrap()
        );
    }

    #[test]
    fn dropping_the_guard_writes_what_is_left() {
        let sink = Sink::default();
        let (w, guard) = gathered_with(sink.clone(), Duration::from_secs(3600), 1 << 20).unwrap();
        line(&w, "last words\n");
        // The writer thread is now gathering for an hour: closing must cut that short.
        std::thread::sleep(Duration::from_millis(50));
        let start = Instant::now();
        drop(guard);
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(sink.text(), "last words\n");
    }

    #[test]
    fn lines_beyond_the_cap_are_dropped_not_blocked_on() {
        /// An output that blocks until released (a pipe nobody reads).
        struct Stuck(Arc<Mutex<()>>);
        impl Write for Stuck {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                drop(self.0.lock().unwrap());
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().unwrap();
        let (w, guard) =
            gathered_with(Stuck(Arc::clone(&gate)), Duration::from_millis(1), 100).unwrap();
        let start = Instant::now();
        for _ in 0..10_000 {
            line(&w, "0123456789\n");
        }
        // The writer thread is stuck on the first write; callers never waited for it.
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(w.shared.lock().lines.len() <= 100);
        drop(held);
        drop(guard);
    }
}
