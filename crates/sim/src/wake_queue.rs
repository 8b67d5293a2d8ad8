//! The nodes' timer wake-ups: at most one per node, at the node's current deadline, in an
//! indexed min-heap so a deadline can move (an ack arrived, a timer was re-armed) in place
//! instead of leaving stale wake-ups behind to pop.

use swim::Instant;

/// A min-heap of `(time, seq, node)` with one entry per node and its position tracked.
#[derive(Debug, Default)]
pub struct WakeQueue {
    heap: Vec<(Instant, u64, usize)>,
    /// `pos[node]` is the node's index in `heap`, or `usize::MAX` when it has no wake-up.
    pos: Vec<usize>,
}

impl WakeQueue {
    /// Sets, moves or clears the wake-up of `node`; `seq` breaks ties deterministically.
    pub fn set(&mut self, node: usize, at: Option<(Instant, u64)>) {
        if node >= self.pos.len() {
            self.pos.resize(node + 1, usize::MAX);
        }
        let p = self.pos[node];
        match (p != usize::MAX, at) {
            (false, None) => {}
            (false, Some((t, seq))) => {
                self.heap.push((t, seq, node));
                let i = self.heap.len() - 1;
                self.pos[node] = i;
                self.up(i);
            }
            (true, Some((t, seq))) => {
                let old = self.heap[p];
                self.heap[p] = (t, seq, node);
                if (t, seq) < (old.0, old.1) {
                    self.up(p)
                } else {
                    self.down(p)
                }
            }
            (true, None) => self.remove_at(p),
        }
    }

    /// The earliest wake-up: `(time, seq, node)`.
    pub fn peek(&self) -> Option<(Instant, u64, usize)> {
        self.heap.first().copied()
    }

    /// Removes and returns the earliest wake-up.
    pub fn pop(&mut self) -> Option<(Instant, u64, usize)> {
        let top = self.peek()?;
        self.remove_at(0);
        Some(top)
    }

    fn remove_at(&mut self, i: usize) {
        let last = self.heap.len() - 1;
        self.swap(i, last);
        if let Some((_, _, node)) = self.heap.pop() {
            self.pos[node] = usize::MAX;
        }
        if i < self.heap.len() {
            self.up(i);
            self.down(i);
        }
    }

    fn key(&self, i: usize) -> (Instant, u64) {
        (self.heap[i].0, self.heap[i].1)
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.pos[self.heap[a].2] = a;
        self.pos[self.heap[b].2] = b;
    }

    fn up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.key(i) >= self.key(parent) {
                break;
            }
            self.swap(i, parent);
            i = parent;
        }
    }

    fn down(&mut self, mut i: usize) {
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut m = i;
            if l < self.heap.len() && self.key(l) < self.key(m) {
                m = l;
            }
            if r < self.heap.len() && self.key(r) < self.key(m) {
                m = r;
            }
            if m == i {
                break;
            }
            self.swap(i, m);
            i = m;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swim::Rng;

    fn t(n: u64) -> Instant {
        Instant::from_nanos(n)
    }

    #[test]
    fn moved_and_cleared_wake_ups_pop_in_order() {
        let mut q = WakeQueue::default();
        q.set(0, Some((t(50), 1)));
        q.set(1, Some((t(10), 2)));
        q.set(2, Some((t(30), 3)));
        q.set(1, Some((t(40), 4))); // moved later
        q.set(2, None); // cleared
        q.set(3, Some((t(5), 5)));
        let order: Vec<usize> = std::iter::from_fn(|| q.pop().map(|(_, _, n)| n)).collect();
        assert_eq!(order, vec![3, 1, 0]);
    }

    #[test]
    fn random_operations_match_a_sorted_model() {
        let mut rng = Rng::new(4);
        let mut q = WakeQueue::default();
        let mut model: Vec<Option<(Instant, u64)>> = vec![None; 50];
        for seq in 0..5000u64 {
            let node = rng.below(50);
            let at = if rng.chance(0.2) {
                None
            } else {
                Some((t(rng.below(1000) as u64), seq))
            };
            q.set(node, at);
            model[node] = at;
            if rng.chance(0.3) {
                let expect = model
                    .iter()
                    .enumerate()
                    .filter_map(|(n, a)| a.map(|(t, s)| (t, s, n)))
                    .min();
                assert_eq!(q.pop(), expect);
                if let Some((_, _, n)) = expect {
                    model[n] = None;
                }
            }
        }
    }
}
