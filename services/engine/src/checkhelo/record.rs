//! A client address's CheckHelo record and the one home of its arithmetic ([`run`]); the
//! Redis script `services/redis/src/checkhelo.lua` is its only mirror.
//!
//! The record keeps, per client address, the distinct HELO names it used (lower-cased)
//! with when each was last used, and until when the address stays blacklisted for having
//! used a blacklisted HELO. Windows are real rolling windows ending now: a HELO counts for
//! HRP while `now - last_used < hrp_window`, a blacklisting lasts `blacklist` ms after the
//! blacklisted HELO was last used (Policyd compared `LastUpdate` with the period itself,
//! so everything ever tracked counted). Entries older than the longest window any op asked
//! for are dropped; at most [`MAX_HELOS`] names are kept (the least recently used goes).

use super::settings::MAX_HRP_LIMIT;

/// The most HELO names kept per client address (one more than the highest HRP limit, so
/// every limit can be exceeded).
pub const MAX_HELOS: usize = MAX_HRP_LIMIT as usize + 1;

/// One client address's record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeloRecord {
    /// HELO names (lower-cased) and when each was last used, ms since the epoch.
    pub helos: Vec<(Box<str>, u64)>,
    /// Blacklisted until then (ms since the epoch; 0: never blacklisted).
    pub blacklisted_until_ms: u64,
    /// The longest window an op on this record asked for: entries older are dropped.
    pub keep_ms: u64,
}

/// What an op checks, from the merged settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeloParams {
    /// HRP window, ms (0: HRP off).
    pub hrp_window_ms: u64,
    /// HRP limit: more distinct HELOs within the window are refused.
    pub hrp_limit: u64,
    /// How long using a blacklisted HELO keeps the address blacklisted, ms (0: the
    /// blacklist is not checked through the record).
    pub blacklist_ms: u64,
    /// The HELO of this request is on the blacklist.
    pub blacklisted_now: bool,
}

/// What an op decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeloOutcome {
    /// Neither blacklisted nor over the HRP limit; `distinct` HELOs within the HRP window
    /// (0 when HRP is off).
    Passed {
        /// Distinct HELOs within the window, this one included.
        distinct: u64,
    },
    /// The address used a blacklisted HELO; rejected until then.
    Blacklisted {
        /// ms since the epoch.
        until_ms: u64,
    },
    /// More distinct HELOs within the window than the limit.
    HrpExceeded {
        /// Distinct HELOs within the window, this one included.
        distinct: u64,
    },
}

impl HeloOutcome {
    /// The metric label (`sluice_checkhelo_total{result}`).
    pub fn label(&self) -> &'static str {
        match self {
            HeloOutcome::Passed { .. } => "passed",
            HeloOutcome::Blacklisted { .. } => "blacklisted",
            HeloOutcome::HrpExceeded { .. } => "hrp_exceeded",
        }
    }
}

/// Runs one request's HELO on `rec` at `now` (`dry_run`: decide as if, change nothing).
pub fn run(
    rec: &mut HeloRecord,
    helo: &str,
    p: &HeloParams,
    now: u64,
    dry_run: bool,
) -> HeloOutcome {
    let helo = helo.to_lowercase();
    let keep = rec.keep_ms.max(p.hrp_window_ms).max(p.blacklist_ms);
    let mut bl_until = rec.blacklisted_until_ms;
    if p.blacklisted_now && p.blacklist_ms > 0 {
        bl_until = bl_until.max(now.saturating_add(p.blacklist_ms));
    }
    let within = |last: u64| p.hrp_window_ms > 0 && now.saturating_sub(last) < p.hrp_window_ms;
    let mut distinct = rec
        .helos
        .iter()
        .filter(|(h, last)| **h != *helo && within(*last))
        .count() as u64;
    if p.hrp_window_ms > 0 {
        distinct += 1; // this one, used now
    }
    if !dry_run {
        rec.keep_ms = keep;
        rec.helos
            .retain(|(_, last)| last.saturating_add(keep) > now);
        match rec.helos.iter_mut().find(|(h, _)| **h == *helo) {
            Some(e) => e.1 = now,
            None => {
                if rec.helos.len() >= MAX_HELOS {
                    // The least recently used goes (ties: the smallest name, as the script).
                    if let Some(oldest) = (0..rec.helos.len()).min_by(|&a, &b| {
                        let (ha, ta) = &rec.helos[a];
                        let (hb, tb) = &rec.helos[b];
                        (ta, ha).cmp(&(tb, hb))
                    }) {
                        rec.helos.swap_remove(oldest);
                    }
                }
                rec.helos.push((helo.into_boxed_str(), now));
            }
        }
        rec.blacklisted_until_ms = bl_until;
    }
    if p.blacklist_ms > 0 && bl_until > now {
        HeloOutcome::Blacklisted { until_ms: bl_until }
    } else if p.hrp_window_ms > 0 && p.hrp_limit > 0 && distinct > p.hrp_limit {
        HeloOutcome::HrpExceeded { distinct }
    } else {
        HeloOutcome::Passed {
            distinct: if p.hrp_window_ms > 0 { distinct } else { 0 },
        }
    }
}

