//! The newest log entries, kept in memory both decoded and encoded (JSON).
//!
//! A leader replicates each entry right after appending it. Without this, every follower's
//! copy meant reading the entry back from redb, decoding its JSON, and encoding it again for
//! the wire: two decodes and two encodes per entry with two followers. With it, the leader
//! clones the decoded entry and puts the bytes it already encoded for its log on the wire;
//! a follower stores the bytes it received instead of encoding the entry once more.
//!
//! The cache mirrors the log: appends replace entries, truncations and purges remove them,
//! in the order openraft issues them, so an index found here holds the log's entry at that
//! index. The oldest entries leave once the cache holds more than [`KEEP_BYTES`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::types::{Entry, LogId};

/// Entries' JSON texts by id, as a leader sent them.
pub type EncodedTexts = Vec<(LogId, Arc<[u8]>)>;

/// The cache keeps at most about this many encoded bytes.
pub const KEEP_BYTES: usize = 8 << 20;

/// One cached entry.
#[derive(Clone)]
struct Cached {
    entry: Entry,
    bytes: Arc<[u8]>,
}

#[derive(Default)]
struct Inner {
    by_index: BTreeMap<u64, Cached>,
    bytes: usize,
    /// Encodings received from a leader, offered to the append that follows.
    offered: EncodedTexts,
}

/// See the module documentation. Shared by the log store and the network.
#[derive(Default)]
pub struct RecentEntries {
    inner: Mutex<Inner>,
}

impl RecentEntries {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records an appended entry and its encoding (replacing what was at its index).
    pub fn insert(&self, entry: Entry, bytes: Arc<[u8]>) {
        let mut inner = self.lock();
        inner.bytes += bytes.len();
        let index = entry.log_id.index;
        if let Some(old) = inner.by_index.insert(index, Cached { entry, bytes }) {
            inner.bytes -= old.bytes.len();
        }
        while inner.bytes > KEEP_BYTES && inner.by_index.len() > 1 {
            if let Some((_, old)) = inner.by_index.pop_first() {
                inner.bytes -= old.bytes.len();
            }
        }
    }

    /// Entries from `index` on were deleted (a truncation).
    pub fn remove_from(&self, index: u64) {
        let mut inner = self.lock();
        let removed = inner.by_index.split_off(&index);
        inner.bytes -= removed.values().map(|c| c.bytes.len()).sum::<usize>();
    }

    /// Entries up to `index` were purged.
    pub fn remove_upto(&self, index: u64) {
        let mut inner = self.lock();
        let kept = match index.checked_add(1) {
            Some(next) => inner.by_index.split_off(&next),
            None => BTreeMap::new(),
        };
        let removed = std::mem::replace(&mut inner.by_index, kept);
        inner.bytes -= removed.values().map(|c| c.bytes.len()).sum::<usize>();
    }

    /// The cached entries in `from..=to` that form its end: the longest run of cached
    /// indexes ending at `to`. Returns the first index of that run (`to + 1` when none is
    /// cached) and the entries.
    pub fn suffix(&self, from: u64, to: u64) -> (u64, Vec<Entry>) {
        let inner = self.lock();
        let mut first = to.saturating_add(1);
        while first > from && inner.by_index.contains_key(&(first - 1)) {
            first -= 1;
        }
        if first > to {
            return (first, Vec::new());
        }
        let entries = inner
            .by_index
            .range(first..=to)
            .map(|(_, c)| c.entry.clone())
            .collect();
        (first, entries)
    }

    /// The encoding of the entry with exactly this id, if cached.
    pub fn bytes_of(&self, log_id: &LogId) -> Option<Arc<[u8]>> {
        let inner = self.lock();
        inner
            .by_index
            .get(&log_id.index)
            .filter(|c| c.entry.log_id == *log_id)
            .map(|c| c.bytes.clone())
    }

    /// Encodings a leader sent, for the append of those entries that follows (it takes the
    /// ones it finds; the next offer replaces the rest).
    pub fn offer(&self, encoded: EncodedTexts) {
        self.lock().offered = encoded;
    }

    /// Takes the offered encoding of the entry with this id.
    pub fn take_offered(&self, log_id: &LogId) -> Option<Arc<[u8]>> {
        let mut inner = self.lock();
        let at = inner.offered.iter().position(|(id, _)| id == log_id)?;
        Some(inner.offered.swap_remove(at).1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Proposal;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(Proposal(Vec::new())),
        }
    }

    fn put(r: &RecentEntries, term: u64, index: u64, size: usize) {
        r.insert(entry(term, index), vec![b'x'; size].into());
    }

    fn indexes(r: &RecentEntries, from: u64, to: u64) -> (u64, Vec<u64>) {
        let (first, entries) = r.suffix(from, to);
        (first, entries.iter().map(|e| e.log_id.index).collect())
    }

    #[test]
    fn it_mirrors_appends_truncations_and_purges() {
        let r = RecentEntries::default();
        for i in 1..=5 {
            put(&r, 1, i, 10);
        }
        assert_eq!(indexes(&r, 1, 5), (1, vec![1, 2, 3, 4, 5]));
        assert_eq!(indexes(&r, 2, 4), (2, vec![2, 3, 4]));
        assert_eq!(indexes(&r, 7, 9), (10, vec![]), "nothing cached there");

        r.remove_from(4);
        assert_eq!(
            indexes(&r, 1, 5),
            (6, vec![]),
            "4 and 5 are gone: no suffix"
        );
        assert_eq!(indexes(&r, 1, 3), (1, vec![1, 2, 3]));
        put(&r, 2, 4, 10);
        assert!(r.bytes_of(&entry(2, 4).log_id).is_some());
        assert!(
            r.bytes_of(&entry(1, 4).log_id).is_none(),
            "the replaced entry's id"
        );

        r.remove_upto(2);
        assert_eq!(
            indexes(&r, 1, 4),
            (3, vec![3, 4]),
            "only a suffix is cached"
        );
        assert_eq!(r.lock().bytes, 20);
    }

    #[test]
    fn the_oldest_entries_leave_past_the_byte_budget() {
        let r = RecentEntries::default();
        let size = KEEP_BYTES / 4;
        for i in 1..=6 {
            put(&r, 1, i, size);
        }
        let (first, cached) = indexes(&r, 1, 6);
        assert_eq!((first, cached), (3, vec![3, 4, 5, 6]));
        assert!(r.lock().bytes <= KEEP_BYTES);
        // One entry larger than the budget stays (the newest is always kept).
        put(&r, 1, 7, KEEP_BYTES * 2);
        assert_eq!(indexes(&r, 1, 7), (7, vec![7]));
    }

    #[test]
    fn an_offered_encoding_is_taken_once_and_only_for_its_id() {
        let r = RecentEntries::default();
        let id = entry(3, 9).log_id;
        r.offer(vec![(id, Arc::from(&b"abc"[..]))]);
        assert!(r.take_offered(&entry(2, 9).log_id).is_none());
        assert_eq!(r.take_offered(&id).as_deref(), Some(&b"abc"[..]));
        assert!(r.take_offered(&id).is_none());
    }
}
