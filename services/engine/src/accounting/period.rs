//! Calendar periods (day, ISO week, month) in a time zone: the one home of Accounting's
//! period maths. A period has a key (`2026-11-30`, `2026-W48`, `2026-11`), a first instant
//! and the first instant of the next period. Time zones come from the tz database bundled
//! into the binary (`jiff`'s `tzdb-bundle-always`), so a host without `/usr/share/zoneinfo`
//! computes the same periods.

use jiff::civil::{Date, ISOWeekDate, Weekday};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use std::fmt;

/// The length of an accounting period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeriodKind {
    /// A calendar day (`2026-11-30`); 23 or 25 hours on a DST change.
    Day,
    /// An ISO 8601 week, Monday to Sunday (`2026-W48`); the week's year is the ISO year.
    Week,
    /// A calendar month (`2026-11`).
    Month,
}

impl PeriodKind {
    /// Parses `day`, `week` or `month` (case-insensitive), or Policyd's
    /// `AccountingPeriod` numbers `0`, `1`, `2`.
    pub fn parse(s: &str) -> Option<PeriodKind> {
        match s.trim().to_ascii_lowercase().as_str() {
            "day" | "daily" | "0" => Some(PeriodKind::Day),
            "week" | "weekly" | "1" => Some(PeriodKind::Week),
            "month" | "monthly" | "2" => Some(PeriodKind::Month),
            _ => None,
        }
    }

    /// The canonical name (`day`, `week`, `month`).
    pub fn as_str(self) -> &'static str {
        match self {
            PeriodKind::Day => "day",
            PeriodKind::Week => "week",
            PeriodKind::Month => "month",
        }
    }

    /// The counter window used for a period of this kind (ms): longer than any period of
    /// the kind (a 25-hour day, a 31-day month with a DST hour) with a margin, so nothing
    /// charged in a period leaves the window before the period ends. A counter key names
    /// its period, so the window never spans two periods; the state store forgets the
    /// counter one window after its last charge.
    pub fn window_ms(self) -> u64 {
        const DAY_MS: u64 = 86_400_000;
        match self {
            PeriodKind::Day => 2 * DAY_MS,
            PeriodKind::Week => 8 * DAY_MS,
            PeriodKind::Month => 32 * DAY_MS,
        }
    }
}

impl fmt::Display for PeriodKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One calendar period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    /// Its kind.
    pub kind: PeriodKind,
    /// Its key: `2026-11-30`, `2026-W48` or `2026-11`.
    pub key: String,
    /// Its first instant (ms since the epoch).
    pub start_ms: i64,
    /// The first instant of the next period (ms since the epoch).
    pub end_ms: i64,
}

/// Why a period could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    /// The time zone name is not in the bundled tz database.
    #[error("unknown time zone {0:?}: use an IANA name such as \"UTC\" or \"Europe/Berlin\"")]
    UnknownTimeZone(String),
    /// The instant or the date is outside the supported range.
    #[error("time out of range: {0}")]
    OutOfRange(String),
    /// A period key that is none of `YYYY-MM-DD`, `YYYY-Www`, `YYYY-MM`.
    #[error("bad period {0:?}: expected a day (2026-11-30), an ISO week (2026-W48) or a month (2026-11)")]
    BadKey(String),
}

/// The time zone named `name` (IANA, from the bundled database; `UTC` always works).
pub fn time_zone(name: &str) -> Result<TimeZone, PeriodError> {
    let name = name.trim();
    if name.eq_ignore_ascii_case("utc") {
        return Ok(TimeZone::UTC);
    }
    TimeZone::get(name).map_err(|_| PeriodError::UnknownTimeZone(name.to_string()))
}

fn range(e: impl fmt::Display) -> PeriodError {
    PeriodError::OutOfRange(e.to_string())
}

/// The period of `kind` that `now_ms` falls in, in `tz`.
pub fn period_at(kind: PeriodKind, tz: &TimeZone, now_ms: u64) -> Result<Period, PeriodError> {
    let ms = i64::try_from(now_ms).map_err(range)?;
    let now = Timestamp::from_millisecond(ms)
        .map_err(range)?
        .to_zoned_datetime(tz.clone());
    let date = now.date();
    let (key, first, next) = match kind {
        PeriodKind::Day => (day_key(date), date, date.tomorrow().map_err(range)?),
        PeriodKind::Week => {
            let iso = date.iso_week_date();
            let first = iso.first_of_week().map_err(range)?.date();
            let next = iso.last_of_week().map_err(range)?.date();
            (week_key(iso), first, next.tomorrow().map_err(range)?)
        }
        PeriodKind::Month => (
            format!("{:04}-{:02}", date.year(), date.month()),
            date.first_of_month(),
            date.last_of_month().tomorrow().map_err(range)?,
        ),
    };
    Ok(Period {
        kind,
        key,
        start_ms: start_of(first, tz)?,
        end_ms: start_of(next, tz)?,
    })
}

