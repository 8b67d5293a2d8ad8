//! The messages members exchange, and their framing into compound packets and stream frames.
//!
//! A packet is `WIRE_VERSION` followed by frames `tag, length, body`. The length lets a decoder
//! skip message kinds it does not know, so newer members can add kinds without breaking older ones.

use std::net::SocketAddr;

use crate::member::{Incarnation, MemberState};
use crate::metadata::Metadata;
use crate::wire::{DecodeError, MAX_NAME_BYTES, Reader, WIRE_VERSION, Writer};

/// Largest user broadcast payload, so that it fits a packet with its header.
pub const MAX_USER_PAYLOAD: usize = 1024;
/// Largest number of members in one push-pull exchange.
pub const MAX_PUSH_PULL_MEMBERS: usize = 100_000;

/// A sequence number that ties an ack or nack to the probe it answers.
pub type Seq = u32;

/// "Are you alive?", sent to the member named `target`.
#[derive(Clone, Debug, PartialEq)]
pub struct Ping {
    pub seq: Seq,
    /// Who the sender means to probe; a member ignores pings meant for another name, which
    /// catches a stale address now used by a different host.
    pub target: String,
}

/// "Please probe `target` for me", sent to the `k` indirect probers.
#[derive(Clone, Debug, PartialEq)]
pub struct IndirectPing {
    pub seq: Seq,
    pub target: String,
    pub target_addr: SocketAddr,
    /// Ask the prober to answer with a nack if the target stays silent (Lifeguard).
    pub want_nack: bool,
}

/// An alive, refutation or metadata update: the member `name` at `incarnation`.
#[derive(Clone, Debug, PartialEq)]
pub struct Alive {
    pub incarnation: Incarnation,
    pub name: String,
    pub addr: SocketAddr,
    pub meta: Metadata,
}

/// `name` is alive at `incarnation`, at the address and with the metadata already known: a
/// refutation without the metadata a full [`Alive`] carries. Members that do not know `name`
/// ignore it (the refuter sends full alives to its accuser and a few others).
#[derive(Clone, Debug, PartialEq)]
pub struct Refute {
    pub incarnation: Incarnation,
    pub name: String,
}

/// `from` suspects `name` at `incarnation`.
#[derive(Clone, Debug, PartialEq)]
pub struct Suspect {
    pub incarnation: Incarnation,
    pub name: String,
    pub from: String,
}

/// `from` declares `name` dead at `incarnation`; `from == name` is a graceful leave.
#[derive(Clone, Debug, PartialEq)]
pub struct Dead {
    pub incarnation: Incarnation,
    pub name: String,
    pub from: String,
}

/// A broadcast of the layers above membership, spread epidemically and delivered once.
#[derive(Clone, Debug, PartialEq)]
pub struct UserMessage {
    pub origin: String,
    pub seq: u64,
    pub payload: Vec<u8>,
}

/// "Is `incarnation` still the latest you know of `name`?" A member that knows a newer live
/// incarnation answers with that alive message; otherwise it stays silent. Sent before a
/// second-hand suspicion becomes a death, in case this member missed the refutation.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    pub incarnation: Incarnation,
    pub name: String,
}

/// Everything that travels in a UDP packet.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    Ping(Ping),
    IndirectPing(IndirectPing),
    Ack { seq: Seq },
    Nack { seq: Seq },
    Alive(Alive),
    Suspect(Suspect),
    Dead(Dead),
    User(UserMessage),
    Query(Query),
    Refute(Refute),
}

/// One member's entry in a push-pull exchange.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberSnapshot {
    pub name: String,
    pub addr: SocketAddr,
    pub incarnation: Incarnation,
    pub state: MemberState,
    pub meta: Metadata,
}

/// What travels over a stream (TCP in the agent): anti-entropy and the fallback probe.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamMessage {
    /// The sender's full view; the receiver merges it and answers with its own.
    PushPull {
        join: bool,
        members: Vec<MemberSnapshot>,
    },
    /// Periodic anti-entropy: "here is a digest of my view; send me yours if it differs".
    Pull { digest: u64 },
    /// Answer to a `Pull` whose digest matched: nothing to exchange.
    InSync,
    /// Fallback probe over the stream when UDP probes fail.
    Ping(Ping),
    /// Answer to a stream ping.
    Ack { seq: Seq },
}

