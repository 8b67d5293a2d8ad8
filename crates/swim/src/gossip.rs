//! Dissemination: a dedicated gossip round every `gossip_interval` sends queued broadcasts to
//! a few random members (and to the recently dead, so a falsely dead member hears and refutes),
//! while some broadcast is still fresh (`gossip_fresh_below`). Broadcasts also ride on every
//! probe packet; see `Swim::send_frames`.

use std::sync::Arc;

use crate::member::MemberState;
use crate::message;
use crate::swim::Swim;
use crate::time::Instant;

impl Swim {
    pub(crate) fn gossip_timer(&mut self, now: Instant) {
        if now < self.next_gossip_at {
            return;
        }
        // Stay on the tick grid even when rounds were skipped (nothing to send, or a stall).
        let interval = self.config.gossip_interval;
        let behind =
            now.saturating_since(self.next_gossip_at).as_nanos() / interval.as_nanos().max(1);
        self.next_gossip_at += interval * (behind as u32 + 1);
        if !self.broadcasts.has_fresh(self.config.gossip_fresh_below) {
            return;
        }
        let me = self.me_id.clone();
        let window = self.config.gossip_to_the_dead;
        let targets = self.random_members(self.config.gossip_nodes, |m| {
            !Arc::ptr_eq(&m.id, &me)
                && (m.state.is_live()
                    || (m.state == MemberState::Dead
                        && now.saturating_since(m.state_changed) < window))
        });
        let limit = self.config.limits(self.live);
        for i in targets {
            let to = self.roster[i].addr();
            let mut packet = message::packet_header();
            if self
                .broadcasts
                .fill(&mut packet, self.config.max_packet_bytes, limit)
                == 0
            {
                break;
            }
            self.send_packet(to, packet, false);
        }
    }
}
