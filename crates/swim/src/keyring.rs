//! The keyring: authenticated encryption of packets with keys that rotate without downtime.
//!
//! One primary key encrypts; every key in the ring decrypts. To rotate: add the new key
//! everywhere, make it primary everywhere, then remove the old one. The cluster label is bound
//! to every packet as associated data, so two clusters sharing a key still reject each other.
//! The nonce is supplied by the caller (the runtime draws it from the OS), keeping this pure.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use thiserror::Error;

/// First byte of an encrypted packet.
const ENCRYPTION_VERSION: u8 = 1;
/// Bytes of the XChaCha20 nonce.
pub const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;
/// Bytes encryption adds to every packet.
pub const ENCRYPTION_OVERHEAD: usize = 1 + NONCE_BYTES + TAG_BYTES;

/// A 256-bit secret key.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({}...)", &self.fingerprint())
    }
}

impl Key {
    /// A key from its 32 raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Key(bytes)
    }

    /// Parses a key written as 64 hexadecimal characters.
    pub fn from_hex(s: &str) -> Result<Self, KeyringError> {
        let s = s.trim();
        if s.len() != 64 {
            return Err(KeyringError::BadKey(format!(
                "a key is 64 hex characters (32 bytes), got {} characters",
                s.len()
            )));
        }
        let mut out = [0u8; 32];
        for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
            let hex = std::str::from_utf8(chunk)
                .map_err(|_| KeyringError::BadKey("key is not ASCII hex".into()))?;
            out[i] = u8::from_str_radix(hex, 16).map_err(|_| {
                KeyringError::BadKey(format!("`{hex}` at position {} is not hexadecimal", i * 2))
            })?;
        }
        Ok(Key(out))
    }

    /// The key's 32 raw bytes.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key as 64 hex characters.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A short, non-secret identifier of the key for logs (first 8 hex chars of the key hash).
    pub fn fingerprint(&self) -> String {
        // FNV-1a: not cryptographic, only a label that does not reveal the key.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.0 {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{:08x}", h >> 32)
    }
}

/// Why a packet could not be opened, or a keyring could not be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyringError {
    #[error("packet too short to be encrypted ({0} bytes)")]
    TooShort(usize),
    #[error("unknown encryption version {0}")]
    Version(u8),
    #[error("no key in the keyring opens this packet (wrong key or wrong cluster label)")]
    NoKey,
    #[error("invalid key: {0}")]
    BadKey(String),
    #[error("the keyring is empty: give at least one key")]
    Empty,
}

/// The keys of the cluster and its label.
#[derive(Clone)]
pub struct Keyring {
    /// `ciphers[0]` is the primary key's cipher; the rest only decrypt.
    ciphers: Vec<(Key, XChaCha20Poly1305)>,
    label: Vec<u8>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<String> = self.ciphers.iter().map(|(k, _)| k.fingerprint()).collect();
        f.debug_struct("Keyring")
            .field("keys", &keys)
            .field("label", &String::from_utf8_lossy(&self.label))
            .finish()
    }
}

impl Keyring {
    /// A keyring whose first key is primary, bound to the cluster `label`.
    pub fn new(keys: Vec<Key>, label: &str) -> Result<Self, KeyringError> {
        if keys.is_empty() {
            return Err(KeyringError::Empty);
        }
        let mut ring = Keyring {
            ciphers: Vec::new(),
            label: label.as_bytes().to_vec(),
        };
        for k in keys {
            ring.add(k);
        }
        Ok(ring)
    }

    /// Adds a key that decrypts (not primary). Adding a known key does nothing.
    pub fn add(&mut self, key: Key) {
        if self.ciphers.iter().any(|(k, _)| *k == key) {
            return;
        }
        let cipher = XChaCha20Poly1305::new((&key.0).into());
        self.ciphers.push((key, cipher));
    }

    /// Makes `key` the key that encrypts, adding it if needed.
    pub fn use_key(&mut self, key: Key) {
        self.add(key.clone());
        if let Some(pos) = self.ciphers.iter().position(|(k, _)| *k == key) {
            let entry = self.ciphers.remove(pos);
            self.ciphers.insert(0, entry);
        }
    }

