//! Fresh object ids (UUIDs from the OS's randomness) for what the API and the recovery loop
//! create.

use model::Timestamp;
use model::object::uuid_from_bytes;

/// A fresh object id.
pub fn new_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // No OS randomness: fall back to the clock, still unique enough for one cluster.
        let t = Timestamp::now().unix_millis().to_le_bytes();
        b[..8].copy_from_slice(&t);
    }
    uuid_from_bytes(b)
}