mod tag {
    pub const PING: u8 = 1;
    pub const INDIRECT_PING: u8 = 2;
    pub const ACK: u8 = 3;
    pub const NACK: u8 = 4;
    pub const ALIVE: u8 = 5;
    pub const SUSPECT: u8 = 6;
    pub const DEAD: u8 = 7;
    pub const USER: u8 = 8;
    pub const QUERY: u8 = 9;
    pub const REFUTE: u8 = 10;
    pub const PUSH_PULL: u8 = 20;
    pub const STREAM_PING: u8 = 21;
    pub const STREAM_ACK: u8 = 22;
    pub const PULL: u8 = 23;
    pub const IN_SYNC: u8 = 24;
}

impl Message {
    /// Encodes the message as one frame (tag, length, body), ready to be appended to a packet.
    pub fn encode_frame(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_frame_into(&mut out);
        out
    }

    /// Appends the message as one frame to `out` without allocating.
    pub fn encode_frame_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        // Tag and a one-byte length placeholder; widened below if the body is long.
        out.extend_from_slice(&[0, 0]);
        let mut body = Writer::from_vec(std::mem::take(out));
        let t = match self {
            Message::Ping(p) => {
                encode_ping(&mut body, p);
                tag::PING
            }
            Message::IndirectPing(p) => {
                body.varint(u64::from(p.seq));
                body.str(&p.target);
                body.addr(p.target_addr);
                body.bool(p.want_nack);
                tag::INDIRECT_PING
            }
            Message::Ack { seq } => {
                body.varint(u64::from(*seq));
                tag::ACK
            }
            Message::Nack { seq } => {
                body.varint(u64::from(*seq));
                tag::NACK
            }
            Message::Alive(a) => {
                body.incarnation(a.incarnation);
                body.str(&a.name);
                body.addr(a.addr);
                body.metadata(&a.meta);
                tag::ALIVE
            }
            Message::Suspect(s) => {
                encode_claim(&mut body, s.incarnation, &s.name, &s.from);
                tag::SUSPECT
            }
            Message::Dead(d) => {
                encode_claim(&mut body, d.incarnation, &d.name, &d.from);
                tag::DEAD
            }
            Message::User(u) => {
                body.str(&u.origin);
                body.varint(u.seq);
                body.bytes(&u.payload);
                tag::USER
            }
            Message::Query(q) => {
                body.incarnation(q.incarnation);
                body.str(&q.name);
                tag::QUERY
            }
            Message::Refute(r) => {
                body.incarnation(r.incarnation);
                body.str(&r.name);
                tag::REFUTE
            }
        };
        *out = body.into_bytes();
        out[start] = t;
        let len = out.len() - start - 2;
        if len < 0x80 {
            out[start + 1] = len as u8;
        } else {
            // Varint of two or more bytes: make room after the first length byte.
            let mut v = Vec::with_capacity(3);
            let mut l = len as u64;
            while l >= 0x80 {
                v.push((l as u8) | 0x80);
                l >>= 7;
            }
            v.push(l as u8);
            out.splice(start + 1..start + 2, v);
        }
    }

    fn decode_body(t: u8, r: &mut Reader<'_>) -> Result<Option<Message>, DecodeError> {
        let m = match t {
            tag::PING => Message::Ping(decode_ping(r)?),
            tag::INDIRECT_PING => Message::IndirectPing(IndirectPing {
                seq: r.varint_u32("sequence number")?,
                target: r.name()?,
                target_addr: r.addr()?,
                want_nack: r.bool()?,
            }),
            tag::ACK => Message::Ack {
                seq: r.varint_u32("sequence number")?,
            },
            tag::NACK => Message::Nack {
                seq: r.varint_u32("sequence number")?,
            },
            tag::ALIVE => Message::Alive(Alive {
                incarnation: r.incarnation()?,
                name: r.name()?,
                addr: r.addr()?,
                meta: r.metadata()?,
            }),
            tag::SUSPECT => {
                let (incarnation, name, from) = decode_claim(r)?;
                Message::Suspect(Suspect {
                    incarnation,
                    name,
                    from,
                })
            }
            tag::DEAD => {
                let (incarnation, name, from) = decode_claim(r)?;
                Message::Dead(Dead {
                    incarnation,
                    name,
                    from,
                })
            }
            tag::USER => Message::User(UserMessage {
                origin: r.name()?,
                seq: r.varint()?,
                payload: r.bytes("user payload", MAX_USER_PAYLOAD)?.to_vec(),
            }),
            tag::QUERY => Message::Query(Query {
                incarnation: r.incarnation()?,
                name: r.name()?,
            }),
            tag::REFUTE => Message::Refute(Refute {
                incarnation: r.incarnation()?,
                name: r.name()?,
            }),
            _ => return Ok(None),
        };
        Ok(Some(m))
    }
}

