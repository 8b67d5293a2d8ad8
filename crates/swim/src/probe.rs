//! Failure detection: randomized round-robin probing, indirect probes with nacks, the stream
//! fallback probe, and the Lifeguard local-health adjustments that go with them.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::member::{Identity, MemberState};
use crate::message::{self, IndirectPing, Message, Ping, Seq, StreamMessage, Suspect};
use crate::swim::{StreamPurpose, Swim};
use crate::time::Instant;

/// Most indirect probes this member runs for others at once (bounds amplification).
const MAX_RELAYS: usize = 256;

/// The probe in progress: one target per probe interval.
#[derive(Clone, Debug)]
pub(crate) struct Probe {
    pub seq: Seq,
    /// Who is probed, as this member knew it when the probe started (shared, not copied).
    pub target: Arc<Identity>,
    /// When the direct ping is given up and indirect probes start.
    pub timeout_at: Instant,
    /// When the target is suspected if no ack came by any path.
    pub period_end: Instant,
    pub indirect: bool,
    /// Nacks to expect from the indirect probers (Lifeguard: missing nacks mean *we* are slow).
    pub expected_nacks: u32,
    pub nacks: u32,
}

impl Probe {
    pub fn deadline(&self) -> Instant {
        if self.indirect {
            self.period_end
        } else {
            self.timeout_at
        }
    }
}

/// An indirect probe this member performs on behalf of `requester`.
#[derive(Clone, Debug)]
pub(crate) struct Relay {
    pub seq: Seq,
    pub orig_seq: Seq,
    pub requester: SocketAddr,
    pub want_nack: bool,
    pub deadline: Instant,
}

impl Swim {
    pub(crate) fn probe_timers(&mut self, now: Instant) {
        if self
            .probe
            .as_ref()
            .is_some_and(|p| !p.indirect && now >= p.timeout_at)
        {
            self.go_indirect(now);
        }
        if self
            .probe
            .as_ref()
            .is_some_and(|p| p.indirect && now >= p.period_end)
        {
            self.probe_failed(now);
        }
        if self.probe.is_none() && !self.leaving && now >= self.next_probe_at {
            self.start_probe(now);
        }
    }

    fn start_probe(&mut self, now: Instant) {
        let interval = self.awareness.scale(self.config.probe_interval);
        self.next_probe_at = now + interval;
        let Some(i) = self.next_probe_target() else {
            return;
        };
        let seq = self.next_seq();
        let target = &self.roster[i];
        let (id, inc, suspect) = (
            target.id.clone(),
            target.incarnation,
            target.state == MemberState::Suspect,
        );
        let mut packet = message::packet_header();
        if suspect {
            // Buddy system: a suspect learns of its suspicion first, from whoever probes it.
            let s = Suspect {
                incarnation: inc,
                name: id.name.to_string(),
                from: self.name.clone(),
            };
            Message::Suspect(s).encode_frame_into(&mut packet);
        }
        message::encode_ping_into(&mut packet, seq, &id.name);
        let addr = id.addr;
        self.probe = Some(Probe {
            seq,
            target: id,
            timeout_at: now + self.awareness.scale(self.config.probe_timeout),
            period_end: now + interval,
            indirect: false,
            expected_nacks: 0,
            nacks: 0,
        });
        self.counters.probes += 1;
        self.send_packet(addr, packet, true);
    }

    /// Walks the probe order, reshuffling after each full round; skips this member and the dead.
    fn next_probe_target(&mut self) -> Option<usize> {
        for _ in 0..=self.roster.len() {
            if self.probe_cursor >= self.roster.len() {
                self.roster.shuffle(&mut self.rng);
                self.probe_cursor = 0;
            }
            let i = self.probe_cursor;
            self.probe_cursor += 1;
            let m = &self.roster[i];
            if m.state.is_live() && !self.is_me(m) {
                return Some(i);
            }
        }
        None
    }

