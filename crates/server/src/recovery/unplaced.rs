//! Why the leader's last plan left copies without a host, for the API to show next to a
//! `pending` instance (soft state of the leader, like the plan itself).

use std::collections::BTreeMap;
use std::sync::Mutex;

/// The last plan's unplaced copies: (instance id, replica) -> the planner's reason.
#[derive(Debug, Default)]
pub struct Unplaced {
    reasons: Mutex<BTreeMap<(String, u32), String>>,
}

impl Unplaced {
    /// Replaces what the previous plan said.
    pub fn set(&self, reasons: BTreeMap<(String, u32), String>) {
        *self.reasons.lock().unwrap_or_else(|p| p.into_inner()) = reasons;
    }

    /// Why copy `replica` of `instance` has no host, if the last plan said.
    pub fn reason(&self, instance: &str, replica: u32) -> Option<String> {
        self.reasons
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(instance.to_string(), replica))
            .cloned()
    }
}
