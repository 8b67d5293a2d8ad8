//! Low-level encoding: varints, length-prefixed strings and addresses.
//!
//! Every read is bounds-checked and returns a [`DecodeError`]; nothing here can panic on bad
//! input, and no length read from the wire is trusted for allocation beyond the bytes present.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use thiserror::Error;

use crate::member::Incarnation;
use crate::metadata::{Capacity, MAX_METADATA_BYTES, Metadata, NetAddress, Role};

/// Longest member name accepted on the wire or at start-up.
pub const MAX_NAME_BYTES: usize = 128;

/// Why a packet or stream frame could not be decoded. The packet is dropped and counted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("truncated: needed {needed} more bytes")]
    Truncated { needed: usize },
    #[error("unsupported wire version {0} (this build speaks version {WIRE_VERSION})")]
    Version(u8),
    #[error("varint longer than 64 bits")]
    VarintOverflow,
    #[error("{what} is {len} bytes, at most {max} allowed")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{what} is not valid UTF-8")]
    Utf8 { what: &'static str },
    #[error("invalid {what}: {value}")]
    Invalid { what: &'static str, value: u64 },
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
}

/// Version byte at the start of every packet and stream frame.
pub const WIRE_VERSION: u8 = 1;

/// Appends encoded values to a byte buffer.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Writer { buf: Vec::new() }
    }

    /// A writer appending to `buf`.
    pub fn from_vec(buf: Vec<u8>) -> Self {
        Writer { buf }
    }

    /// The bytes written so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn bool(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }

    /// LEB128 unsigned varint.
    pub fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    pub fn bytes(&mut self, b: &[u8]) {
        self.varint(b.len() as u64);
        self.buf.extend_from_slice(b);
    }

    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    pub fn incarnation(&mut self, inc: Incarnation) {
        self.varint(u64::from(inc.0));
    }

    pub fn addr(&mut self, addr: SocketAddr) {
        match addr.ip() {
            IpAddr::V4(ip) => {
                self.u8(4);
                self.buf.extend_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                self.u8(6);
                self.buf.extend_from_slice(&ip.octets());
            }
        }
        self.buf.extend_from_slice(&addr.port().to_be_bytes());
    }

    pub fn metadata(&mut self, meta: &Metadata) {
        self.str(&meta.segment);
        self.u8(match meta.role {
            Role::Client => 0,
            Role::Server => 1,
        });
        self.varint(u64::from(meta.capacity.cpus));
        self.varint(meta.capacity.memory_mb);
        self.varint(meta.addresses.len() as u64);
        for a in &meta.addresses {
            self.str(&a.label);
            self.addr(a.addr);
        }
        match meta.http {
            Some(addr) => {
                self.u8(1);
                self.addr(addr);
            }
            None => self.u8(0),
        }
    }
}

