//! A DELAY quota's settings as operators write them (`release`, `max_held`,
//! `max_hold_age`, `on_expiry` on the quota), their defaults and range checks.

use serde::{Deserialize, Serialize};

/// Default of `max_held`: messages one queue (policy, quota, track value) may hold.
pub const DEFAULT_MAX_HELD: u32 = 1_000;
/// Most `max_held` may be.
pub const MAX_MAX_HELD: u32 = 1_000_000;
/// Default of `max_hold_age` in seconds: a day.
pub const DEFAULT_MAX_HOLD_AGE_SECS: u64 = 86_400;
/// Least `max_hold_age` may be (seconds).
pub const MIN_MAX_HOLD_AGE_SECS: u64 = 10;
/// Most `max_hold_age` may be (seconds): 30 days (Postfix's own `maximal_queue_lifetime`
/// is 5 days by default; held mail does not age in Postfix's eyes).
pub const MAX_MAX_HOLD_AGE_SECS: u64 = 30 * 86_400;

/// How held messages of a queue leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseShape {
    /// As many as the quota has room for, as soon as it has room.
    #[default]
    Room,
    /// One at a time, evenly spread: a limit of 100 per hour releases one message every
    /// 36 s (and only when it has room).
    Paced,
}

impl ReleaseShape {
    /// Its name as operators write it.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseShape::Room => "room",
            ReleaseShape::Paced => "paced",
        }
    }

    /// Parses `room` or `paced` (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "room" => Some(ReleaseShape::Room),
            "paced" => Some(ReleaseShape::Paced),
            _ => None,
        }
    }
}

/// What happens to a message held longer than `max_hold_age`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnExpiry {
    /// Returned to its sender (Postfix bounces it).
    #[default]
    Return,
    /// Released anyway, charged but past the limit.
    Release,
}

impl OnExpiry {
    /// Its name as operators write it.
    pub fn as_str(self) -> &'static str {
        match self {
            OnExpiry::Return => "return",
            OnExpiry::Release => "release",
        }
    }

    /// Parses `return` or `release` (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "return" => Some(OnExpiry::Return),
            "release" => Some(OnExpiry::Release),
            _ => None,
        }
    }
}

/// A DELAY quota's compiled settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelaySettings {
    /// How held messages leave.
    pub release: ReleaseShape,
    /// Most messages one queue holds; beyond it the quota answers `DEFER`.
    pub max_held: u32,
    /// Longest a message stays held (ms).
    pub max_hold_age_ms: u64,
    /// What happens then.
    pub on_expiry: OnExpiry,
}

impl Default for DelaySettings {
    fn default() -> Self {
        DelaySettings {
            release: ReleaseShape::Room,
            max_held: DEFAULT_MAX_HELD,
            max_hold_age_ms: DEFAULT_MAX_HOLD_AGE_SECS * 1000,
            on_expiry: OnExpiry::Return,
        }
    }
}

impl DelaySettings {
    /// Whether these settings are within the ranges [`compile`] accepts (settings that
    /// arrive from elsewhere: another server's hold request).
    pub fn check(&self) -> Result<(), String> {
        let again = compile(
            Some(self.release.as_str()),
            Some(u64::from(self.max_held)),
            Some(self.max_hold_age_ms / 1000),
            Some(self.on_expiry.as_str()),
        )
        .map_err(|(_, e)| e)?;
        if again != *self {
            return Err("max_hold_age must be a whole number of seconds".into());
        }
        Ok(())
    }
}

/// The settings as written on a quota (every one optional), checked. `Err` names the
/// field and what it accepts.
pub fn compile(
    release: Option<&str>,
    max_held: Option<u64>,
    max_hold_age: Option<u64>,
    on_expiry: Option<&str>,
) -> Result<DelaySettings, (&'static str, String)> {
    let mut s = DelaySettings::default();
    if let Some(r) = release {
        s.release = ReleaseShape::parse(r).ok_or_else(|| {
            (
                "release",
                format!("unknown release shape {r:?} (room or paced)"),
            )
        })?;
    }
    if let Some(n) = max_held {
        if !(1..=u64::from(MAX_MAX_HELD)).contains(&n) {
            return Err((
                "max_held",
                format!("max_held {n} is out of range (1 to {MAX_MAX_HELD})"),
            ));
        }
        s.max_held = n as u32;
    }
    if let Some(secs) = max_hold_age {
        if !(MIN_MAX_HOLD_AGE_SECS..=MAX_MAX_HOLD_AGE_SECS).contains(&secs) {
            return Err((
                "max_hold_age",
                format!(
                    "max_hold_age {secs} s is out of range ({MIN_MAX_HOLD_AGE_SECS} s to {MAX_MAX_HOLD_AGE_SECS} s, 30 days)"
                ),
            ));
        }
        s.max_hold_age_ms = secs * 1000;
    }
    if let Some(e) = on_expiry {
        s.on_expiry = OnExpiry::parse(e).ok_or_else(|| {
            (
                "on_expiry",
                format!("unknown on_expiry {e:?} (return or release)"),
            )
        })?;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_ranges() {
        assert_eq!(
            compile(None, None, None, None),
            Ok(DelaySettings::default())
        );
        let s = compile(Some("Paced"), Some(5), Some(60), Some("release")).unwrap();
        assert_eq!(s.release, ReleaseShape::Paced);
        assert_eq!(s.max_held, 5);
        assert_eq!(s.max_hold_age_ms, 60_000);
        assert_eq!(s.on_expiry, OnExpiry::Release);
        assert_eq!(
            compile(Some("soon"), None, None, None).unwrap_err().0,
            "release"
        );
        assert_eq!(
            compile(None, Some(0), None, None).unwrap_err().0,
            "max_held"
        );
        assert_eq!(
            compile(None, Some(u64::MAX), None, None).unwrap_err().0,
            "max_held"
        );
        assert_eq!(
            compile(None, None, Some(9), None).unwrap_err().0,
            "max_hold_age"
        );
        assert_eq!(
            compile(None, None, Some(u64::MAX), None).unwrap_err().0,
            "max_hold_age"
        );
        assert_eq!(
            compile(None, None, None, Some("bounce")).unwrap_err().0,
            "on_expiry"
        );
    }
}
