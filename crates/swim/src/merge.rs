//! The rules that merge alive, suspect and dead claims into this member's view, and refute
//! claims about this member. Higher incarnations win; at equal incarnation dead beats suspect
//! beats alive; only the member itself can raise its incarnation.

use crate::broadcast::Urgency;
use crate::event::Event;
use std::sync::Arc;

use crate::member::{Identity, Incarnation, Member, MemberState};
use crate::message::{Alive, Dead, MemberSnapshot, Message, Refute, Suspect};
use crate::suspicion::Suspicion;
use crate::swim::Swim;
use crate::time::Instant;

impl Swim {
    pub(crate) fn on_alive(&mut self, now: Instant, a: Alive) {
        if a.name == self.name {
            self.alive_about_self(a);
            return;
        }
        let Some(i) = self.roster.find(&a.name) else {
            if self.roster.len() >= self.config.max_members {
                self.counters.members_refused += 1;
                return;
            }
            let (name, addr, incarnation) = (a.name.clone(), a.addr, a.incarnation);
            self.insert_member(Member {
                id: Arc::new(Identity::new(&a.name, a.addr, a.meta.clone())),
                incarnation: a.incarnation,
                state: MemberState::Alive,
                state_changed: now,
            });
            self.rebroadcast(Urgency::Alive, &name, Message::Alive(a));
            self.emit(Event::MemberJoined {
                name,
                addr,
                incarnation,
            });
            return;
        };
        let m = &self.roster[i];
        let mut moved = false;
        if a.addr != m.addr() {
            if m.state.is_live() {
                // A second host claims a live member's name: the first one keeps it.
                self.counters.name_conflicts += 1;
                let e = Event::NameConflict {
                    name: a.name,
                    known: m.addr(),
                    claimed: a.addr,
                    about_self: false,
                    refused: false,
                };
                self.emit(e);
                return;
            }
            moved = true; // A dead or departed member came back at a new address.
        }
        if a.incarnation <= m.incarnation && !moved {
            return;
        }
        let prev = m.state;
        let urgency = if prev.is_live() && *m.meta() != a.meta {
            Urgency::Announce
        } else {
            Urgency::Alive
        };
        let m = &mut self.roster[i];
        if m.addr() != a.addr || *m.meta() != a.meta {
            m.id = Arc::new(m.id.moved(a.addr, a.meta.clone()));
        }
        let (name, incarnation) = (a.name.clone(), a.incarnation);
        self.now_alive(now, i, prev, name, incarnation, urgency, Message::Alive(a));
    }

    /// Member `name` (roster index `i`, `prev` until now) is alive at `incarnation`: its
    /// suspicion ends, `news` is passed on, and the layers above hear of it.
    #[allow(clippy::too_many_arguments)]
    fn now_alive(
        &mut self,
        now: Instant,
        i: usize,
        prev: MemberState,
        name: String,
        incarnation: Incarnation,
        urgency: Urgency,
        news: Message,
    ) {
        self.clear_suspicion(&name);
        self.set_incarnation(i, incarnation);
        self.set_state(i, MemberState::Alive, now);
        let addr = self.roster[i].addr();
        self.rebroadcast(urgency, &name, news);
        self.emit(match prev {
            MemberState::Dead | MemberState::Left => Event::MemberJoined {
                name,
                addr,
                incarnation,
            },
            MemberState::Suspect => Event::MemberRecovered { name, incarnation },
            MemberState::Alive => Event::MemberUpdated { name, incarnation },
        });
    }

    fn alive_about_self(&mut self, a: Alive) {
        if self.leaving {
            return;
        }
        let (my_addr, my_inc, same_meta) = {
            let me = self.me();
            (me.addr(), me.incarnation, *me.meta() == a.meta)
        };
        if a.addr != my_addr {
            self.counters.name_conflicts += 1;
            // Still joining: the live member we just heard of was here first, so we yield.
            // Already in the cluster: the other one is the newcomer (or a forged claim), so we
            // keep the name and refute.
            let refused = self.join.is_some();
            let e = Event::NameConflict {
                name: a.name.clone(),
                known: my_addr,
                claimed: a.addr,
                about_self: true,
                refused,
            };
            self.emit(e);
            if refused {
                return;
            }
            if a.incarnation >= my_inc {
                self.refute(a.incarnation, None);
            }
            return;
        }
        // An older version of ourselves (after a restart, say) must not stand.
        if a.incarnation > my_inc || (a.incarnation == my_inc && !same_meta) {
            self.refute(a.incarnation, None);
        }
    }

    /// A refutation without metadata: a known member is alive at a newer incarnation, at the
    /// address and with the metadata already held for it (a refutation never changes them; a
    /// member that moved or changed announces a full alive). An unknown name is ignored.
    pub(crate) fn on_refute(&mut self, now: Instant, r: Refute) {
        if r.name == self.name {
            // Someone speaks for a newer version of us: stand by the current one.
            if r.incarnation > self.me().incarnation && !self.leaving {
                self.refute(r.incarnation, None);
            }
            return;
        }
        let Some(i) = self.roster.find(&r.name) else {
            return;
        };
        let m = &self.roster[i];
        if r.incarnation <= m.incarnation {
            return;
        }
        let prev = m.state;
        let (name, incarnation) = (r.name.clone(), r.incarnation);
        self.now_alive(
            now,
            i,
            prev,
            name,
            incarnation,
            Urgency::Alive,
            Message::Refute(r),
        );
    }