    fn go_indirect(&mut self, now: Instant) {
        let Some(p) = self.probe.clone() else { return };
        let helpers = self.random_live_addrs(self.config.indirect_checks, Some(&p.target.name));
        for &h in &helpers {
            let req = IndirectPing {
                seq: p.seq,
                target: p.target.name.to_string(),
                target_addr: p.target.addr,
                want_nack: true,
            };
            self.send(h, Message::IndirectPing(req));
        }
        self.counters.indirect_probes += helpers.len() as u64;
        // The target's other networks (storage, tenant...): a path that works on any of them
        // answers the probe (the ack is matched by sequence number, whatever its path).
        let alternates: Vec<SocketAddr> = self
            .roster
            .iter()
            .find(|m| m.id.name == p.target.name)
            .map(|m| {
                m.meta()
                    .addresses
                    .iter()
                    .map(|a| a.addr)
                    .filter(|a| *a != p.target.addr)
                    .collect()
            })
            .unwrap_or_default();
        for &alt in &alternates {
            let ping = Ping {
                seq: p.seq,
                target: p.target.name.to_string(),
            };
            self.send(alt, Message::Ping(ping));
        }
        self.counters.alternate_probes += alternates.len() as u64;
        // After a stall the period may already be over: give the indirect probes a fair chance
        // instead of accusing the target for our own slowness.
        let period_end = p
            .period_end
            .max(now + self.awareness.scale(self.config.probe_timeout));
        if self.config.tcp_fallback {
            let ping = Ping {
                seq: p.seq,
                target: p.target.name.to_string(),
            };
            self.open_stream(
                p.target.addr,
                StreamMessage::Ping(ping),
                StreamPurpose::FallbackPing { seq: p.seq },
                period_end,
            );
            self.counters.fallback_probes += 1;
        }
        if let Some(probe) = &mut self.probe {
            probe.indirect = true;
            probe.expected_nacks = helpers.len() as u32;
            probe.period_end = period_end;
        }
    }

    fn probe_failed(&mut self, now: Instant) {
        let Some(p) = self.probe.take() else { return };
        self.counters.probe_failures += 1;
        let delta = if p.expected_nacks > 0 {
            i64::from(p.expected_nacks.saturating_sub(p.nacks))
        } else {
            1
        };
        self.awareness.apply(delta);
        let Some(i) = self.roster.find(&p.target.name) else {
            return;
        };
        let m = &self.roster[i];
        if m.state.is_live() && m.addr() == p.target.addr {
            let s = Suspect {
                incarnation: m.incarnation,
                name: p.target.name.to_string(),
                from: self.name.clone(),
            };
            self.on_suspect(now, s);
        }
    }

    /// The probe with `seq` got an ack (directly, relayed, or over the fallback stream).
    pub(crate) fn on_ack(&mut self, now: Instant, seq: Seq) {
        if self.probe.as_ref().is_some_and(|p| p.seq == seq) {
            self.probe = None;
            self.awareness.apply(-1);
            return;
        }
        if let Some(pos) = self.relays.iter().position(|r| r.seq == seq) {
            let r = self.relays.swap_remove(pos);
            self.send(r.requester, Message::Ack { seq: r.orig_seq });
            return;
        }
        self.on_reconnect_ack(now, seq);
    }

    pub(crate) fn on_nack(&mut self, seq: Seq) {
        if let Some(p) = &mut self.probe
            && p.seq == seq
            && p.indirect
        {
            p.nacks += 1;
        }
    }

    pub(crate) fn on_ping(&mut self, from: SocketAddr, p: Ping) {
        if !self.name_key.matches(&p.target, &self.name) {
            self.counters.misdirected_pings += 1;
            return;
        }
        self.send(from, Message::Ack { seq: p.seq });
    }

    pub(crate) fn on_indirect_ping(&mut self, now: Instant, from: SocketAddr, p: IndirectPing) {
        if self.relays.len() >= MAX_RELAYS {
            return;
        }
        let seq = self.next_seq();
        self.relays.push(Relay {
            seq,
            orig_seq: p.seq,
            requester: from,
            want_nack: p.want_nack,
            deadline: now + self.awareness.scale(self.config.probe_timeout),
        });
        self.send(
            p.target_addr,
            Message::Ping(Ping {
                seq,
                target: p.target,
            }),
        );
    }

    pub(crate) fn relay_timers(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.relays.len() {
            if self.relays[i].deadline <= now {
                let r = self.relays.swap_remove(i);
                if r.want_nack {
                    self.send(r.requester, Message::Nack { seq: r.orig_seq });
                }
            } else {
                i += 1;
            }
        }
    }
}
