//! The host side of leases: the [`keeper`](keeper::LeaseKeeper) renews this host's lease
//! through a [`channel`](channel::RenewalChannel) and publishes its assignments.

pub mod channel;
pub mod keeper;

use engine::Instant;
use model::Timestamp;

/// Converts a time on the agent's clock to wall-clock time, for people and tests.
pub fn wall(t: Instant, now: Instant) -> Timestamp {
    if t >= now {
        Timestamp::now().plus(t.saturating_since(now))
    } else {
        Timestamp::now().minus(now.saturating_since(t))
    }
}
