//! Sans-IO SWIM membership with the Lifeguard extensions.
//!
//! [`Swim`] is a pure state machine: the caller feeds it the time, received datagrams and stream
//! frames, and timeouts; it answers with [`Output`]s (datagrams and streams to send, events).
//! It never sleeps, reads a clock or touches a socket, and takes every random choice from a
//! seeded [`Rng`], so the same inputs give the same run. The agent drives it under tokio; the
//! simulator drives thousands of copies under a virtual clock.
//!
//! One concept per module: `awareness` (local health), `suspicion` (dynamic timeout),
//! `broadcast` (transmit-limited queue), `keyring` (encryption), `message`/`wire` (codec),
//! `roster` (the compact member table), `probe`, `merge`, `gossip` and `anti_entropy` (the parts
//! of the protocol), `config` (profiles), `rng` and `time` (the seeded randomness and virtual
//! time handed in).

mod anti_entropy;
pub mod awareness;
pub mod broadcast;
pub mod config;
pub mod event;
mod gossip;
pub mod keyring;
pub mod member;
mod merge;
pub mod message;
pub mod metadata;
mod probe;
pub mod rng;
mod roster;
pub mod suspicion;
mod swim;
pub mod time;
pub mod wire;

pub use config::{Config, ConfigError};
pub use event::{Counters, Event, Output, StreamId};
pub use member::{Identity, Incarnation, Member, MemberState};
pub use metadata::{Capacity, Metadata, NetAddress, Role};
pub use rng::Rng;
pub use swim::{StreamFailure, Swim, SwimError};
pub use time::Instant;
