//! Load testing for Postfix policy servers, over the raw policy protocol.
//!
//! - [`mix`]: the requests sent: a built-in realistic mix (RCPT requests from a few hundred
//!   senders, recipients and client IPs, then END-OF-MESSAGE) or a file of captured requests.
//! - [`driver`]: N persistent connections, one request in flight each (as Postfix's smtpd
//!   does), for a duration or a number of requests.
//! - [`report`]: requests/s and latency percentiles (HdrHistogram), as text or JSON.
//! - [`target`]: where to connect. Only loopback addresses and Unix sockets are accepted:
//!   this tool is for benchmarking on the local machine.
#![forbid(unsafe_code)]

pub mod driver;
pub mod mix;
pub mod report;
pub mod target;
