//! Admission control: a segment with `tolerate_host_failures = K` must keep enough room to
//! re-place every started instance after losing its K largest hosts. The check is on totals
//! (CPU and memory separately), the way operators size failover capacity; the planner does
//! the exact packing when a failure comes.

use serde::Serialize;

use crate::cluster_state::ClusterState;
use crate::instance::{DesiredState, Instance};
use crate::segment::RecoveryMethod;

/// CPU (millicores) and memory (MB), signed so that a shortfall shows as negative.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Amount {
    pub cpu_millis: i64,
    pub memory_mb: i64,
}

impl Amount {
    fn plus(self, o: Amount) -> Amount {
        Amount {
            cpu_millis: self.cpu_millis + o.cpu_millis,
            memory_mb: self.memory_mb + o.memory_mb,
        }
    }
    fn minus(self, o: Amount) -> Amount {
        Amount {
            cpu_millis: self.cpu_millis - o.cpu_millis,
            memory_mb: self.memory_mb - o.memory_mb,
        }
    }
    fn fits(self) -> bool {
        self.cpu_millis >= 0 && self.memory_mb >= 0
    }
    fn text(self) -> String {
        format!(
            "{} cpu, {} MB",
            self.cpu_millis as f64 / 1000.0,
            self.memory_mb
        )
    }
}

/// A segment's capacity after losing its largest hosts (`buoy segment capacity NAME`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Headroom {
    pub segment: String,
    pub tolerate_host_failures: u32,
    /// Hosts that take work (not failed, not on maintenance; reserved ones only when the
    /// recovery method may use them).
    pub usable_hosts: u32,
    pub capacity: Amount,
    /// The capacity of the `tolerate_host_failures` largest usable hosts.
    pub reserve: Amount,
    /// What the started instances need (every copy).
    pub used: Amount,
    /// `capacity - reserve - used`: negative when a loss of the largest hosts could not be
    /// recovered from.
    pub headroom: Amount,
}

/// What `i` needs for all its copies (nothing unless it is started).
fn needs(i: &Instance) -> Amount {
    if i.desired_state != DesiredState::Started {
        return Amount::default();
    }
    let copies = i64::from(i.copies());
    Amount {
        cpu_millis: i64::from(i.cpu.millicores()) * copies,
        memory_mb: i.memory_mb as i64 * copies,
    }
}

/// The headroom of segment `id`, with `replacing` standing in for the stored instance of the
/// same id (or added, when new).
pub fn headroom(st: &ClusterState, id: &str, replacing: Option<&Instance>) -> Option<Headroom> {
    let seg = st.segment(id)?;
    let reserved_usable = seg.recovery_method != RecoveryMethod::Auto;
    let mut hosts: Vec<Amount> = st
        .hosts()
        .filter(|h| h.segment == id && !h.failed && !h.on_maintenance)
        .filter(|h| reserved_usable || !h.reserved)
        .map(|h| Amount {
            cpu_millis: i64::from(h.capacity.cpu.millicores()),
            memory_mb: h.capacity.memory_mb as i64,
        })
        .collect();
    // Largest first: by memory, then CPU.
    hosts.sort_by_key(|h| std::cmp::Reverse((h.memory_mb, h.cpu_millis)));
    let capacity = hosts.iter().fold(Amount::default(), |s, h| s.plus(*h));
    let reserve = hosts
        .iter()
        .take(seg.tolerate_host_failures as usize)
        .fold(Amount::default(), |s, h| s.plus(*h));
    let mut used = st
        .instances()
        .filter(|i| i.segment == id)
        .filter(|i| replacing.is_none_or(|r| r.meta.id != i.meta.id))
        .fold(Amount::default(), |s, i| s.plus(needs(i)));
    if let Some(r) = replacing.filter(|r| r.segment == id) {
        used = used.plus(needs(r));
    }
    Some(Headroom {
        segment: seg.name.clone(),
        tolerate_host_failures: seg.tolerate_host_failures,
        usable_hosts: hosts.len() as u32,
        capacity,
        reserve,
        used,
        headroom: capacity.minus(reserve).minus(used),
    })
}

/// Refuses `next` (a created or updated instance) when its segment asks for failover room
/// that it would take away. An update that needs no more than before always passes.
pub fn admit(st: &ClusterState, next: &Instance) -> Result<(), String> {
    let Some(seg) = st.segment(&next.segment) else {
        return Ok(());
    };
    if seg.tolerate_host_failures == 0 {
        return Ok(());
    }
    let before = st
        .instance(&next.meta.id)
        .filter(|old| old.segment == next.segment)
        .map(needs)
        .unwrap_or_default();
    let after = needs(next);
    if after.cpu_millis <= before.cpu_millis && after.memory_mb <= before.memory_mb {
        return Ok(());
    }
    let Some(h) = headroom(st, &next.segment, Some(next)) else {
        return Ok(());
    };
    if h.headroom.fits() {
        return Ok(());
    }
    Err(format!(
        "admission control: instance `{}` needs {}, and segment `{}` must keep room to re-place every instance after losing its {} largest host(s) (tolerate_host_failures); after that loss it has {} for {} needed. Add hosts or capacity, lower tolerate_host_failures, or stop instances (`buoy segment capacity {}` shows the headroom)",
        next.name,
        after.text(),
        seg.name,
        seg.tolerate_host_failures,
        h.capacity.minus(h.reserve).text(),
        h.used.text(),
        seg.name
    ))
}