    pub(crate) fn on_suspect(&mut self, now: Instant, s: Suspect) {
        let Some(i) = self.roster.find(&s.name) else {
            return;
        };
        let m = &self.roster[i];
        if s.incarnation < m.incarnation {
            if s.name == self.name {
                self.answer_stale_accusation(&s.from);
            }
            return;
        }
        let ours = s.from == self.name;
        if let Some(susp) = self.suspicions.get_mut(&s.name) {
            let old = susp.deadline();
            let new_accuser = susp.confirm(&s.from, ours);
            let new = susp.deadline();
            if new != old {
                self.suspicion_deadlines.remove(&(old, s.name.clone()));
                self.suspicion_deadlines.insert((new, s.name.clone()));
            }
            if new_accuser {
                let name = s.name.clone();
                self.rebroadcast(Urgency::Membership, &name, Message::Suspect(s));
            }
            return;
        }
        if m.state != MemberState::Alive {
            return;
        }
        if s.name == self.name {
            if !self.leaving {
                // Being suspected hints that we are the slow one (Lifeguard).
                self.awareness.apply(1);
                self.refute(s.incarnation, Some(&s.from));
            }
            return;
        }
        let addr = m.addr();
        self.counters.suspicions += 1;
        self.set_incarnation(i, s.incarnation);
        self.set_state(i, MemberState::Suspect, now);
        let n = self.live;
        let mut expected = self.config.suspicion_confirmations;
        if n < expected as usize + 2 {
            expected = 0; // Too few members to ever confirm.
        }
        let min = self.config.suspicion_min_for(n);
        let max = min * self.config.suspicion_max_mult;
        let margin = self.config.second_hand_margin;
        let susp = Suspicion::new(now, &s.from, ours, expected, min, max, margin);
        self.suspicion_deadlines
            .insert((susp.deadline(), s.name.clone()));
        self.suspicions.insert(s.name.clone(), susp);
        let (name, incarnation, by) = (s.name.clone(), s.incarnation, s.from.clone());
        let frame = Message::Suspect(s).encode_frame();
        self.broadcasts
            .push(Urgency::Membership, Some(&name), frame.clone());
        if ours {
            // Buddy system: tell the suspect at once so it can refute.
            self.send_frames(addr, &[frame], false);
        }
        self.emit(Event::MemberSuspected {
            name,
            incarnation,
            by,
        });
    }

    pub(crate) fn on_dead(&mut self, now: Instant, d: Dead) {
        let Some(i) = self.roster.find(&d.name) else {
            return;
        };
        let m = &self.roster[i];
        if d.name == self.name && d.incarnation < m.incarnation && !self.leaving {
            self.answer_stale_accusation(&d.from);
            return;
        }
        if d.incarnation < m.incarnation || !m.state.is_live() {
            return;
        }
        if d.name == self.name {
            if !self.leaving {
                self.refute(d.incarnation, Some(&d.from));
            }
            return;
        }
        self.clear_suspicion(&d.name);
        let left = d.from == d.name;
        self.set_incarnation(i, d.incarnation);
        self.set_state(
            i,
            if left {
                MemberState::Left
            } else {
                MemberState::Dead
            },
            now,
        );
        self.reap_queue
            .push_back((now + self.config.reap_after, d.name.clone()));
        let (name, incarnation, by) = (d.name.clone(), d.incarnation, d.from.clone());
        self.rebroadcast(Urgency::Membership, &name, Message::Dead(d));
        self.emit(if left {
            Event::MemberLeft { name }
        } else {
            Event::MemberDied {
                name,
                incarnation,
                by,
            }
        });
    }

    /// Answers a claim against this member with a higher incarnation, sent at once to the
    /// accuser and a few random members as well as queued for gossip.
    pub(crate) fn refute(&mut self, accused: Incarnation, accuser: Option<&str>) {
        let inc = self.me().incarnation.max(accused).next();
        // The accuser and a few others get the full alive; gossip carries the short form.
        let frame = self.announce_self(inc, Urgency::Alive);
        if self.config.short_refutations {
            let short = Message::Refute(Refute {
                incarnation: inc,
                name: self.name.clone(),
            })
            .encode_frame();
            let me = self.name.clone();
            self.broadcasts.push(Urgency::Alive, Some(&me), short);
        }
        self.counters.refutations += 1;
        let mut targets = self.random_live_addrs(self.config.gossip_nodes, accuser);
        if let Some(a) = accuser
            .and_then(|n| self.member(n))
            .filter(|m| m.state.is_live())
        {
            targets.push(a.addr());
        }
        for to in targets {
            self.send_frames(to, std::slice::from_ref(&frame), false);
        }
        self.emit(Event::Refuted {
            incarnation: inc,
            accuser: accuser.map(str::to_string),
        });
    }

