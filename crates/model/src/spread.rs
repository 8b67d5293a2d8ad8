//! Spreading a clone's copies over zones (a `clone` or `promotable` instance): the zones are
//! the values of a host label (`zone` by default) among the hosts of the instance's segment.
//! The planner places each copy in the zone that holds the fewest of them, so a whole zone
//! can fail and the others keep copies; `max_skew` is how far apart the zones may drift
//! before copies are spread again. A host without the label takes no copy of the instance.

use serde::{Deserialize, Serialize};

use crate::error::StateError;

/// "Spread the copies over the values of host label `label`."
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spread {
    /// The host label whose values are the zones.
    #[serde(default = "zone")]
    pub label: String,
    /// The most copies a zone may hold beyond the zone with the fewest (among the zones
    /// with a host that can take one).
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_skew: u32,
}

fn zone() -> String {
    "zone".to_string()
}

fn one() -> u32 {
    1
}

impl Spread {
    /// Checks the label's name and the skew.
    pub fn validate(&self) -> Result<(), StateError> {
        let key_ok = !self.label.is_empty()
            && self.label.len() <= 63
            && self
                .label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c));
        if !key_ok {
            return Err(StateError::invalid(
                "spread.label",
                "a label key: 1 to 63 letters, digits, '.', '_', '-' or '/'",
            ));
        }
        if !(1..=1000).contains(&self.max_skew) {
            return Err(StateError::invalid("spread.max_skew", "must be 1 to 1000"));
        }
        Ok(())
    }
}
