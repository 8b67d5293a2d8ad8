//! The replicated cluster state and its deterministic transition function. Every server applies
//! the same commands in the same order and reaches the same state; nothing here reads a clock,
//! a random source or the disk.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::attribute::{self, Attribute, AttributeKey, AttributeScope};
use crate::command::{Action, Change, Command, Expect, Object, Op, Outcome};
use crate::error::StateError;
use crate::host::Host;
use crate::instance::Instance;
use crate::lease_settings::LeaseSettings;
use crate::notification::Notification;
use crate::object::Kind;
use crate::placement::{Epoch, Handoff, Placement};
use crate::promotion::{PromotionGrant, PromotionStep};
use crate::segment::Segment;
use crate::timestamp::Timestamp;

/// Segments, hosts, instances, placements and notifications, by id.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    segments: BTreeMap<String, Segment>,
    hosts: BTreeMap<String, Host>,
    instances: BTreeMap<String, Instance>,
    notifications: BTreeMap<String, Notification>,
    /// Keyed by `instance-id/replica`.
    placements: BTreeMap<String, Placement>,
    /// The highest epoch any placement ever had (epochs are never reused).
    #[serde(default)]
    last_epoch: u64,
    /// Copies whose placement was deleted while their host may still run them, by
    /// `instance-id/replica`: the next placement of that replica inherits them as handoffs, so
    /// it starts only once they are confirmed stopped (rule S1).
    #[serde(default)]
    departed: BTreeMap<String, Vec<Handoff>>,
    /// The cluster's lease timing (none until the first leader writes its own).
    #[serde(default)]
    lease: Option<LeaseSettings>,
    /// The attribute store, by [`AttributeKey::storage_key`].
    #[serde(default)]
    attributes: BTreeMap<String, Attribute>,
    /// The promotion grants of promotable instances, by instance id.
    #[serde(default)]
    promotions: BTreeMap<String, Vec<PromotionGrant>>,
    /// The last promotion epoch given.
    #[serde(default)]
    promotion_epoch: u64,
    /// The serial the next notification gets.
    next_serial: u64,
    /// Changes applied so far: the last change's index in the change feed.
    changes: u64,
    /// Unique names per kind -> id; rebuilt after loading a snapshot.
    #[serde(skip)]
    names: BTreeMap<(Kind, String), String>,
}

impl ClusterState {
    /// Applies one committed command: what it produced for the client, and the change for the
    /// event stream (none when it was refused or changed nothing). Changes are numbered 1, 2,
    /// 3... in the order every server applies them: the feed's `since` cursor.
    pub fn apply(&mut self, cmd: &Command) -> (Outcome, Option<Change>) {
        let result = match &cmd.op {
            Op::Noop => return (Ok(None), None),
            Op::SetLease {
                ttl_ms,
                drift_margin_ms,
                stop_grace_ms,
            } => {
                let (ttl, drift) = (
                    Duration::from_millis(*ttl_ms),
                    Duration::from_millis(*drift_margin_ms),
                );
                if let Err(e) = LeaseSettings::validate(ttl, drift) {
                    return (Err(e), None);
                }
                let grace = stop_grace_ms.map(Duration::from_millis);
                if let Some(Err(e)) = grace.map(LeaseSettings::validate_stop_grace) {
                    return (Err(e), None);
                }
                let set = LeaseSettings::set(self.lease, ttl, drift);
                self.lease = Some(match grace {
                    Some(g) => set.with_stop_grace(g),
                    None => set,
                });
                return (Ok(None), None);
            }
            Op::SetAttribute { key, value } => {
                return (self.set_attribute(cmd.at, key, value.as_deref()), None);
            }
            Op::ClearNodeAttributes { node } => {
                self.attributes.retain(|_, a| {
                    !(a.key.scope == AttributeScope::Status && a.key.node.as_ref() == Some(node))
                });
                return (Ok(None), None);
            }
            Op::Promotion { instance, step } => self.promote(instance, step),
            Op::Put { object, expect } => self.put(cmd, (**object).clone(), *expect),
            Op::Delete { kind, id, version } => self.delete(*kind, id, *version),
        };
        match result {
            Ok((action, kind, id, object)) => {
                self.changes += 1;
                let change = Change {
                    index: self.changes,
                    at: cmd.at,
                    kind,
                    id,
                    action,
                    object: object.clone(),
                };
                (Ok(object), Some(change))
            }
            Err(e) => (Err(e), None),
        }
    }

