//! Anti-entropy over streams: join through seeds (with retries), periodic push-pull of the full
//! view with a random member, and reconnect attempts to dead members that heal partitions.
//! Bounded: at most one push-pull of our own in flight, an interval that grows with the
//! cluster, and a member count cap in the codec.

use std::net::SocketAddr;
use std::time::Duration;

use crate::event::Event;
use std::sync::Arc;

use crate::member::{Identity, Incarnation, Member, MemberState};
use crate::message::{MemberSnapshot, Message, Ping, Seq, StreamMessage};
use crate::swim::{JoinState, ReconnectProbe, StreamPurpose, Swim};
use crate::time::Instant;

impl Swim {
    /// Joins the cluster through `seeds` (this member's own address is skipped). Retries every
    /// `join_retry_interval` until a seed answers or another member joins us.
    pub fn join(&mut self, now: Instant, seeds: &[SocketAddr]) {
        let seeds: Vec<SocketAddr> = seeds.iter().copied().filter(|s| *s != self.addr).collect();
        if seeds.is_empty() || self.leaving {
            return;
        }
        self.join = Some(JoinState {
            seeds,
            attempt: 0,
            outstanding: 0,
            next_attempt_at: Some(now),
        });
        self.join_attempt(now);
    }

    fn join_attempt(&mut self, now: Instant) {
        let Some(j) = &mut self.join else { return };
        j.attempt += 1;
        j.outstanding = j.seeds.len();
        j.next_attempt_at = None;
        let seeds = j.seeds.clone();
        let deadline = now + self.config.stream_timeout;
        for s in seeds {
            let frame = self.push_pull_message(true);
            self.open_stream(s, frame, StreamPurpose::Join, deadline);
        }
    }

    pub(crate) fn anti_entropy_timers(&mut self, now: Instant) {
        let expired: Vec<_> = self
            .streams
            .iter()
            .filter(|s| s.deadline <= now)
            .map(|s| s.id)
            .collect();
        for id in expired {
            if let Some(pos) = self.streams.iter().position(|s| s.id == id) {
                let s = self.streams.swap_remove(pos);
                self.counters.stream_failures += 1;
                self.on_stream_failed(now, s.purpose);
            }
        }
        if let Some(t) = self.join.as_ref().and_then(|j| j.next_attempt_at)
            && now >= t
        {
            if self.live > 1 {
                // Someone joined us meanwhile: we are part of a cluster.
                self.join = None;
                self.emit(Event::JoinSucceeded {
                    via: None,
                    members: self.live,
                });
            } else {
                self.join_attempt(now);
            }
        }
        if self.leaving {
            return;
        }
        if now >= self.next_push_pull_at {
            let interval = self.config.push_pull_interval_for(self.live);
            self.next_push_pull_at = now
                + self
                    .rng
                    .duration_between(interval * 3 / 4, interval * 5 / 4);
            let busy = self
                .streams
                .iter()
                .any(|s| matches!(s.purpose, StreamPurpose::Pull { .. } | StreamPurpose::Push));
            let me = self.me_id.clone();
            if !busy
                && let Some(&i) = self
                    .random_members(1, |m| {
                        m.state == MemberState::Alive && !Arc::ptr_eq(&m.id, &me)
                    })
                    .first()
            {
                let to = self.roster[i].addr();
                self.counters.push_pulls += 1;
                // Pull with a digest: in a quiet cluster views match and nothing more is sent.
                let msg = StreamMessage::Pull {
                    digest: self.roster.digest(),
                };
                self.open_stream(
                    to,
                    msg,
                    StreamPurpose::Pull { peer: to },
                    now + self.config.stream_timeout,
                );
            }
        }
        if now >= self.next_reconnect_at {
            self.next_reconnect_at = now + self.config.reconnect_interval;
            self.reconnect_probe(now);
        }
    }

    /// Pings one random dead member (a few bytes); only if it answers does a full push-pull
    /// follow. A crashed host costs nothing, a partitioned one that is back merges views.
    fn reconnect_probe(&mut self, now: Instant) {
        if self.reconnect.as_ref().is_some_and(|r| r.deadline > now) {
            return;
        }
        self.reconnect = None;
        let Some(&i) = self
            .random_members(1, |m| m.state == MemberState::Dead)
            .first()
        else {
            return;
        };
        let (name, addr) = (self.roster[i].name().to_string(), self.roster[i].addr());
        let seq = self.next_seq();
        self.reconnect = Some(ReconnectProbe {
            seq,
            addr,
            deadline: now + self.config.stream_timeout,
        });
        self.send(addr, Message::Ping(Ping { seq, target: name }));
    }

