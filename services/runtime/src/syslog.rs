//! Log lines to the local syslog daemon: one RFC 3164 datagram per line on a Unix datagram
//! socket (`/dev/log`), facility `mail`, severity from the event's level:
//!
//! ```text
//! <22>Jan  5 14:03:07 sluice[4242]: INFO module=Quotas, action=reject, host=...
//! ```
//!
//! The timestamp is UTC (syslog daemons on `/dev/log` usually stamp lines themselves). The
//! socket is non-blocking: a line the daemon cannot take at once is dropped and counted in
//! `sluice_log_lines_dropped_total` rather than stalling the request path.

use std::io::{self, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// The standard local syslog socket.
pub const DEV_LOG: &str = "/dev/log";
/// Facility `mail` (2), as Postfix itself logs.
const FACILITY_MAIL: u8 = 2;
/// Longest line sent (longer ones are cut): well under the usual datagram limits.
const MAX_LINE: usize = 8 * 1024;

/// Bumped by [`reopen`]: each writer reconnects before its next line when it changed.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Makes every syslog writer reconnect to its socket before its next line (on SIGHUP, after
/// the syslog daemon was restarted or its socket moved).
pub fn reopen() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// A `MakeWriter` sending each log line as one syslog datagram.
pub struct Syslog {
    path: PathBuf,
    tag: String,
    pid: u32,
    /// The socket, and the [`GENERATION`] it was opened in.
    socket: Mutex<(Option<UnixDatagram>, u64)>,
}

impl Syslog {
    /// Connects to the syslog socket at `path` (normally [`DEV_LOG`]); `tag` names the
    /// program in each line (`sluice`).
    pub fn connect(path: impl AsRef<Path>, tag: &str) -> io::Result<Syslog> {
        let path = path.as_ref().to_path_buf();
        let socket = open(&path)?;
        Ok(Syslog {
            path,
            tag: tag.to_string(),
            pid: std::process::id(),
            socket: Mutex::new((Some(socket), GENERATION.load(Ordering::Relaxed))),
        })
    }

    /// Sends one line at `level`; reconnects once if the daemon went away.
    fn send(&self, level: Level, line: &[u8]) {
        let mut msg = Vec::with_capacity(line.len() + 48);
        let _ = write!(
            msg,
            "<{}>{} {}[{}]: ",
            FACILITY_MAIL * 8 + severity(level),
            timestamp(SystemTime::now()),
            self.tag,
            self.pid
        );
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        msg.extend_from_slice(&line[..line.len().min(MAX_LINE)]);
        let mut guard = self.socket.lock().unwrap_or_else(|p| p.into_inner());
        let (socket, opened_in) = &mut *guard;
        let generation = GENERATION.load(Ordering::Relaxed);
        if *opened_in != generation {
            *socket = None;
            *opened_in = generation;
        }
        for attempt in 0..2 {
            if socket.is_none() {
                *socket = open(&self.path).ok();
            }
            let Some(open_socket) = socket.as_ref() else {
                break;
            };
            match open_socket.send(&msg) {
                Ok(_) => return,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) if attempt == 0 => *socket = None,
                Err(_) => break,
            }
        }
        metrics::counter!(crate::metrics::names::LOG_LINES_DROPPED).increment(1);
    }
}

fn open(path: &Path) -> io::Result<UnixDatagram> {
    let socket = UnixDatagram::unbound()?;
    socket.connect(path)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// Syslog severity of a tracing level.
fn severity(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// RFC 3164 timestamp (`Mmm dd hh:mm:ss`, day padded with a space), UTC.
fn timestamp(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    format!(
        "{} {:>2} {:02}:{:02}:{:02}",
        MONTHS[(month - 1) as usize],
        day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// One line being formatted; sent when dropped.
pub struct Line<'a> {
    syslog: &'a Syslog,
    level: Level,
    buf: Vec<u8>,
}

impl Write for Line<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line<'_> {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.syslog.send(self.level, &self.buf);
        }
    }
}

impl<'a> MakeWriter<'a> for Syslog {
    type Writer = Line<'a>;
    fn make_writer(&'a self) -> Line<'a> {
        Line {
            syslog: self,
            level: Level::INFO,
            buf: Vec::new(),
        }
    }
    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line<'a> {
        Line {
            syslog: self,
            level: *meta.level(),
            buf: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3164() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000); // 2023-11-14 22:13:20 UTC
        assert_eq!(timestamp(t), "Nov 14 22:13:20");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3_661); // 2000-02-29 01:01:01
        assert_eq!(timestamp(t), "Feb 29 01:01:01");
        let t = UNIX_EPOCH + Duration::from_secs(1_704_412_800); // 2024-01-05 00:00:00
        assert_eq!(timestamp(t), "Jan  5 00:00:00");
    }

    #[test]
    fn lines_arrive_as_mail_facility_datagrams() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let server = UnixDatagram::bind(&path).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let syslog = Syslog::connect(&path, "sluice").unwrap();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(syslog)
            .without_time()
            .with_ansi(false)
            .with_target(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("module=Quotas, action=reject, policy=p");
            tracing::warn!("backend down");
        });
        let mut buf = [0u8; 9000];
        let n = server.recv(&mut buf).unwrap();
        let line = std::str::from_utf8(&buf[..n]).unwrap();
        let pid = std::process::id();
        assert!(line.starts_with("<22>"), "{line}");
        assert!(
            line.ends_with(&format!(
                " sluice[{pid}]:  INFO module=Quotas, action=reject, policy=p"
            )),
            "{line:?}"
        );
        let n = server.recv(&mut buf).unwrap();
        let line = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(line.starts_with("<20>"), "{line}");
        assert!(line.ends_with("WARN backend down"), "{line:?}");
    }

    #[test]
    fn reopen_moves_lines_to_the_socket_now_at_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let old = UnixDatagram::bind(&path).unwrap();
        let syslog = Syslog::connect(&path, "sluice").unwrap();
        // A new daemon binds the path while the old one still holds its (unlinked) socket:
        // sends keep reaching the old one until the writer reconnects.
        std::fs::remove_file(&path).unwrap();
        let new = UnixDatagram::bind(&path).unwrap();
        new.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        old.set_nonblocking(true).unwrap();
        syslog.send(Level::INFO, b"before");
        let mut buf = [0u8; 256];
        let n = old
            .recv(&mut buf)
            .expect("the old socket gets lines before reopen");
        assert!(std::str::from_utf8(&buf[..n]).unwrap().ends_with("before"));
        reopen();
        syslog.send(Level::INFO, b"after");
        let n = new
            .recv(&mut buf)
            .expect("the new socket gets lines after reopen");
        assert!(std::str::from_utf8(&buf[..n]).unwrap().ends_with("after"));
        assert!(
            old.recv(&mut buf).is_err(),
            "nothing more reaches the old socket"
        );
    }
}
