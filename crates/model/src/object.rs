//! What every stored object has: an id, a version for optimistic concurrency, and timestamps;
//! and the closed set of object kinds.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::StateError;
use crate::timestamp::Timestamp;

/// The kinds of object in the cluster state.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Segment,
    Host,
    Instance,
    Notification,
    Placement,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Segment => "segment",
            Kind::Host => "host",
            Kind::Instance => "instance",
            Kind::Notification => "notification",
            Kind::Placement => "placement",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identity and bookkeeping of a stored object. The state machine sets `version` and the
/// timestamps; whatever a client sends for them is ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ObjectMeta {
    /// A UUID, chosen when the object is created.
    pub id: String,
    /// 1 at creation, +1 at every update. An update may name the version it read (`If-Match`).
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A new random object id (a version-4 UUID) from 16 random bytes the caller supplies, so this
/// crate stays free of randomness.
pub fn uuid_from_bytes(mut b: [u8; 16]) -> String {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The characters Rust's `str::trim` takes for white space (Unicode's White_Space), as a
/// regular expression class body, so that the API's document says what [`check_name`] does.
macro_rules! white_space {
    () => {
        r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
    };
}

/// A user-chosen object name in the API's document: what [`check_name`] accepts.
pub const NAME_PATTERN: &str = concat!(
    r"^(?=.*[^",
    white_space!(),
    r"])[^\x00-\x1f\x7f-\x9f]{1,255}$"
);

/// A host or instance name in the API's document: what [`check_dns_like_name`] accepts.
pub const DNS_NAME_PATTERN: &str = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$";

/// Text that is not only white space (a command, say).
pub const NOT_BLANK_PATTERN: &str = concat!(r"[^", white_space!(), r"]");

/// A label key and value in the API's document: what `check_labels` accepts.
pub const LABEL_KEY_PATTERN: &str = r"^[A-Za-z0-9._/-]{1,63}$";
pub const LABEL_VALUE_PATTERN: &str = r"^[^\x00-\x1f\x7f-\x9f]{0,255}$";

/// Checks a user-chosen object name: 1 to 255 characters, none of them control characters.
pub fn check_name(field: &str, name: &str) -> Result<(), StateError> {
    if name.trim().is_empty() {
        return Err(StateError::invalid(field, "must not be empty"));
    }
    if name.chars().count() > 255 {
        return Err(StateError::invalid(field, "must be at most 255 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(StateError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// Checks a name that also appears in file names and log lines (hosts, instances): letters,
/// digits, `.`, `_` and `-`, 1 to 63 characters, starting with a letter or digit.
pub fn check_dns_like_name(field: &str, name: &str) -> Result<(), StateError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > 63 {
        return Err(StateError::invalid(
            field,
            "must be 1 to 63 characters long",
        ));
    }
    if !name.chars().all(ok_char) || !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(StateError::invalid(
            field,
            format!(
                "`{name}` must use only letters, digits, '.', '_' and '-', and start with a letter or digit"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_have_the_version_4_shape() {
        let u = uuid_from_bytes([0xff; 16]);
        assert_eq!(u, "ffffffff-ffff-4fff-bfff-ffffffffffff");
        assert_eq!(
            uuid_from_bytes([0; 16]),
            "00000000-0000-4000-8000-000000000000"
        );
    }

    #[test]
    fn names_are_checked_with_the_field_named() {
        assert!(check_name("name", "Zone A (rack 3)").is_ok());
        let e = check_name("name", " ").unwrap_err();
        assert_eq!(e.field(), Some("name"));
        assert!(check_name("name", &"x".repeat(256)).is_err());
        assert!(check_name("name", "a\nb").is_err());
        assert!(check_dns_like_name("name", "web-1.example").is_ok());
        assert!(check_dns_like_name("name", "-web").is_err());
        assert!(check_dns_like_name("name", "web 1").is_err());
        assert!(check_dns_like_name("name", "").is_err());
    }
}
