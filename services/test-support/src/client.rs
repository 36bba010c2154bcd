//! A raw policy-protocol client.

use crate::request::Request;
use sluice_edge::ListenAddr;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream, UnixStream};

/// Anything a client can talk over.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A client speaking raw policy-protocol bytes, one request at a time, like Postfix's smtpd.
///
/// Every read is bounded by a timeout (10 s by default) that fails the test rather than
/// letting it hang.
pub struct PolicyClient {
    io: BufReader<Box<dyn Io>>,
    timeout: Duration,
}

impl PolicyClient {
    /// Connects over TCP. Panics if the connection fails.
    pub async fn connect(addr: SocketAddr) -> PolicyClient {
        let stream = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
        stream.set_nodelay(true).expect("set TCP_NODELAY");
        PolicyClient::over(Box::new(stream))
    }

    /// Connects over TCP from the local address `from` (any of 127.0.0.0/8 on Linux, to
    /// play another client address). Panics if the connection fails.
    pub async fn connect_from(from: IpAddr, addr: SocketAddr) -> PolicyClient {
        let socket = TcpSocket::new_v4().expect("a TCP socket");
        socket
            .bind(SocketAddr::new(from, 0))
            .unwrap_or_else(|e| panic!("cannot bind {from}: {e}"));
        let stream = socket
            .connect(addr)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {addr} from {from}: {e}"));
        stream.set_nodelay(true).expect("set TCP_NODELAY");
        PolicyClient::over(Box::new(stream))
    }

    /// Connects to a Unix socket. Panics if the connection fails.
    pub async fn connect_unix(path: &Path) -> PolicyClient {
        let stream = UnixStream::connect(path)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", path.display()));
        PolicyClient::over(Box::new(stream))
    }

    /// Connects to `addr`, TCP or Unix.
    pub async fn connect_to(addr: &ListenAddr) -> PolicyClient {
        match addr {
            ListenAddr::Tcp(a) => PolicyClient::connect(*a).await,
            ListenAddr::Unix(p) => PolicyClient::connect_unix(p).await,
        }
    }

    fn over(io: Box<dyn Io>) -> PolicyClient {
        PolicyClient {
            io: BufReader::new(io),
            timeout: Duration::from_secs(10),
        }
    }

    /// Changes how long [`PolicyClient::read_reply`] waits before failing the test.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Writes `bytes` as they are. Errors (the server closed the connection) are returned,
    /// not panicked on, so abuse tests can go on.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        let w = self.io.get_mut();
        w.write_all(bytes).await?;
        w.flush().await
    }

    /// Closes the sending half (the server sees end of stream).
    pub async fn close_write(&mut self) -> io::Result<()> {
        self.io.get_mut().shutdown().await
    }

    /// Reads one reply and returns the `action` value (`"DUNNO"`, `"REJECT text"`...).
    /// `None` when the server closed the connection (or reset it) before a full reply.
    /// Panics if nothing happens within the timeout, or if the reply has no `action`.
    pub async fn read_reply(&mut self) -> Option<String> {
        let limit = self.timeout;
        match tokio::time::timeout(limit, self.read_reply_inner()).await {
            Ok(reply) => reply,
            Err(_) => panic!("no reply and no close within {limit:?}"),
        }
    }

    async fn read_reply_inner(&mut self) -> Option<String> {
        let mut action = None;
        let mut line = Vec::with_capacity(128);
        loop {
            line.clear();
            match self.io.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            if !line.ends_with(b"\n") {
                return None; // closed mid-line
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\n', '\r']);
            if text.is_empty() {
                if action.is_none() {
                    panic!("reply without an action attribute");
                }
                return action;
            }
            if let Some(v) = text.strip_prefix("action=") {
                action = Some(v.to_string());
            }
        }
    }

    /// Sends `attrs` as one request (plus the blank line) and returns the action value.
    /// Panics if the server closes the connection instead of answering.
    pub async fn ask(&mut self, attrs: &[(&str, &str)]) -> String {
        self.send(&Request::from_attrs(attrs)).await
    }

    /// Sends `req` and returns the action value. Panics if the server closes the connection
    /// instead of answering.
    pub async fn send(&mut self, req: &Request) -> String {
        self.try_send(req)
            .await
            .expect("server closed the connection instead of answering")
    }

    /// Sends `req` and returns the action value, or `None` if the connection was closed.
    pub async fn try_send(&mut self, req: &Request) -> Option<String> {
        self.send_raw(&req.to_bytes()).await.ok()?;
        self.read_reply().await
    }
}
