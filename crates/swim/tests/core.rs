//! The membership core driven by hand: one input, then a look at the outputs.

use std::net::SocketAddr;
use std::time::Duration;

use proptest::prelude::*;
use swim::message::{self, Alive, Message, Ping, Refute, Suspect, decode_packet, encode_packet};
use swim::{Config, Event, Incarnation, Instant, MemberState, Metadata, Output, Swim};

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, i], 7946))
}

fn node(name: &str, i: u8) -> Swim {
    Swim::new(
        Config::lan(),
        name,
        addr(i),
        Metadata::default(),
        u64::from(i),
        Instant::ZERO,
    )
    .unwrap()
}

fn alive(name: &str, i: u8, inc: u32) -> Message {
    Message::Alive(Alive {
        incarnation: Incarnation(inc),
        name: name.into(),
        addr: addr(i),
        meta: Metadata::default(),
    })
}

fn packets(s: &mut Swim) -> Vec<(SocketAddr, Vec<Message>)> {
    s.drain_outputs()
        .filter_map(|o| match o {
            Output::Packet { to, bytes } => Some((to, decode_packet(&bytes).unwrap().messages)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_suspicion_about_itself_is_refuted_with_a_higher_incarnation_sent_to_the_accuser() {
    let (a, sent) = accused_by_b(Config::lan());
    assert_eq!(a.me().incarnation, Incarnation(1));
    let to_b: Vec<Message> = sent
        .into_iter()
        .filter(|(to, _)| *to == addr(2))
        .flat_map(|(_, m)| m)
        .collect();
    assert!(to_b.iter().any(
        |m| matches!(m, Message::Alive(x) if x.name == "a" && x.incarnation == Incarnation(1))
    ));
    assert_eq!(a.counters().refutations, 1);
    assert_eq!(
        a.local_health(),
        1,
        "being suspected raises the local health score"
    );
}

fn refute(name: &str, inc: u32) -> Message {
    Message::Refute(Refute {
        incarnation: Incarnation(inc),
        name: name.into(),
    })
}

/// Member `a`, knowing b, c and d, suspected by b; with what it sent then.
fn accused_by_b(config: Config) -> (Swim, Vec<(SocketAddr, Vec<Message>)>) {
    let mut a = Swim::new(config, "a", addr(1), Metadata::default(), 1, Instant::ZERO).unwrap();
    let t = Instant::ZERO;
    for (i, n) in [(2, "b"), (3, "c"), (4, "d")] {
        a.handle_packet(t, addr(i), &encode_packet(&[alive(n, i, 0)]));
    }
    packets(&mut a);
    let accusation = Suspect {
        incarnation: Incarnation(0),
        name: "a".into(),
        from: "b".into(),
    };
    a.handle_packet(t, addr(2), &encode_packet(&[Message::Suspect(accusation)]));
    let sent = packets(&mut a);
    (a, sent)
}

#[test]
fn a_refutation_is_gossiped_short_and_the_accuser_gets_the_full_alive() {
    let t = Instant::ZERO;
    let (mut a, sent) = accused_by_b(Config::lan());
    assert!(sent.iter().any(|(to, m)| {
        *to == addr(2)
            && m.iter()
                .any(|m| matches!(m, Message::Alive(x) if x.incarnation == Incarnation(1)))
    }));
    // What rides later packets is the short form, without the metadata.
    a.handle_timeout(t + Duration::from_secs(1));
    let later: Vec<Message> = packets(&mut a).into_iter().flat_map(|(_, m)| m).collect();
    assert!(later.contains(&refute("a", 1)), "{later:?}");
    assert!(
        !later
            .iter()
            .any(|m| matches!(m, Message::Alive(x) if x.name == "a"))
    );
    // Our own refutation echoed back is not a new accusation: no second refutation.
    a.handle_packet(t, addr(3), &encode_packet(&[refute("a", 1)]));
    assert_eq!(a.me().incarnation, Incarnation(1));
    assert_eq!(a.counters().refutations, 1);
    // One naming a newer version of us than ours is answered like an alive would be.
    a.handle_packet(t, addr(3), &encode_packet(&[refute("a", 5)]));
    assert_eq!(a.me().incarnation, Incarnation(6));
}

#[test]
fn while_upgrading_from_older_agents_refutations_are_gossiped_whole() {
    // Agents built before the short form skip it: with short_refutations off, gossip carries
    // the full alive, as they expect.
    let config = Config {
        short_refutations: false,
        ..Config::lan()
    };
    let t = Instant::ZERO;
    let (mut a, _) = accused_by_b(config);
    a.handle_timeout(t + Duration::from_secs(1));
    let later: Vec<Message> = packets(&mut a).into_iter().flat_map(|(_, m)| m).collect();
    assert!(!later.contains(&refute("a", 1)), "{later:?}");
    assert!(
        later.iter().any(
            |m| matches!(m, Message::Alive(x) if x.name == "a" && x.incarnation == Incarnation(1))
        ),
        "{later:?}"
    );
}

#[test]
fn a_short_refutation_revives_a_known_member_and_nothing_else() {
    let mut a = node("a", 1);
    let t = Instant::ZERO;
    a.handle_packet(t, addr(2), &encode_packet(&[alive("b", 2, 3)]));
    let suspect = Suspect {
        incarnation: Incarnation(3),
        name: "b".into(),
        from: "c".into(),
    };
    a.handle_packet(t, addr(3), &encode_packet(&[Message::Suspect(suspect)]));
    assert_eq!(a.member("b").map(|m| m.state), Some(MemberState::Suspect));
    // Not newer: nothing changes.
    a.handle_packet(t, addr(3), &encode_packet(&[refute("b", 3)]));
    assert_eq!(a.member("b").map(|m| m.state), Some(MemberState::Suspect));
    a.handle_packet(t, addr(3), &encode_packet(&[refute("b", 4)]));
    let b = a.member("b").unwrap();
    assert_eq!(
        (b.state, b.incarnation),
        (MemberState::Alive, Incarnation(4))
    );
    assert_eq!(b.addr(), addr(2), "the known address stays");
    // A name nobody knows: no member is made from it (it has no address).
    a.handle_packet(t, addr(3), &encode_packet(&[refute("z", 9)]));
    assert!(a.member("z").is_none());
}

#[test]
fn a_member_that_misses_its_probes_is_suspected_then_declared_dead() {
    let mut a = node("a", 1);
    for (i, n) in [(2, "b"), (3, "c")] {
        a.handle_packet(Instant::ZERO, addr(i), &encode_packet(&[alive(n, i, 0)]));
    }
    // Nobody ever answers: drive time forward to every deadline.
    let mut now = Instant::ZERO;
    let mut suspected = false;
    let mut dead = false;
    while now < Instant::ZERO + Duration::from_secs(30) {
        now = a.next_deadline().unwrap().max(now);
        a.handle_timeout(now);
        for o in a.drain_outputs() {
            match o {
                Output::Event(Event::MemberSuspected { .. }) => suspected = true,
                Output::Event(Event::MemberDied { by, .. }) => {
                    assert_eq!(by, "a");
                    dead = true;
                }
                _ => {}
            }
        }
        if dead {
            break;
        }
    }
    assert!(suspected && dead);
    assert!(
        a.local_health() > 0,
        "unanswered probes with no nacks mean we may be the slow one"
    );
}

#[test]
fn an_alive_with_an_older_incarnation_does_not_undo_a_death() {
    let mut a = node("a", 1);
    a.handle_packet(Instant::ZERO, addr(2), &encode_packet(&[alive("b", 2, 3)]));
    let dead = swim::message::Dead {
        incarnation: Incarnation(3),
        name: "b".into(),
        from: "c".into(),
    };
    a.handle_packet(
        Instant::ZERO,
        addr(3),
        &encode_packet(&[Message::Dead(dead)]),
    );
    assert_eq!(a.member("b").map(|m| m.state), Some(MemberState::Dead));
    a.handle_packet(Instant::ZERO, addr(2), &encode_packet(&[alive("b", 2, 3)]));
    assert_eq!(
        a.member("b").map(|m| m.state),
        Some(MemberState::Dead),
        "equal incarnation: dead wins"
    );
    a.handle_packet(Instant::ZERO, addr(2), &encode_packet(&[alive("b", 2, 4)]));
    assert_eq!(
        a.member("b").map(|m| m.state),
        Some(MemberState::Alive),
        "a higher one brings it back"
    );
}

#[test]
fn a_ping_for_another_name_is_ignored() {
    let mut a = node("a", 1);
    let ping = Message::Ping(Ping {
        seq: 1,
        target: "someone-else".into(),
    });
    a.handle_packet(Instant::ZERO, addr(2), &encode_packet(&[ping]));
    assert!(packets(&mut a).is_empty());
    assert_eq!(a.counters().misdirected_pings, 1);
}

#[test]
fn no_packet_ever_exceeds_the_configured_size_even_with_a_full_queue() {
    let config = Config {
        max_packet_bytes: 512,
        ..Config::lan()
    };
    let mut a = Swim::new(config, "a", addr(1), Metadata::default(), 1, Instant::ZERO).unwrap();
    for i in 0..200u32 {
        let name = format!("member-with-a-long-name-{i:04}");
        let m = Message::Alive(Alive {
            incarnation: Incarnation(1),
            name,
            addr: addr(9),
            meta: Metadata::default(),
        });
        a.handle_packet(Instant::ZERO, addr(9), &encode_packet(&[m]));
    }
    let mut now = Instant::ZERO;
    let mut sent = 0;
    for _ in 0..500 {
        now = a.next_deadline().unwrap().max(now);
        a.handle_timeout(now);
        for o in a.drain_outputs() {
            if let Output::Packet { bytes, .. } = o {
                assert!(bytes.len() <= 512, "packet of {} bytes", bytes.len());
                sent += 1;
            }
        }
    }
    assert!(sent > 100);
}

#[test]
fn garbage_packets_are_counted_and_change_nothing() {
    let mut a = node("a", 1);
    for junk in [
        &b""[..],
        &[2],
        &[1, 5, 200, 1, 2],
        &[0xff; 64],
        &[1, 3, 0x80, 0x80, 0x80],
    ] {
        a.handle_packet(Instant::ZERO, addr(2), junk);
    }
    assert_eq!(a.counters().decode_errors, 5);
    assert_eq!(a.members().len(), 1);
    assert!(
        a.handle_stream_request(Instant::ZERO, addr(2), &[9, 9, 9])
            .is_none()
    );
}

fn arb_message() -> impl Strategy<Value = Message> {
    let name = "[a-z0-9-]{1,20}";
    prop_oneof![
        (any::<u32>(), name).prop_map(|(seq, target)| Message::Ping(Ping { seq, target })),
        any::<u32>().prop_map(|seq| Message::Ack { seq }),
        any::<u32>().prop_map(|seq| Message::Nack { seq }),
        (
            any::<u32>(),
            name,
            any::<[u8; 4]>(),
            any::<u16>(),
            any::<u32>(),
            any::<u64>()
        )
            .prop_map(|(inc, n, ip, port, cpus, mem)| {
                let meta = Metadata {
                    segment: "az".into(),
                    capacity: swim::Capacity {
                        cpus,
                        memory_mb: mem,
                    },
                    ..Metadata::default()
                };
                Message::Alive(Alive {
                    incarnation: Incarnation(inc),
                    name: n,
                    addr: SocketAddr::from((ip, port)),
                    meta,
                })
            }),
        (any::<u32>(), name).prop_map(|(inc, n)| Message::Refute(Refute {
            incarnation: Incarnation(inc),
            name: n,
        })),
        (any::<u32>(), name, name).prop_map(|(inc, n, from)| Message::Suspect(Suspect {
            incarnation: Incarnation(inc),
            name: n,
            from
        })),
        (
            name,
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..100)
        )
            .prop_map(
                |(origin, seq, payload)| Message::User(message::UserMessage {
                    origin,
                    seq,
                    payload
                })
            ),
    ]
}

proptest! {
    #[test]
    fn any_compound_packet_round_trips(msgs in proptest::collection::vec(arb_message(), 0..8)) {
        let decoded = decode_packet(&encode_packet(&msgs)).unwrap();
        prop_assert_eq!(decoded.messages, msgs);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode_packet(&bytes);
        let _ = message::StreamMessage::decode(&bytes);
        let mut a = node("a", 1);
        a.handle_packet(Instant::ZERO, addr(2), &bytes);
        let _ = a.handle_stream_request(Instant::ZERO, addr(2), &bytes);
    }

    #[test]
    fn flipping_any_byte_of_a_valid_packet_never_panics(msgs in proptest::collection::vec(arb_message(), 1..4), pos in any::<usize>(), val in any::<u8>()) {
        let mut bytes = encode_packet(&msgs);
        let i = pos % bytes.len();
        bytes[i] = val;
        let mut a = node("a", 1);
        a.handle_packet(Instant::ZERO, addr(2), &bytes);
    }
}

#[test]
fn a_pull_answered_with_a_different_view_is_followed_by_a_push_of_ours() {
    // Probing slow enough that the silent `b` is not suspected before the pull goes out.
    let config = Config {
        push_pull_interval: Duration::from_secs(1),
        probe_interval: Duration::from_secs(60),
        probe_timeout: Duration::from_secs(30),
        ..Config::lan()
    };
    let mut a = Swim::new(config, "a", addr(1), Metadata::default(), 1, Instant::ZERO).unwrap();
    a.handle_packet(Instant::ZERO, addr(2), &encode_packet(&[alive("b", 2, 0)]));
    a.drain_outputs().for_each(drop);
    // Run until the periodic pull goes out.
    let mut now = Instant::ZERO;
    let mut rounds = 0;
    let (peer, id) = loop {
        rounds += 1;
        assert!(rounds < 1000, "no periodic pull was sent");
        now = a.next_deadline().unwrap().max(now);
        a.handle_timeout(now);
        let pull = a.drain_outputs().find_map(|o| match o {
            // Fallback probes of the silent `b` are streams too: pick the pull.
            Output::Stream { to, id, bytes } => matches!(
                message::StreamMessage::decode(&bytes),
                Ok(message::StreamMessage::Pull { .. })
            )
            .then_some((to, id)),
            _ => None,
        });
        if let Some(p) = pull {
            break p;
        }
    };
    assert_eq!(peer, addr(2));
    // The peer's view differs (it knows c): we merge it, then push ours to the same peer.
    let theirs = message::StreamMessage::PushPull {
        join: false,
        members: vec![message::MemberSnapshot {
            name: "c".into(),
            addr: addr(3),
            incarnation: Incarnation(0),
            state: MemberState::Alive,
            meta: Metadata::default(),
        }],
    };
    a.handle_stream_reply(now, id, Ok(theirs.encode()));
    assert!(a.member("c").is_some());
    let pushed: Vec<_> = a
        .drain_outputs()
        .filter_map(|o| match o {
            Output::Stream { to, bytes, .. } => {
                Some((to, message::StreamMessage::decode(&bytes).unwrap()))
                    .filter(|(_, m)| matches!(m, message::StreamMessage::PushPull { .. }))
            }
            _ => None,
        })
        .collect();
    assert!(
        matches!(pushed.as_slice(), [(to, message::StreamMessage::PushPull { join: false, members })] if *to == addr(2) && members.len() == 3)
    );
}

#[test]
fn a_member_whose_main_address_is_cut_but_answers_on_another_network_stays_alive() {
    let mut a = node("a", 1);
    let storage = SocketAddr::from(([127, 0, 1, 2], 7946));
    let meta = Metadata {
        addresses: vec![swim::NetAddress {
            label: "storage".into(),
            addr: storage,
        }],
        ..Default::default()
    };
    let b = Message::Alive(Alive {
        incarnation: Incarnation(0),
        name: "b".into(),
        addr: addr(2),
        meta,
    });
    a.handle_packet(Instant::ZERO, addr(2), &encode_packet(&[b]));
    // The main network to b loses everything; b answers pings that reach its storage address.
    let mut now = Instant::ZERO;
    let mut answered = 0;
    while now < Instant::ZERO + Duration::from_secs(30) {
        now = a.next_deadline().unwrap().max(now);
        a.handle_timeout(now);
        let outputs: Vec<Output> = a.drain_outputs().collect();
        for o in outputs {
            match o {
                Output::Packet { to, bytes } if to == storage => {
                    for m in decode_packet(&bytes).unwrap().messages {
                        if let Message::Ping(p) = m {
                            assert_eq!(p.target, "b");
                            answered += 1;
                            let ack = encode_packet(&[Message::Ack { seq: p.seq }]);
                            a.handle_packet(now, storage, &ack);
                        }
                    }
                }
                Output::Event(Event::MemberSuspected { name, .. }) => {
                    panic!("{name} suspected although it answers on its storage address")
                }
                _ => {}
            }
        }
    }
    assert!(
        answered > 10,
        "probes went to the storage address: {answered}"
    );
    assert_eq!(a.counters().alternate_probes, answered);
    assert_eq!(a.member("b").unwrap().state, MemberState::Alive);
}

#[test]
fn the_member_table_stops_at_its_maximum_and_counts_what_it_refused() {
    let config = Config {
        max_members: 4,
        ..Config::lan()
    };
    let mut a = Swim::new(config, "a", addr(1), Metadata::default(), 1, Instant::ZERO).unwrap();
    let t = Instant::ZERO;
    for i in 2..=9u8 {
        a.handle_packet(t, addr(i), &encode_packet(&[alive(&format!("m{i}"), i, 0)]));
    }
    assert_eq!(a.members().len(), 4, "this member and three others");
    assert_eq!(a.counters().members_refused, 5);
    // A member already known is still updated (its new incarnation taken).
    a.handle_packet(t, addr(2), &encode_packet(&[alive("m2", 2, 3)]));
    let m2 = a.members().iter().find(|m| m.name() == "m2").unwrap();
    assert_eq!(m2.incarnation, Incarnation(3));
    assert_eq!(a.counters().members_refused, 5);
    let too_small = Config {
        max_members: 1,
        ..Config::lan()
    };
    assert!(
        too_small
            .validate()
            .unwrap_err()
            .to_string()
            .contains("max_members")
    );
}
