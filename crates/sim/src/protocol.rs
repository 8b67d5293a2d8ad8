//! What the simulator needs from a membership implementation: the sans-IO surface of a node.
//! Buoy's `Swim` implements it; behind the `foca` feature so does an adapter around the foca
//! crate, so both run on identical virtual networks.

use std::net::SocketAddr;

use swim::{Instant, Output, StreamId, Swim};

/// A membership node the simulator can drive.
pub trait Protocol {
    /// The node's gossip address.
    fn addr(&self) -> SocketAddr;
    /// A datagram arrived.
    fn handle_packet(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]);
    /// A stream request arrived; returns the reply frame.
    fn handle_stream_request(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Option<Vec<u8>>;
    /// The reply to a stream this node opened.
    fn handle_stream_reply(&mut self, now: Instant, id: StreamId, bytes: Vec<u8>);
    /// Timers due at `now`.
    fn handle_timeout(&mut self, now: Instant);
    /// When the node next needs `handle_timeout`.
    fn next_deadline(&self) -> Option<Instant>;
    /// Moves what the node produced into `out`.
    fn drain_outputs_into(&mut self, out: &mut Vec<Output>);
}

impl Protocol for Swim {
    fn addr(&self) -> SocketAddr {
        self.me().addr()
    }

    fn handle_packet(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        Swim::handle_packet(self, now, from, bytes);
    }

    fn handle_stream_request(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Option<Vec<u8>> {
        Swim::handle_stream_request(self, now, from, bytes)
    }

    fn handle_stream_reply(&mut self, now: Instant, id: StreamId, bytes: Vec<u8>) {
        Swim::handle_stream_reply(self, now, id, Ok(bytes));
    }

    fn handle_timeout(&mut self, now: Instant) {
        Swim::handle_timeout(self, now);
    }

    fn next_deadline(&self) -> Option<Instant> {
        Swim::next_deadline(self)
    }

    fn drain_outputs_into(&mut self, out: &mut Vec<Output>) {
        out.extend(self.drain_outputs());
    }
}
