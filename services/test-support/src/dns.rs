//! A real, small authoritative DNS server for tests: UDP and TCP on `127.0.0.1`, on a port
//! from [`free_port`], serving the records a test gives it.
//!
//! Names without records answer NXDOMAIN; a name with records but none of the asked type
//! answers NODATA (NOERROR, no answers); both carry an SOA in the authority section so a
//! resolver may cache them negatively. A CNAME is followed within the server's records. A
//! name can be made to answer SERVFAIL ([`DnsServer::servfail`]) or never to answer
//! ([`DnsServer::silent`], for timeouts). Every query is counted
//! ([`DnsServer::queries`], [`DnsServer::queries_for`]) so tests can prove caching.
//!
//! The server runs on a thread of its own (its own single-threaded runtime), so it serves
//! whatever runtime the test uses; it stops when dropped.
//!
//! ```no_run
//! use sluice_test_support::dns::{DnsServer, Rec};
//! let dns = DnsServer::start();
//! dns.add("mx.example.org", Rec::A("192.0.2.10".parse().unwrap()));
//! dns.servfail("broken.example.org");
//! // Point the resolver at dns.addr().
//! ```

use crate::processes::free_port;
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{CNAME, MX, PTR, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::oneshot;

/// A record the server serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rec {
    /// An IPv4 address.
    A(Ipv4Addr),
    /// An IPv6 address.
    Aaaa(Ipv6Addr),
    /// A mail exchanger: preference and host.
    Mx(u16, String),
    /// One TXT string (split into 255-byte character-strings when longer).
    Txt(String),
    /// A reverse-DNS name (served under the name given; see [`DnsServer::ptr`]).
    Ptr(String),
    /// An alias to another name.
    Cname(String),
}

impl Rec {
    fn record_type(&self) -> RecordType {
        match self {
            Rec::A(_) => RecordType::A,
            Rec::Aaaa(_) => RecordType::AAAA,
            Rec::Mx(..) => RecordType::MX,
            Rec::Txt(_) => RecordType::TXT,
            Rec::Ptr(_) => RecordType::PTR,
            Rec::Cname(_) => RecordType::CNAME,
        }
    }

    fn rdata(&self) -> RData {
        match self {
            Rec::A(ip) => RData::A((*ip).into()),
            Rec::Aaaa(ip) => RData::AAAA((*ip).into()),
            Rec::Mx(pref, host) => RData::MX(MX::new(*pref, fqdn(host))),
            Rec::Txt(text) => {
                let chunks: Vec<&[u8]> = text.as_bytes().chunks(255).collect();
                RData::TXT(TXT::from_bytes(if chunks.is_empty() {
                    vec![&b""[..]]
                } else {
                    chunks
                }))
            }
            Rec::Ptr(name) => RData::PTR(PTR(fqdn(name))),
            Rec::Cname(name) => RData::CNAME(CNAME(fqdn(name))),
        }
    }
}

/// How a name misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    ServFail,
    Silent,
}

#[derive(Debug, Default)]
struct Zone {
    /// Records by lower-case name without the trailing dot.
    records: HashMap<String, Vec<Rec>>,
    faults: HashMap<String, Fault>,
    ttl: u32,
    /// Queries by (name, type), and in all.
    counts: HashMap<(String, RecordType), u64>,
    total: u64,
}

