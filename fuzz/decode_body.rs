// The body of the `decode` fuzz target, shared with `crates/swim/tests/fuzz_corpus.rs`, which
// replays the committed corpus (and mutations of it) on every CI run: arbitrary bytes into
// every decoder and into a live core; nothing may panic.

/// Feeds `data` to every decoder and to a live core as a packet and as a stream request.
pub fn feed(data: &[u8]) {
    use swim::{Config, Instant, Metadata, Swim};
    let _ = swim::message::decode_packet(data);
    let _ = swim::message::StreamMessage::decode(data);
    let addr = "127.0.0.1:7946".parse().unwrap();
    let mut core =
        Swim::new(Config::lan(), "fuzz", addr, Metadata::default(), 1, Instant::ZERO).unwrap();
    let from = "127.0.0.2:7946".parse().unwrap();
    core.handle_packet(Instant::ZERO, from, data);
    let _ = core.handle_stream_request(Instant::ZERO, from, data);
    core.handle_timeout(Instant::from_nanos(1_000_000_000));
    core.drain_outputs().for_each(drop);
    if let Ok(ring) =
        swim::keyring::Keyring::new(vec![swim::keyring::Key::from_bytes([7; 32])], "fuzz")
    {
        let _ = ring.open(data);
    }
}
