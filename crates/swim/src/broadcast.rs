//! The transmit-limited broadcast queue behind infection-style dissemination.
//!
//! Every update is piggybacked on outgoing packets a limited number of times (growing with
//! log N). Packets take the most urgent, least-sent, newest updates first; a newer update about
//! a member replaces the older one still queued.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};

/// How urgent a broadcast is; lower goes first and is dropped last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Urgency {
    /// Alive and refutation messages: a healthy member's life depends on them.
    Alive = 0,
    /// New metadata. Sent up to its own, higher limit: unlike deaths and refutations (repaired
    /// by the members' own probes and timers) nothing but anti-entropy repairs a missed one.
    Announce = 1,
    /// Suspect and dead messages.
    Membership = 2,
    /// Broadcasts of the layers above.
    User = 3,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Key {
    urgency: Urgency,
    transmits: u32,
    newest_first: Reverse<u64>,
}

#[derive(Debug)]
struct Item {
    member: Option<String>,
    frame: Vec<u8>,
}

/// How many times broadcasts are sent: `normal` for most, `announce` for new metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub normal: u32,
    pub announce: u32,
}

impl Limits {
    /// The same limit for every kind (tests, simple uses).
    pub fn uniform(limit: u32) -> Self {
        Limits {
            normal: limit,
            announce: limit,
        }
    }
}

/// The queue of encoded frames waiting to be gossiped (`items`, checked on every input, first).
#[derive(Debug)]
#[repr(C)]
pub struct BroadcastQueue {
    items: BTreeMap<Key, Item>,
    by_member: HashMap<String, Key>,
    next_id: u64,
    max_len: usize,
    dropped: u64,
}

/// Smallest frame worth looking for once a packet is nearly full.
const MIN_FRAME: usize = 4;

impl BroadcastQueue {
    /// An empty queue holding at most `max_len` broadcasts.
    pub fn new(max_len: usize) -> Self {
        BroadcastQueue {
            items: BTreeMap::new(),
            by_member: HashMap::new(),
            next_id: 0,
            max_len,
            dropped: 0,
        }
    }

    /// Queues `frame`. When `member` is given, it replaces any queued update about that member.
    pub fn push(&mut self, urgency: Urgency, member: Option<&str>, frame: Vec<u8>) {
        if let Some(name) = member
            && let Some(old) = self.by_member.remove(name)
        {
            self.items.remove(&old);
        }
        self.next_id += 1;
        let key = Key {
            urgency,
            transmits: 0,
            newest_first: Reverse(self.next_id),
        };
        if let Some(name) = member {
            self.by_member.insert(name.to_string(), key);
        }
        self.items.insert(
            key,
            Item {
                member: member.map(str::to_string),
                frame,
            },
        );
        while self.items.len() > self.max_len {
            // The last key is the least urgent and most transmitted (oldest among equals).
            if let Some((_, item)) = self.items.pop_last() {
                self.forget(&item);
                self.dropped += 1;
            }
        }
    }

    /// Appends to `packet` as many queued frames as fit in `budget` bytes, counting one
    /// transmission for each; frames sent `limit` times leave the queue. Returns how many were added.
    pub fn fill(&mut self, packet: &mut Vec<u8>, budget: usize, limits: Limits) -> usize {
        let mut room = budget.saturating_sub(packet.len());
        let mut taken = Vec::new();
        for (key, item) in &self.items {
            if room < MIN_FRAME {
                break;
            }
            if item.frame.len() <= room {
                room -= item.frame.len();
                packet.extend_from_slice(&item.frame);
                taken.push(*key);
            }
        }
        for key in &taken {
            if let Some(item) = self.items.remove(key) {
                let transmits = key.transmits + 1;
                let own_limit = if key.urgency == Urgency::Announce {
                    limits.announce
                } else {
                    limits.normal
                };
                if transmits >= own_limit {
                    self.forget(&item);
                } else {
                    let next = Key { transmits, ..*key };
                    if let Some(name) = &item.member {
                        self.by_member.insert(name.clone(), next);
                    }
                    self.items.insert(next, item);
                }
            }
        }
        taken.len()
    }

    fn forget(&mut self, item: &Item) {
        if let Some(name) = &item.member {
            self.by_member.remove(name);
        }
    }

    /// Whether some queued broadcast has been sent fewer than `times` times.
    pub fn has_fresh(&self, times: u32) -> bool {
        [
            Urgency::Alive,
            Urgency::Announce,
            Urgency::Membership,
            Urgency::User,
        ]
        .into_iter()
        .any(|urgency| {
            let least_sent = Key {
                urgency,
                transmits: 0,
                newest_first: Reverse(u64::MAX),
            };
            self.items
                .range(least_sent..)
                .next()
                .is_some_and(|(k, _)| k.urgency == urgency && k.transmits < times)
        })
    }