/// The first instant of `date` in `tz` (midnight, or the first instant after a DST gap
/// that swallows midnight).
fn start_of(date: Date, tz: &TimeZone) -> Result<i64, PeriodError> {
    let zdt = date
        .to_zoned_datetime(tz.clone())
        .map_err(range)?
        .start_of_day()
        .map_err(range)?;
    Ok(zdt.timestamp().as_millisecond())
}

fn day_key(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
}

fn week_key(w: ISOWeekDate) -> String {
    format!("{:04}-W{:02}", w.year(), w.week())
}

/// A period key as an operator writes it (`2026-11-30`, `2026-W48`, `2026-11`): its kind
/// and its canonical spelling (zero-padded, upper-case `W`). The date is checked (no
/// `2026-02-30`, no week 53 in a 52-week year).
pub fn parse_key(s: &str) -> Result<(PeriodKind, String), PeriodError> {
    let bad = || PeriodError::BadKey(s.to_string());
    let t = s.trim();
    let num = |p: &str| -> Result<i64, PeriodError> {
        if p.is_empty() || p.len() > 4 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        p.parse().map_err(|_| bad())
    };
    let parts: Vec<&str> = t.split('-').collect();
    match parts[..] {
        [y, w] if w.starts_with(['W', 'w']) => {
            let (y, w) = (num(y)?, num(&w[1..])?);
            let y = i16::try_from(y).map_err(|_| bad())?;
            let w = i8::try_from(w).map_err(|_| bad())?;
            let iso = ISOWeekDate::new(y, w, Weekday::Monday).map_err(|_| bad())?;
            Ok((PeriodKind::Week, week_key(iso)))
        }
        [y, m] => {
            let (y, m) = (num(y)?, num(m)?);
            let d = Date::new(
                i16::try_from(y).map_err(|_| bad())?,
                i8::try_from(m).map_err(|_| bad())?,
                1,
            )
            .map_err(|_| bad())?;
            Ok((
                PeriodKind::Month,
                format!("{:04}-{:02}", d.year(), d.month()),
            ))
        }
        [y, m, d] => {
            let d = Date::new(
                i16::try_from(num(y)?).map_err(|_| bad())?,
                i8::try_from(num(m)?).map_err(|_| bad())?,
                i8::try_from(num(d)?).map_err(|_| bad())?,
            )
            .map_err(|_| bad())?;
            Ok((PeriodKind::Day, day_key(d)))
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ms of a UTC instant written as RFC 3339.
    fn at(s: &str) -> u64 {
        s.parse::<Timestamp>().unwrap().as_millisecond() as u64
    }

    fn ts(ms: i64) -> String {
        Timestamp::from_millisecond(ms).unwrap().to_string()
    }

    fn p(kind: PeriodKind, tz: &str, now: &str) -> (String, String, String) {
        let tz = time_zone(tz).unwrap();
        let p = period_at(kind, &tz, at(now)).unwrap();
        (p.key, ts(p.start_ms), ts(p.end_ms))
    }

    #[test]
    fn days_in_utc_and_in_a_zone() {
        assert_eq!(
            p(PeriodKind::Day, "UTC", "2026-11-30T23:59:59.999Z"),
            (
                "2026-11-30".into(),
                "2026-11-30T00:00:00Z".into(),
                "2026-12-01T00:00:00Z".into()
            )
        );
        // 23:30 UTC is already the next day in Berlin (UTC+1 in winter).
        assert_eq!(
            p(PeriodKind::Day, "Europe/Berlin", "2026-11-30T23:30:00Z"),
            (
                "2026-12-01".into(),
                "2026-11-30T23:00:00Z".into(),
                "2026-12-01T23:00:00Z".into()
            )
        );
    }

    #[test]
    fn dst_days_are_23_and_25_hours_long() {
        // Berlin springs forward on 2026-03-29 (02:00 -> 03:00) and falls back on
        // 2026-10-25 (03:00 -> 02:00).
        let tz = time_zone("Europe/Berlin").unwrap();
        let spring = period_at(PeriodKind::Day, &tz, at("2026-03-29T12:00:00Z")).unwrap();
        assert_eq!(spring.key, "2026-03-29");
        assert_eq!(spring.end_ms - spring.start_ms, 23 * 3_600_000);
        let autumn = period_at(PeriodKind::Day, &tz, at("2026-10-25T12:00:00Z")).unwrap();
        assert_eq!(autumn.end_ms - autumn.start_ms, 25 * 3_600_000);
        assert_eq!(ts(autumn.start_ms), "2026-10-24T22:00:00Z");
        assert_eq!(ts(autumn.end_ms), "2026-10-25T23:00:00Z");
        // The repeated hour (01:30 local happens twice) is one day.
        let a = period_at(PeriodKind::Day, &tz, at("2026-10-25T00:30:00Z")).unwrap();
        let b = period_at(PeriodKind::Day, &tz, at("2026-10-25T01:30:00Z")).unwrap();
        assert_eq!(
            (a.key.as_str(), b.key.as_str()),
            ("2026-10-25", "2026-10-25")
        );
        // Every window is longer than its period.
        assert!(PeriodKind::Day.window_ms() > (autumn.end_ms - autumn.start_ms) as u64);
    }

    #[test]
    fn a_day_whose_midnight_does_not_exist_starts_at_its_first_instant() {
        // Havana springs forward at midnight (00:00 -> 01:00) on 2026-03-08.
        let tz = time_zone("America/Havana").unwrap();
        let d = period_at(PeriodKind::Day, &tz, at("2026-03-08T12:00:00Z")).unwrap();
        assert_eq!(d.key, "2026-03-08");
        assert_eq!(ts(d.start_ms), "2026-03-08T05:00:00Z", "01:00 CDT");
        assert_eq!(d.end_ms - d.start_ms, 23 * 3_600_000);
    }

    #[test]
    fn iso_weeks_across_year_boundaries() {
        // 2026-12-31 is a Thursday: week 53 of 2026, which ends on Sunday 2027-01-03.
        assert_eq!(
            p(PeriodKind::Week, "UTC", "2027-01-03T12:00:00Z"),
            (
                "2026-W53".into(),
                "2026-12-28T00:00:00Z".into(),
                "2027-01-04T00:00:00Z".into()
            )
        );
        assert_eq!(
            p(PeriodKind::Week, "UTC", "2027-01-04T00:00:00Z").0,
            "2027-W01"
        );
        // 2024-12-30 (Monday) already belongs to 2025-W01.
        assert_eq!(
            p(PeriodKind::Week, "UTC", "2024-12-30T08:00:00Z").0,
            "2025-W01"
        );
        assert_eq!(
            p(PeriodKind::Week, "UTC", "2026-11-26T08:00:00Z").0,
            "2026-W48"
        );
        // A week with a DST change is 167 hours long.
        let tz = time_zone("Europe/Berlin").unwrap();
        let w = period_at(PeriodKind::Week, &tz, at("2026-03-27T12:00:00Z")).unwrap();
        assert_eq!(w.key, "2026-W13");
        assert_eq!(w.end_ms - w.start_ms, (7 * 24 - 1) * 3_600_000);
    }

    #[test]
    fn months_and_leap_years() {
        assert_eq!(
            p(PeriodKind::Month, "UTC", "2028-02-29T23:00:00Z"),
            (
                "2028-02".into(),
                "2028-02-01T00:00:00Z".into(),
                "2028-03-01T00:00:00Z".into()
            )
        );
        assert_eq!(
            p(
                PeriodKind::Month,
                "America/New_York",
                "2027-01-01T03:00:00Z"
            ),
            (
                "2026-12".into(),
                "2026-12-01T05:00:00Z".into(),
                "2027-01-01T05:00:00Z".into()
            )
        );
        let tz = time_zone("Europe/Berlin").unwrap();
        let oct = period_at(PeriodKind::Month, &tz, at("2026-10-10T00:00:00Z")).unwrap();
        assert_eq!(oct.end_ms - oct.start_ms, (31 * 24 + 1) * 3_600_000);
        assert!(PeriodKind::Month.window_ms() > (oct.end_ms - oct.start_ms) as u64);
    }

    #[test]
    fn period_keys_parse_and_are_checked() {
        assert_eq!(
            parse_key("2026-11").unwrap(),
            (PeriodKind::Month, "2026-11".into())
        );
        assert_eq!(
            parse_key("2026-w48").unwrap(),
            (PeriodKind::Week, "2026-W48".into())
        );
        assert_eq!(parse_key("2026-W53").unwrap().1, "2026-W53");
        assert_eq!(
            parse_key(" 2026-11-30 ").unwrap(),
            (PeriodKind::Day, "2026-11-30".into())
        );
        for bad in [
            "2027-W53",
            "2026-02-29",
            "2026-13",
            "2026",
            "26-11-x",
            "",
            "2026-W0",
            "99999-01",
        ] {
            assert!(parse_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_zones_and_far_times_are_errors() {
        assert!(matches!(
            time_zone("Mars/Olympus"),
            Err(PeriodError::UnknownTimeZone(_))
        ));
        assert!(period_at(PeriodKind::Day, &TimeZone::UTC, u64::MAX).is_err());
        assert!(period_at(PeriodKind::Month, &TimeZone::UTC, 253_402_300_799_000).is_err());
    }
}
