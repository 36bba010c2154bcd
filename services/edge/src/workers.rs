//! Connection worker threads: N single-threaded tokio runtimes, each running the
//! connections handed to it. A request then never leaves its thread: no work stealing, no
//! wake-ups of parked sibling workers, which on a small machine costs more than the request.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

/// A set of single-threaded runtimes on their own OS threads.
pub(crate) struct Workers {
    handles: Vec<Handle>,
    stops: Vec<oneshot::Sender<()>>,
    next: AtomicUsize,
}

impl Workers {
    /// Starts `n` (≥ 1) worker threads.
    pub(crate) fn start(n: usize) -> io::Result<Workers> {
        let mut handles = Vec::with_capacity(n);
        let mut stops = Vec::with_capacity(n);
        for i in 0..n.max(1) {
            let rt = Builder::new_current_thread().enable_all().build()?;
            handles.push(rt.handle().clone());
            let (stop, stopped) = oneshot::channel::<()>();
            stops.push(stop);
            std::thread::Builder::new()
                .name(format!("sluice-conn-{i}"))
                .spawn(move || {
                    // Runs spawned connections until told to stop; the runtime is then
                    // dropped on its own thread, outside any async context.
                    let _ = rt.block_on(stopped);
                })?;
        }
        Ok(Workers {
            handles,
            stops,
            next: AtomicUsize::new(0),
        })
    }

    /// Runs `fut` on the next worker (round-robin).
    pub(crate) fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        self.handles[i].spawn(fut);
    }

    /// Stops every worker thread (their connections must be finished by then).
    pub(crate) fn stop(self) {
        for s in self.stops {
            let _ = s.send(());
        }
    }
}