/// Reads encoded values from a byte slice, failing cleanly at the first problem.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Fails unless every byte was read.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::Trailing(n)),
        }
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated {
                needed: n - self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(DecodeError::Invalid {
                what: "bool",
                value: u64::from(v),
            }),
        }
    }

    pub fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(DecodeError::VarintOverflow);
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::VarintOverflow)
    }

    /// A varint that must fit `u32`.
    pub fn varint_u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let v = self.varint()?;
        u32::try_from(v).map_err(|_| DecodeError::Invalid { what, value: v })
    }

    /// A length prefix, checked against `max` and against the bytes actually present.
    pub fn len(&mut self, what: &'static str, max: usize) -> Result<usize, DecodeError> {
        let v = self.varint()?;
        let len = usize::try_from(v).unwrap_or(usize::MAX);
        if len > max {
            return Err(DecodeError::TooLong { what, len, max });
        }
        if len > self.remaining() {
            return Err(DecodeError::Truncated {
                needed: len - self.remaining(),
            });
        }
        Ok(len)
    }

    pub fn bytes(&mut self, what: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = self.len(what, max)?;
        self.take(len)
    }

    pub fn string(&mut self, what: &'static str, max: usize) -> Result<String, DecodeError> {
        let b = self.bytes(what, max)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| DecodeError::Utf8 { what })
    }

    pub fn name(&mut self) -> Result<String, DecodeError> {
        self.string("member name", MAX_NAME_BYTES)
    }

    pub fn incarnation(&mut self) -> Result<Incarnation, DecodeError> {
        Ok(Incarnation(self.varint_u32("incarnation")?))
    }

    pub fn addr(&mut self) -> Result<SocketAddr, DecodeError> {
        let ip = match self.u8()? {
            4 => {
                let o: [u8; 4] = self
                    .take(4)?
                    .try_into()
                    .map_err(|_| DecodeError::Truncated { needed: 4 })?;
                IpAddr::V4(Ipv4Addr::from(o))
            }
            6 => {
                let o: [u8; 16] = self
                    .take(16)?
                    .try_into()
                    .map_err(|_| DecodeError::Truncated { needed: 16 })?;
                IpAddr::V6(Ipv6Addr::from(o))
            }
            f => {
                return Err(DecodeError::Invalid {
                    what: "address family",
                    value: u64::from(f),
                });
            }
        };
        let p = self.take(2)?;
        Ok(SocketAddr::new(ip, u16::from_be_bytes([p[0], p[1]])))
    }

    pub fn metadata(&mut self) -> Result<Metadata, DecodeError> {
        let start = self.pos;
        let segment = self.string("segment", MAX_NAME_BYTES)?;
        let role = match self.u8()? {
            0 => Role::Client,
            1 => Role::Server,
            v => {
                return Err(DecodeError::Invalid {
                    what: "role",
                    value: u64::from(v),
                });
            }
        };
        let cpus = self.varint_u32("cpus")?;
        let memory_mb = self.varint()?;
        let count = self.len("address list", 16)?;
        let mut addresses = Vec::with_capacity(count.min(self.remaining()));
        for _ in 0..count {
            let label = self.string("address label", 64)?;
            let addr = self.addr()?;
            addresses.push(NetAddress { label, addr });
        }
        let http = if self.bool()? {
            Some(self.addr()?)
        } else {
            None
        };
        let used = self.pos - start;
        if used > MAX_METADATA_BYTES {
            return Err(DecodeError::TooLong {
                what: "metadata",
                len: used,
                max: MAX_METADATA_BYTES,
            });
        }
        Ok(Metadata {
            segment,
            role,
            capacity: Capacity { cpus, memory_mb },
            addresses,
            http,
        })
    }
}

/// The encoded size of `meta`.
pub fn metadata_len(meta: &Metadata) -> usize {
    let mut w = Writer::new();
    w.metadata(meta);
    w.into_bytes().len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_the_edges() {
        for v in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut w = Writer::new();
            w.varint(v);
            let b = w.into_bytes();
            let mut r = Reader::new(&b);
            assert_eq!(r.varint().unwrap(), v);
            r.finish().unwrap();
        }
    }

    #[test]
    fn an_overlong_varint_is_an_error_not_a_panic() {
        let b = [0xffu8; 11];
        assert_eq!(Reader::new(&b).varint(), Err(DecodeError::VarintOverflow));
    }

    #[test]
    fn a_length_beyond_the_buffer_is_rejected_before_allocating() {
        let mut w = Writer::new();
        w.varint(1_000_000);
        let b = w.into_bytes();
        assert!(matches!(
            Reader::new(&b).bytes("payload", usize::MAX),
            Err(DecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn addresses_of_both_families_round_trip() {
        for a in ["127.0.0.1:7946", "[::1]:80"] {
            let addr: SocketAddr = a.parse().unwrap();
            let mut w = Writer::new();
            w.addr(addr);
            let b = w.into_bytes();
            assert_eq!(Reader::new(&b).addr().unwrap(), addr);
        }
    }
}
