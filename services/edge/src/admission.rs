//! Which connections are served, so that no client can lock the others out.
//!
//! At most [`EdgeConfig::max_connections`](crate::EdgeConfig::max_connections) connections
//! are open, and at most
//! [`EdgeConfig::max_connections_per_client`](crate::EdgeConfig::max_connections_per_client)
//! from one client address (Unix-socket clients are local and only count towards the
//! first). A new connection that would pass a cap closes the *oldest idle* connection in
//! its place (of the same client for the per-client cap, of anyone for the total): Postfix
//! reconnects transparently when an idle connection is closed, while a new connection left
//! waiting or refused costs a mail delay. Only when every connection in the way is busy
//! (a request in flight or half-sent, bounded by the busy timeout) does a new connection
//! wait (total cap: in the listen backlog) or get closed (per-client cap: that client is
//! the one holding them all).
//!
//! A connection marks itself busy and idle with one atomic store each ([`Slot`]); the table
//! is locked only when a connection opens, closes or is evicted.

use crate::shutdown::{Signal, Wait};
use metrics::{counter, Counter};
use sluice_runtime::metrics::names;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;
use tokio::time::Instant;

/// [`Slot::idle_since`] while a request is in flight.
const BUSY: u64 = u64::MAX;

/// One open connection's state, shared between its task and the table.
pub(crate) struct Slot {
    /// When the connection last became idle (its last request, or its accept), in
    /// nanoseconds since [`Inner::epoch`]; [`BUSY`] while a request is in flight.
    idle_since: AtomicU64,
    /// Triggered when the connection is evicted: it closes once no request is in flight.
    evict: Signal,
    /// The admission's start, to turn instants into `idle_since` values.
    epoch: Instant,
}

impl Slot {
    /// A request has started arriving.
    #[inline]
    pub(crate) fn busy(&self) {
        self.idle_since.store(BUSY, Ordering::Relaxed);
    }

    /// The connection waits for a new request; idle since `since` (its last request).
    #[inline]
    pub(crate) fn idle(&self, since: Instant) {
        let ns = since.saturating_duration_since(self.epoch).as_nanos();
        self.idle_since
            .store(u64::try_from(ns).unwrap_or(BUSY - 1), Ordering::Relaxed);
    }

    /// Whether the connection was evicted.
    pub(crate) fn evicted(&self) -> bool {
        self.evict.is_triggered()
    }

    /// Resolves once the connection is evicted (make it once per connection).
    pub(crate) fn evicted_wait(&self) -> Wait<'_> {
        self.evict.wait()
    }
}

/// The outcome of [`Admission::admit`].
pub(crate) enum Admit {
    /// Served; the ticket keeps the connection counted until dropped.
    Admitted(Ticket),
    /// The client is at its cap and none of its connections is idle: close the new one.
    ClientFull,
    /// The total cap is reached and no connection is idle: wait for [`Admission::room`].
    Full,
}

/// The connection caps and the table of open connections.
#[derive(Clone)]
pub(crate) struct Admission(Arc<Inner>);

struct Inner {
    max_total: usize,
    max_per_client: usize,
    epoch: Instant,
    table: Mutex<Table>,
    /// Notified when a connection leaves the table.
    room: Notify,
    /// `sluice_connections_shed_total` by reason.
    shed: Shed,
}

/// `sluice_connections_shed_total` handles, one per `reason`.
struct Shed {
    max_connections: Counter,
    per_client: Counter,
    out_of_descriptors: Counter,
    client_refused: Counter,
}

impl Shed {
    fn new() -> Self {
        let shed = |reason: &'static str| counter!(names::CONNECTIONS_SHED, "reason" => reason);
        Shed {
            max_connections: shed("max_connections"),
            per_client: shed("max_connections_per_client"),
            out_of_descriptors: shed("out_of_descriptors"),
            client_refused: shed("client_refused"),
        }
    }
}

#[derive(Default)]
struct Table {
    /// Connections in the table.
    open: usize,
    /// Open connections by client address (`None`: Unix-socket clients).
    clients: HashMap<Option<IpAddr>, Vec<Arc<Slot>>>,
}

impl Admission {
    /// Caps of `max_total` connections, `max_per_client` of one address (each at least 1).
    pub(crate) fn new(max_total: usize, max_per_client: usize) -> Self {
        Admission(Arc::new(Inner {
            max_total: max_total.max(1),
            max_per_client: max_per_client.max(1),
            epoch: Instant::now(),
            table: Mutex::new(Table::default()),
            room: Notify::new(),
            shed: Shed::new(),
        }))
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.0.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a new connection from `ip`, evicting the oldest idle connection when a cap is
    /// reached.
    pub(crate) fn admit(&self, ip: Option<IpAddr>) -> Admit {
        let mut table = self.table();
        if ip.is_some() {
            let mine = table.clients.get(&ip).map_or(0, Vec::len);
            if mine >= self.0.max_per_client {
                if !table.evict_oldest_idle(Some(ip)) {
                    self.0.shed.client_refused.increment(1);
                    return Admit::ClientFull;
                }
                self.0.shed.per_client.increment(1);
                tracing::debug!(client = ?ip, "Client at its connection cap; closed its oldest idle connection");
            }
        }
        if table.open >= self.0.max_total {
            if !table.evict_oldest_idle(None) {
                return Admit::Full;
            }
            self.0.shed.max_connections.increment(1);
            tracing::debug!("Connection cap reached; closed the oldest idle connection");
        }
        let slot = Arc::new(Slot {
            idle_since: AtomicU64::new(0),
            evict: Signal::default(),
            epoch: self.0.epoch,
        });
        slot.idle(Instant::now());
        table.open += 1;
        table.clients.entry(ip).or_default().push(Arc::clone(&slot));
        Admit::Admitted(Ticket {
            admission: self.clone(),
            ip,
            slot,
        })
    }

    /// Closes the oldest idle connection, if any, to free a file descriptor. True when one
    /// was evicted.
    pub(crate) fn evict_oldest_idle(&self) -> bool {
        let evicted = self.table().evict_oldest_idle(None);
        if evicted {
            self.0.shed.out_of_descriptors.increment(1);
            self.0.room.notify_one();
        }
        evicted
    }

    /// Resolves when a connection may have left the table since the last [`Admit::Full`].
    pub(crate) async fn room(&self) {
        self.0.room.notified().await;
    }

    /// Connections in the table.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.table().open
    }
}