/// Suspect and dead messages share one shape: who, at which incarnation, says whom.
fn encode_claim(w: &mut Writer, incarnation: Incarnation, name: &str, from: &str) {
    w.incarnation(incarnation);
    w.str(name);
    w.str(from);
}

fn decode_claim(r: &mut Reader<'_>) -> Result<(Incarnation, String, String), DecodeError> {
    Ok((r.incarnation()?, r.name()?, r.name()?))
}

/// Appends a ping frame for `target` straight from a borrowed name (the probe hot path: no
/// `Message`, no allocation beyond the packet).
pub fn encode_ping_into(out: &mut Vec<u8>, seq: Seq, target: &str) {
    let body = varint_len(u64::from(seq)) + varint_len(target.len() as u64) + target.len();
    let mut w = Writer::from_vec(std::mem::take(out));
    w.u8(tag::PING);
    w.varint(body as u64);
    w.varint(u64::from(seq));
    w.str(target);
    *out = w.into_bytes();
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn encode_ping(w: &mut Writer, p: &Ping) {
    w.varint(u64::from(p.seq));
    w.str(&p.target);
}

fn decode_ping(r: &mut Reader<'_>) -> Result<Ping, DecodeError> {
    Ok(Ping {
        seq: r.varint_u32("sequence number")?,
        target: r.name()?,
    })
}

/// Starts a packet: the version byte, to which frames are appended.
pub fn packet_header() -> Vec<u8> {
    vec![WIRE_VERSION]
}

/// A decoded packet: the messages understood, and how many frames had unknown kinds.
#[derive(Debug, Default, PartialEq)]
pub struct DecodedPacket {
    pub messages: Vec<Message>,
    pub unknown: usize,
}

/// Decodes a compound packet. Any malformed frame rejects the whole packet.
pub fn decode_packet(bytes: &[u8]) -> Result<DecodedPacket, DecodeError> {
    let mut out = DecodedPacket::default();
    out.unknown = for_each_message(bytes, |m| out.messages.push(m))?;
    Ok(out)
}

/// Hands each message of a compound packet to `f` as it is decoded, without collecting them;
/// returns how many frames had unknown kinds. The framing of the whole packet is checked
/// first; a frame whose body is malformed stops the walk with an error (the messages before
/// it were already handed over).
pub fn for_each_message(bytes: &[u8], mut f: impl FnMut(Message)) -> Result<usize, DecodeError> {
    let mut r = Reader::new(bytes);
    let v = r.u8()?;
    if v != WIRE_VERSION {
        return Err(DecodeError::Version(v));
    }
    let mut check = Reader::new(&bytes[1..]);
    while check.remaining() > 0 {
        check.u8()?;
        check.bytes("frame", usize::MAX)?;
    }
    let mut unknown = 0;
    while r.remaining() > 0 {
        let t = r.u8()?;
        let body = r.bytes("frame", usize::MAX)?;
        let mut br = Reader::new(body);
        match Message::decode_body(t, &mut br)? {
            Some(m) => {
                br.finish()?;
                f(m);
            }
            None => unknown += 1,
        }
    }
    Ok(unknown)
}

/// Encodes a packet holding exactly `messages` (no size check; callers budget their packets).
pub fn encode_packet(messages: &[Message]) -> Vec<u8> {
    let mut p = packet_header();
    for m in messages {
        p.extend_from_slice(&m.encode_frame());
    }
    p
}

impl StreamMessage {
    /// Encodes the whole stream frame, version byte included.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(WIRE_VERSION);
        match self {
            StreamMessage::PushPull { join, members } => {
                w.u8(tag::PUSH_PULL);
                w.bool(*join);
                w.varint(members.len() as u64);
                for m in members {
                    w.str(&m.name);
                    w.addr(m.addr);
                    w.incarnation(m.incarnation);
                    w.u8(m.state.to_wire());
                    w.metadata(&m.meta);
                }
            }
            StreamMessage::Pull { digest } => {
                w.u8(tag::PULL);
                for b in digest.to_be_bytes() {
                    w.u8(b);
                }
            }
            StreamMessage::InSync => w.u8(tag::IN_SYNC),
            StreamMessage::Ping(p) => {
                w.u8(tag::STREAM_PING);
                encode_ping(&mut w, p);
            }
            StreamMessage::Ack { seq } => {
                w.u8(tag::STREAM_ACK);
                w.varint(u64::from(*seq));
            }
        }
        w.into_bytes()
    }

    /// Decodes a stream frame; every byte must be consumed.
    pub fn decode(bytes: &[u8]) -> Result<StreamMessage, DecodeError> {
        let mut r = Reader::new(bytes);
        let v = r.u8()?;
        if v != WIRE_VERSION {
            return Err(DecodeError::Version(v));
        }
        let m = match r.u8()? {
            tag::PUSH_PULL => {
                let join = r.bool()?;
                // Each entry takes at least 12 bytes, which bounds the count by the frame size.
                let count = r.len("push-pull member list", MAX_PUSH_PULL_MEMBERS)?;
                let mut members = Vec::with_capacity(count.min(r.remaining() / 12));
                for _ in 0..count {
                    let name = r.name()?;
                    let addr = r.addr()?;
                    let incarnation = r.incarnation()?;
                    let s = r.u8()?;
                    let state = MemberState::from_wire(s).ok_or(DecodeError::Invalid {
                        what: "member state",
                        value: u64::from(s),
                    })?;
                    let meta = r.metadata()?;
                    members.push(MemberSnapshot {
                        name,
                        addr,
                        incarnation,
                        state,
                        meta,
                    });
                }
                StreamMessage::PushPull { join, members }
            }
            tag::PULL => {
                let b = r.take(8)?;
                let mut d = [0u8; 8];
                d.copy_from_slice(b);
                StreamMessage::Pull {
                    digest: u64::from_be_bytes(d),
                }
            }
            tag::IN_SYNC => StreamMessage::InSync,
            tag::STREAM_PING => StreamMessage::Ping(decode_ping(&mut r)?),
            tag::STREAM_ACK => StreamMessage::Ack {
                seq: r.varint_u32("sequence number")?,
            },
            t => {
                return Err(DecodeError::Invalid {
                    what: "stream message kind",
                    value: u64::from(t),
                });
            }
        };
        r.finish()?;
        Ok(m)
    }
}