/// When the record is of no more use (ms since the epoch): its last entry and its
/// blacklisting have both run out.
pub fn expires(rec: &HeloRecord) -> u64 {
    let last = rec.helos.iter().map(|(_, t)| *t).max().unwrap_or(0);
    last.saturating_add(rec.keep_ms)
        .max(rec.blacklisted_until_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    fn hrp(limit: u64) -> HeloParams {
        HeloParams {
            hrp_window_ms: 10 * MIN,
            hrp_limit: limit,
            ..Default::default()
        }
    }

    #[test]
    fn hrp_counts_distinct_helos_within_a_rolling_window() {
        let mut r = HeloRecord::default();
        let p = hrp(2);
        assert_eq!(
            run(&mut r, "a.example", &p, 0, false),
            HeloOutcome::Passed { distinct: 1 }
        );
        assert_eq!(
            run(&mut r, "A.example", &p, MIN, false),
            HeloOutcome::Passed { distinct: 1 },
            "case does not make a new HELO"
        );
        assert_eq!(
            run(&mut r, "b.example", &p, 2 * MIN, false),
            HeloOutcome::Passed { distinct: 2 }
        );
        assert_eq!(
            run(&mut r, "c.example", &p, 3 * MIN, true),
            HeloOutcome::HrpExceeded { distinct: 3 },
            "a dry run decides the same"
        );
        assert_eq!(r.helos.len(), 2, "and changes nothing");
        assert_eq!(
            run(&mut r, "c.example", &p, 3 * MIN, false),
            HeloOutcome::HrpExceeded { distinct: 3 }
        );
        // a.example was last used at 1 min: it leaves the window at 11 min.
        assert_eq!(
            run(&mut r, "c.example", &p, 11 * MIN - 1, false),
            HeloOutcome::HrpExceeded { distinct: 3 }
        );
        assert_eq!(
            run(&mut r, "c.example", &p, 11 * MIN, false),
            HeloOutcome::Passed { distinct: 2 }
        );
        // Long after, everything has left the window (Policyd counted it for ever).
        assert_eq!(
            run(&mut r, "d.example", &p, 100 * MIN, false),
            HeloOutcome::Passed { distinct: 1 }
        );
        assert_eq!(r.helos.len(), 1, "old entries dropped");
        assert_eq!(expires(&r), 110 * MIN);
    }

    #[test]
    fn a_blacklisted_helo_blacklists_its_address_for_the_period() {
        let mut r = HeloRecord::default();
        let p = HeloParams {
            blacklist_ms: 5 * MIN,
            ..Default::default()
        };
        let bad = HeloParams {
            blacklisted_now: true,
            ..p
        };
        assert_eq!(
            run(&mut r, "ok.example", &p, 0, false),
            HeloOutcome::Passed { distinct: 0 }
        );
        assert_eq!(
            run(&mut r, "localhost", &bad, MIN, false),
            HeloOutcome::Blacklisted { until_ms: 6 * MIN }
        );
        assert_eq!(
            run(&mut r, "ok.example", &p, 6 * MIN - 1, false),
            HeloOutcome::Blacklisted { until_ms: 6 * MIN }
        );
        assert_eq!(
            run(&mut r, "ok.example", &p, 6 * MIN, false),
            HeloOutcome::Passed { distinct: 0 }
        );
        let hrp_only = HeloParams {
            blacklist_ms: 0,
            ..hrp(5)
        };
        let mut r2 = HeloRecord::default();
        run(&mut r2, "localhost", &bad, 0, false);
        assert_eq!(
            run(&mut r2, "ok.example", &hrp_only, 1, false),
            HeloOutcome::Passed { distinct: 2 },
            "a policy without the blacklist ignores it"
        );
    }

    #[test]
    fn at_most_max_helos_are_kept() {
        let mut r = HeloRecord::default();
        let p = hrp(MAX_HRP_LIMIT);
        for i in 0..(MAX_HELOS as u64 + 5) {
            run(&mut r, &format!("h{i}.example"), &p, i, false);
        }
        assert_eq!(r.helos.len(), MAX_HELOS);
        assert!(
            r.helos.iter().all(|(h, _)| &**h != "h0.example"),
            "the oldest went"
        );
        assert_eq!(
            run(&mut r, "new.example", &p, 1000, false),
            HeloOutcome::HrpExceeded {
                distinct: MAX_HELOS as u64 + 1
            },
            "the kept HELOs and this one"
        );
    }
}
