//! The member table: every known member in probe order, with a compact index by name.
//!
//! A simulated cluster of 10,000 members holds 10,000 tables of 10,000 entries, so each entry
//! is kept small: a shared `Arc<Identity>` plus a few words, and a 4-byte index slot.

use std::ops::{Index, IndexMut};

use hashbrown::HashTable;

use crate::member::{Member, hash_name};
use crate::rng::Rng;

/// Members in probe order, findable by name.
#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct Roster {
    members: Vec<Member>,
    by_name: HashTable<u32>,
    /// Sum of every member's digest contribution, kept current by every change, so the
    /// periodic pull does not rehash 10,000 names.
    digest: u64,
}

/// One member's share of the view digest: its name, incarnation and state, well mixed.
fn contribution(m: &Member) -> u64 {
    let mut h = m.id.key.hash ^ u64::from(m.incarnation.0).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^= u64::from(m.state.to_wire()) << 61;
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

impl Roster {
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Member> {
        self.members.iter()
    }

    pub fn as_slice(&self) -> &[Member] {
        &self.members
    }

    /// The position of the member called `name`.
    pub fn find(&self, name: &str) -> Option<usize> {
        let members = &self.members;
        self.by_name
            .find(hash_name(name), |&i| members[i as usize].id.has_name(name))
            .map(|&i| i as usize)
    }

    /// Appends a member whose name is not known yet; returns its position.
    pub fn push(&mut self, m: Member) -> usize {
        let i = self.members.len();
        let members = &self.members;
        self.by_name.insert_unique(m.id.key.hash, i as u32, |&j| {
            members[j as usize].id.key.hash
        });
        self.digest = self.digest.wrapping_add(contribution(&m));
        self.members.push(m);
        i
    }

    /// Swaps two positions in the probe order.
    pub fn swap(&mut self, a: usize, b: usize) {
        if a == b {
            return;
        }
        self.members.swap(a, b);
        // Index slots still point at the old positions; fix both.
        let (na, nb) = (
            self.members[a].name().to_string(),
            self.members[b].name().to_string(),
        );
        let members = &self.members;
        if let Ok(e) = self.by_name.find_entry(hash_name(&na), |&j| {
            j as usize == b && members[a].name() == na
        }) {
            *e.into_mut() = a as u32;
        }
        let members = &self.members;
        if let Ok(e) = self.by_name.find_entry(hash_name(&nb), |&j| {
            j as usize == a && members[b].name() == nb
        }) {
            *e.into_mut() = b as u32;
        }
    }

    /// Removes the member at `i`; the last member takes its place.
    pub fn swap_remove(&mut self, i: usize) -> Member {
        let name = self.members[i].name().to_string();
        if let Ok(e) = self
            .by_name
            .find_entry(hash_name(&name), |&j| j as usize == i)
        {
            e.remove();
        }
        let last = self.members.len() - 1;
        let gone = self.members.swap_remove(i);
        self.digest = self.digest.wrapping_sub(contribution(&gone));
        if i < self.members.len() {
            // The former last member now sits at `i`: its slot still says `last`.
            let moved = self.members[i].name().to_string();
            if let Ok(e) = self
                .by_name
                .find_entry(hash_name(&moved), |&j| j as usize == last)
            {
                *e.into_mut() = i as u32;
            }
        }
        gone
    }

    /// Adds many members whose names are not known yet, then puts everyone in a new random
    /// order, indexing once (the fast path for starting from a formed cluster).
    pub fn extend_shuffled(&mut self, new: impl IntoIterator<Item = Member>, rng: &mut Rng) {
        let new = new.into_iter();
        let (lo, hi) = new.size_hint();
        self.members.reserve_exact(hi.unwrap_or(lo));
        for m in new {
            self.digest = self.digest.wrapping_add(contribution(&m));
            self.members.push(m);
        }
        self.by_name = HashTable::with_capacity(self.members.len());
        self.shuffle(rng);
    }

    /// An order-independent digest of the view (names, incarnations, states): two members
    /// with the same digest almost surely hold the same view.
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// The digest computed from scratch (to check the running one).
    #[cfg(test)]
    fn recomputed_digest(&self) -> u64 {
        self.members
            .iter()
            .fold(0u64, |acc, m| acc.wrapping_add(contribution(m)))
    }

    /// Changes a member's incarnation and state, keeping the digest current. Incarnation and
    /// state must only change through here.
    pub fn set_version(
        &mut self,
        i: usize,
        incarnation: crate::member::Incarnation,
        state: crate::member::MemberState,
    ) {
        let m = &mut self.members[i];
        self.digest = self.digest.wrapping_sub(contribution(m));
        m.incarnation = incarnation;
        m.state = state;
        self.digest = self.digest.wrapping_add(contribution(m));
    }

    /// Puts the members in a new random order.
    pub fn shuffle(&mut self, rng: &mut Rng) {
        rng.shuffle(&mut self.members);
        self.by_name.clear();
        let members = &self.members;
        for (i, m) in members.iter().enumerate() {
            self.by_name.insert_unique(m.id.key.hash, i as u32, |&j| {
                members[j as usize].id.key.hash
            });
        }
    }
}

impl Index<usize> for Roster {
    type Output = Member;
    fn index(&self, i: usize) -> &Member {
        &self.members[i]
    }
}

impl IndexMut<usize> for Roster {
    fn index_mut(&mut self, i: usize) -> &mut Member {
        &mut self.members[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member::{Identity, Incarnation, MemberState};
    use crate::time::Instant;
    use std::sync::Arc;

    fn member(name: &str) -> Member {
        Member {
            id: Arc::new(Identity::new(
                name,
                "127.0.0.1:1".parse().unwrap(),
                Default::default(),
            )),
            incarnation: Incarnation(0),
            state: MemberState::Alive,
            state_changed: Instant::ZERO,
        }
    }

    fn consistent(r: &Roster) -> bool {
        r.iter()
            .enumerate()
            .all(|(i, m)| r.find(m.name()) == Some(i))
    }

    #[test]
    fn the_index_follows_every_reordering() {
        let mut r = Roster::default();
        for n in ["a", "b", "c", "d", "e"] {
            r.push(member(n));
        }
        assert!(consistent(&r));
        r.swap(0, 3);
        assert!(consistent(&r));
        let gone = r.swap_remove(1);
        assert_eq!(r.find(gone.name()), None);
        assert!(consistent(&r));
        r.shuffle(&mut Rng::new(3));
        assert!(consistent(&r));
        assert_eq!(r.len(), 4);
        assert_eq!(r.find("zz"), None);
    }

    #[test]
    fn the_digest_ignores_order_but_sees_every_change() {
        let mut a = Roster::default();
        let mut b = Roster::default();
        for n in ["a", "b", "c"] {
            a.push(member(n));
        }
        for n in ["c", "a", "b"] {
            b.push(member(n));
        }
        assert_eq!(a.digest(), b.digest());
        b.set_version(0, Incarnation(1), MemberState::Alive);
        assert_ne!(a.digest(), b.digest());
        b.set_version(0, Incarnation(0), MemberState::Alive);
        assert_eq!(a.digest(), b.digest());
        b.set_version(1, Incarnation(0), MemberState::Dead);
        assert_ne!(a.digest(), b.digest());
    }

    #[test]
    fn the_running_digest_matches_a_recomputation_after_any_changes() {
        let mut rng = Rng::new(11);
        let mut r = Roster::default();
        let mut next = 0;
        for _ in 0..2000 {
            match rng.below(4) {
                0 => {
                    r.push(member(&format!("m{next}")));
                    next += 1;
                }
                1 if r.len() > 0 => {
                    r.swap_remove(rng.below(r.len()));
                }
                2 if r.len() > 0 => {
                    let i = rng.below(r.len());
                    let state =
                        [MemberState::Alive, MemberState::Suspect, MemberState::Dead][rng.below(3)];
                    r.set_version(i, Incarnation(rng.below(5) as u32), state);
                }
                _ => r.shuffle(&mut rng),
            }
            assert_eq!(r.digest(), r.recomputed_digest());
        }
        let extra: Vec<Member> = (0..10).map(|i| member(&format!("x{i}"))).collect();
        r.extend_shuffled(extra, &mut rng);
        assert_eq!(r.digest(), r.recomputed_digest());
    }
}
