//! `/metrics`, `/healthz` and `/readyz` as an axum [`Router`] each role serves on its
//! metrics listener (and may extend with its own routes), and [`serve`], which serves a
//! router with a connection cap and an idle timeout of its own, so that no number of HTTP
//! clients can use up the file descriptors the policy listener needs.

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Most connections the metrics listener serves at once. Further clients wait in the
/// listen backlog (they hold no descriptor of the process). Part of the file-descriptor
/// budget in `docs/failure-modes.md`.
pub const MAX_CONNECTIONS: usize = 64;

/// A metrics-listener connection that neither sends nor takes a byte for this long is
/// closed (a Prometheus scrape, a probe or an explain takes well under it).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15);

/// The connection cap and idle timeout of [`serve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Most connections served at once; more wait in the backlog.
    pub max_connections: usize,
    /// A connection without any byte read or written for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: MAX_CONNECTIONS,
            idle_timeout: IDLE_TIMEOUT,
        }
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let listener = LimitedListener::new(listener, limits);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// The address of the client a request came from, for handlers served by
/// [`serve_with_client_addr`] (`axum::extract::ConnectInfo<ClientAddr>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, LimitedListener>>
    for ClientAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, LimitedListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

/// [`serve`], with each request's client address available to handlers as
/// `axum::extract::ConnectInfo<ClientAddr>` (the admin service audits and throttles by it).
pub async fn serve_with_client_addr(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let listener = LimitedListener::new(listener, limits);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<ClientAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// First pause after a failed `accept`; doubled on each failure in a row.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest pause after a failed `accept`.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The listener of [`serve`]: a TCP listener that takes a permit before each `accept` (so at most
/// [`HttpLimits::max_connections`] connections are open) and gives its connections an idle
/// timeout.
pub struct LimitedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    idle_timeout: Duration,
    /// The pause after the next failed `accept`.
    backoff: Duration,
}

impl LimitedListener {
    /// `listener` within `limits` (for servers that wrap its connections, such as the admin
    /// service's TLS listener).
    pub fn new(listener: TcpListener, limits: HttpLimits) -> Self {
        LimitedListener {
            inner: listener,
            permits: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            idle_timeout: limits.idle_timeout,
            backoff: ACCEPT_BACKOFF_MIN,
        }
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = LimitedIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (LimitedIo, SocketAddr) {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        loop {
            match self.inner.accept().await {
                Ok((io, addr)) => {
                    self.backoff = ACCEPT_BACKOFF_MIN;
                    return (LimitedIo::new(io, permit, self.idle_timeout), addr);
                }
                Err(e) => {
                    crate::warn_limited!(
                        error = %e,
                        backoff_ms = self.backoff.as_millis() as u64,
                        "HTTP listener (metrics or admin) cannot accept a connection; backing off"
                    );
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(ACCEPT_BACKOFF_MAX);
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A connection of [`LimitedListener`]: holds its permit, and fails reads and writes with
/// `TimedOut` once no byte moved for the idle timeout.
pub struct LimitedIo {
    io: TcpStream,
    _permit: OwnedSemaphorePermit,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
}

impl LimitedIo {
    fn new(io: TcpStream, permit: OwnedSemaphorePermit, idle_timeout: Duration) -> Self {
        LimitedIo {
            io,
            _permit: permit,
            idle_timeout,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
        }
    }

    /// Bytes moved: the idle timer starts over.
    fn progressed(&mut self) {
        let deadline = Instant::now() + self.idle_timeout;
        self.idle.as_mut().reset(deadline);
    }

    /// Nothing moved: `TimedOut` once the idle timer has run out.
    fn check_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        ready!(self.idle.as_mut().poll(cx));
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            "metrics connection idle",
        ))
    }
}

impl AsyncRead for LimitedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.progressed();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.check_idle(cx).map(Err),
        }
    }
}

impl AsyncWrite for LimitedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                self.progressed();
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.check_idle(cx).map(Err),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => {
                self.progressed();
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.check_idle(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A boxed future, as readiness checks return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Decides whether the role is ready to serve: `Ok(text)` → 200, `Err(reason)` → 503.
pub trait ReadyCheck: Send + Sync + 'static {
    /// Checks readiness now (bounded in time by the implementation).
    fn check(&self) -> BoxFuture<'_, Result<String, String>>;
}

/// A router serving `GET /metrics` (Prometheus text), `GET /healthz` (200 while the process
/// runs) and `GET /readyz` (200 or 503 with the reason, from `ready`).
pub fn router(ready: Arc<dyn ReadyCheck>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = Arc::clone(&ready);
                async move {
                    match ready.check().await {
                        Ok(text) => (StatusCode::OK, format!("ready: {text}\n")),
                        Err(reason) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("not ready: {reason}\n"),
                        ),
                    }
                }
            }),
        )
}

async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(),
    )
}
