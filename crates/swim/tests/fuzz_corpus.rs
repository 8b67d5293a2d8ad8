//! The `decode` fuzz target's corpus (`fuzz/corpus/decode`), replayed on every test run with
//! the target's own body (`fuzz/decode_body.rs`), plus deterministic mutations of each input
//! (truncations, bit flips, spliced lengths), so that CI exercises what fuzzing found without a
//! nightly toolchain. Grow the corpus with `cargo fuzz run decode fuzz/corpus/decode` (see
//! fuzz/README.md).

include!("../../../fuzz/decode_body.rs");

use std::path::PathBuf;

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/decode");
    let mut inputs: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    inputs.sort();
    inputs
}

#[test]
fn the_fuzz_corpus_and_its_mutations_never_panic() {
    let inputs = corpus();
    assert!(inputs.len() >= 20, "the corpus has {} inputs", inputs.len());
    let mut fed = 0usize;
    for (name, data) in &inputs {
        let run = |d: &[u8]| {
            if std::panic::catch_unwind(|| feed(d)).is_err() {
                panic!("{name} (mutated to {d:02x?}) panics");
            }
        };
        run(data);
        // Every prefix up to 64 bytes, then every 7th.
        for cut in (0..data.len()).filter(|c| *c < 64 || c % 7 == 0) {
            run(&data[..cut]);
        }
        // One bit flipped at each of the first 48 bytes, and 0x00/0xff in each.
        for i in 0..data.len().min(48) {
            let mut d = data.clone();
            d[i] ^= 1 << (i % 8);
            run(&d);
            for b in [0x00, 0xff] {
                d[i] = b;
                run(&d);
            }
        }
        fed += 1;
    }
    assert_eq!(fed, inputs.len());
}

/// Writes the seed corpus: real packets and stream frames of two cores talking (run with
/// `BUOY_WRITE_FUZZ_SEEDS=1 cargo test -p swim --test fuzz_corpus -- --ignored`).
#[test]
#[ignore]
fn write_seed_corpus() {
    use swim::{Config, Instant, Metadata, Output, Swim};
    if std::env::var_os("BUOY_WRITE_FUZZ_SEEDS").is_none() {
        return;
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/decode");
    std::fs::create_dir_all(&dir).unwrap();
    let addrs: Vec<std::net::SocketAddr> = (1..=3)
        .map(|i| format!("127.0.0.{i}:7946").parse().unwrap())
        .collect();
    let mut cores: Vec<Swim> = (0..3)
        .map(|i| {
            Swim::new(
                Config::lan(),
                &format!("n{i}"),
                addrs[i],
                Metadata::default(),
                i as u64,
                Instant::ZERO,
            )
            .unwrap()
        })
        .collect();
    cores[1].join(Instant::ZERO, &[addrs[0]]);
    cores[2].join(Instant::ZERO, &[addrs[0]]);
    let ring =
        swim::keyring::Keyring::new(vec![swim::keyring::Key::from_bytes([7; 32])], "fuzz").unwrap();
    let mut n = 0;
    for step in 1..400u64 {
        let now = Instant::from_nanos(step * 50_000_000);
        if step == 200 {
            cores[2].leave(now);
        }
        let mut sent = Vec::new();
        for (i, c) in cores.iter_mut().enumerate() {
            c.handle_timeout(now);
            for o in c.drain_outputs() {
                match o {
                    Output::Packet { to, bytes } => sent.push((i, to, bytes, false)),
                    Output::Stream { to, bytes, .. } => sent.push((i, to, bytes, true)),
                    Output::Event(_) => {}
                }
            }
        }
        for (from, to, bytes, stream) in sent {
            if n < 200 && step % 3 == 0 {
                std::fs::write(dir.join(format!("seed-{n:03}")), &bytes).unwrap();
                // Some sealed with the target's key, so that `open` succeeds too.
                if n % 10 == 0 {
                    let sealed = ring.seal(&bytes, [n as u8; swim::keyring::NONCE_BYTES]);
                    std::fs::write(dir.join(format!("sealed-{n:03}")), sealed).unwrap();
                }
                n += 1;
            }
            if let Some(j) = addrs.iter().position(|a| *a == to) {
                if stream {
                    let _ = cores[j].handle_stream_request(now, addrs[from], &bytes);
                } else {
                    cores[j].handle_packet(now, addrs[from], &bytes);
                }
            }
        }
    }
}