/// Checks a member name given at start-up: non-empty, short, printable.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("member name is empty; give each host a unique name".into());
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "member name `{name}` is {} bytes, at most {MAX_NAME_BYTES} allowed",
            name.len()
        ));
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "member name `{name}` contains whitespace or control characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{Capacity, NetAddress, Role};

    fn frame(t: u8, body: Vec<u8>) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(t);
        w.bytes(&body);
        w.into_bytes()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn sample_messages() -> Vec<Message> {
        let meta = Metadata {
            segment: "az1".into(),
            role: Role::Server,
            capacity: Capacity {
                cpus: 8,
                memory_mb: 16384,
            },
            addresses: vec![NetAddress {
                label: "storage".into(),
                addr: addr("127.0.0.9:7946"),
            }],
            http: Some(addr("127.0.0.1:7070")),
        };
        vec![
            Message::Ping(Ping {
                seq: 7,
                target: "b".into(),
            }),
            Message::IndirectPing(IndirectPing {
                seq: 9,
                target: "c".into(),
                target_addr: addr("127.0.0.3:1"),
                want_nack: true,
            }),
            Message::Ack { seq: u32::MAX },
            Message::Nack { seq: 0 },
            Message::Refute(Refute {
                incarnation: Incarnation(4),
                name: "a".into(),
            }),
            Message::Alive(Alive {
                incarnation: Incarnation(3),
                name: "a".into(),
                addr: addr("127.0.0.1:7946"),
                meta,
            }),
            Message::Suspect(Suspect {
                incarnation: Incarnation(1),
                name: "c".into(),
                from: "a".into(),
            }),
            Message::Dead(Dead {
                incarnation: Incarnation(2),
                name: "c".into(),
                from: "c".into(),
            }),
            Message::User(UserMessage {
                origin: "a".into(),
                seq: 1,
                payload: vec![1, 2, 3],
            }),
        ]
    }

    #[test]
    fn a_compound_packet_round_trips() {
        let msgs = sample_messages();
        let decoded = decode_packet(&encode_packet(&msgs)).unwrap();
        assert_eq!(decoded.messages, msgs);
        assert_eq!(decoded.unknown, 0);
    }

    #[test]
    fn a_frame_longer_than_127_bytes_round_trips() {
        let m = Message::User(UserMessage {
            origin: "a".into(),
            seq: 9,
            payload: vec![7; 900],
        });
        let mut p = packet_header();
        Message::Ack { seq: 1 }.encode_frame_into(&mut p);
        m.encode_frame_into(&mut p);
        assert_eq!(
            decode_packet(&p).unwrap().messages,
            vec![Message::Ack { seq: 1 }, m]
        );
    }

    #[test]
    fn the_borrowed_ping_encoder_matches_the_message_encoder() {
        for (seq, target) in [(0u32, "a"), (300, "host-1"), (u32::MAX, &*"x".repeat(128))] {
            let mut fast = Vec::new();
            encode_ping_into(&mut fast, seq, target);
            let ping = Message::Ping(Ping {
                seq,
                target: target.to_string(),
            });
            assert_eq!(fast, ping.encode_frame());
        }
    }

    #[test]
    fn unknown_message_kinds_are_skipped_not_fatal() {
        let mut p = encode_packet(&[Message::Ack { seq: 1 }]);
        p.extend_from_slice(&frame(200, vec![1, 2, 3]));
        p.extend_from_slice(&Message::Nack { seq: 2 }.encode_frame());
        let d = decode_packet(&p).unwrap();
        assert_eq!(
            d.messages,
            vec![Message::Ack { seq: 1 }, Message::Nack { seq: 2 }]
        );
        assert_eq!(d.unknown, 1);
    }

    #[test]
    fn a_wrong_version_or_truncated_packet_is_rejected() {
        let mut p = encode_packet(&sample_messages());
        assert!(decode_packet(&p[..p.len() - 1]).is_err());
        p[0] = 99;
        assert_eq!(decode_packet(&p), Err(DecodeError::Version(99)));
        assert!(decode_packet(&[]).is_err());
    }

    #[test]
    fn stream_frames_round_trip() {
        let msgs = vec![
            StreamMessage::PushPull {
                join: true,
                members: vec![MemberSnapshot {
                    name: "a".into(),
                    addr: addr("127.0.0.1:2"),
                    incarnation: Incarnation(5),
                    state: MemberState::Suspect,
                    meta: Metadata::default(),
                }],
            },
            StreamMessage::Ping(Ping {
                seq: 1,
                target: "x".into(),
            }),
            StreamMessage::Ack { seq: 1 },
            StreamMessage::Pull {
                digest: u64::MAX - 3,
            },
            StreamMessage::InSync,
        ];
        for m in msgs {
            assert_eq!(StreamMessage::decode(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn names_are_validated() {
        assert!(validate_name("host-1").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("a b").is_err());
        assert!(validate_name(&"x".repeat(200)).is_err());
    }
}
