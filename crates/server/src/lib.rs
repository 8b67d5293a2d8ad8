//! What Buoy's control-plane servers run, on top of what every host runs (`node`). The
//! [`control_plane`] opens the Raft replica (`state`) and forms the group; the leader grants
//! [`lease`]s, runs the [`recovery`] loop (failures in, moves out, decided by
//! `engine::planner`), and answers the state [`api`], the [`masakari`]-compatible API and the
//! [`dashboard`], and keeps the resource agents' [`attributes`]; [`alertmanager`] reads
//! Alertmanager's webhooks for the scale policies. Other agents relay those calls to it ([`forward`]); servers replicate over
//! [`raft_http`].
//!
//! Arrows inside: `masakari` -> `masakari_openapi` -> `api` -> `lease`, `recovery` (fencing), `forward`;
//! `recovery` -> `lease` -> `control_plane` -> `raft_http`; `ids` is used by all.

pub mod alertmanager;
pub mod api;
pub mod attributes;
pub mod control_plane;
pub mod dashboard;
pub mod forward;
pub mod ids;
pub mod lease;
pub mod masakari;
pub mod masakari_openapi;
pub mod raft_http;
pub mod recovery;
