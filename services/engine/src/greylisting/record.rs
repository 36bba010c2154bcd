//! Greylisting's state and its one home of arithmetic: what one request does to the record
//! of its client's network ([`run`]).
//!
//! A network's record holds its triplets (sender, recipient) with when each was first seen,
//! last used, how often it was deferred and how often it passed, and the network's
//! auto-whitelist and auto-blacklist entries. Every entry carries the time it expires
//! (a triplet: its last use plus `auth_validity` once it passed, else `unauth_validity`; an
//! auto-whitelist entry: its last use plus the auto-whitelist period; an auto-blacklist
//! entry: its creation plus the auto-blacklist period). An expired entry counts as absent
//! wherever it is read, so *when* storage reclaims it changes no answer: the in-process
//! state prunes a network when it adds a triplet and in its sweep, Redis prunes the same way
//! and drops a whole network by its key's TTL. `services/redis/src/greylisting.lua` mirrors
//! this file line by line; the equivalence test holds them to the same answers.

use std::collections::HashMap;

/// Auto-whitelist or auto-blacklist settings for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoList {
    /// Look-back for counting triplets, and an entry's life, in ms.
    pub period_ms: u64,
    /// Triplets first seen within the period that the network needs (0: never listed).
    pub count: u64,
    /// Percentage of them that must have passed (whitelist) or failed (blacklist); 0: at
    /// least `count` of them instead.
    pub percentage: u64,
}

/// The numbers one greylisting op runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GreyParams {
    /// How long a new triplet is deferred, ms.
    pub period_ms: u64,
    /// A passed triplet's life after its last use, ms.
    pub auth_validity_ms: u64,
    /// A never-passed triplet's life after its last attempt, ms.
    pub unauth_validity_ms: u64,
    /// Auto-whitelisting, when on.
    pub awl: Option<AutoList>,
    /// Auto-blacklisting, when on.
    pub abl: Option<AutoList>,
    /// Training mode: never defer or blacklist.
    pub training: bool,
}

/// One triplet's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Triplet {
    /// First attempt, ms since the epoch.
    pub first_seen_ms: u64,
    /// Last attempt.
    pub last_update_ms: u64,
    /// Attempts deferred (the first included).
    pub tries: u64,
    /// Attempts that passed.
    pub count: u64,
    /// When the triplet expires.
    pub expires_ms: u64,
}

/// An auto-whitelist or auto-blacklist entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed {
    /// Created, ms since the epoch.
    pub added_ms: u64,
    /// When it expires.
    pub expires_ms: u64,
}

/// A network's greylisting record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetRecord {
    /// Triplets by [`triplet_field`] (sender, newline, recipient).
    pub triplets: HashMap<Box<str>, Triplet>,
    /// The auto-whitelist entry.
    pub awl: Option<Listed>,
    /// The auto-blacklist entry.
    pub abl: Option<Listed>,
}

/// What a greylisting op decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GreyOutcome {
    /// The network is auto-whitelisted (its entry now lives until `until_ms`): pass.
    AutoWhitelisted {
        /// The entry's new expiry.
        until_ms: u64,
    },
    /// The network is auto-blacklisted: reject.
    Blacklisted {
        /// When the entry expires.
        until_ms: u64,
        /// Listed by this request: (triplets counted, of them never passed).
        listed_now: Option<(u64, u64)>,
    },
    /// Deferred: the triplet is new, or its period has not passed.
    Deferred {
        /// The triplet's first attempt.
        first_seen_ms: u64,
        /// When a retry passes.
        passes_at_ms: u64,
        /// Attempts deferred so far.
        tries: u64,
    },
    /// The triplet's period has passed (or training mode let it through): pass.
    Passed {
        /// The triplet's first attempt.
        first_seen_ms: u64,
        /// Training mode let through what would have been deferred.
        training: bool,
        /// This pass auto-whitelisted the network until then.
        auto_whitelisted_until_ms: Option<u64>,
    },
}

impl GreyOutcome {
    /// A short bounded label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            GreyOutcome::AutoWhitelisted { .. } => "auto_whitelisted",
            GreyOutcome::Blacklisted { .. } => "blacklisted",
            GreyOutcome::Deferred { .. } => "deferred",
            GreyOutcome::Passed { training: true, .. } => "training",
            GreyOutcome::Passed { .. } => "passed",
        }
    }
}