    /// Applies one promotion step. Refuses a grant beyond `promoted_max` (revoked grants
    /// count until released), a second grant for one copy, or one for a copy not placed
    /// on that host or on a host marked failed. The change names the instance.
    fn promote(
        &mut self,
        instance: &str,
        step: &PromotionStep,
    ) -> Result<(Action, Kind, String, Option<Object>), StateError> {
        let Some(inst) = self.instances.get(instance).cloned() else {
            return Err(StateError::NotFound {
                kind: Kind::Instance,
                id: instance.to_string(),
            });
        };
        let change = self.changes + 1;
        let grants = self.promotions.entry(instance.to_string()).or_default();
        let find = |grants: &[PromotionGrant], replica: u32| {
            grants.iter().position(|g| g.replica == replica)
        };
        match step {
            PromotionStep::Grant { replica, host } => {
                if inst.mode != crate::instance::Mode::Promotable {
                    return Err(StateError::unprocessable(
                        "mode",
                        format!("instance `{}` is not promotable", inst.name),
                    ));
                }
                if grants.len() >= inst.promoted_max as usize {
                    return Err(StateError::unprocessable(
                        "promoted_max",
                        format!(
                            "instance `{}` already holds {} promotion grant(s), its promoted_max",
                            inst.name,
                            grants.len()
                        ),
                    ));
                }
                if find(grants, *replica).is_some() {
                    return Err(StateError::unprocessable(
                        "replica",
                        format!("copy {replica} of `{}` already holds a grant", inst.name),
                    ));
                }
                let placed = self
                    .placements
                    .values()
                    .any(|p| p.instance == instance && p.replica == *replica && p.host == *host);
                let usable = self.hosts.get(host).is_some_and(|h| !h.failed);
                if !placed || !usable {
                    return Err(StateError::unprocessable(
                        "host",
                        format!(
                            "copy {replica} of `{}` is not placed on a usable host `{host}`",
                            inst.name
                        ),
                    ));
                }
                self.promotion_epoch += 1;
                grants.push(PromotionGrant {
                    replica: *replica,
                    host: host.clone(),
                    epoch: self.promotion_epoch,
                    revoked: false,
                    change,
                });
            }
            PromotionStep::Revoke { replica } => {
                let Some(i) = find(grants, *replica) else {
                    return Err(StateError::unprocessable(
                        "replica",
                        format!("copy {replica} of `{}` holds no grant", inst.name),
                    ));
                };
                if grants[i].revoked {
                    return Err(StateError::unprocessable(
                        "replica",
                        format!("the grant of copy {replica} is already revoked"),
                    ));
                }
                grants[i].revoked = true;
                grants[i].change = change;
            }
            PromotionStep::Release { replica } => {
                let Some(i) = find(grants, *replica) else {
                    return Err(StateError::unprocessable(
                        "replica",
                        format!("copy {replica} of `{}` holds no grant", inst.name),
                    ));
                };
                grants.remove(i);
            }
        }
        if grants.is_empty() {
            self.promotions.remove(instance);
        }
        Ok((
            Action::Updated,
            Kind::Instance,
            instance.to_string(),
            Some(Object::Instance(inst)),
        ))
    }

    /// The promotion grants of instance `instance` (id).
    pub fn promotion_grants(&self, instance: &str) -> &[PromotionGrant] {
        self.promotions.get(instance).map_or(&[], Vec::as_slice)
    }