/// The test DNS server (see the module's documentation).
pub struct DnsServer {
    addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// `name` as a key: lower case, no trailing dot.
fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn fqdn(name: &str) -> Name {
    let mut n = Name::from_ascii(name.trim_end_matches('.')).expect("a valid test DNS name");
    n.set_fqdn(true);
    n
}

impl DnsServer {
    /// Starts the server on `127.0.0.1` (UDP and TCP on one port). Records answer with a
    /// TTL of 300 s unless [`DnsServer::set_ttl`] says otherwise.
    pub fn start() -> DnsServer {
        let zone = Arc::new(Mutex::new(Zone {
            ttl: 300,
            ..Zone::default()
        }));
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let z = zone.clone();
        let thread = std::thread::Builder::new()
            .name("test-dns".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("test DNS runtime");
                rt.block_on(async move {
                    let (udp, tcp) = bind().await;
                    let addr = udp.local_addr().expect("UDP address");
                    bound_tx.send(addr).expect("test DNS start");
                    tokio::select! {
                        () = serve_udp(udp, z.clone()) => {}
                        () = serve_tcp(tcp, z) => {}
                        _ = stop_rx => {}
                    }
                });
            })
            .expect("test DNS thread");
        let addr = bound_rx.recv().expect("the test DNS server bound its port");
        DnsServer {
            addr,
            zone,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Where the server listens (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The TTL of answers from now on (seconds; also the negative-caching TTL).
    pub fn set_ttl(&self, ttl: u32) {
        self.zone.lock().unwrap().ttl = ttl;
    }

    /// Adds a record to `name`.
    pub fn add(&self, name: &str, rec: Rec) {
        self.zone
            .lock()
            .unwrap()
            .records
            .entry(key(name))
            .or_default()
            .push(rec);
    }

    /// Adds the PTR record of `ip` (its `in-addr.arpa`/`ip6.arpa` name) pointing to `name`.
    pub fn ptr(&self, ip: IpAddr, name: &str) {
        let reverse = Name::from(ip).to_ascii();
        self.add(&reverse, Rec::Ptr(name.into()));
    }

    /// Removes every record of `name` (it then answers NXDOMAIN).
    pub fn remove(&self, name: &str) {
        self.zone.lock().unwrap().records.remove(&key(name));
    }

    /// Makes `name` answer SERVFAIL to every query.
    pub fn servfail(&self, name: &str) {
        self.zone
            .lock()
            .unwrap()
            .faults
            .insert(key(name), Fault::ServFail);
    }

    /// Makes `name` never answer (the query is read and dropped): a resolver times out.
    pub fn silent(&self, name: &str) {
        self.zone
            .lock()
            .unwrap()
            .faults
            .insert(key(name), Fault::Silent);
    }

    /// Makes `name` answer normally again.
    pub fn heal(&self, name: &str) {
        self.zone.lock().unwrap().faults.remove(&key(name));
    }

    /// Queries received so far, of every name and type.
    pub fn queries(&self) -> u64 {
        self.zone.lock().unwrap().total
    }

    /// Queries received so far for `name`, of every type.
    pub fn queries_for(&self, name: &str) -> u64 {
        let k = key(name);
        self.zone
            .lock()
            .unwrap()
            .counts
            .iter()
            .filter(|((n, _), _)| *n == k)
            .map(|(_, c)| *c)
            .sum()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// UDP and TCP on one free port.
async fn bind() -> (UdpSocket, TcpListener) {
    for _ in 0..100 {
        let port = free_port();
        let Ok(udp) = UdpSocket::bind(("127.0.0.1", port)).await else {
            continue;
        };
        if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)).await {
            return (udp, tcp);
        }
    }
    panic!("no free port for the test DNS server");
}

async fn serve_udp(socket: UdpSocket, zone: Arc<Mutex<Zone>>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        if let Some(reply) = answer(&buf[..n], &zone, 512) {
            let _ = socket.send_to(&reply, peer).await;
        }
    }
}

async fn serve_tcp(listener: TcpListener, zone: Arc<Mutex<Zone>>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let zone = zone.clone();
        tokio::spawn(async move {
            loop {
                let mut len = [0u8; 2];
                if stream.read_exact(&mut len).await.is_err() {
                    return;
                }
                let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
                if stream.read_exact(&mut msg).await.is_err() {
                    return;
                }
                let Some(reply) = answer(&msg, &zone, usize::from(u16::MAX)) else {
                    continue;
                };
                let Ok(n) = u16::try_from(reply.len()) else {
                    return;
                };
                let mut out = n.to_be_bytes().to_vec();
                out.extend_from_slice(&reply);
                if stream.write_all(&out).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// The encoded reply to the query in `bytes` (`None`: do not answer). Replies longer than
/// `max` are truncated (TC set), so a resolver retries over TCP.
fn answer(bytes: &[u8], zone: &Mutex<Zone>, max: usize) -> Option<Vec<u8>> {
    let query = Message::from_vec(bytes).ok()?;
    if query.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut reply = Message::response(query.metadata.id, OpCode::Query);
    reply.metadata.authoritative = true;
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    let Some(q) = query.queries.first().cloned() else {
        reply.metadata.response_code = ResponseCode::FormErr;
        return reply.to_vec().ok();
    };
    reply.add_query(q.clone());
    let name = key(&q.name().to_ascii());
    let qtype = q.query_type();
    let mut z = zone.lock().unwrap();
    z.total += 1;
    *z.counts.entry((name.clone(), qtype)).or_default() += 1;
    match z.faults.get(&name) {
        Some(Fault::Silent) => return None,
        Some(Fault::ServFail) => {
            reply.metadata.response_code = ResponseCode::ServFail;
            return reply.to_vec().ok();
        }
        None => {}
    }
    let ttl = z.ttl;
    // Follow CNAMEs within the zone (at most 8, and no loops).
    let mut current = name;
    let mut seen = HashSet::new();
    let mut exists = false;
    for _ in 0..8 {
        if !seen.insert(current.clone()) {
            break;
        }
        let Some(recs) = z.records.get(&current) else {
            break;
        };
        exists = true;
        let owner = fqdn(&current);
        let mut next = None;
        for r in recs {
            if r.record_type() == qtype {
                reply.add_answer(Record::from_rdata(owner.clone(), ttl, r.rdata()));
            } else if let (Rec::Cname(target), false) = (r, qtype == RecordType::CNAME) {
                reply.add_answer(Record::from_rdata(owner.clone(), ttl, r.rdata()));
                next = Some(key(target));
            }
        }
        match next {
            Some(n) => current = n,
            None => break,
        }
    }
    if reply.answers.is_empty() {
        if !exists {
            reply.metadata.response_code = ResponseCode::NXDomain;
        }
        // The SOA gives resolvers the negative-caching TTL.
        let soa = SOA::new(
            fqdn("ns.test"),
            fqdn("hostmaster.test"),
            1,
            3600,
            600,
            86400,
            ttl,
        );
        reply.add_authority(Record::from_rdata(Name::root(), ttl, RData::SOA(soa)));
    }
    let bytes = reply.to_vec().ok()?;
    if bytes.len() > max {
        let mut truncated = reply.truncate();
        truncated.metadata.truncation = true;
        return truncated.to_vec().ok();
    }
    Some(bytes)
}