/// The field naming a triplet within its network: sender, `\n`, recipient (neither holds a
/// newline: the policy protocol is line-based). The null sender is the empty string.
pub fn triplet_field(sender: &str, recipient: &str) -> String {
    let mut s = String::with_capacity(sender.len() + 1 + recipient.len());
    s.push_str(sender);
    s.push('\n');
    s.push_str(recipient);
    s
}

/// Whether the listing rule holds: `total >= count` and either `hits*100 >= pct*total`
/// (percentage set) or `hits >= count` (Policyd's two forms; integers, no rounding).
fn listed(rule: &AutoList, total: u64, hits: u64) -> bool {
    if rule.count == 0 || total == 0 || total < rule.count {
        return false;
    }
    if rule.percentage > 0 {
        hits.saturating_mul(100) >= rule.percentage.saturating_mul(total)
    } else {
        hits >= rule.count
    }
}

/// Live triplets first seen at or after `since`, and of them those that passed.
fn tally(rec: &NetRecord, now: u64, since: u64) -> (u64, u64) {
    let mut total = 0;
    let mut passed = 0;
    for t in rec.triplets.values() {
        if t.expires_ms > now && t.first_seen_ms >= since {
            total += 1;
            if t.count > 0 {
                passed += 1;
            }
        }
    }
    (total, passed)
}

/// Drops every expired entry of `rec` (storage housekeeping: answers do not depend on it).
pub fn prune(rec: &mut NetRecord, now: u64) {
    rec.triplets.retain(|_, t| t.expires_ms > now);
    if rec.awl.is_some_and(|l| l.expires_ms <= now) {
        rec.awl = None;
    }
    if rec.abl.is_some_and(|l| l.expires_ms <= now) {
        rec.abl = None;
    }
}

/// When the last entry of `rec` expires (0: it holds none).
pub fn expires(rec: &NetRecord) -> u64 {
    let t = rec
        .triplets
        .values()
        .map(|t| t.expires_ms)
        .max()
        .unwrap_or(0);
    t.max(rec.awl.map_or(0, |l| l.expires_ms))
        .max(rec.abl.map_or(0, |l| l.expires_ms))
}

