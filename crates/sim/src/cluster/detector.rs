//! What gossip says about each host, as the leader reads it: a model of SWIM's failure
//! detection with the delays `buoy sim membership` measures for the real cores (a host that
//! stops answering is dead after 2.0-4.5 s; one that answers again is alive within 0.3-1.5 s;
//! one that leaves is gone at once). Safety (rule S1) never depends on it: only when moves
//! start does.

use std::time::Duration;

use swim::{Instant, Rng};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Seen {
    Alive,
    /// Not answering since; counted dead at `dead_at`.
    Unreachable {
        dead_at: Instant,
    },
    Dead,
    Left,
    /// Answering again; counted alive at `alive_at`.
    Returning {
        alive_at: Instant,
    },
}

/// The gossip view of every host.
pub struct Detector {
    seen: Vec<Seen>,
}

impl Detector {
    pub fn new(hosts: usize) -> Self {
        Detector {
            seen: vec![Seen::Alive; hosts],
        }
    }

    /// Host `h` left the cluster (a fenced agent says so before it goes quiet).
    pub fn left(&mut self, h: usize, _t: Instant) {
        self.seen[h] = Seen::Left;
    }

    /// Updates the view at `t` from which hosts answer gossip now.
    pub fn observe(&mut self, t: Instant, reachable: &[bool], rng: &mut Rng) {
        for (s, &up) in self.seen.iter_mut().zip(reachable) {
            *s = match (*s, up) {
                (Seen::Alive, true) => Seen::Alive,
                (Seen::Alive | Seen::Returning { .. }, false) => Seen::Unreachable {
                    dead_at: t + rng.duration_between(
                        Duration::from_millis(2_000),
                        Duration::from_millis(4_500),
                    ),
                },
                (Seen::Unreachable { dead_at }, false) if t >= dead_at => Seen::Dead,
                (u @ Seen::Unreachable { .. }, false) => u,
                (Seen::Unreachable { .. }, true) => Seen::Alive,
                (Seen::Dead | Seen::Left, false) => *s,
                (Seen::Dead | Seen::Left, true) => Seen::Returning {
                    alive_at: t + rng
                        .duration_between(Duration::from_millis(300), Duration::from_millis(1_500)),
                },
                (Seen::Returning { alive_at }, true) if t >= alive_at => Seen::Alive,
                (r @ Seen::Returning { .. }, true) => r,
            };
        }
    }

    /// Dead or left.
    pub fn is_down(&self, h: usize) -> bool {
        matches!(self.seen[h], Seen::Dead | Seen::Left)
    }
}
