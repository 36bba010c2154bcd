//! A shutdown signal that is cheap to wait on from a connection's request loop.
//!
//! A connection waits for shutdown alongside every read, so the wait is polled once per
//! request. Polling a [`CancellationToken`]'s future takes a lock every time; a [`Wait`]
//! polls it only when the task's waker changed since it last registered (for a tokio task it
//! does not), and otherwise checks an atomic flag that [`Signal::trigger`] sets before it
//! cancels the token — so the wake-up a cancellation sends is never missed.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// A one-way signal: not triggered, then triggered for good.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    /// Set before `token` is cancelled.
    triggered: AtomicBool,
    token: CancellationToken,
}

impl Signal {
    /// Triggers the signal: wakes every [`Wait`].
    pub(crate) fn trigger(&self) {
        self.triggered.store(true, Ordering::Release);
        self.token.cancel();
    }

    /// Whether the signal was triggered.
    pub(crate) fn is_triggered(&self) -> bool {
        self.triggered.load(Ordering::Acquire)
    }

    /// A future that resolves once the signal is triggered (one allocation, made here: hold
    /// it across requests, not one per request).
    pub(crate) fn wait(&self) -> Wait<'_> {
        Wait {
            signal: self,
            cancelled: Box::pin(self.token.clone().cancelled_owned()),
            registered: None,
        }
    }
}

/// Resolves once its [`Signal`] is triggered.
pub(crate) struct Wait<'a> {
    signal: &'a Signal,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    /// The waker the token's future was last polled with (it wakes that one).
    registered: Option<Waker>,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.is_triggered() {
            return Poll::Ready(());
        }
        if self
            .registered
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            // Still registered with this waker: a trigger wakes it and sets the flag first.
            return Poll::Pending;
        }
        let this = &mut *self;
        match this.cancelled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(()),
            Poll::Pending => {
                this.registered = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn a_waiting_task_wakes_when_triggered() {
        let signal = Arc::new(Signal::default());
        let waiter = {
            let signal = Arc::clone(&signal);
            tokio::spawn(async move {
                let mut wait = signal.wait();
                // Polled repeatedly with the same waker, as in a request loop.
                for _ in 0..3 {
                    let ready = std::future::poll_fn(|cx| {
                        Poll::Ready(Pin::new(&mut wait).poll(cx).is_ready())
                    })
                    .await;
                    assert!(!ready);
                    tokio::task::yield_now().await;
                }
                wait.await;
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        signal.trigger();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken by the trigger")
            .unwrap();
        assert!(signal.is_triggered());
    }

    #[tokio::test]
    async fn a_wait_made_after_the_trigger_is_ready() {
        let signal = Signal::default();
        signal.trigger();
        tokio::time::timeout(Duration::from_secs(1), signal.wait())
            .await
            .expect("ready at once");
    }
}