impl Table {
    /// Evicts the connection idle the longest, of client `ip` (`Some`) or of anyone
    /// (`None`): takes it out of the table and tells it to close. False when every
    /// candidate is busy.
    fn evict_oldest_idle(&mut self, only: Option<Option<IpAddr>>) -> bool {
        let mut oldest: Option<(u64, Option<IpAddr>, usize)> = None;
        let mut consider = |ip: Option<IpAddr>, slots: &Vec<Arc<Slot>>| {
            for (i, s) in slots.iter().enumerate() {
                let since = s.idle_since.load(Ordering::Relaxed);
                if since != BUSY && oldest.is_none_or(|(o, _, _)| since < o) {
                    oldest = Some((since, ip, i));
                }
            }
        };
        match only {
            Some(ip) => {
                if let Some(slots) = self.clients.get(&ip) {
                    consider(ip, slots);
                }
            }
            None => {
                for (ip, slots) in &self.clients {
                    consider(*ip, slots);
                }
            }
        }
        let Some((_, ip, i)) = oldest else {
            return false;
        };
        let slot = self.remove_at(ip, i);
        slot.evict.trigger();
        true
    }

    /// Takes `clients[ip][i]` out of the table.
    fn remove_at(&mut self, ip: Option<IpAddr>, i: usize) -> Arc<Slot> {
        let slots = self.clients.get_mut(&ip).expect("a known client");
        let slot = slots.swap_remove(i);
        if slots.is_empty() {
            self.clients.remove(&ip);
        }
        self.open -= 1;
        slot
    }
}

/// Keeps one admitted connection in the table until dropped.
pub(crate) struct Ticket {
    admission: Admission,
    ip: Option<IpAddr>,
    slot: Arc<Slot>,
}

impl Ticket {
    /// The connection's state.
    pub(crate) fn slot(&self) -> &Slot {
        &self.slot
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut table = self.admission.table();
        // An evicted connection already left the table.
        let at = table
            .clients
            .get(&self.ip)
            .and_then(|slots| slots.iter().position(|s| Arc::ptr_eq(s, &self.slot)));
        if let Some(i) = at {
            table.remove_at(self.ip, i);
            drop(table);
            self.admission.0.room.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([192, 0, 2, last]))
    }

    /// Admits a connection from `from`, idle since `ms` milliseconds after `start`.
    fn admitted(a: &Admission, from: Option<IpAddr>, start: Instant, ms: u64) -> Ticket {
        match a.admit(from) {
            Admit::Admitted(t) => {
                t.slot().idle(start + Duration::from_millis(ms));
                t
            }
            Admit::ClientFull => panic!("client full"),
            Admit::Full => panic!("full"),
        }
    }

    #[test]
    fn the_total_cap_evicts_the_oldest_idle_connection() {
        let a = Admission::new(3, 10);
        let t = Instant::now();
        let first = admitted(&a, ip(1), t, 1);
        let second = admitted(&a, ip(2), t, 2);
        let third = admitted(&a, ip(3), t, 3);
        // The first one turns busy: the second is now the oldest idle one.
        first.slot().busy();
        let fourth = admitted(&a, ip(4), t, 4);
        assert!(second.slot().evicted());
        assert!(!first.slot().evicted() && !third.slot().evicted());
        assert_eq!(a.open(), 3);
        drop(second); // already out of the table
        assert_eq!(a.open(), 3);
        // All busy: the next one waits.
        third.slot().busy();
        fourth.slot().busy();
        assert!(matches!(a.admit(ip(5)), Admit::Full));
        drop(first);
        assert_eq!(a.open(), 2);
        let _fifth = admitted(&a, ip(5), t, 5);
    }

    #[test]
    fn the_client_cap_evicts_that_clients_oldest_idle_connection() {
        let a = Admission::new(100, 2);
        let t = Instant::now();
        let other = admitted(&a, ip(9), t, 0);
        let first = admitted(&a, ip(1), t, 1);
        let second = admitted(&a, ip(1), t, 2);
        let third = admitted(&a, ip(1), t, 3);
        assert!(first.slot().evicted(), "the client's oldest idle one");
        assert!(!other.slot().evicted(), "not another client's, however old");
        second.slot().busy();
        third.slot().busy();
        assert!(matches!(a.admit(ip(1)), Admit::ClientFull));
        // Unix-socket clients have no per-client cap.
        let _unix: Vec<Ticket> = (0..5).map(|_| admitted(&a, None, t, 9)).collect();
    }

    #[test]
    fn a_connection_idle_again_keeps_its_last_request_time() {
        let a = Admission::new(2, 10);
        let t = Instant::now();
        let old = admitted(&a, ip(1), t, 1);
        let new = admitted(&a, ip(2), t, 5);
        // A bare newline: busy for a moment, then idle since its last request.
        old.slot().busy();
        old.slot().idle(t + Duration::from_millis(1));
        let _third = admitted(&a, ip(3), t, 6);
        assert!(old.slot().evicted());
        assert!(!new.slot().evicted());
    }
}
