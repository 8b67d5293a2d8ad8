//! The IO shell around the membership core: it owns the core behind a mutex, feeds it time,
//! datagrams, stream frames and timeouts, and carries out what it asks (send, open a stream,
//! log an event). All protocol decisions stay in `swim`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use swim::keyring::{Keyring, NONCE_BYTES};
use swim::{Event, Output, StreamFailure, Swim};
use tokio::net::UdpSocket;
use tokio::sync::{Notify, watch};
use tracing::{error, info, warn};

use super::faults::FaultFilter;
use super::stream;

/// Packets and frames the runtime dropped before they reached the core, by reason.
#[derive(Debug, Default)]
pub struct DropCounters {
    pub decrypt: AtomicU64,
    pub oversize: AtomicU64,
    pub fault_filter: AtomicU64,
    pub send_errors: AtomicU64,
    pub stream_refused: AtomicU64,
}

/// Everything the agent's tasks share.
pub struct Shared {
    swim: Mutex<Swim>,
    /// The boot clock's reading at start: the timeline's zero.
    origin: Duration,
    pub udp: Arc<UdpSocket>,
    pub keyring: RwLock<Option<Keyring>>,
    pub faults: Option<RwLock<FaultFilter>>,
    /// Gossip address -> member name, for the fault filter.
    peers: RwLock<HashMap<SocketAddr, String>>,
    pub drops: DropCounters,
    pub udp_payload: usize,
    pub stream_timeout: Duration,
    pub gossip_addr: SocketAddr,
    wake: Notify,
    /// Set when another live host already uses our name: the agent must stop.
    pub fatal: watch::Sender<Option<String>>,
}

impl Shared {
    pub fn new(
        swim: Swim,
        udp: Arc<UdpSocket>,
        keyring: Option<Keyring>,
        fault_injection: bool,
        udp_payload: usize,
    ) -> Arc<Shared> {
        let stream_timeout = swim.config().stream_timeout;
        let gossip_addr = swim.me().addr();
        Arc::new(Shared {
            swim: Mutex::new(swim),
            origin: crate::clock::boot_now(),
            udp,
            keyring: RwLock::new(keyring),
            faults: fault_injection.then(|| RwLock::new(FaultFilter::default())),
            peers: RwLock::new(HashMap::new()),
            drops: DropCounters::default(),
            udp_payload,
            stream_timeout,
            gossip_addr,
            wake: Notify::new(),
            fatal: watch::channel(None).0,
        })
    }

    /// Now on this agent's timeline: the gossip core's and every lease's (host and leader
    /// side). It runs on the boot clock ([`crate::clock`]), so time spent suspended counts.
    pub fn now(&self) -> swim::Instant {
        let since = crate::clock::boot_now().saturating_sub(self.origin);
        swim::Instant::from_nanos(since.as_nanos() as u64)
    }

    /// The tokio instant at which `t` falls, as far as can be told now (tokio's timers stand
    /// still during a suspend; whoever enforces a deadline also re-reads [`Shared::now`]).
    pub(crate) fn to_tokio(&self, t: swim::Instant) -> tokio::time::Instant {
        tokio::time::Instant::now() + t.saturating_since(self.now())
    }

    /// Runs `f` on the core, then carries out everything it produced.
    pub fn with_swim<R>(self: &Arc<Self>, f: impl FnOnce(&mut Swim, swim::Instant) -> R) -> R {
        let (r, outputs) = {
            let mut s = self.swim.lock().unwrap_or_else(|p| p.into_inner());
            let now = self.now();
            let r = f(&mut s, now);
            (r, s.drain_outputs().collect::<Vec<_>>())
        };
        for o in outputs {
            self.dispatch(o);
        }
        self.wake.notify_one();
        r
    }

    /// Reads the core without feeding it anything.
    pub fn read<R>(&self, f: impl FnOnce(&Swim) -> R) -> R {
        let s = self.swim.lock().unwrap_or_else(|p| p.into_inner());
        f(&s)
    }

    /// The name of the member at gossip address `addr`, if known.
    pub fn peer_name(&self, addr: &SocketAddr) -> Option<String> {
        self.peers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(addr)
            .cloned()
    }

    /// True when the fault filter drops HTTP traffic (lease renewals, relays) to (`out`) or
    /// from the member called `peer`.
    pub fn drops(&self, peer: &str, out: bool) -> bool {
        let Some(faults) = &self.faults else {
            return false;
        };
        let f = faults.read().unwrap_or_else(|p| p.into_inner());
        if out {
            f.drops_out(peer, false)
        } else {
            f.drops_in(peer, false)
        }
    }

    /// True when the fault filter drops gossip to (`out`) or from the member at `addr`.
    pub fn filtered(&self, addr: &SocketAddr, out: bool) -> bool {
        let Some(faults) = &self.faults else {
            return false;
        };
        let f = faults.read().unwrap_or_else(|p| p.into_inner());
        if f.drop.is_empty() {
            return false;
        }
        let Some(name) = self.peer_name(addr) else {
            return false;
        };
        let dropped = if out {
            f.drops_out(&name, true)
        } else {
            f.drops_in(&name, true)
        };
        if dropped {
            self.drops.fault_filter.fetch_add(1, Ordering::Relaxed);
        }
        dropped
    }

    /// Encrypts with the primary key when a keyring is configured.
    pub fn seal(&self, plain: Vec<u8>) -> Vec<u8> {
        let ring = self.keyring.read().unwrap_or_else(|p| p.into_inner());
        match ring.as_ref() {
            Some(k) => {
                let mut nonce = [0u8; NONCE_BYTES];
                if getrandom::fill(&mut nonce).is_err() {
                    // Without OS randomness no nonce is safe: refuse to send.
                    return Vec::new();
                }
                k.seal(&plain, nonce)
            }
            None => plain,
        }
    }

