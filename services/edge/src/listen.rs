//! Where the edge listens: a TCP address or a Unix socket path.

use crate::error::EdgeError;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// A listen address as operators write it: `127.0.0.1:10031`, `[::1]:10031` (optionally
/// prefixed `inet:`), or a Unix socket as `unix:/path` or an absolute path `/path`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ListenAddr {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix socket path.
    Unix(PathBuf),
}

impl FromStr for ListenAddr {
    type Err = EdgeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if let Some(path) = t.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(EdgeError::InvalidAddress(s.to_string()));
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        if t.starts_with('/') {
            return Ok(ListenAddr::Unix(PathBuf::from(t)));
        }
        let t = t.strip_prefix("inet:").unwrap_or(t);
        t.parse::<SocketAddr>()
            .map(ListenAddr::Tcp)
            .map_err(|_| EdgeError::InvalidAddress(s.to_string()))
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A bound listener, ready for [`crate::run`].
#[derive(Debug)]
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// Unix socket.
    Unix(UnixListener),
}

impl Listener {
    /// Binds `addr`. For a Unix socket, a stale socket file (nobody answers on it) is removed
    /// first; a live one, or a path that is not a socket, is an error.
    pub async fn bind(addr: &ListenAddr) -> Result<Listener, EdgeError> {
        match addr {
            ListenAddr::Tcp(a) => TcpListener::bind(a)
                .await
                .map(Listener::Tcp)
                .map_err(|source| EdgeError::BindTcp { addr: *a, source }),
            ListenAddr::Unix(path) => {
                remove_stale_socket(path).await?;
                UnixListener::bind(path)
                    .map(Listener::Unix)
                    .map_err(|source| EdgeError::BindUnix {
                        path: path.clone(),
                        source,
                    })
            }
        }
    }

    /// Checks that `addr` can be bound (a bad or busy address is an error) without
    /// accepting anything: a TCP address is bound but never put in the listening state, so
    /// a client connecting meanwhile is refused rather than accepted and then dropped. A
    /// Unix socket is bound and closed at once (nothing can connect to it in between that
    /// `bind` would not also refuse later).
    pub async fn check(addr: &ListenAddr) -> Result<(), EdgeError> {
        match addr {
            ListenAddr::Tcp(a) => {
                let socket = if a.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()
                } else {
                    tokio::net::TcpSocket::new_v6()
                };
                // As TcpListener::bind does, so that the check agrees with the real bind.
                socket
                    .and_then(|s| s.set_reuseaddr(true).map(|()| s))
                    .and_then(|s| s.bind(*a))
                    .map_err(|source| EdgeError::BindTcp { addr: *a, source })
            }
            ListenAddr::Unix(_) => Listener::bind(addr).await.map(drop),
        }
    }

    /// The address actually bound (the real port when bound to port 0).
    pub fn local_addr(&self) -> io::Result<ListenAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().map(ListenAddr::Tcp),
            Listener::Unix(l) => {
                let a = l.local_addr()?;
                let path = a
                    .as_pathname()
                    .ok_or_else(|| io::Error::other("unnamed unix socket"))?;
                Ok(ListenAddr::Unix(path.to_path_buf()))
            }
        }
    }

    /// Accepts one connection.
    pub(crate) async fn accept(&self) -> io::Result<(Stream, Peer)> {
        match self {
            Listener::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                // Replies are written with one write; don't let Nagle hold them back.
                let _ = s.set_nodelay(true);
                Ok((Stream::Tcp(s), Peer::Tcp(peer)))
            }
            Listener::Unix(l) => {
                let (s, _) = l.accept().await?;
                Ok((Stream::Unix(s), Peer::Unix))
            }
        }
    }
}

impl From<TcpListener> for Listener {
    fn from(l: TcpListener) -> Self {
        Listener::Tcp(l)
    }
}

impl From<UnixListener> for Listener {
    fn from(l: UnixListener) -> Self {
        Listener::Unix(l)
    }
}

