//! Bounded inputs (issue 17): oversized bodies and gossip stream frames are refused fast with
//! the agent's memory flat, and a thousand idle connections do not stop lease renewals.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{Cluster, get, json, wait_until};

const NET: u8 = 84;

/// The resident memory of `pid`, in KiB.
fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap()
}

/// Sends `head` then streams `mib` MiB of body (or until the server stops reading); returns
/// the status line's code, if the server answered.
fn send(addr: SocketAddr, head: &str, mib: usize) -> Option<u16> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b'x'; 64 << 10];
    for _ in 0..mib * 16 {
        let framed = format!("{:x}\r\n", chunk.len());
        if s.write_all(framed.as_bytes()).is_err()
            || s.write_all(&chunk).is_err()
            || s.write_all(b"\r\n").is_err()
        {
            break;
        }
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    String::from_utf8_lossy(&raw)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
}

/// A request whose head declares a body of `len` bytes, none of which is sent.
fn declared(addr: SocketAddr, path: &str, len: u64) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

#[test]
fn oversized_inputs_are_refused_fast_and_idle_connections_do_not_stop_renewals() {
    let mut c = Cluster::new(NET);
    c.start_agent(1, None, &[]);
    c.start_agent(2, None, &[]);
    let http = c.http(1);
    wait_until(Duration::from_secs(20), || {
        c.host_get(2, "/v1/lease")
            .is_some_and(|(_, b)| json(&b)["held"] == true)
    })
    .unwrap_or_else(|| panic!("h2 never held its lease:\n{}", c.log(2)));
    let pid = c.pid("h1");
    let before = rss_kib(pid);

    // A body that declares 1 GiB: refused before a byte of it is read, naming the limit.
    let t0 = Instant::now();
    let (status, body) = declared(http, "/v1/segments", 1 << 30);
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("at most 1048576 bytes"), "{body}");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    // The same on the renewal route, which has its own (larger) limit.
    let (status, body) = declared(http, "/internal/lease", 1 << 30);
    assert_eq!(status, 413, "{body}");

    // Streamed without a length (chunked), 64 MiB: cut off at the limit.
    let head = "POST /v1/segments HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    let t0 = Instant::now();
    let status = send(http, head, 64);
    assert!(
        status.is_none_or(|s| s == 413),
        "a streamed oversized body got {status:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());

    // A gossip stream frame that claims 1 GiB, then one that claims the most and sends 4 MiB
    // of garbage: dropped, nothing kept.
    for (claim, send_mib) in [(1u32 << 30, 0usize), (8 << 20, 4)] {
        let mut s = TcpStream::connect(c.gossip(1)).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&claim.to_be_bytes()).unwrap();
        let junk = vec![0xA5u8; 1 << 20];
        for _ in 0..send_mib {
            if s.write_all(&junk).is_err() {
                break;
            }
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kib(pid);
    assert!(
        after < before + 40 * 1024,
        "memory grew from {before} KiB to {after} KiB"
    );

    // A thousand idle connections to the server's API: h2 keeps renewing, the API answers.
    let idle: Vec<TcpStream> = (0..1000)
        .filter_map(|_| TcpStream::connect_timeout(&http, Duration::from_secs(2)).ok())
        .collect();
    assert!(idle.len() >= 990, "only {} connections opened", idle.len());
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        let lease = c.host_get(2, "/v1/lease").map(|(_, b)| json(&b));
        assert!(
            lease.as_ref().is_some_and(|l| l["held"] == true),
            "h2 lost its lease with {} idle connections open: {lease:?}",
            idle.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(get(http, "/v1/segments").map(|(s, _)| s), Some(200));
    drop(idle);

    // Followed event streams are capped per agent (256): the next one is told why.
    let open_stream = || {
        let mut s = TcpStream::connect(http).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut head = [0u8; 512];
        let n = s.read(&mut head).unwrap_or(0);
        (s, String::from_utf8_lossy(&head[..n]).to_string())
    };
    let mut streams = Vec::new();
    for _ in 0..256 {
        let (s, head) = open_stream();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        streams.push(s);
    }
    let (_s, head) = open_stream();
    assert!(
        head.starts_with("HTTP/1.1 503") && head.contains("too_many_streams"),
        "{head}"
    );
}
