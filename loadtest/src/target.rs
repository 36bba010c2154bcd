//! Where the load goes: a loopback TCP address or a Unix socket.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

/// A loopback TCP address or a Unix socket path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `127.0.0.1:PORT` or `[::1]:PORT`.
    Tcp(SocketAddr),
    /// `unix:/path` or `/path`.
    Unix(PathBuf),
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(p) = s.strip_prefix("unix:") {
            return Ok(Target::Unix(p.into()));
        }
        if s.starts_with('/') {
            return Ok(Target::Unix(s.into()));
        }
        let addr: SocketAddr = s
            .parse()
            .map_err(|_| format!("{s:?} is not IP:PORT, unix:/path or /path"))?;
        if !addr.ip().is_loopback() {
            return Err(format!(
                "{s:?} is not a loopback address: only local targets are allowed"
            ));
        }
        Ok(Target::Tcp(addr))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp(a) => write!(f, "{a}"),
            Target::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A connected stream.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

impl Target {
    /// Connects.
    pub async fn connect(&self) -> io::Result<Box<dyn Io>> {
        match self {
            Target::Tcp(a) => {
                let s = TcpStream::connect(a).await?;
                s.set_nodelay(true)?;
                Ok(Box::new(s))
            }
            Target::Unix(p) => Ok(Box::new(UnixStream::connect(p).await?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_targets() {
        assert!("127.0.0.1:10031".parse::<Target>().is_ok());
        assert!("[::1]:10031".parse::<Target>().is_ok());
        assert!("unix:/tmp/s".parse::<Target>().is_ok());
        assert!("192.0.2.1:10031".parse::<Target>().is_err());
        assert!("example.com:10031".parse::<Target>().is_err());
    }
}
