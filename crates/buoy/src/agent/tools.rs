//! What the OCF agents on this host get from Buoy in place of Pacemaker: the tool shims
//! (`crm_attribute`, `crm_master`, `attrd_updater`, `crm_node`, `crm_mon`, `cibadmin`,
//! `crm_resource`, `pacemakerd`: links to this binary in
//! `DATA_DIR/sbin`), the socket where this agent answers them
//! (`node::pacemaker_tools::service`), and a private `HA_RSCTMP`.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use node::gossip::runtime::Shared;
use node::lease::keeper::LeaseKeeper;
use node::pacemaker_tools::service::{self, SOCKET_ENV, ToolService};
use node::supervisor::reconciler::Supervisor;
use server::control_plane::ControlPlane;

use super::settings::{Identity, Settings};

/// Installs the shims, serves them, and gives every OCF agent started here the environment
/// that finds them.
pub fn start(
    s: &Settings,
    cp: &ControlPlane,
    gossip: Arc<Shared>,
    keeper: Arc<LeaseKeeper>,
    supervisor: &Arc<Supervisor>,
) -> Result<()> {
    let sbin = s.data_dir.join("sbin");
    let exe = std::env::current_exe().context("cannot find the buoy binary for the tool shims")?;
    service::install(&sbin, &exe)
        .with_context(|| format!("cannot install the tool shims in {}", sbin.display()))?;
    // Resource agents keep run-time state here (Stateful its role file). Pacemaker's is a
    // tmpfs cleared at boot; this one is the agent's own, cleared when the agent starts (it
    // runs nothing from before: a new agent starts every copy again under its own lease).
    let rsctmp = s.data_dir.join("run");
    let _ = std::fs::remove_dir_all(&rsctmp);
    std::fs::create_dir_all(&rsctmp)
        .with_context(|| format!("cannot create {}", rsctmp.display()))?;
    let socket = s.data_dir.join("tools.sock");
    let clock = gossip.clone();
    let tools = Arc::new(ToolService {
        me: s.name.clone(),
        client: cp.client.clone(),
        servers: cp.servers.clone(),
        gossip,
        credential: s.identity.credential(),
        token: match s.identity {
            Identity::Off => s.auth.admin_token(),
            _ => None,
        },
        quorate: Box::new(move || keeper.is_held(clock.now())),
        ban: {
            let supervisor = supervisor.clone();
            Box::new(move |resource: &str| supervisor.ban(resource))
        },
        last_signed_ms: Default::default(),
    });
    let path = socket.clone();
    tokio::spawn(async move {
        if let Err(e) = tools.serve(path.clone()).await {
            tracing::error!(socket = %path.display(), error = %e, "cannot serve the tool shims: OCF agents that publish promotion scores will fail");
        }
    });
    supervisor.set_agent_env(agent_env(&sbin, &socket, &rsctmp));
    Ok(())
}

/// The environment that sends an OCF agent's Pacemaker tools to the shims.
fn agent_env(sbin: &Path, socket: &Path, rsctmp: &Path) -> Vec<(String, String)> {
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    vec![
        ("HA_SBIN_DIR".into(), sbin.display().to_string()),
        ("PATH".into(), format!("{}:{path}", sbin.display())),
        (SOCKET_ENV.into(), socket.display().to_string()),
        ("HA_RSCTMP".into(), rsctmp.display().to_string()),
        ("SHELL".into(), "/bin/bash".into()),
    ]
}