/// An accepted connection.
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// A [`Stream`] detached from its runtime, to be handed to a worker thread.
pub(crate) enum StdStream {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Stream {
    /// Detaches the stream from the current runtime's reactor.
    pub(crate) fn into_std(self) -> io::Result<StdStream> {
        Ok(match self {
            Stream::Tcp(s) => StdStream::Tcp(s.into_std()?),
            Stream::Unix(s) => StdStream::Unix(s.into_std()?),
        })
    }
}

impl StdStream {
    /// Registers the stream with the current runtime's reactor (it stays non-blocking).
    pub(crate) fn into_tokio(self) -> io::Result<Stream> {
        Ok(match self {
            StdStream::Tcp(s) => Stream::Tcp(TcpStream::from_std(s)?),
            StdStream::Unix(s) => Stream::Unix(UnixStream::from_std(s)?),
        })
    }
}

/// Who is on the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    Tcp(SocketAddr),
    Unix,
}

impl Peer {
    /// The peer's IP (for `[ip/cidr]` member specs); `None` over a Unix socket.
    pub(crate) fn ip(self) -> Option<IpAddr> {
        match self {
            Peer::Tcp(a) => Some(a.ip()),
            Peer::Unix => None,
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Tcp(a) => write!(f, "{a}"),
            Peer::Unix => f.write_str("unix"),
        }
    }
}

async fn remove_stale_socket(path: &Path) -> Result<(), EdgeError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(EdgeError::BindUnix {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if !meta.file_type().is_socket() {
        return Err(EdgeError::NotASocket(path.to_path_buf()));
    }
    if UnixStream::connect(path).await.is_ok() {
        return Err(EdgeError::UnixInUse(path.to_path_buf()));
    }
    tracing::info!(path = %path.display(), "Removing stale unix socket");
    std::fs::remove_file(path).map_err(|source| EdgeError::BindUnix {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tcp_and_unix_addresses() {
        assert_eq!(
            "127.0.0.1:10031".parse::<ListenAddr>().unwrap(),
            ListenAddr::Tcp("127.0.0.1:10031".parse().unwrap())
        );
        assert_eq!(
            "[::1]:10031".parse::<ListenAddr>().unwrap(),
            ListenAddr::Tcp("[::1]:10031".parse().unwrap())
        );
        assert_eq!(
            "inet:127.0.0.1:1".parse::<ListenAddr>().unwrap(),
            ListenAddr::Tcp("127.0.0.1:1".parse().unwrap())
        );
        assert_eq!(
            "unix:/run/sluice.sock".parse::<ListenAddr>().unwrap(),
            ListenAddr::Unix("/run/sluice.sock".into())
        );
        assert_eq!(
            "/run/sluice.sock".parse::<ListenAddr>().unwrap(),
            ListenAddr::Unix("/run/sluice.sock".into())
        );
    }

    #[test]
    fn rejects_bad_addresses() {
        for bad in [
            "",
            "localhost:10031",
            "127.0.0.1",
            "unix:",
            "10031",
            "::1:10031",
        ] {
            assert!(
                bad.parse::<ListenAddr>().is_err(),
                "{bad:?} should not parse"
            );
        }
    }

    #[test]
    fn displays_round_trip() {
        for s in ["127.0.0.1:10031", "[::1]:10031", "unix:/tmp/x.sock"] {
            let a: ListenAddr = s.parse().unwrap();
            assert_eq!(a.to_string(), s);
            assert_eq!(a.to_string().parse::<ListenAddr>().unwrap(), a);
        }
    }

    #[tokio::test]
    async fn refuses_to_delete_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not-a-socket");
        std::fs::write(&path, b"x").unwrap();
        let err = Listener::bind(&ListenAddr::Unix(path.clone()))
            .await
            .unwrap_err();
        assert_eq!(err.kind_label(), "not_a_socket");
        assert!(path.exists());
    }

    #[tokio::test]
    async fn replaces_a_stale_socket_but_not_a_live_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edge.sock");
        let addr = ListenAddr::Unix(path.clone());
        let live = Listener::bind(&addr).await.unwrap();
        let err = Listener::bind(&addr).await.unwrap_err();
        assert_eq!(err.kind_label(), "unix_in_use");
        drop(live); // the file stays behind: stale
        assert!(path.exists());
        let again = Listener::bind(&addr).await.unwrap();
        assert_eq!(again.local_addr().unwrap(), addr);
    }
}
