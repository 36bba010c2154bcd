//! `dunno-server`: a trivial policy server that answers `action=DUNNO` to every request.
//! It is the throughput ceiling the real server is measured against: written the way a
//! reasonable simple server would be (tokio, buffered line reads), not crippled.

use clap::Parser;
use std::net::SocketAddr;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Always-DUNNO policy server (loopback only).
#[derive(Debug, Parser)]
#[command(name = "dunno-server")]
struct Args {
    /// Address to listen on (a loopback address).
    #[arg(long, default_value = "127.0.0.1:10030")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.listen.ip().is_loopback(),
        "only loopback addresses are allowed"
    );
    let listener = TcpListener::bind(args.listen).await?;
    eprintln!("dunno-server listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        tokio::spawn(serve(stream));
    }
}

async fn serve(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut stream = BufReader::with_capacity(8192, stream);
    let mut line = Vec::with_capacity(256);
    let mut attributes = 0usize;
    loop {
        line.clear();
        match stream.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line == b"\n" || line == b"\r\n" {
            if attributes > 0 {
                attributes = 0;
                if stream
                    .get_mut()
                    .write_all(b"action=DUNNO\n\n")
                    .await
                    .is_err()
                {
                    return;
                }
            }
        } else {
            attributes += 1;
        }
    }
}