    fn put(
        &mut self,
        cmd: &Command,
        mut object: Object,
        expect: Expect,
    ) -> Result<(Action, Kind, String, Option<Object>), StateError> {
        let kind = object.kind();
        let id = object.meta().id.clone();
        if id.is_empty() || id.len() > 64 {
            return Err(StateError::invalid("id", "must be 1 to 64 characters"));
        }
        object.validate()?;
        let old = self.get(kind, &id).map(|o| o.meta().clone());
        let action = match (expect, &old) {
            (Expect::Absent, Some(_)) => return Err(StateError::IdTaken { kind, id }),
            (Expect::Version(_), None) => return Err(StateError::NotFound { kind, id }),
            (Expect::Version(v), Some(old)) if old.version != v => {
                return Err(StateError::VersionMismatch {
                    kind,
                    id,
                    expected: v,
                    actual: old.version,
                });
            }
            (Expect::Absent, None) => Action::Created,
            (Expect::Version(_), Some(_)) => Action::Updated,
        };
        if let Some(name) = object.name()
            && let Some(other) = self.names.get(&(kind, name.to_string()))
            && *other != id
        {
            return Err(StateError::NameTaken {
                kind,
                name: name.to_string(),
            });
        }
        self.check_references(&mut object, action)?;
        let meta = object.meta_mut();
        match &old {
            Some(old) => {
                meta.version = old.version + 1;
                meta.created_at = old.created_at;
            }
            None => {
                meta.version = 1;
                meta.created_at = cmd.at;
            }
        }
        meta.updated_at = cmd.at;
        if let Some(old_name) = self.get(kind, &id).and_then(|o| o.name().map(String::from)) {
            self.names.remove(&(kind, old_name));
        }
        if let Some(name) = object.name() {
            self.names.insert((kind, name.to_string()), id.clone());
        }
        let stored = object.clone();
        match object {
            Object::Segment(o) => self.segments.insert(id.clone(), o).map(drop),
            Object::Host(o) => self.hosts.insert(id.clone(), o).map(drop),
            Object::Instance(o) => self.instances.insert(id.clone(), o).map(drop),
            Object::Notification(o) => self.notifications.insert(id.clone(), o).map(drop),
            Object::Placement(o) => self.placements.insert(id.clone(), o).map(drop),
        };
        Ok((action, kind, id, Some(stored)))
    }

    /// Referential checks, and what the state machine fills in itself.
    fn check_references(&mut self, object: &mut Object, action: Action) -> Result<(), StateError> {
        let segment_exists = |s: &String| self.segments.contains_key(s);
        match object {
            Object::Segment(_) => Ok(()),
            Object::Host(h) if !segment_exists(&h.segment) => Err(StateError::unprocessable(
                "segment",
                format!("segment `{}` does not exist", h.segment),
            )),
            Object::Instance(i) if !segment_exists(&i.segment) => Err(StateError::unprocessable(
                "segment",
                format!("segment `{}` does not exist", i.segment),
            )),
            Object::Instance(i) => {
                crate::capacity::admit(self, i).map_err(|message| StateError::Conflict { message })
            }
            Object::Host(_) => Ok(()),
            Object::Notification(n) if action == Action::Created => {
                if let Some(dup) = self.notifications.values().find(|o| o.duplicates(n)) {
                    return Err(StateError::Conflict {
                        message: format!(
                            "duplicate notification: `{}` reported the same {} failure of host `{}` within 180 s",
                            dup.meta.id,
                            serde_json::to_value(n.notification_type)
                                .ok()
                                .and_then(|v| v.as_str().map(String::from))
                                .unwrap_or_default(),
                            n.hostname
                        ),
                    });
                }
                let host = self.host_by_name(&n.hostname);
                if let Some(h) = host
                    && h.on_maintenance
                {
                    return Err(StateError::Conflict {
                        message: format!(
                            "host `{}` is on maintenance: notifications about it are refused until it leaves maintenance",
                            n.hostname
                        ),
                    });
                }
                n.source_host = host.map(|h| h.meta.id.clone());
                n.segment = host.map(|h| h.segment.clone());
                n.serial = self.next_serial.max(1);
                self.next_serial = n.serial + 1;
                Ok(())
            }
            Object::Notification(_) => Ok(()),
            Object::Placement(p) => self.check_placement(p),
        }
    }

