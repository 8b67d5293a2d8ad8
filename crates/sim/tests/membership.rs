//! Protocol properties checked in the deterministic simulator.

use std::time::Duration;

use sim::scenario::{formed_cluster, sim_addr, sim_name};
use sim::{MembershipScenario, NetworkConfig, Simulation};
use swim::{Config, Event, Incarnation, Instant, MemberState, Metadata, Swim};

fn secs(s: u64) -> Instant {
    Instant::ZERO + Duration::from_secs(s)
}

/// The state of `subject` as `observer` sees it.
fn view(sim: &Simulation, observer: usize, subject: usize) -> Option<(MemberState, Incarnation)> {
    sim.node(observer)?
        .member(&sim_name(subject))
        .map(|m| (m.state, m.incarnation))
}

fn all_see(sim: &Simulation, n: usize, subject: usize, state: MemberState) -> bool {
    (0..n)
        .filter(|&o| o != subject && !sim.is_crashed(o))
        .all(|o| view(sim, o, subject).map(|v| v.0) == Some(state))
}

#[test]
fn every_crash_is_detected_in_time_and_no_live_member_is_declared_dead_over_many_seeds() {
    let seeds = if std::env::var("CI").is_ok() { 200 } else { 60 };
    for seed in 0..seeds {
        let scenario = MembershipScenario {
            loss: 0.01,
            crashes: 3,
            stall_fraction: 0.1,
            ..MembershipScenario::new(24, Duration::from_secs(30), seed)
        };
        let r = scenario.run().unwrap();
        assert_eq!(
            r.false_positives, 0,
            "seed {seed}: {:?}",
            r.false_positive_details
        );
        assert_eq!(
            r.undetected, 0,
            "seed {seed}: a crash was never detected by everyone"
        );
        assert_eq!(r.detect_first_ms.count, 3, "seed {seed}");
        // Suspicion max (no confirmations) plus probing plus stall: a generous per-run bound.
        assert!(
            r.detect_all_ms.max < 12_000.0,
            "seed {seed}: detection took {} ms",
            r.detect_all_ms.max
        );
    }
}

#[test]
fn the_same_seed_replays_the_same_run_bit_for_bit() {
    let s = MembershipScenario {
        loss: 0.02,
        crashes: 2,
        stall_fraction: 0.1,
        ..MembershipScenario::new(40, Duration::from_secs(20), 77)
    };
    let a = s.run().unwrap();
    let b = s.run().unwrap();
    assert_eq!(a, b);
    let c = MembershipScenario { seed: 78, ..s }.run().unwrap();
    assert_ne!(a.sim_events, c.sim_events, "another seed gives another run");
}

#[test]
fn a_symmetric_partition_splits_the_cluster_and_views_converge_after_it_heals() {
    let n = 10;
    let mut sim = formed_cluster(n, &Config::lan(), NetworkConfig::lan(), 5);
    sim.run_until(secs(2));
    let (a, b): (Vec<usize>, Vec<usize>) = (0..n).partition(|i| i % 2 == 0);
    sim.network_mut().partition(&a, &b, false);
    sim.run_until(secs(25));
    assert_eq!(
        view(&sim, a[0], b[0]).map(|v| v.0),
        Some(MemberState::Dead),
        "each side sees the other dead"
    );
    assert_eq!(view(&sim, b[0], a[0]).map(|v| v.0), Some(MemberState::Dead));
    assert_eq!(
        view(&sim, a[0], a[1]).map(|v| v.0),
        Some(MemberState::Alive),
        "its own side stays alive"
    );
    sim.network_mut().heal();
    let mut healed_at = None;
    for t in 26..90 {
        sim.run_until(secs(t));
        if (0..n).all(|s| all_see(&sim, n, s, MemberState::Alive)) {
            healed_at = Some(t);
            break;
        }
    }
    assert!(
        healed_at.is_some(),
        "views did not converge within 65 s of healing"
    );
}