    /// A dead member answered the reconnect ping: exchange full views with it.
    pub(crate) fn on_reconnect_ack(&mut self, now: Instant, seq: Seq) -> bool {
        let Some(r) = self.reconnect.take_if(|r| r.seq == seq) else {
            return false;
        };
        let busy = self
            .streams
            .iter()
            .any(|s| matches!(s.purpose, StreamPurpose::Reconnect));
        if !busy {
            let msg = self.push_pull_message(false);
            self.open_stream(
                r.addr,
                msg,
                StreamPurpose::Reconnect,
                now + self.config.stream_timeout,
            );
        }
        true
    }

    pub(crate) fn on_stream_reply(
        &mut self,
        now: Instant,
        purpose: StreamPurpose,
        msg: StreamMessage,
    ) {
        match (purpose, msg) {
            (StreamPurpose::FallbackPing { seq }, StreamMessage::Ack { seq: got })
                if seq == got =>
            {
                if self.probe.as_ref().is_some_and(|p| p.seq == seq) {
                    self.counters.fallback_acks += 1;
                }
                self.on_ack(now, seq);
            }
            (StreamPurpose::Pull { peer }, StreamMessage::PushPull { members, .. }) => {
                // The views differed: take the peer's, then push ours so it learns what we know.
                self.merge_remote(now, members);
                let msg = self.push_pull_message(false);
                self.open_stream(
                    peer,
                    msg,
                    StreamPurpose::Push,
                    now + self.config.stream_timeout,
                );
            }
            (
                purpose @ (StreamPurpose::Join | StreamPurpose::Push | StreamPurpose::Reconnect),
                StreamMessage::PushPull { members, .. },
            ) => {
                let via = members.first().map(|m| m.addr);
                self.merge_remote(now, members);
                if purpose == StreamPurpose::Join && self.join.take().is_some() {
                    self.emit(Event::JoinSucceeded {
                        via,
                        members: self.live,
                    });
                }
            }
            (StreamPurpose::Pull { .. }, StreamMessage::InSync) => {}
            (purpose, _) => {
                self.counters.decode_errors += 1;
                self.on_stream_failed(now, purpose);
            }
        }
    }

    pub(crate) fn on_stream_failed(&mut self, now: Instant, purpose: StreamPurpose) {
        if purpose != StreamPurpose::Join {
            return;
        }
        let retry_in = self.config.join_retry_interval;
        let Some(j) = &mut self.join else { return };
        j.outstanding = j.outstanding.saturating_sub(1);
        if j.outstanding == 0 && j.next_attempt_at.is_none() {
            j.next_attempt_at = Some(now + retry_in);
            let attempt = j.attempt;
            self.emit(Event::JoinAttemptFailed { attempt, retry_in });
        }
    }

    /// Starts from a known view, as if a join had just merged it: members not known yet are
    /// added silently (no gossip, no events). For simulations and tests that begin with a
    /// formed cluster; identities are shared, not copied.
    pub fn assume_members(
        &mut self,
        now: Instant,
        members: impl IntoIterator<Item = Arc<Identity>>,
    ) {
        let before = self.roster.len();
        let fresh = |id: Arc<Identity>| Member {
            id,
            incarnation: Incarnation(0),
            state: MemberState::Alive,
            state_changed: now,
        };
        if before == 1 {
            // Alone, only our own name can repeat: no index lookups, no intermediate copy (at
            // 10,000 members this runs 10,000 times in a simulation).
            let me = self.me_id.clone();
            let new = members
                .into_iter()
                .filter(|id| id.key.hash != me.key.hash || id.name != me.name)
                .map(fresh);
            self.roster.extend_shuffled(new, &mut self.rng);
        } else {
            let roster = &self.roster;
            let new: Vec<Member> = members
                .into_iter()
                .filter(|id| roster.find(&id.name).is_none())
                .map(fresh)
                .collect();
            self.roster.extend_shuffled(new, &mut self.rng);
        }
        self.live += self.roster.len() - before;
        let interval = self.config.push_pull_interval_for(self.live);
        self.next_push_pull_at = now + self.rng.duration_between(Duration::ZERO, interval);
    }

    pub(crate) fn push_pull_message(&self, join: bool) -> StreamMessage {
        let members = self
            .roster
            .iter()
            .map(|m| MemberSnapshot {
                name: m.name().to_string(),
                addr: m.addr(),
                incarnation: m.incarnation,
                state: m.state,
                meta: m.meta().clone(),
            })
            .collect();
        StreamMessage::PushPull { join, members }
    }

    pub(crate) fn push_pull_frame(&self, join: bool) -> Vec<u8> {
        self.push_pull_message(join).encode()
    }
}
