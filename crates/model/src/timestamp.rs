//! Wall-clock time as stored in the cluster state: milliseconds since the Unix epoch, shown as
//! RFC 3339 (UTC). The state machine never reads a clock: the proposer stamps each command.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in wall-clock time, to the millisecond, UTC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    /// Milliseconds since 1970-01-01T00:00:00Z.
    pub const fn from_unix_millis(ms: u64) -> Self {
        Timestamp(ms)
    }

    pub const fn unix_millis(self) -> u64 {
        self.0
    }

    /// The system clock now (the API edge stamps commands with it).
    pub fn now() -> Self {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(d.as_millis() as u64)
    }

    /// Time from `earlier` to this one (zero when `earlier` is later).
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// This time plus `d`.
    pub fn plus(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(d.as_millis() as u64))
    }

    /// This time minus `d` (not before the epoch).
    pub fn minus(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(d.as_millis() as u64))
    }

    /// Civil date and time: (year, month, day, hour, minute, second, millisecond).
    fn civil(self) -> (i64, u32, u32, u32, u32, u32, u32) {
        let secs = (self.0 / 1000) as i64;
        let ms = (self.0 % 1000) as u32;
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        let (y, m, d) = civil_from_days(days);
        (y, m, d, rem / 3600, rem / 60 % 60, rem % 60, ms)
    }

    /// `2026-11-21T13:55:00.123456` with microseconds and no zone, as Masakari prints times.
    pub fn to_masakari(self) -> String {
        let (y, mo, d, h, mi, s, ms) = self.civil();
        format!(
            "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:06}",
            ms * 1000
        )
    }

    /// Parses RFC 3339 / ISO 8601 UTC times: `2026-11-21T13:55:00Z`, with optional fraction,
    /// with `Z`, `+00:00` or no zone (taken as UTC), and a space instead of `T`.
    pub fn parse(s: &str) -> Result<Timestamp, String> {
        let bad = || format!("`{s}` is not a time like 2026-11-21T13:55:00Z");
        let b = s.as_bytes();
        if b.len() < 19 || !matches!(b[10], b'T' | b't' | b' ') {
            return Err(bad());
        }
        let num = |r: std::ops::Range<usize>| -> Result<u32, String> {
            let t = std::str::from_utf8(&b[r]).map_err(|_| bad())?;
            if !t.bytes().all(|c| c.is_ascii_digit()) {
                return Err(bad());
            }
            t.parse().map_err(|_| bad())
        };
        if b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
            return Err(bad());
        }
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
            return Err(bad());
        }
        let mut rest = &b[19..];
        let mut ms = 0u32;
        if let Some((&b'.', frac)) = rest.split_first() {
            let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 {
                return Err(bad());
            }
            for (i, c) in frac[..n.min(3)].iter().enumerate() {
                ms += u32::from(c - b'0') * [100, 10, 1][i];
            }
            rest = &frac[n..];
        }
        match rest {
            [] | [b'Z'] | [b'z'] | b"+00:00" | b"-00:00" => {}
            _ => return Err(format!("`{s}`: only UTC times are accepted (end with Z)")),
        }
        let days = days_from_civil(i64::from(y), mo, d);
        let secs = days * 86_400 + i64::from(h * 3600 + mi * 60 + sec);
        if secs < 0 {
            return Err(bad());
        }
        Ok(Timestamp(secs as u64 * 1000 + u64::from(ms)))
    }
}

impl Timestamp {
    /// The RFC 3339 text, written into `buf` without going through `fmt` (every object in
    /// every Raft entry carries timestamps); `None` past the year 9999.
    fn rfc3339(self, buf: &mut [u8; 24]) -> Option<&str> {
        let (y, mo, d, h, mi, s, ms) = self.civil();
        let y = u32::try_from(y).ok().filter(|y| *y <= 9999)?;
        *buf = *b"0000-00-00T00:00:00.000Z";
        for (at, width, value) in [
            (0, 4, y),
            (5, 2, mo),
            (8, 2, d),
            (11, 2, h),
            (14, 2, mi),
            (17, 2, s),
            (20, 3, ms),
        ] {
            let mut v = value;
            for i in (at..at + width).rev() {
                buf[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        }
        std::str::from_utf8(buf).ok()
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 with milliseconds: `2026-11-21T13:55:00.123Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0; 24];
        if let Some(text) = self.rfc3339(&mut buf) {
            return f.write_str(text);
        }
        let (y, mo, d, h, mi, s, ms) = self.civil();
        write!(f, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0; 24];
        match self.rfc3339(&mut buf) {
            Some(text) => s.serialize_str(text),
            None => s.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// Parses the text where it lies, without copying it into a `String` first.
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a UTC time like 2026-11-21T13:55:00Z")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Timestamp, E> {
                Timestamp::parse(s).map_err(E::custom)
            }
        }
        d.deserialize_str(Text)
    }
}

/// What [`Timestamp::parse`] accepts, for the API's document.
const PATTERN: &str = r"^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt ]([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?([Zz]|[+-]00:00)?$";

impl schemars::JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "pattern": PATTERN, "description": "A UTC time (RFC 3339, from 1970)", "example": "2026-11-21T13:55:00.123Z"})
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The inverse of [`civil_from_days`].
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formats_and_parses_known_instants() {
        let t = Timestamp::parse("2026-11-21T13:55:00.123Z").unwrap();
        assert_eq!(t.to_string(), "2026-11-21T13:55:00.123Z");
        assert_eq!(t.to_masakari(), "2026-11-21T13:55:00.123000");
        assert_eq!(
            Timestamp::parse("1970-01-01T00:00:00Z").unwrap(),
            Timestamp(0)
        );
        assert_eq!(
            Timestamp::parse("2000-03-01 00:00:00.5")
                .unwrap()
                .unix_millis(),
            951_868_800_500
        );
        assert_eq!(
            Timestamp::parse("2026-11-21T13:55:00.123456").unwrap(),
            Timestamp::parse("2026-11-21T13:55:00.123+00:00").unwrap()
        );
    }

    #[test]
    fn rejects_what_is_not_a_utc_time() {
        for bad in [
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-11-21T25:00:00Z",
            "2026-11-21T13:55:00+02:00",
            "2026-11-21T13:55:00.Z",
            "2026-11-21X13:55:00Z",
            "+026-11-21T13:55:00Z",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn display_round_trips(ms in 0u64..32_503_680_000_000) {
            let t = Timestamp(ms);
            prop_assert_eq!(Timestamp::parse(&t.to_string()).unwrap(), t);
        }

        #[test]
        fn the_fast_text_is_the_formatted_one(ms in any::<u64>()) {
            let t = Timestamp(ms);
            let (y, mo, d, h, mi, s, milli) = t.civil();
            let slow = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z");
            prop_assert_eq!(t.to_string(), slow.clone());
            prop_assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{slow}\""));
        }

        #[test]
        fn parse_never_panics(s in ".{0,40}") {
            let _ = Timestamp::parse(&s);
        }
    }
}
