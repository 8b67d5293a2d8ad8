//! An attacker without the gossip key floods every agent's gossip port (UDP and the stream
//! port) with forged messages: alive for new names and for a member's own name at another
//! address (a name conflict), the server role, suspect and dead for live members, a leave in
//! another's name, and garbage. None of it opens under the cluster's keyring, so no agent exits
//! or changes what it believes, every lease stays held, and the drops are counted in
//! `/metrics` (`buoy_swim_packets_dropped_total{reason="decrypt"}`).

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::{Cluster, get, json, wait_until};

use swim::message::{Alive, Dead, Message, Suspect, encode_packet};
use swim::{Metadata, Role};

const NET: u8 = 87;

/// The forged messages, in plaintext (what an attacker without the key can write).
fn forged(net: u8, round: u64) -> Vec<Vec<u8>> {
    let attacker: SocketAddr = format!("127.0.{net}.66:7946").parse().unwrap();
    let server = Metadata {
        role: Role::Server,
        http: Some(format!("127.0.{net}.66:7070").parse().unwrap()),
        ..Metadata::default()
    };
    let mut out = Vec::new();
    for i in 1..=3u8 {
        let name = format!("h{i}");
        let inc = swim::Incarnation(1_000 + round as u32);
        out.push(encode_packet(&[Message::Alive(Alive {
            incarnation: inc,
            name: name.clone(),
            addr: attacker,
            meta: server.clone(),
        })]));
        out.push(encode_packet(&[Message::Suspect(Suspect {
            incarnation: inc,
            name: name.clone(),
            from: "h9".into(),
        })]));
        out.push(encode_packet(&[Message::Dead(Dead {
            incarnation: inc,
            name: name.clone(),
            from: "h9".into(),
        })]));
        // A leave in the member's own name.
        out.push(encode_packet(&[Message::Dead(Dead {
            incarnation: inc,
            name: name.clone(),
            from: name.clone(),
        })]));
    }
    out.push(encode_packet(&[Message::Alive(Alive {
        incarnation: swim::Incarnation(1),
        name: format!("evil-{round}"),
        addr: attacker,
        meta: server,
    })]));
    // Garbage, and bytes that look like a sealed packet (the keyring's version byte first).
    out.push((0..200u64).map(|i| (i * 31 + round) as u8).collect());
    out.push([1u8].iter().chain([0u8; 60].iter()).copied().collect());
    out
}

fn dropped_by_decrypt(c: &Cluster, i: u8) -> u64 {
    let (_, text) = get(c.http(i), "/metrics").unwrap();
    text.lines()
        .find(|l| l.starts_with("buoy_swim_packets_dropped_total{reason=\"decrypt\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Floods a three-agent cluster started with `extra` for 8 s; what went wrong, if anything.
fn flood(net: u8, extra: &[&str]) -> Vec<String> {
    let mut c = Cluster::new(net);
    for i in 1..=3 {
        c.start_agent(i, None, extra);
    }
    for i in 1..=3 {
        for s in 1..=3 {
            c.wait_all_see(&[i], &format!("h{s}"), "alive", Duration::from_secs(15));
        }
    }
    for i in 1..=3 {
        wait_until(Duration::from_secs(20), || {
            c.host_get(i, "/v1/lease")
                .is_some_and(|(_, b)| json(&b)["held"] == true)
        })
        .unwrap_or_else(|| panic!("h{i} never held its lease:\n{}", c.log(i)));
    }
    let before: Vec<u64> = (1..=3).map(|i| dropped_by_decrypt(&c, i)).collect();

    let udp = UdpSocket::bind(format!("127.0.{net}.66:0")).unwrap();
    let t0 = Instant::now();
    let mut sent = 0u64;
    let mut round = 0u64;
    while t0.elapsed() < Duration::from_secs(8) {
        for packet in forged(net, round) {
            for i in 1..=3 {
                if udp.send_to(&packet, c.gossip(i)).is_ok() {
                    sent += 1;
                }
            }
        }
        // The stream port too: a frame of garbage, and one claiming 1 GiB.
        if round.is_multiple_of(50) {
            for i in 1..=3 {
                if let Ok(mut s) = TcpStream::connect_timeout(&c.gossip(i), Duration::from_secs(1))
                {
                    let _ = s.write_all(&[0xff; 64]);
                    let _ = s.write_all(&(1u32 << 30).to_be_bytes());
                }
            }
        }
        round += 1;
        // Each agent still renews and gossips between bursts: thousands of packets/s each.
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!("sent {sent} forged packets in {:?}", t0.elapsed());

    // Nobody exited, believes anything forged, or lost its lease.
    let mut wrong = Vec::new();
    for i in 1..=3 {
        let members = json(&c.host_get(i, "/v1/members").unwrap().1);
        let list = members["members"].as_array().cloned().unwrap_or_default();
        if list.len() != 3 {
            wrong.push(format!("h{i} sees {} members", list.len()));
        }
        for m in list {
            if m["state"] != "alive" || m["address"].as_str().unwrap_or_default().contains(".66:") {
                wrong.push(format!("h{i} believes {m}"));
            }
        }
        if json(&c.host_get(i, "/v1/lease").unwrap().1)["held"] != true {
            wrong.push(format!("h{i} lost its lease"));
        }
        let counted = dropped_by_decrypt(&c, i) - before[(i - 1) as usize];
        if counted < sent / 3 / 2 {
            wrong.push(format!(
                "h{i} counted {counted} decrypt drops of about {} packets",
                sent / 3
            ));
        }
    }
    for (name, child) in c.agents.iter_mut() {
        if child.try_wait().unwrap().is_some() {
            wrong.push(format!("{name} exited"));
        }
    }
    wrong
}

#[test]
fn forged_gossip_without_the_key_changes_nothing_and_is_counted() {
    let wrong = flood(NET, &[]);
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// The negative control: the same flood against agents without a keyring is believed (and
/// not counted as undecryptable), so the test above can fail.
#[test]
fn without_a_keyring_the_same_flood_is_believed() {
    let wrong = flood(NET + 1, &["--unsafe-no-gossip-encryption"]);
    assert!(
        wrong
            .iter()
            .any(|w| w.contains("believes") || w.contains("members")),
        "{wrong:#?}"
    );
}