#[test]
fn a_one_way_link_failure_kills_no_one_thanks_to_indirect_and_stream_probes() {
    let n = 8;
    let mut sim = formed_cluster(n, &Config::lan(), NetworkConfig::lan(), 9);
    sim.network_mut().partition(&[0], &[1], true);
    sim.run_until(secs(40));
    for o in 0..n {
        for s in 0..n {
            assert_ne!(
                view(&sim, o, s).map(|v| v.0),
                Some(MemberState::Dead),
                "n{o} declared n{s} dead"
            );
        }
    }
    let deaths: usize = sim
        .drain_events()
        .filter(|(_, _, e)| matches!(e, Event::MemberDied { .. }))
        .count();
    assert_eq!(deaths, 0);
}

#[test]
fn a_restarted_member_rejoins_with_a_higher_incarnation() {
    let n = 6;
    let config = Config::lan();
    let mut sim = formed_cluster(n, &config, NetworkConfig::lan(), 3);
    sim.run_until(secs(2));
    sim.crash(4);
    sim.run_until(secs(15));
    assert!(all_see(&sim, n, 4, MemberState::Dead));
    let old = view(&sim, 0, 4).map(|v| v.1).unwrap_or_default();
    let fresh = Swim::new(
        config,
        &sim_name(4),
        sim_addr(4),
        Metadata::default(),
        99,
        sim.now(),
    )
    .unwrap();
    sim.restart(4, fresh);
    sim.with_node(4, |s, now| s.join(now, &[sim_addr(0)]));
    sim.run_until(secs(20));
    assert!(
        all_see(&sim, n, 4, MemberState::Alive),
        "everyone sees the restarted member alive"
    );
    let new = view(&sim, 1, 4).map(|v| v.1).unwrap_or_default();
    assert!(new > old, "incarnation {new:?} must beat the old {old:?}");
    assert_eq!(
        sim.node(4).map(|s| s.num_live()),
        Some(n),
        "the restarted member knows everyone again"
    );
}

#[test]
fn a_graceful_leave_is_told_apart_from_a_failure() {
    let n = 5;
    let mut sim = formed_cluster(n, &Config::lan(), NetworkConfig::lan(), 4);
    sim.run_until(secs(1));
    sim.drain_events().for_each(drop);
    sim.with_node(2, |s, now| s.leave(now));
    sim.run_until(secs(3));
    sim.crash(2);
    sim.run_until(secs(10));
    assert!(all_see(&sim, n, 2, MemberState::Left));
    let events: Vec<Event> = sim.drain_events().map(|(_, _, e)| e).collect();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::MemberLeft { name } if name == "n2"))
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::MemberDied { name, .. } if name == "n2"))
    );
}

#[test]
fn a_second_host_claiming_a_live_members_name_is_rejected() {
    let n = 4;
    let config = Config::lan();
    let mut sim = formed_cluster(n, &config, NetworkConfig::lan(), 6);
    sim.run_until(secs(1));
    let impostor_addr: std::net::SocketAddr = "127.2.0.1:7946".parse().unwrap();
    let impostor = Swim::new(
        config,
        &sim_name(1),
        impostor_addr,
        Metadata::default(),
        5,
        sim.now(),
    )
    .unwrap();
    let id = sim.add_node(impostor);
    sim.with_node(id, |s, now| s.join(now, &[sim_addr(0)]));
    sim.run_until(secs(5));
    let events: Vec<(usize, Event)> = sim.drain_events().map(|(_, n, e)| (n, e)).collect();
    assert!(
        events.iter().any(|(node, e)| *node == id
            && matches!(
                e,
                Event::NameConflict {
                    about_self: true,
                    refused: true,
                    ..
                }
            )),
        "the impostor is told its name is taken"
    );
    assert!(
        !events
            .iter()
            .any(|(node, e)| *node != id && matches!(e, Event::NameConflict { refused: true, .. })),
        "no member already in the cluster is told to give up its name"
    );
    assert!(
        events.iter().any(|(_, e)| matches!(
            e,
            Event::NameConflict {
                about_self: false,
                ..
            }
        )),
        "members reject it"
    );
    for o in [0, 2, 3] {
        let m = sim.node(o).and_then(|s| s.member(&sim_name(1))).unwrap();
        assert_eq!(
            (m.state, m.addr()),
            (MemberState::Alive, sim_addr(1)),
            "n{o} keeps the original"
        );
    }
}

