//! The host side of leases (rule S1): keeps this agent's lease ([`HostLease`]) renewed
//! through a [`RenewalChannel`], counting each grant from when its request was *sent*, and
//! publishes what each grant assigns to this host. Whoever runs instances watches
//! [`LeaseKeeper::changed`] and [`LeaseKeeper::assignments`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use engine::Instant;
use engine::assignment_floor::{AssignmentFloor, Verdict};
use engine::host_lease::{HostLease, LeaseTiming, RenewalId};
use proto::{Assignment, RenewalRequest, Report};
use tracing::{info, warn};

use super::channel::RenewalChannel;
use crate::gossip::runtime::Shared;

/// The assignments of one grant, with the change index they reflect.
#[derive(Clone, Debug, PartialEq)]
pub struct Assigned {
    pub index: u64,
    pub list: Vec<Assignment>,
}

/// What this host reports with its renewals (the supervisor): its instances, and a signal
/// when they changed so that the leader hears soon.
pub trait Reporter: Send + Sync {
    /// The report to send now.
    fn report(&self) -> Report;
    /// Woken when the report changed in a way the leader acts on.
    fn changed(&self) -> &tokio::sync::Notify;
    /// Set when this host must be fenced (a stop failed): it renews no more.
    fn fence_reason(&self) -> Option<String>;
}

/// Host side: keeps this agent's lease renewed.
pub struct LeaseKeeper {
    me: String,
    lease: Mutex<HostLease>,
    /// Wakes whoever watches the lease (the supervisor, the watchdog feeder) on every change.
    pub changed: tokio::sync::watch::Sender<Option<Instant>>,
    /// The change index of the assignments held, and the newest ever acted on.
    known: Mutex<AssignmentFloor>,
    /// Set once a grant's TTL differed from this agent's own (logged once).
    ttl_noted: std::sync::atomic::AtomicBool,
    /// What is placed on this host, from the newest grant; none until a grant brings them
    /// (and again after the lease was lost).
    pub assignments: tokio::sync::watch::Sender<Option<Arc<Assigned>>>,
    /// The term of the last grant, and the report (as JSON) the leader of that term has.
    reported: Mutex<(u64, Option<String>)>,
    /// Whose instances this host reports (the supervisor).
    reporter: std::sync::OnceLock<Arc<dyn Reporter>>,
    /// The stop grace of the newest grant (none from a leader that predates it).
    stop_grace: Mutex<Option<Duration>>,
}

impl LeaseKeeper {
    pub fn new(me: String, timing: LeaseTiming, now: Instant) -> Arc<Self> {
        Arc::new(LeaseKeeper {
            me,
            lease: Mutex::new(HostLease::new(timing, now)),
            changed: tokio::sync::watch::channel(None).0,
            known: Mutex::new(AssignmentFloor::default()),
            ttl_noted: std::sync::atomic::AtomicBool::new(false),
            assignments: tokio::sync::watch::channel(None).0,
            reported: Mutex::new((0, None)),
            reporter: std::sync::OnceLock::new(),
            stop_grace: Mutex::new(None),
        })
    }