    /// An accusation older than our current incarnation (we already refuted): answer the
    /// accuser directly with our current alive so its own timer stops too.
    fn answer_stale_accusation(&mut self, accuser: &str) {
        let Some(addr) = self
            .member(accuser)
            .filter(|m| m.state.is_live())
            .map(|m| m.addr())
        else {
            return;
        };
        let me = self.me();
        let alive = Alive {
            incarnation: me.incarnation,
            name: self.name.clone(),
            addr: me.addr(),
            meta: me.meta().clone(),
        };
        self.send_frames(addr, &[Message::Alive(alive).encode_frame()], false);
    }

    pub(crate) fn suspicion_timers(&mut self, now: Instant) {
        while let Some((t, _)) = self.suspicion_deadlines.first() {
            if *t > now {
                break;
            }
            let Some((_, name)) = self.suspicion_deadlines.pop_first() else {
                break;
            };
            let Some((state, incarnation, addr)) = self
                .member(&name)
                .map(|m| (m.state, m.incarnation, m.addr()))
            else {
                self.suspicions.remove(&name);
                continue;
            };
            if state != MemberState::Suspect {
                self.suspicions.remove(&name);
                continue;
            }
            if let Some(susp) = self.suspicions.get_mut(&name)
                && susp.needs_verification()
            {
                // We only heard of this suspicion and may have missed the refutation (gossip
                // reaches each member ~log(N) times, not always): ask the suspect ourselves.
                // A live suspect answers the accusation directly with its current incarnation.
                let until = now + self.awareness.scale(self.config.probe_interval);
                susp.verify(until);
                self.suspicion_deadlines.insert((until, name.clone()));
                // Also ask a few others: the suspect may be stalled again right now, while
                // anyone who saw its refutation can hand it over.
                let query = Message::Query(crate::message::Query {
                    incarnation,
                    name: name.clone(),
                })
                .encode_frame();
                for to in self.random_live_addrs(self.config.indirect_checks, Some(&name)) {
                    self.send_frames(to, std::slice::from_ref(&query), false);
                }
                let seq = self.next_seq();
                let accuse = Message::Suspect(Suspect {
                    incarnation,
                    name: name.clone(),
                    from: self.name.clone(),
                });
                let ping = Message::Ping(crate::message::Ping { seq, target: name });
                self.send_frames(addr, &[accuse.encode_frame(), ping.encode_frame()], false);
                continue;
            }
            self.suspicions.remove(&name);
            self.counters.deaths_declared += 1;
            let d = Dead {
                incarnation,
                name,
                from: self.name.clone(),
            };
            self.on_dead(now, d);
        }
    }

    /// Answers a query with the newer alive message we hold for that member, if any.
    pub(crate) fn on_query(&mut self, from: std::net::SocketAddr, q: crate::message::Query) {
        let Some(m) = self.member(&q.name) else {
            return;
        };
        if m.incarnation <= q.incarnation || !m.state.is_live() {
            return;
        }
        let alive = Alive {
            incarnation: m.incarnation,
            name: q.name,
            addr: m.addr(),
            meta: m.meta().clone(),
        };
        self.send_frames(from, &[Message::Alive(alive).encode_frame()], false);
    }

    pub(crate) fn on_user(&mut self, u: crate::message::UserMessage) {
        if u.origin == self.name
            || !self
                .user_seen
                .entry(u.origin.clone())
                .or_default()
                .insert(u.seq)
        {
            return;
        }
        let (origin, payload) = (u.origin.clone(), u.payload.clone());
        self.broadcasts
            .push(Urgency::User, None, Message::User(u).encode_frame());
        self.emit(Event::User { origin, payload });
    }

    /// Merges a remote member's full view (push-pull). Remote dead members are only suspected
    /// here, giving them the chance to refute, as they may be dead only on the other side.
    pub(crate) fn merge_remote(&mut self, now: Instant, members: Vec<MemberSnapshot>) {
        for r in members {
            match r.state {
                MemberState::Alive => {
                    self.on_alive(
                        now,
                        Alive {
                            incarnation: r.incarnation,
                            name: r.name,
                            addr: r.addr,
                            meta: r.meta,
                        },
                    );
                }
                MemberState::Left => {
                    self.on_dead(
                        now,
                        Dead {
                            incarnation: r.incarnation,
                            name: r.name.clone(),
                            from: r.name,
                        },
                    );
                }
                MemberState::Dead | MemberState::Suspect => {
                    let from = self.name.clone();
                    self.on_suspect(
                        now,
                        Suspect {
                            incarnation: r.incarnation,
                            name: r.name,
                            from,
                        },
                    );
                }
            }
        }
    }

    fn rebroadcast(&mut self, urgency: Urgency, name: &str, m: Message) {
        self.broadcasts.push(urgency, Some(name), m.encode_frame());
    }
}
