//! An entry of an event queue on the virtual clock: ordered by time, then by the order it was
//! scheduled in, so that a `BinaryHeap` (a max-heap) pops the earliest first and ties replay
//! in a fixed order.

use std::cmp::Ordering;

use swim::Instant;

/// `item` is due at `at`; `seq` breaks ties (lower first).
pub struct Due<T> {
    pub at: Instant,
    pub seq: u64,
    pub item: T,
}

impl<T> PartialEq for Due<T> {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl<T> Eq for Due<T> {}
impl<T> PartialOrd for Due<T> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<T> Ord for Due<T> {
    // Reversed: the earliest (then first scheduled) is the greatest.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}