    /// A placement names an existing instance and host of the same segment, a replica the
    /// instance has, and no host twice for one clone; it gets a new epoch when it is created
    /// or moves, and keeps its epoch otherwise.
    fn check_placement(&mut self, p: &mut Placement) -> Result<(), StateError> {
        let Some(instance) = self.instances.get(&p.instance) else {
            return Err(StateError::unprocessable(
                "instance",
                format!("instance `{}` does not exist", p.instance),
            ));
        };
        let Some(host) = self.hosts.get(&p.host) else {
            return Err(StateError::unprocessable(
                "host",
                format!("host `{}` does not exist", p.host),
            ));
        };
        let arrives = self
            .placements
            .get(&p.meta.id)
            .is_none_or(|old| old.host != p.host);
        if host.failed && arrives {
            // It may be alive and renewing while it waits to be enabled again: what ran there
            // before it failed is gone, and nothing new goes there until an operator says so.
            return Err(StateError::Conflict {
                message: format!(
                    "host `{0}` is marked failed: nothing can be placed on it until it is enabled again (`buoy host enable {0}`)",
                    host.name
                ),
            });
        }
        if host.segment != instance.segment {
            return Err(StateError::unprocessable(
                "host",
                format!(
                    "host `{}` is not in the segment of instance `{}`: instances stay in their segment",
                    host.name, instance.name
                ),
            ));
        }
        let copies = instance.copies();
        if p.replica >= copies {
            return Err(StateError::unprocessable(
                "replica",
                format!(
                    "instance `{}` has {copies} cop{}: replica must be below {copies}",
                    instance.name,
                    if copies == 1 { "y" } else { "ies" }
                ),
            ));
        }
        for other in self.placements.values() {
            if other.meta.id == p.meta.id || other.instance != p.instance {
                continue;
            }
            if other.replica == p.replica {
                return Err(StateError::Conflict {
                    message: format!(
                        "replica {} of instance `{}` is already placed (placement `{}`): move that one instead",
                        p.replica, instance.name, other.meta.id
                    ),
                });
            }
            if other.host == p.host {
                return Err(StateError::Conflict {
                    message: format!(
                        "replica {} of instance `{}` already runs on host `{}`: clone copies need distinct hosts",
                        other.replica, instance.name, host.name
                    ),
                });
            }
        }
        match self.placements.get(&p.meta.id) {
            Some(old) if old.host == p.host && old.attempt == p.attempt => p.epoch = old.epoch,
            old => {
                if let Some(old) = old {
                    // The copy on the old host must be confirmed stopped first.
                    let mut handoffs = old.handoffs.clone();
                    handoffs.push(Handoff {
                        host: old.host.clone(),
                        epoch: old.epoch,
                        change: self.changes + 1,
                        placement: None,
                    });
                    p.handoffs = handoffs;
                } else {
                    // A copy of this replica whose placement was deleted may still run.
                    p.handoffs = self
                        .departed
                        .remove(&departed_key(&p.instance, p.replica))
                        .unwrap_or_default();
                }
                self.last_epoch += 1;
                p.epoch = Epoch(self.last_epoch);
            }
        }
        Ok(())
    }

