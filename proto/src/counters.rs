//! Conversions of the live-counter messages (`CounterLevels`, `ListCounters`,
//! `ResetCounter`) to and from [`sluice_engine::counters`].

use crate::v1;
use crate::ConvertError;
use sluice_engine::counters::{CounterInfo, CounterQuery, Listing, MAX_LISTED};
use sluice_engine::window::WindowSpec;

/// Longest counter key accepted.
pub const MAX_COUNTER_KEY: usize = 2048;

/// A query as sent.
pub fn query_to_wire(q: &CounterQuery) -> v1::CounterQuery {
    v1::CounterQuery {
        key: q.key.clone(),
        limit: q.limit,
        period_ms: q.window.period_ms,
        bucket_ms: q.window.bucket_ms,
    }
}

/// A query as received: the key's length and the window are checked.
pub fn query_from_wire(q: v1::CounterQuery) -> Result<CounterQuery, ConvertError> {
    check_key(&q.key)?;
    sluice_engine::bounds::check_redis_window(q.period_ms, q.bucket_ms).map_err(|reason| {
        ConvertError::InvalidWindow {
            key: q.key.clone(),
            period_ms: q.period_ms,
            bucket_ms: q.bucket_ms,
            reason,
        }
    })?;
    Ok(CounterQuery {
        key: q.key,
        limit: q.limit,
        window: WindowSpec {
            period_ms: q.period_ms,
            bucket_ms: q.bucket_ms,
        },
    })
}

/// A counter key as received: not empty, at most [`MAX_COUNTER_KEY`] bytes.
pub fn check_key(key: &str) -> Result<(), ConvertError> {
    if key.is_empty() || key.len() > MAX_COUNTER_KEY {
        return Err(ConvertError::Invalid(format!(
            "a counter key must have 1 to {MAX_COUNTER_KEY} bytes, not {}",
            key.len()
        )));
    }
    Ok(())
}

/// A counter as sent.
pub fn info_to_wire(i: CounterInfo) -> v1::CounterInfo {
    v1::CounterInfo {
        key: i.key,
        used: i.used,
        limit: i.limit,
        refused_at_ms: i.refused_at_ms,
        room_in_ms: i.room_in_ms,
        empty_in_ms: i.empty_in_ms,
    }
}

/// A counter as received.
pub fn info_from_wire(i: v1::CounterInfo) -> CounterInfo {
    CounterInfo {
        key: i.key,
        used: i.used,
        limit: i.limit,
        refused_at_ms: i.refused_at_ms,
        room_in_ms: i.room_in_ms,
        empty_in_ms: i.empty_in_ms,
    }
}

/// A listing request as sent.
pub fn listing_to_wire(listing: Listing, max: usize) -> v1::ListCountersRequest {
    use v1::list_counters_request::Listing as L;
    v1::ListCountersRequest {
        listing: Some(match listing {
            Listing::RefusedSince(ms) => L::RefusedSinceMs(ms),
            Listing::AtLeastPercent(p) => L::AtLeastPercent(p),
        }),
        max: u32::try_from(max.min(MAX_LISTED)).unwrap_or(u32::MAX),
    }
}

/// A listing request as received: the listing and how many at most (a percentage from 1
/// to 100; at most [`MAX_LISTED`]).
pub fn listing_from_wire(r: v1::ListCountersRequest) -> Result<(Listing, usize), ConvertError> {
    use v1::list_counters_request::Listing as L;
    let listing = match r.listing {
        Some(L::RefusedSinceMs(ms)) => Listing::RefusedSince(ms),
        Some(L::AtLeastPercent(p)) if (1..=100).contains(&p) => Listing::AtLeastPercent(p),
        Some(L::AtLeastPercent(p)) => {
            return Err(ConvertError::Invalid(format!(
                "at_least_percent must be from 1 to 100, not {p}"
            )))
        }
        None => {
            return Err(ConvertError::Invalid(
                "a listing needs refused_since_ms or at_least_percent".into(),
            ))
        }
    };
    let max = usize::try_from(r.max).unwrap_or(MAX_LISTED).min(MAX_LISTED);
    Ok((listing, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refusals() {
        let q = CounterQuery {
            key: "p/q/MessageCount/Sender:a@b".into(),
            limit: 3,
            window: WindowSpec::new(60_000, 60),
        };
        assert_eq!(query_from_wire(query_to_wire(&q)).unwrap(), q);
        let mut bad = query_to_wire(&q);
        bad.bucket_ms = 0;
        assert!(query_from_wire(bad).is_err());
        let mut long = query_to_wire(&q);
        long.key = "x".repeat(MAX_COUNTER_KEY + 1);
        assert!(query_from_wire(long).is_err());
        let (l, max) = listing_from_wire(listing_to_wire(Listing::AtLeastPercent(80), 5)).unwrap();
        assert_eq!((l, max), (Listing::AtLeastPercent(80), 5));
        let mut zero = listing_to_wire(Listing::AtLeastPercent(80), 5);
        zero.listing = Some(v1::list_counters_request::Listing::AtLeastPercent(0));
        assert!(listing_from_wire(zero).is_err());
        let info = CounterInfo {
            key: "k".into(),
            used: 1,
            limit: 2,
            refused_at_ms: None,
            room_in_ms: Some(0),
            empty_in_ms: 9,
        };
        assert_eq!(info_from_wire(info_to_wire(info.clone())), info);
    }
}