/// Runs one request on its network's record at `now` (ms), in Policyd's order:
/// auto-whitelist, auto-blacklist, then the triplet (new: auto-blacklist evaluation, then
/// record and defer; known: defer within the period, else pass and auto-whitelist
/// evaluation). Training mode never defers or blacklists.
pub fn run(rec: &mut NetRecord, field: &str, p: &GreyParams, now: u64) -> GreyOutcome {
    if let Some(awl) = p.awl {
        if let Some(l) = rec.awl.as_mut().filter(|l| l.expires_ms > now) {
            l.expires_ms = now.saturating_add(awl.period_ms);
            return GreyOutcome::AutoWhitelisted {
                until_ms: l.expires_ms,
            };
        }
    }
    if !p.training && p.abl.is_some() {
        if let Some(l) = rec.abl.filter(|l| l.expires_ms > now) {
            return GreyOutcome::Blacklisted {
                until_ms: l.expires_ms,
                listed_now: None,
            };
        }
    }
    let live = rec
        .triplets
        .get(field)
        .filter(|t| t.expires_ms > now)
        .copied();
    let Some(mut t) = live else {
        if let Some(abl) = p.abl.filter(|_| !p.training) {
            let (total, passed) = tally(rec, now, now.saturating_sub(abl.period_ms));
            let failed = total - passed;
            if listed(&abl, total, failed) {
                let until_ms = now.saturating_add(abl.period_ms);
                rec.abl = Some(Listed {
                    added_ms: now,
                    expires_ms: until_ms,
                });
                return GreyOutcome::Blacklisted {
                    until_ms,
                    listed_now: Some((total, failed)),
                };
            }
        }
        // A new triplet: the network's expired entries go first (it grows here).
        prune(rec, now);
        rec.triplets.insert(
            field.into(),
            Triplet {
                first_seen_ms: now,
                last_update_ms: now,
                tries: 1,
                count: 0,
                expires_ms: now.saturating_add(p.unauth_validity_ms),
            },
        );
        let passes_at_ms = now.saturating_add(p.period_ms);
        return if p.training {
            GreyOutcome::Passed {
                first_seen_ms: now,
                training: true,
                auto_whitelisted_until_ms: None,
            }
        } else {
            GreyOutcome::Deferred {
                first_seen_ms: now,
                passes_at_ms,
                tries: 1,
            }
        };
    };
    t.last_update_ms = now;
    let passes_at_ms = t.first_seen_ms.saturating_add(p.period_ms);
    let early = now < passes_at_ms;
    if early && !p.training {
        t.tries += 1;
        t.expires_ms = now.saturating_add(if t.count > 0 {
            p.auth_validity_ms
        } else {
            p.unauth_validity_ms
        });
        rec.triplets.insert(field.into(), t);
        return GreyOutcome::Deferred {
            first_seen_ms: t.first_seen_ms,
            passes_at_ms,
            tries: t.tries,
        };
    }
    t.count += 1;
    t.expires_ms = now.saturating_add(p.auth_validity_ms);
    rec.triplets.insert(field.into(), t);
    let mut auto_whitelisted_until_ms = None;
    if let Some(awl) = p.awl {
        let (total, passed) = tally(rec, now, now.saturating_sub(awl.period_ms));
        if listed(&awl, total, passed) {
            let until_ms = now.saturating_add(awl.period_ms);
            rec.awl = Some(Listed {
                added_ms: now,
                expires_ms: until_ms,
            });
            auto_whitelisted_until_ms = Some(until_ms);
        }
    }
    GreyOutcome::Passed {
        first_seen_ms: t.first_seen_ms,
        training: early,
        auto_whitelisted_until_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    fn params() -> GreyParams {
        GreyParams {
            period_ms: 5 * MIN,
            auth_validity_ms: 7 * 24 * 60 * MIN,
            unauth_validity_ms: 24 * 60 * MIN,
            awl: None,
            abl: None,
            training: false,
        }
    }

    #[test]
    fn defer_then_retry_early_then_pass() {
        let mut rec = NetRecord::default();
        let p = params();
        let f = triplet_field("a@x.org", "b@y.org");
        let t0 = 1_000_000;
        assert_eq!(
            run(&mut rec, &f, &p, t0),
            GreyOutcome::Deferred {
                first_seen_ms: t0,
                passes_at_ms: t0 + 5 * MIN,
                tries: 1
            }
        );
        assert!(matches!(
            run(&mut rec, &f, &p, t0 + 5 * MIN - 1),
            GreyOutcome::Deferred { tries: 2, .. }
        ));
        assert!(matches!(
            run(&mut rec, &f, &p, t0 + 5 * MIN),
            GreyOutcome::Passed {
                training: false,
                ..
            }
        ));
        // Another recipient is another triplet.
        let g = triplet_field("a@x.org", "c@y.org");
        assert!(matches!(
            run(&mut rec, &g, &p, t0 + 5 * MIN),
            GreyOutcome::Deferred { tries: 1, .. }
        ));
    }

    #[test]
    fn unpassed_triplet_expires_after_unauth_validity() {
        let mut rec = NetRecord::default();
        let p = params();
        let f = triplet_field("a@x.org", "b@y.org");
        run(&mut rec, &f, &p, 0);
        let later = p.unauth_validity_ms;
        // Expired: counts as new again (deferred, first seen now).
        assert_eq!(
            run(&mut rec, &f, &p, later),
            GreyOutcome::Deferred {
                first_seen_ms: later,
                passes_at_ms: later + p.period_ms,
                tries: 1
            }
        );
    }

    #[test]
    fn training_never_defers_and_counts_passes() {
        let mut rec = NetRecord::default();
        let p = GreyParams {
            training: true,
            ..params()
        };
        let f = triplet_field("a@x.org", "b@y.org");
        assert!(matches!(
            run(&mut rec, &f, &p, 0),
            GreyOutcome::Passed { training: true, .. }
        ));
        assert!(matches!(
            run(&mut rec, &f, &p, 1),
            GreyOutcome::Passed { training: true, .. }
        ));
        assert_eq!(rec.triplets[f.as_str()].count, 1);
    }

    #[test]
    fn auto_whitelist_by_count_and_by_percentage() {
        let p = GreyParams {
            awl: Some(AutoList {
                period_ms: 60 * MIN,
                count: 2,
                percentage: 0,
            }),
            ..params()
        };
        let mut rec = NetRecord::default();
        for r in ["r1", "r2"] {
            run(&mut rec, &triplet_field("s", r), &p, 0);
        }
        assert!(matches!(
            run(&mut rec, &triplet_field("s", "r1"), &p, 5 * MIN),
            GreyOutcome::Passed {
                auto_whitelisted_until_ms: None,
                ..
            }
        ));
        assert_eq!(
            run(&mut rec, &triplet_field("s", "r2"), &p, 5 * MIN),
            GreyOutcome::Passed {
                first_seen_ms: 0,
                training: false,
                auto_whitelisted_until_ms: Some(65 * MIN)
            }
        );
        // Any triplet of the network now passes, and the entry is refreshed.
        assert_eq!(
            run(&mut rec, &triplet_field("new", "r9"), &p, 6 * MIN),
            GreyOutcome::AutoWhitelisted { until_ms: 66 * MIN }
        );
        // By percentage: 3 triplets, 2 passed = 66 %: not 70 %, but 60 %.
        let pct = |percentage| GreyParams {
            awl: Some(AutoList {
                period_ms: 60 * MIN,
                count: 3,
                percentage,
            }),
            ..params()
        };
        for (percentage, listed) in [(70, false), (60, true)] {
            let p = pct(percentage);
            let mut rec = NetRecord::default();
            for r in ["r1", "r2", "r3"] {
                run(&mut rec, &triplet_field("s", r), &p, 0);
            }
            run(&mut rec, &triplet_field("s", "r1"), &p, 5 * MIN);
            let out = run(&mut rec, &triplet_field("s", "r2"), &p, 5 * MIN);
            assert_eq!(
                matches!(
                    out,
                    GreyOutcome::Passed {
                        auto_whitelisted_until_ms: Some(_),
                        ..
                    }
                ),
                listed,
                "{percentage} %: {out:?}"
            );
        }
    }

    #[test]
    fn auto_blacklist_by_count_and_expiry() {
        let p = GreyParams {
            abl: Some(AutoList {
                period_ms: 60 * MIN,
                count: 3,
                percentage: 0,
            }),
            ..params()
        };
        let mut rec = NetRecord::default();
        for r in ["r1", "r2", "r3"] {
            assert!(matches!(
                run(&mut rec, &triplet_field("s", r), &p, 0),
                GreyOutcome::Deferred { .. }
            ));
        }
        assert_eq!(
            run(&mut rec, &triplet_field("s", "r4"), &p, MIN),
            GreyOutcome::Blacklisted {
                until_ms: 61 * MIN,
                listed_now: Some((3, 3))
            }
        );
        // Even a known triplet past its period is refused while listed.
        assert!(matches!(
            run(&mut rec, &triplet_field("s", "r1"), &p, 10 * MIN),
            GreyOutcome::Blacklisted {
                listed_now: None,
                ..
            }
        ));
        // The entry expires; the old triplets are out of the look-back by then.
        assert!(matches!(
            run(&mut rec, &triplet_field("s", "r1"), &p, 61 * MIN),
            GreyOutcome::Passed { .. }
        ));
        // Training mode never blacklists.
        let t = GreyParams {
            training: true,
            ..p
        };
        let mut rec = NetRecord::default();
        for r in ["r1", "r2", "r3", "r4"] {
            assert!(matches!(
                run(&mut rec, &triplet_field("s", r), &t, 0),
                GreyOutcome::Passed { training: true, .. }
            ));
        }
    }

    #[test]
    fn auto_blacklist_by_percentage() {
        let p = GreyParams {
            abl: Some(AutoList {
                period_ms: 60 * MIN,
                count: 2,
                percentage: 50,
            }),
            ..params()
        };
        let mut rec = NetRecord::default();
        run(&mut rec, &triplet_field("s", "r1"), &p, 0);
        run(&mut rec, &triplet_field("s", "r2"), &p, 0);
        run(&mut rec, &triplet_field("s", "r1"), &p, 5 * MIN); // r1 passed: 1 of 2 failed
        assert!(matches!(
            run(&mut rec, &triplet_field("s", "r3"), &p, 6 * MIN),
            GreyOutcome::Blacklisted {
                listed_now: Some((2, 1)),
                ..
            }
        ));
    }
}