    /// Decrypts when a keyring is configured; `None` (counted) when no key opens it.
    pub fn open(&self, wire: &[u8]) -> Option<Vec<u8>> {
        let ring = self.keyring.read().unwrap_or_else(|p| p.into_inner());
        match ring.as_ref() {
            Some(k) => match k.open(wire) {
                Ok(p) => Some(p),
                Err(_) => {
                    self.drops.decrypt.fetch_add(1, Ordering::Relaxed);
                    None
                }
            },
            None => Some(wire.to_vec()),
        }
    }

    fn dispatch(self: &Arc<Self>, o: Output) {
        match o {
            Output::Packet { to, bytes } => {
                if self.filtered(&to, true) {
                    return;
                }
                let wire = self.seal(bytes);
                if wire.is_empty() || wire.len() > self.udp_payload {
                    self.drops.oversize.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                if self.udp.try_send_to(&wire, to).is_err() {
                    self.drops.send_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            Output::Stream { to, id, bytes } => {
                let shared = self.clone();
                tokio::spawn(async move {
                    let reply = if shared.filtered(&to, true) {
                        Err(StreamFailure::Connect("dropped by the fault filter".into()))
                    } else {
                        stream::exchange(&shared, to, bytes).await
                    };
                    shared.with_swim(|s, now| s.handle_stream_reply(now, id, reply));
                });
            }
            Output::Event(e) => self.on_event(e),
        }
    }

    fn on_event(&self, e: Event) {
        match e {
            Event::MemberJoined {
                name,
                addr,
                incarnation,
            } => {
                info!(member = %name, %addr, %incarnation, "member joined");
                self.peers
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(addr, name);
            }
            Event::MemberUpdated { name, incarnation } => {
                info!(member = %name, %incarnation, "member updated")
            }
            Event::MemberSuspected {
                name,
                incarnation,
                by,
            } => {
                info!(member = %name, %incarnation, by = %by, "member suspected")
            }
            Event::MemberRecovered { name, incarnation } => {
                info!(member = %name, %incarnation, "member refuted its suspicion")
            }
            Event::MemberDied {
                name,
                incarnation,
                by,
            } => warn!(member = %name, %incarnation, by = %by, "member dead"),
            Event::MemberLeft { name } => info!(member = %name, "member left"),
            Event::MemberReaped { name } => info!(member = %name, "member forgotten"),
            Event::Refuted {
                incarnation,
                accuser,
            } => {
                warn!(%incarnation, accuser = accuser.as_deref().unwrap_or("-"), "refuted a suspicion about this member")
            }
            Event::NameConflict {
                name,
                known,
                claimed,
                about_self: false,
                ..
            } => {
                error!(member = %name, live_at = %known, claimed_by = %claimed, "rejected a second host claiming the name of a live member")
            }
            Event::NameConflict {
                name,
                known,
                claimed,
                about_self: true,
                refused: false,
            } => {
                error!(
                    "a host at {claimed} claims this host's name `{name}`; this agent ({known}) was here first, keeps the name and goes on running; give the other host a unique --name"
                )
            }
            Event::NameConflict {
                name,
                known,
                claimed,
                about_self: true,
                refused: true,
            } => {
                let msg = format!(
                    "the name `{name}` is already used by a live member at {claimed} (this agent is {known}); give this host a unique --name"
                );
                error!("{msg}");
                let _ = self.fatal.send(Some(msg));
            }
            Event::JoinSucceeded { via, members } => {
                info!(via = %via.map_or("-".to_string(), |v| v.to_string()), members, "joined the cluster")
            }
            Event::JoinAttemptFailed { attempt, retry_in } => {
                warn!(
                    attempt,
                    retry_in_ms = retry_in.as_millis() as u64,
                    "no seed answered; retrying"
                )
            }
            Event::User { origin, payload } => {
                info!(origin = %origin, bytes = payload.len(), "user broadcast")
            }
        }
    }

    /// Drives the core's timers until the process ends.
    pub async fn run_timers(self: Arc<Self>) {
        loop {
            let deadline = self.read(|s| s.next_deadline());
            let at = deadline.map_or_else(
                || tokio::time::Instant::now() + Duration::from_secs(1),
                |d| self.to_tokio(d),
            );
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {
                    self.with_swim(|s, now| s.handle_timeout(now));
                }
                _ = self.wake.notified() => {}
            }
        }
    }

    /// Receives datagrams on the gossip socket until the process ends.
    pub async fn run_udp(self: Arc<Self>) {
        let socket = self.udp.clone();
        self.receive_on(socket).await
    }

    /// Receives datagrams on `socket` (the gossip socket, or one of the host's other announced
    /// addresses) until the process ends; answers go out through the gossip socket.
    pub async fn receive_on(self: Arc<Self>, socket: Arc<UdpSocket>) {
        let mut buf = vec![0u8; 65_536];
        loop {
            let (n, from) = match socket.recv_from(&mut buf).await {
                Ok(r) => r,
                Err(e) => {
                    warn!(error = %e, "UDP receive failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            if n > self.udp_payload {
                self.drops.oversize.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if self.filtered(&from, false) {
                continue;
            }
            let Some(plain) = self.open(&buf[..n]) else {
                continue;
            };
            self.with_swim(|s, now| s.handle_packet(now, from, &plain));
        }
    }
}