    fn delete(
        &mut self,
        kind: Kind,
        id: &str,
        version: Option<u64>,
    ) -> Result<(Action, Kind, String, Option<Object>), StateError> {
        let Some(current) = self.get(kind, id) else {
            return Err(StateError::NotFound {
                kind,
                id: id.to_string(),
            });
        };
        let actual = current.meta().version;
        if let Some(v) = version
            && v != actual
        {
            return Err(StateError::VersionMismatch {
                kind,
                id: id.to_string(),
                expected: v,
                actual,
            });
        }
        let in_use = |by: String| StateError::InUse {
            kind,
            id: id.to_string(),
            by,
        };
        match kind {
            Kind::Segment => {
                let hosts = self.hosts.values().filter(|h| h.segment == id).count();
                let instances = self.instances.values().filter(|i| i.segment == id).count();
                if hosts + instances > 0 {
                    return Err(in_use(format!(
                        "{hosts} host(s) and {instances} instance(s)"
                    )));
                }
            }
            Kind::Host => {
                let placed = self.placements.values().filter(|p| p.host == id).count();
                if placed > 0 {
                    return Err(in_use(format!("{placed} placed instance(s)")));
                }
                // A copy that moved away may still be stopping there: deleting the host
                // would let its new host start a second copy at once (rule S1).
                let leaving = self
                    .placements
                    .values()
                    .filter(|p| p.handoffs.iter().any(|h| h.host == id))
                    .map(|p| p.instance.as_str())
                    .chain(self.departed.iter().filter_map(|(key, left)| {
                        let instance = key.rsplit_once('/').map_or(key.as_str(), |(i, _)| i);
                        left.iter().any(|h| h.host == id).then_some(instance)
                    }))
                    .next();
                if let Some(instance_id) = leaving {
                    let host = current.name().unwrap_or(id);
                    let instance = self
                        .instances
                        .get(instance_id)
                        .map_or(instance_id, |i| i.name.as_str());
                    return Err(StateError::Conflict {
                        message: format!(
                            "host `{host}` may still be stopping its copy of `{instance}`, which moved away or was unplaced: it can be deleted once the host confirms the stop or its lease runs out (`buoy fence {host}` if it is gone for good)"
                        ),
                    });
                }
            }
            Kind::Instance => {
                self.placements.retain(|_, p| p.instance != id);
                // Its hosts stop every copy (none is assigned any more), promoted or not.
                self.promotions.remove(id);
                let prefix = format!("{id}/");
                self.departed.retain(|k, _| !k.starts_with(&prefix));
            }
            Kind::Placement => {
                if let Some(p) = self.placements.get(id) {
                    // Its host may still run the copy: whatever places this replica next waits
                    // for it, like a move (and for what this placement was still waiting on).
                    let mut left: Vec<Handoff> = p
                        .handoffs
                        .iter()
                        .map(|h| Handoff {
                            placement: Some(h.placement.clone().unwrap_or_else(|| id.to_string())),
                            ..h.clone()
                        })
                        .collect();
                    left.push(Handoff {
                        host: p.host.clone(),
                        epoch: p.epoch,
                        change: self.changes + 1,
                        placement: Some(id.to_string()),
                    });
                    self.departed
                        .entry(departed_key(&p.instance, p.replica))
                        .or_default()
                        .extend(left);
                }
            }
            Kind::Notification => {}
        }
        if let Some(name) = current.name().map(String::from) {
            self.names.remove(&(kind, name));
        }
        match kind {
            Kind::Segment => self.segments.remove(id).map(drop),
            Kind::Host => self.hosts.remove(id).map(drop),
            Kind::Instance => self.instances.remove(id).map(drop),
            Kind::Notification => self.notifications.remove(id).map(drop),
            Kind::Placement => self.placements.remove(id).map(drop),
        };
        Ok((Action::Deleted, kind, id.to_string(), None))
    }

    /// Any object by kind and id.
    pub fn get(&self, kind: Kind, id: &str) -> Option<Object> {
        match kind {
            Kind::Segment => self.segments.get(id).cloned().map(Object::Segment),
            Kind::Host => self.hosts.get(id).cloned().map(Object::Host),
            Kind::Instance => self.instances.get(id).cloned().map(Object::Instance),
            Kind::Notification => self
                .notifications
                .get(id)
                .cloned()
                .map(Object::Notification),
            Kind::Placement => self.placements.get(id).cloned().map(Object::Placement),
        }
    }