    /// Removes a key; the primary key cannot be removed.
    pub fn remove(&mut self, key: &Key) -> Result<(), KeyringError> {
        if self.ciphers.first().is_some_and(|(k, _)| k == key) {
            return Err(KeyringError::BadKey(
                "the primary key cannot be removed; make another key primary first".into(),
            ));
        }
        self.ciphers.retain(|(k, _)| k != key);
        Ok(())
    }

    /// Fingerprints of the keys, primary first.
    pub fn fingerprints(&self) -> Vec<String> {
        self.ciphers.iter().map(|(k, _)| k.fingerprint()).collect()
    }

    /// Encrypts `plain` with the primary key and the given fresh nonce.
    pub fn seal(&self, plain: &[u8], nonce: [u8; NONCE_BYTES]) -> Vec<u8> {
        let (_, cipher) = &self.ciphers[0];
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: &self.label,
                },
            )
            .unwrap_or_default();
        let mut out = Vec::with_capacity(ENCRYPTION_OVERHEAD + plain.len());
        out.push(ENCRYPTION_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Decrypts a packet with whichever key opens it.
    pub fn open(&self, packet: &[u8]) -> Result<Vec<u8>, KeyringError> {
        if packet.len() < ENCRYPTION_OVERHEAD {
            return Err(KeyringError::TooShort(packet.len()));
        }
        if packet[0] != ENCRYPTION_VERSION {
            return Err(KeyringError::Version(packet[0]));
        }
        let nonce = XNonce::from_slice(&packet[1..1 + NONCE_BYTES]);
        let body = &packet[1 + NONCE_BYTES..];
        self.ciphers
            .iter()
            .find_map(|(_, c)| {
                c.decrypt(
                    nonce,
                    Payload {
                        msg: body,
                        aad: &self.label,
                    },
                )
                .ok()
            })
            .ok_or(KeyringError::NoKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> Key {
        Key::from_bytes([b; 32])
    }

    #[test]
    fn sealed_packets_open_and_carry_the_stated_overhead() {
        let ring = Keyring::new(vec![key(1)], "prod").unwrap();
        let sealed = ring.seal(b"hello", [7; NONCE_BYTES]);
        assert_eq!(sealed.len(), 5 + ENCRYPTION_OVERHEAD);
        assert_eq!(ring.open(&sealed).unwrap(), b"hello");
    }

    #[test]
    fn rotation_keeps_old_and_new_members_talking() {
        let old = Keyring::new(vec![key(1)], "c").unwrap();
        let mut mid = old.clone();
        mid.add(key(2));
        let mut new = mid.clone();
        new.use_key(key(2));
        // Old senders are read by members that added the new key, and vice versa.
        assert!(mid.open(&old.seal(b"a", [1; NONCE_BYTES])).is_ok());
        assert!(new.open(&old.seal(b"a", [1; NONCE_BYTES])).is_ok());
        assert!(mid.open(&new.seal(b"b", [2; NONCE_BYTES])).is_ok());
        // Once the old key is removed, its packets are rejected.
        new.remove(&key(1)).unwrap();
        assert_eq!(
            new.open(&old.seal(b"a", [1; NONCE_BYTES])),
            Err(KeyringError::NoKey)
        );
        assert!(new.remove(&key(2)).is_err(), "primary key is protected");
    }

    #[test]
    fn a_different_label_or_a_flipped_bit_is_rejected() {
        let a = Keyring::new(vec![key(1)], "cluster-a").unwrap();
        let b = Keyring::new(vec![key(1)], "cluster-b").unwrap();
        let mut sealed = a.seal(b"x", [3; NONCE_BYTES]);
        assert_eq!(b.open(&sealed), Err(KeyringError::NoKey));
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert_eq!(a.open(&sealed), Err(KeyringError::NoKey));
        assert_eq!(a.open(&[1, 2, 3]), Err(KeyringError::TooShort(3)));
    }

    #[test]
    fn hex_keys_parse_and_bad_ones_say_why() {
        let k = key(0xab);
        assert_eq!(Key::from_hex(&k.to_hex()).unwrap(), k);
        assert!(
            Key::from_hex("abc")
                .unwrap_err()
                .to_string()
                .contains("64 hex")
        );
        assert!(
            Key::from_hex(&"zz".repeat(32))
                .unwrap_err()
                .to_string()
                .contains("not hexadecimal")
        );
    }
}
