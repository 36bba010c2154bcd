//! Live counters for operators (the admin service's Counters page): a counter's level and
//! when it frees up, the keys refused recently ("limited now"), the keys close to a limit,
//! and resetting one key. Read-only views of a [`crate::State`]'s counters, apart from
//! [`LiveCounters::reset`].
//!
//! Embedded mode: [`crate::MemoryState`] answers from its tables. Cluster mode: the quota
//! service answers from Redis (its index of recently refused and near-limit keys).

use crate::state::{BoxFuture, StateError};
use crate::window::WindowSpec;

/// One counter asked for by [`LiveCounters::levels`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterQuery {
    /// The counter's identity ([`crate::engine::counter_key`]).
    pub key: String,
    /// The limit its quota has now.
    pub limit: u64,
    /// Its quota's window (Redis keeps only the buckets: their width is needed to read
    /// them; the in-process state knows it and ignores this).
    pub window: WindowSpec,
}

/// The window of a quota of `period_secs` split into `buckets` sub-buckets (the server's
/// `buckets` setting), as the engine counts it; `None` for a period of 0 or too long.
pub fn quota_window(period_secs: u64, buckets: u32) -> Option<WindowSpec> {
    let period_ms = period_secs.checked_mul(1000).filter(|&ms| ms > 0)?;
    Some(WindowSpec::new(period_ms, buckets))
}

/// Most entries one listing returns.
pub const MAX_LISTED: usize = 1000;

/// One counter as operators see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterInfo {
    /// The counter's identity, `policy/quota/LimitType/track key`
    /// ([`crate::engine::counter_key`]).
    pub key: String,
    /// The level in the window now.
    pub used: u64,
    /// The limit (as the last request that counted it gave it, or as asked).
    pub limit: u64,
    /// When a request was last refused by this counter (ms since the epoch), if known.
    pub refused_at_ms: Option<u64>,
    /// Milliseconds until one more unit fits (0: it fits now; `None`: never, the limit is 0).
    pub room_in_ms: Option<u64>,
    /// Milliseconds until the window holds nothing any more (0: empty).
    pub empty_in_ms: u64,
}

/// Which counters a listing returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// Counters that refused a request at or after this time (ms since the epoch).
    RefusedSince(u64),
    /// Counters at or above this percentage of their limit (admitted or not).
    AtLeastPercent(u64),
}

impl Listing {
    /// Whether `info` belongs to the listing.
    pub fn includes(&self, info: &CounterInfo) -> bool {
        match *self {
            Listing::RefusedSince(since) => info.refused_at_ms.is_some_and(|at| at >= since),
            Listing::AtLeastPercent(percent) => {
                info.limit > 0
                    && u128::from(info.used) * 100 >= u128::from(info.limit) * u128::from(percent)
            }
        }
    }
}

/// A live view of counters, for the admin service.
pub trait LiveCounters: Send + Sync + 'static {
    /// The counters `keys` (each with the limit and window its quota has now); a key
    /// counting nothing gives level 0.
    fn levels<'a>(
        &'a self,
        keys: &'a [CounterQuery],
    ) -> BoxFuture<'a, Result<Vec<CounterInfo>, StateError>>;

    /// The counters of `listing`, at most `max` (at most [`MAX_LISTED`]), highest level
    /// share first.
    fn list(
        &self,
        listing: Listing,
        max: usize,
    ) -> BoxFuture<'_, Result<Vec<CounterInfo>, StateError>>;

    /// Forgets everything `key` counted (its next request starts from zero); whether it
    /// counted anything.
    fn reset<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, StateError>>;
}

/// Sorts `list` by share of the limit (highest first), then key, and keeps `max`.
pub fn sort_listed(list: &mut Vec<CounterInfo>, max: usize) {
    let share = |c: &CounterInfo| {
        if c.limit == 0 {
            u128::MAX
        } else {
            u128::from(c.used) * 1_000_000 / u128::from(c.limit)
        }
    };
    list.sort_by(|a, b| share(b).cmp(&share(a)).then_with(|| a.key.cmp(&b.key)));
    list.truncate(max.min(MAX_LISTED));
}

/// A counter key's parts: policy, quota (both unescaped), limit type and track key.
pub fn split_key(key: &str) -> Option<(String, String, &str, &str)> {
    let mut parts = key.splitn(4, '/');
    let (policy, quota, kind, track) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let unescape = |s: &str| s.replace("%2F", "/").replace("%25", "%");
    Some((unescape(policy), unescape(quota), kind, track))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::LimitKind;

    #[test]
    fn keys_split_back_into_their_names() {
        let key = crate::engine::counter_key("a/b%c", "q", LimitKind::MessageCount, "Sender:x@y");
        let (p, q, kind, track) = split_key(&key).unwrap();
        assert_eq!(
            (p.as_str(), q.as_str(), kind, track),
            ("a/b%c", "q", "MessageCount", "Sender:x@y")
        );
        assert!(split_key("no-slashes").is_none());
    }

    #[test]
    fn listings_select_and_sort() {
        let c = |key: &str, used, limit, refused| CounterInfo {
            key: key.into(),
            used,
            limit,
            refused_at_ms: refused,
            room_in_ms: Some(0),
            empty_in_ms: 0,
        };
        assert!(Listing::AtLeastPercent(80).includes(&c("a", 8, 10, None)));
        assert!(!Listing::AtLeastPercent(80).includes(&c("a", 7, 10, None)));
        assert!(!Listing::AtLeastPercent(80).includes(&c("a", 7, 0, None)));
        assert!(Listing::RefusedSince(5).includes(&c("a", 1, 1, Some(5))));
        assert!(!Listing::RefusedSince(5).includes(&c("a", 1, 1, Some(4))));
        let mut list = vec![
            c("b", 8, 10, None),
            c("a", 10, 10, None),
            c("c", 9, 10, None),
        ];
        sort_listed(&mut list, 2);
        let keys: Vec<_> = list.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["a", "c"]);
    }
}