    /// How long past its lease's end this host may still be stopping OCF resources (the
    /// newest grant's stop grace): then it kills what is left of them.
    pub fn stop_grace(&self) -> Option<Duration> {
        *self.stop_grace.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reports `reporter`'s instances with the renewals from now on.
    pub fn report_for(&self, reporter: Arc<dyn Reporter>) {
        let _ = self.reporter.set(reporter);
    }

    /// This host's name.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// Reads this host's lease.
    pub fn with_lease<R>(&self, f: impl FnOnce(&HostLease) -> R) -> R {
        f(&self.lease.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The instances to report with the next renewal, when the leader lacks them.
    fn report_due(&self) -> Option<(Report, String)> {
        let report = self.reporter.get()?.report();
        let text = serde_json::to_string(&report).ok()?;
        let reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        (reported.1.as_deref() != Some(text.as_str())).then_some((report, text))
    }

    /// Whether this host holds its lease at `now`.
    pub fn is_held(&self, now: Instant) -> bool {
        self.lease
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_held(now)
    }

    /// How long the lease has been held without a break at `now`, if it is held.
    pub fn held_for(&self, now: Instant) -> Option<std::time::Duration> {
        self.with_lease(|l| l.held_since(now).map(|s| now.saturating_since(s)))
    }

    /// Sends renewals when due, forever.
    pub async fn run(self: Arc<Self>, channel: Arc<dyn RenewalChannel>, gossip: Arc<Shared>) {
        let mut held = false;
        // Self-fencing: after the last renewal (which carries the report saying why), renew
        // no more and leave the cluster, so the leader counts this host failed once its lease
        // is over and moves its copies.
        let mut fenced = false;
        loop {
            let now = gossip.now();
            if !fenced && self.reporter.get().and_then(|r| r.fence_reason()).is_some() {
                let id = {
                    let mut l = self.lease.lock().unwrap_or_else(|p| p.into_inner());
                    l.expedite();
                    l.poll_renewal(now)
                };
                // Until the last renewal is due, the loop below waits for it.
                if let Some(id) = id {
                    self.send(id, now, channel.as_ref(), &gossip).await;
                    fenced = true;
                    gossip.with_swim(|s, now| s.leave(now));
                    warn!("fenced: this host renews its lease no more and left the cluster");
                }
            }
            if fenced {
                let until = self.with_lease(|l| l.until());
                if until.is_some_and(|u| u > now) {
                    tokio::time::sleep(crate::clock::RECHECK).await;
                    continue;
                }
                if held {
                    warn!("lease over (fenced): this host runs nothing");
                    self.lost(until);
                    held = false;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            let (due, next) = {
                let mut l = self.lease.lock().unwrap_or_else(|p| p.into_inner());
                let now_held = l.is_held(now);
                if now_held != held {
                    if now_held {
                        info!("lease acquired");
                    } else {
                        warn!("lease lost: this host must run nothing until it renews");
                        self.lost(l.until());
                    }
                    held = now_held;
                }
                let due = l.poll_renewal(now);
                let wake = match l.until() {
                    Some(u) if u > now => l.next_renewal().min(u),
                    _ => l.next_renewal(),
                };
                (due, wake)
            };
            if let Some(id) = due {
                let (me, channel, gossip) = (self.clone(), channel.clone(), gossip.clone());
                tokio::spawn(async move { me.send(id, now, channel.as_ref(), &gossip).await });
            }
            let reporter = self.reporter.get().cloned();
            let report_changed = async {
                match &reporter {
                    Some(r) => r.changed().notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep_until(gossip.to_tokio(next)) => {}
                _ = report_changed => {
                    // Tell the leader soon: it waits for these reports to finish moves.
                    self.lease.lock().unwrap_or_else(|p| p.into_inner()).expedite();
                }
            }
        }
    }

    /// The lease (which ended at `until`) is lost: the assignments go, and whoever watches
    /// the lease hears of it.
    fn lost(&self, until: Option<Instant>) {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .lease_lost();
        self.assignments.send_replace(None);
        self.changed.send_replace(until);
    }

    /// Sends one renewal (sent at `sent`) and records the answer.
    async fn send(
        &self,
        id: RenewalId,
        sent: Instant,
        channel: &dyn RenewalChannel,
        gossip: &Shared,
    ) {
        let ttl = self
            .lease
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .timing()
            .ttl;
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner()).known();
        let report = self.report_due();
        let request = RenewalRequest {
            host: self.me.clone(),
            known,
            report: report.as_ref().map(|(r, _)| r.clone()),
        };
        let granted = channel.renew(request, sent, ttl).await;
        if let Some(g) = &granted {
            let mut r = self.reported.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((_, text)) = report {
                *r = (g.term, Some(text));
            } else if r.0 != g.term {
                // A new leader: it has no report from this host yet.
                *r = (g.term, None);
            }
        }
        let Some(grant) = granted else {
            self.lease
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .on_refused(id);
            return;
        };
        if let Some(g) = grant.stop_grace_ms {
            *self.stop_grace.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(Duration::from_millis(g));
        }
        let mut l = self.lease.lock().unwrap_or_else(|p| p.into_inner());
        let granted_ttl = Duration::from_millis(grant.ttl_ms);
        if granted_ttl != ttl
            && !self
                .ttl_noted
                .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            info!(
                granted_ms = grant.ttl_ms,
                own_ms = ttl.as_millis() as u64,
                "the cluster's lease TTL differs from this agent's --lease-ttl: this host holds the shorter of the two"
            );
        }
        let extended = l.on_granted(id, granted_ttl);
        // Assignments only from a grant that left the lease held, and never from a state older
        // than one this host already acted on.
        if l.is_held(gossip.now())
            && let Some(assignments) = grant.assignments
        {
            let mut k = self.known.lock().unwrap_or_else(|p| p.into_inner());
            match k.offer(grant.index) {
                Verdict::Take => {
                    self.assignments.send_replace(Some(Arc::new(Assigned {
                        index: grant.index,
                        list: assignments,
                    })));
                }
                Verdict::Stale { newest_seen } => warn!(
                    index = grant.index,
                    newest_seen,
                    "refused assignments from a cluster state older than one this host acted on"
                ),
            }
        }
        if extended {
            self.changed.send_replace(l.until());
        }
    }
}
