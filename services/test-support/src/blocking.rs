//! Plain (non-async) helpers for tests that drive the `sluice` binary as a process.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Output;
use std::time::Duration;

/// Sends one request (`name=value` lines, without the final blank line) to the policy
/// server on 127.0.0.1:`port` over a new connection and returns the reply's action (the
/// text after `action=`). Panics if the server closes the connection or is silent for 5 s.
pub fn ask_blocking(port: u16, request: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the policy port");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "{}\n\n", request.trim_end()).expect("send the request");
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\n\n") {
        let n = s.read(&mut byte).expect("read the reply");
        assert_eq!(n, 1, "server closed the connection");
        buf.push(byte[0]);
    }
    String::from_utf8(buf)
        .expect("a UTF-8 reply")
        .trim()
        .trim_start_matches("action=")
        .to_string()
}

/// A finished command's stdout followed by its stderr, as text.
pub fn output_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `GET path` over HTTP/1.0 on 127.0.0.1:`port` (a metrics listener): the status and the
/// body. Status 0 and an empty body when nothing accepts the connection.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").expect("send the request");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read the response");
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}
