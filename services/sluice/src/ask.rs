//! `sluice ask HOST:PORT`: one policy request to a running server, its reply on standard
//! output. A smoke test for an installation (the Helm chart's `helm test` Pod runs it from
//! the image, which has no shell or netcat).

use crate::cli::AskArgs;
use anyhow::{bail, Context};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

/// Sends the request; exits 0 when the reply holds an `action=` line, 1 otherwise.
pub fn run(args: AskArgs) -> anyhow::Result<ExitCode> {
    let timeout = Duration::from_secs(args.timeout_secs.max(1));
    let addrs: Vec<_> = args
        .server
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {}", args.server))?
        .collect();
    let mut last_error = None;
    let mut stream = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_error = Some(format!("{addr}: {e}")),
        }
    }
    let Some(mut stream) = stream else {
        bail!(
            "cannot connect to {}: {}",
            args.server,
            last_error.unwrap_or_else(|| "no address".into())
        );
    };
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    // Each call is its own message unless told otherwise (quotas count messages by instance).
    let instance = args.instance.unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("sluice-ask.{}.{nanos}", std::process::id())
    });
    let request = format!(
        "request=smtpd_access_policy\nprotocol_state={}\nprotocol_name=ESMTP\n\
         client_address={}\nsender={}\nrecipient={}\ninstance={instance}\n\n",
        args.protocol_state, args.client_address, args.sender, args.recipient
    );
    stream.write_all(request.as_bytes())?;
    // The reply ends with a blank line; the server keeps the connection open after it.
    let mut reply = Vec::new();
    let mut buf = [0u8; 1024];
    while !reply.ends_with(b"\n\n") {
        let n = stream
            .read(&mut buf)
            .with_context(|| format!("no complete reply from {}", args.server))?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
    }
    let reply = String::from_utf8_lossy(&reply);
    print!("{reply}");
    if reply.lines().any(|l| l.starts_with("action=")) && reply.ends_with("\n\n") {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("sluice ask: no action in the reply of {}", args.server);
        Ok(ExitCode::FAILURE)
    }
}