    /// Broadcasts waiting.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when nothing waits to be sent.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Broadcasts dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, len: usize) -> Vec<u8> {
        vec![tag; len]
    }

    #[test]
    fn fresh_means_sent_fewer_times_than_asked_in_any_urgency() {
        let mut q = BroadcastQueue::new(100);
        assert!(!q.has_fresh(u32::MAX), "nothing queued");
        q.push(Urgency::User, None, frame(1, 10));
        assert!(q.has_fresh(1));
        for _ in 0..3 {
            q.fill(&mut Vec::new(), 1400, Limits::uniform(10));
        }
        assert!(!q.has_fresh(3));
        assert!(q.has_fresh(4));
        // A new one of another urgency, sorted before or after the old one.
        for urgency in [Urgency::Alive, Urgency::Announce, Urgency::Membership] {
            let mut q2 = BroadcastQueue::new(100);
            q2.push(Urgency::User, None, frame(1, 10));
            for _ in 0..3 {
                q2.fill(&mut Vec::new(), 1400, Limits::uniform(10));
            }
            q2.push(urgency, None, frame(2, 10));
            assert!(q2.has_fresh(1), "{urgency:?}");
            q2.fill(&mut Vec::new(), 1400, Limits::uniform(10));
            assert!(!q2.has_fresh(1), "{urgency:?}");
        }
    }

    #[test]
    fn each_broadcast_is_sent_at_most_limit_times() {
        let mut q = BroadcastQueue::new(100);
        q.push(Urgency::Membership, Some("a"), frame(1, 10));
        let mut sent = 0;
        for _ in 0..10 {
            let mut p = Vec::new();
            sent += q.fill(&mut p, 1000, Limits::uniform(3));
        }
        assert_eq!(sent, 3);
        assert!(q.is_empty());
    }

    #[test]
    fn metadata_announcements_follow_their_own_limit() {
        let mut q = BroadcastQueue::new(100);
        q.push(Urgency::Announce, Some("a"), frame(1, 10));
        q.push(Urgency::Membership, Some("b"), frame(2, 10));
        let mut sent = 0;
        for _ in 0..10 {
            sent += q.fill(
                &mut Vec::new(),
                1000,
                Limits {
                    normal: 3,
                    announce: 5,
                },
            );
        }
        assert_eq!(sent, 8);
    }

    #[test]
    fn a_newer_update_about_a_member_replaces_the_older() {
        let mut q = BroadcastQueue::new(100);
        q.push(Urgency::Membership, Some("a"), frame(1, 10));
        q.push(Urgency::Alive, Some("a"), frame(2, 10));
        assert_eq!(q.len(), 1);
        let mut p = Vec::new();
        q.fill(&mut p, 1000, Limits::uniform(5));
        assert_eq!(p, frame(2, 10));
    }

    #[test]
    fn alive_messages_go_first_then_the_least_sent() {
        let mut q = BroadcastQueue::new(100);
        q.push(Urgency::User, None, frame(3, 10));
        q.push(Urgency::Membership, Some("b"), frame(2, 10));
        q.push(Urgency::Alive, Some("a"), frame(1, 10));
        let mut p = Vec::new();
        assert_eq!(
            q.fill(&mut p, 10, Limits::uniform(5)),
            1,
            "room for one frame only"
        );
        assert_eq!(p, frame(1, 10));
        let mut p = Vec::new();
        q.fill(&mut p, 20, Limits::uniform(5));
        assert_eq!(
            p,
            [frame(1, 10), frame(2, 10)].concat(),
            "urgency ranks before transmit count"
        );
    }

    #[test]
    fn a_full_queue_drops_the_least_urgent_first() {
        let mut q = BroadcastQueue::new(2);
        q.push(Urgency::Alive, Some("a"), frame(1, 5));
        q.push(Urgency::User, None, frame(3, 5));
        q.push(Urgency::Membership, Some("b"), frame(2, 5));
        assert_eq!(q.len(), 2);
        assert_eq!(q.dropped(), 1);
        let mut p = Vec::new();
        q.fill(&mut p, 100, Limits::uniform(5));
        assert_eq!(p, [frame(1, 5), frame(2, 5)].concat());
    }

    #[test]
    fn frames_that_do_not_fit_stay_queued() {
        let mut q = BroadcastQueue::new(10);
        q.push(Urgency::Membership, Some("big"), frame(1, 50));
        q.push(Urgency::Membership, Some("small"), frame(2, 5));
        let mut p = vec![0u8; 10];
        assert_eq!(q.fill(&mut p, 20, Limits::uniform(5)), 1);
        assert_eq!(q.len(), 2);
        assert_eq!(p.len(), 15);
    }
}