#[test]
fn a_user_broadcast_reaches_every_member_exactly_once() {
    let n = 50;
    let mut sim = formed_cluster(
        n,
        &Config::lan(),
        NetworkConfig {
            loss: 0.05,
            ..NetworkConfig::lan()
        },
        8,
    );
    sim.run_until(secs(1));
    sim.with_node(7, |s, _| s.broadcast_user(b"placement epoch 4".to_vec()))
        .unwrap()
        .unwrap();
    sim.run_until(secs(5));
    let mut got = vec![0; n];
    for (_, node, e) in sim.drain_events() {
        if let Event::User { origin, payload } = e {
            assert_eq!(
                (origin.as_str(), payload.as_slice()),
                ("n7", &b"placement epoch 4"[..])
            );
            got[node] += 1;
        }
    }
    assert_eq!(got[7], 0, "not delivered to its origin");
    assert!(
        got.iter().enumerate().all(|(i, &c)| i == 7 || c == 1),
        "{got:?}"
    );
}

#[test]
fn joining_retries_until_a_seed_answers() {
    let config = Config::lan();
    let mut sim = Simulation::new(1, NetworkConfig::lan());
    let a = sim.add_node(
        Swim::new(
            config.clone(),
            "a",
            sim_addr(0),
            Metadata::default(),
            1,
            sim.now(),
        )
        .unwrap(),
    );
    // The seed is not up yet: nothing listens at sim_addr(1).
    sim.with_node(a, |s, now| s.join(now, &[sim_addr(1)]));
    sim.run_until(secs(5));
    let failures = sim
        .drain_events()
        .filter(|(_, _, e)| matches!(e, Event::JoinAttemptFailed { .. }))
        .count();
    assert!(failures >= 2, "{failures} failed attempts");
    let b = sim
        .add_node(Swim::new(config, "b", sim_addr(1), Metadata::default(), 2, sim.now()).unwrap());
    sim.run_until(secs(8));
    assert!(
        sim.drain_events()
            .any(|(_, n, e)| n == a && matches!(e, Event::JoinSucceeded { .. }))
    );
    assert_eq!(sim.node(b).map(|s| s.num_live()), Some(2));
    assert_eq!(sim.node(a).map(|s| s.num_live()), Some(2));
}

#[test]
fn an_update_missed_during_a_partition_arrives_through_anti_entropy() {
    let n = 6;
    // Long suspicion so the partitioned member is never declared dead: only anti-entropy can
    // bring it what it missed, as gossip of the update is long exhausted when the link heals.
    let config = Config {
        push_pull_interval: Duration::from_secs(2),
        suspicion_min: Duration::from_secs(120),
        ..Config::lan()
    };
    let mut sim = formed_cluster(n, &config, NetworkConfig::lan(), 12);
    sim.run_until(secs(1));
    let others: Vec<usize> = (1..n).collect();
    sim.network_mut().partition(&[0], &others, false);
    let fresh = sim
        .with_node(3, |s, _| {
            let meta = Metadata {
                segment: "moved".into(),
                ..s.me().meta().clone()
            };
            s.set_metadata(meta).unwrap();
            s.me().incarnation
        })
        .unwrap();
    sim.run_until(secs(8));
    assert!(
        view(&sim, 0, 3).unwrap().1 < fresh,
        "the partitioned member missed the update"
    );
    sim.network_mut().heal();
    sim.run_until(secs(30));
    let m = sim.node(0).unwrap().member(&sim_name(3)).unwrap();
    assert_eq!((m.incarnation, m.meta().segment.as_str()), (fresh, "moved"));
}
