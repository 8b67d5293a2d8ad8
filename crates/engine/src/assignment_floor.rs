//! Which grants a host takes its assignments from (rule S1). A grant says which change index
//! of the cluster state its assignments reflect. The host asks for fresh assignments after
//! every lease loss, but it never takes assignments from a state older than one it already
//! acted on: that state may still place here a copy that has since moved to another host (a
//! leader serving from a partly applied state, or a stale answer arriving late).

/// What a host knows of the assignments it received.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AssignmentFloor {
    /// The index of the assignments the host holds now (none after a lease loss: the next
    /// grant must carry them again).
    known: Option<u64>,
    /// The newest index the host ever took assignments from; never lowered.
    floor: Option<u64>,
}

/// Whether a grant's assignments may be acted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Take them.
    Take,
    /// Older than assignments this host already acted on: ignore them.
    Stale { newest_seen: u64 },
}

impl AssignmentFloor {
    /// The index to tell the leader (it sends assignments only when the state moved past it).
    pub fn known(&self) -> Option<u64> {
        self.known
    }

    /// The lease was lost: whatever the host held is void; ask for all of it again.
    pub fn lease_lost(&mut self) {
        self.known = None;
    }

    /// A grant carried assignments reflecting `index`.
    pub fn offer(&mut self, index: u64) -> Verdict {
        if let Some(f) = self.floor
            && index < f
        {
            return Verdict::Stale { newest_seen: f };
        }
        self.known = Some(index);
        self.floor = Some(index);
        Verdict::Take
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15, hole 10: after a lease loss the host asks for everything again, yet it must
    /// not take assignments from a state older than one it acted on. (Before, the keeper
    /// reset its only index on a lease loss and took index 7 after 10.)
    #[test]
    fn after_a_lease_loss_assignments_older_than_ones_acted_on_are_refused() {
        let mut f = AssignmentFloor::default();
        assert_eq!(f.offer(10), Verdict::Take);
        assert_eq!(f.known(), Some(10));
        f.lease_lost();
        assert_eq!(f.known(), None, "the next grant must carry assignments");
        assert_eq!(f.offer(7), Verdict::Stale { newest_seen: 10 });
        assert_eq!(f.known(), None);
        assert_eq!(f.offer(10), Verdict::Take);
        assert_eq!(f.offer(12), Verdict::Take);
        assert_eq!(f.offer(11), Verdict::Stale { newest_seen: 12 });
    }
}