    /// The id of the object of `kind` called `name`, or with id `name`.
    pub fn resolve(&self, kind: Kind, id_or_name: &str) -> Option<String> {
        if let Some(id) = self.names.get(&(kind, id_or_name.to_string())) {
            return Some(id.clone());
        }
        self.get(kind, id_or_name).map(|o| o.meta().id.clone())
    }

    /// Ids of the objects of `kind` in list order: by name (placements and notifications,
    /// which have none, by id), starting after the object with id `after`. `None` when there
    /// is no such object. Walks the name index, so reading one page costs that page.
    pub fn ids_in_list_order(
        &self,
        kind: Kind,
        after: Option<&str>,
    ) -> Option<Box<dyn Iterator<Item = &str> + '_>> {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        fn by_id<'a, V>(
            map: &'a BTreeMap<String, V>,
            after: Option<&str>,
        ) -> Option<Box<dyn Iterator<Item = &'a str> + 'a>> {
            let start = match after {
                Some(id) if !map.contains_key(id) => return None,
                Some(id) => Excluded(id.to_string()),
                None => Unbounded,
            };
            Some(Box::new(
                map.range::<String, _>((start, Unbounded))
                    .map(|(id, _)| id.as_str()),
            ))
        }
        let start = match (kind, after) {
            (Kind::Placement, _) => return by_id(&self.placements, after),
            (Kind::Notification, _) => return by_id(&self.notifications, after),
            (_, None) => Included((kind, String::new())),
            (_, Some(id)) => {
                let name = match kind {
                    Kind::Segment => self.segments.get(id).map(|o| &o.name),
                    Kind::Host => self.hosts.get(id).map(|o| &o.name),
                    _ => self.instances.get(id).map(|o| &o.name),
                }?;
                Excluded((kind, name.clone()))
            }
        };
        Some(Box::new(
            self.names
                .range((start, Unbounded))
                .take_while(move |((k, _), _)| *k == kind)
                .map(|(_, id)| id.as_str()),
        ))
    }

    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.segments.values()
    }

    pub fn hosts(&self) -> impl Iterator<Item = &Host> {
        self.hosts.values()
    }

    pub fn instances(&self) -> impl Iterator<Item = &Instance> {
        self.instances.values()
    }

    pub fn notifications(&self) -> impl Iterator<Item = &Notification> {
        self.notifications.values()
    }

    pub fn placements(&self) -> impl Iterator<Item = &Placement> {
        self.placements.values()
    }

    pub fn segment(&self, id: &str) -> Option<&Segment> {
        self.segments.get(id)
    }

    pub fn host(&self, id: &str) -> Option<&Host> {
        self.hosts.get(id)
    }

    pub fn instance(&self, id: &str) -> Option<&Instance> {
        self.instances.get(id)
    }

    pub fn notification(&self, id: &str) -> Option<&Notification> {
        self.notifications.get(id)
    }

    pub fn host_by_name(&self, name: &str) -> Option<&Host> {
        let id = self.names.get(&(Kind::Host, name.to_string()))?;
        self.hosts.get(id)
    }

    /// How many changes have been applied (the change feed's latest index).
    pub fn change_index(&self) -> u64 {
        self.changes
    }

    /// Sets (or with `None` deletes) one attribute of the store.
    fn set_attribute(&mut self, at: Timestamp, key: &AttributeKey, value: Option<&str>) -> Outcome {
        key.validate()?;
        let k = key.storage_key();
        let Some(value) = value else {
            self.attributes.remove(&k);
            return Ok(None);
        };
        attribute::validate_value(value)?;
        if !self.attributes.contains_key(&k) && self.attributes.len() >= attribute::MAX_ATTRIBUTES {
            return Err(StateError::invalid(
                "name",
                format!(
                    "the attribute store is full ({} attributes): delete attributes no agent uses any more",
                    attribute::MAX_ATTRIBUTES
                ),
            ));
        }
        self.attributes.insert(
            k,
            Attribute {
                key: key.clone(),
                value: value.to_string(),
                updated_at: at,
            },
        );
        Ok(None)
    }

    /// One attribute of the store.
    pub fn attribute(&self, key: &AttributeKey) -> Option<&Attribute> {
        self.attributes.get(&key.storage_key())
    }

    /// Every attribute, ordered by scope, node, set and name.
    pub fn attributes(&self) -> impl Iterator<Item = &Attribute> {
        self.attributes.values()
    }

    /// The promotion scores of `resource` by node (`master-RESOURCE`; a node's transient score
    /// wins over its permanent one). Unparseable scores are left out: they promote nothing.
    pub fn promotion_scores(&self, resource: &str) -> BTreeMap<String, i64> {
        let name = format!("master-{resource}");
        let mut out = BTreeMap::new();
        for scope in [AttributeScope::Nodes, AttributeScope::Status] {
            for a in self.attributes.values() {
                if a.key.scope == scope
                    && a.key.name == name
                    && let (Some(node), Some(score)) =
                        (&a.key.node, attribute::parse_score(&a.value))
                {
                    out.insert(node.clone(), score);
                }
            }
        }
        out
    }

    /// Whether host `host` (by name) may change attribute `key`: a host writes what concerns
    /// itself or a resource it runs, never another host's own state. Its own node's attributes;
    /// another node's promotion score (`master-R`) only for an instance `R` it runs a copy of
    /// (galera sets its peers' scores); a cluster property only when its name starts with
    /// the name of such an instance (mysql's `R_REPL_INFO`). The error says why not.
    pub fn may_write_attribute(&self, host: &str, key: &AttributeKey) -> Result<(), String> {
        if key.node.as_deref() == Some(host) {
            return Ok(());
        }
        let runs: Vec<&str> = match self.host_by_name(host) {
            Some(h) => self
                .placements()
                .filter(|p| p.host == h.meta.id)
                .filter_map(|p| self.instance(&p.instance))
                .map(|i| i.name.as_str())
                .collect(),
            None => Vec::new(),
        };
        let allowed = match (&key.node, key.name.strip_prefix("master-")) {
            (Some(_), Some(resource)) => runs.contains(&resource.split(':').next().unwrap_or("")),
            // pgsql marks its peers' data status (`RESOURCE-data-status`) on promotion.
            (Some(_), None) => runs.iter().any(|r| {
                key.name
                    .strip_prefix(r)
                    .is_some_and(|rest| rest.starts_with('-'))
            }),
            (None, _) => runs.iter().any(|r| key.name.starts_with(r)),
        };
        if allowed {
            return Ok(());
        }
        Err(match &key.node {
            Some(node) => format!(
                "host `{host}` may not change attribute `{}` of node `{node}`: a host writes its own node's attributes, and another node's only when named after an instance it runs a copy of (`master-NAME`, `NAME-...`)",
                key.name
            ),
            None => format!(
                "host `{host}` may not change cluster property `{}`: a host writes only properties named after an instance it runs a copy of",
                key.name
            ),
        })
    }

    /// The cluster's lease timing; none until a leader has written it.
    pub fn lease(&self) -> Option<LeaseSettings> {
        self.lease
    }

    /// Serialized form for snapshots.
    pub fn to_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// Reads a snapshot back and rebuilds the name index.
    pub fn from_bytes(bytes: &[u8]) -> Result<ClusterState, serde_json::Error> {
        let mut s: ClusterState = serde_json::from_slice(bytes)?;
        let names = s
            .segments
            .values()
            .map(|o| ((Kind::Segment, o.name.clone()), o.meta.id.clone()))
            .chain(
                s.hosts
                    .values()
                    .map(|o| ((Kind::Host, o.name.clone()), o.meta.id.clone())),
            )
            .chain(
                s.instances
                    .values()
                    .map(|o| ((Kind::Instance, o.name.clone()), o.meta.id.clone())),
            )
            .collect();
        s.names = names;
        Ok(s)
    }
}

/// The key of [`ClusterState::departed`].
fn departed_key(instance: &str, replica: u32) -> String {
    format!("{instance}/{replica}")
}
