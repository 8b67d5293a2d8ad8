//! Durations in specs and API bodies, written the way operators write them: `500ms`, `30s`,
//! `5m`, `1h`, or combined `1m30s`. Use with `#[serde(with = "crate::duration_text")]`.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// What [`parse`] accepts, for the API's document: one to four parts of at most 12 digits and
/// a unit (so no sum can overflow).
pub const PATTERN: &str = r"^([0-9]{1,12}(ms|s|m|h)){1,4}$";

/// Parses `500ms`, `30s`, `5m`, `2h`, `1m30s`; a bare number is refused (its unit is a guess).
pub fn parse(s: &str) -> Result<Duration, String> {
    let bad = || format!("`{s}` is not a duration like 500ms, 30s, 5m or 1h");
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    let mut parts = 0;
    while !rest.is_empty() {
        parts += 1;
        if parts > 4 {
            return Err(bad());
        }
        let n = rest.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || n > 12 {
            return Err(bad());
        }
        let value: u64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit_ms: u64 = match &rest[..u] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return Err(bad()),
        };
        rest = &rest[u..];
        let part = value.checked_mul(unit_ms).map(Duration::from_millis);
        total = part.and_then(|p| total.checked_add(p)).ok_or_else(bad)?;
    }
    Ok(total)
}

/// The shortest exact form: `1h`, `90s`, `1500ms`.
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else if ms.is_multiple_of(3_600_000) && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}s", ms / 1000)
    }
}

pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse(&s).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_the_units_operators_write() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        for bad in ["", "30", "s", "5 m", "1d", "-1s", "1.5s", "99999999999999s"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn format_round_trips(ms in 0u64..10_000_000_000) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(parse(&format(d)), Ok(d));
        }
    }
}

/// The same for `Option<Duration>` fields (absent stays `None`).
pub mod option {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| super::parse(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}
