//! `buoy agent`: wires one host together. Every agent runs the gossip runtime, its lease
//! keeper, its supervisor and (when given) its watchdog (`node`); a control-plane server also
//! opens the Raft replica and, while it leads, grants leases and runs the recovery loop
//! (`server`). All of them serve the HTTP API (non-leaders relay control-plane calls).
//!
//! - [`args`]: the flags; [`config`]: the TOML file; [`settings`]: both merged and checked.

mod args;
mod config;
mod settings;
mod tools;

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use axum::serve::ListenerExt;
use model::server::ServerNode;
use node::gossip::keyring_file::load_keyring;
use node::gossip::runtime::Shared;
use node::host_api::HostApi;
use node::http::client::HttpClient;
use node::lease::channel::HttpRenewals;
use node::lease::keeper::LeaseKeeper;
use node::supervisor::reconciler::Supervisor;
use node::watchdog::client::WatchdogClient;
use node::watchdog::device::WatchdogDevice;
use node::watchdog::feed;
use server::api::{StateApi, host_actions};
use server::control_plane::ControlPlane;
use server::lease::grants::LeaseGrants;
use server::lease::renewals::LeaderFirst;
use server::lease::routes::LeaseApi;
use swim::Swim;
use tokio::net::{TcpListener, UdpSocket};
use tracing::{error, info, warn};

pub use args::AgentArgs;
use settings::{Identity, Settings, settings};

fn init_logging(format: &str) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // openraft narrates every election and replication step at info.
        .unwrap_or_else(|_| "info,openraft=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        "json" => builder.json().init(),
        "text" => builder.init(),
        other => bail!("--log-format {other}: expected text or json"),
    }
    Ok(())
}

/// Turns off Nagle's algorithm on an accepted API connection: answers and Raft replies are
/// small writes that must leave at once, not wait for the previous one's ACK.
fn no_delay(tcp: &mut tokio::net::TcpStream) {
    let _ = tcp.set_nodelay(true);
}

/// Serves `router` on `listener`, over TLS when a server config is given.
fn spawn_http(
    what: &'static str,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: axum::Router,
) -> Result<()> {
    match tls {
        Some(config) => {
            let listener = node::http::tls::TlsListener::new(listener, config)?;
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, router).await {
                    tracing::error!(error = %e, "{what} stopped");
                }
            });
        }
        None => {
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener.tap_io(no_delay), router).await {
                    tracing::error!(error = %e, "{what} stopped");
                }
            });
        }
    }
    Ok(())
}

/// Runs the agent until SIGINT/SIGTERM (then leaves gracefully) or a fatal name conflict.
pub fn run(args: AgentArgs) -> Result<()> {
    let s = settings(&args)?;
    init_logging(&args.log_format)?;
    // One worker. With two, a task handed from one to the other wakes the idle one (tokio's
    // work stealing); on 2 cores with a 3-server cluster that measured 54 context switches
    // per Raft round against 36, and 22% more CPU per write (16 writers: 335 against 262 us).
    // Nothing may hold the worker for long, since Raft's heartbeats and gossip run there:
    // Raft log fsyncs have a thread of their own; snapshots, lists and recovery planning run
    // on the blocking pool.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(serve(s))
}

async fn serve(s: Settings) -> Result<()> {
    let keyring = match &s.keyring {
        Some(p) => Some(load_keyring(p, &s.label)?),
        None => None,
    };
    let udp = UdpSocket::bind(s.bind)
        .await
        .with_context(|| format!("cannot bind UDP {}", s.bind))?;
    // The host's other networks (metadata addresses): probes come there when the main one
    // fails, so the agent listens on each.
    let mut other_udp = Vec::new();
    for a in s.meta.addresses.iter().filter(|a| a.addr != s.bind) {
        other_udp.push(UdpSocket::bind(a.addr).await.with_context(|| {
            format!(
                "cannot listen on announced address {}={}: it must be an address of this host",
                a.label, a.addr
            )
        })?);
    }
    let tcp = TcpListener::bind(s.bind)
        .await
        .with_context(|| format!("cannot bind TCP {}", s.bind))?;
    let http_listener = TcpListener::bind(s.http)
        .await
        .with_context(|| format!("cannot bind HTTP {}", s.http))?;
    let tls = match &s.tls {
        Some(f) => Some((
            node::http::tls::server_config(&f.cert, &f.key)?,
            node::http::tls::client_config(&f.ca)?,
        )),
        None => None,
    };
    let seed = {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
        u64::from_le_bytes(b)
    };
    let core = Swim::new(
        s.swim.clone(),
        &s.name,
        s.advertise,
        s.meta.clone(),
        seed,
        swim::Instant::ZERO,
    )?;
    let encrypted = keyring.is_some();
    let shared = Shared::new(
        core,
        Arc::new(udp),
        keyring,
        s.fault_injection,
        s.udp_payload,
    );
    info!(name = %s.name, gossip = %s.advertise, http = %s.http, encrypted, tls = tls.is_some(), fault_injection = s.fault_injection, "agent started");
    tokio::spawn(shared.clone().run_udp());
    for socket in other_udp {
        tokio::spawn(shared.clone().receive_on(Arc::new(socket)));
    }
    tokio::spawn(shared.clone().run_timers());
    tokio::spawn(node::gossip::stream::serve(shared.clone(), tcp));
    let me = ServerNode {
        name: s.name.clone(),
        http: s.http.to_string(),
    };
    let client = HttpClient::new(tls.as_ref().map(|(_, c)| c.clone()));
    let prover = s
        .identity
        .verifier()
        .map(|verifier| node::server_proof::Prover {
            verifier,
            me: me.clone(),
        });
    let cp_identity = server::control_plane::CpIdentity {
        credential: s.identity.credential(),
        server_key: s.identity.verifier().map(|v| v.server_key(&s.name)),
        verifier: s.identity.verifier(),
    };
    let cp = ControlPlane::start(
        me,
        s.server.clone(),
        shared.clone(),
        client,
        // Without host identity, servers prove themselves to each other with the admin token.
        match s.identity {
            Identity::Off => s.auth.admin_token(),
            _ => None,
        },
        cp_identity,
    )
    .await?;
    if let Some(server) = &s.server {
        info!(data_dir = %server.data_dir.display(), bootstrap_expect = server.bootstrap_expect, "control-plane server");
    }
    let api = node::local_api::Api {
        shared: shared.clone(),
        keyring_path: s.keyring.clone(),
        label: s.label.clone(),
    };
    let grants = cp
        .replica
        .clone()
        .map(|r| LeaseGrants::start(r, shared.clone(), s.lease.ttl));
    let unplaced = Arc::new(server::recovery::unplaced::Unplaced::default());
    let state_api = StateApi {
        cp: cp.clone(),
        gossip: shared.clone(),
        auth: s.auth.clone(),
        grants: grants.clone(),
        unplaced: unplaced.clone(),
    };
    let masakari_router = server::masakari::router(state_api.clone());
    if let Some(addr) = s.masakari_http {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot bind the Masakari-compatible API on {addr}"))?;
        info!(%addr, "Masakari-compatible API");
        spawn_http(
            "Masakari-compatible API",
            listener,
            tls.as_ref().map(|(c, _)| c.clone()),
            masakari_router
                .clone()
                .layer(axum::extract::DefaultBodyLimit::disable())
                .layer(axum::middleware::from_fn(node::http::limits::limit_bodies)),
        )?;
    }
    let keeper = LeaseKeeper::new(s.name.clone(), s.lease, shared.now());
    let fencer = server::recovery::fence::Fencer::new();
    if let (Some(r), Some(g)) = (&cp.replica, &grants) {
        tokio::spawn(server::recovery::run(
            r.clone(),
            g.clone(),
            shared.clone(),
            fencer.clone(),
            unplaced,
        ));
    }
    let renewals = LeaderFirst {
        cp: cp.clone(),
        grants: grants.clone(),
        http: HttpRenewals {
            me: s.name.clone(),
            client: cp.client.clone(),
            servers: cp.servers.clone(),
            gossip: shared.clone(),
            // Hosts prove themselves with their credential; the API token is only for
            // clusters run without host identity.
            token: match s.identity {
                Identity::Off => s.auth.admin_token(),
                _ => None,
            },
            credential: s.identity.credential(),
            last_signed_ms: Default::default(),
            preferred: Default::default(),
            warned: Default::default(),
        },
    };
    tokio::spawn(keeper.clone().run(Arc::new(renewals), shared.clone()));
    let watchdog = s.watchdog.as_ref().map(|socket| {
        let wd = WatchdogClient::start(socket.clone());
        tokio::spawn(feed::feed_watchdog(
            keeper.clone(),
            shared.clone(),
            wd.clone(),
        ));
        wd
    });
    match node::cgroup::init() {
        Ok(root) => {
            info!(cgroups = %root.display(), "each instance runs in a cgroup of its own");
            match node::sleep::Freezer::register(&s.run_dir, &root) {
                Ok(freezer) => {
                    let (keeper, clock) = (keeper.clone(), shared.clone());
                    tokio::spawn(freezer.run(keeper, move || clock.now()));
                }
                Err(e) => warn!(
                    run_dir = %s.run_dir.display(),
                    "cannot register for the sleep hook ({e}): after a suspend this host's instances may run until the agent wakes; give --run-dir a writable directory"
                ),
            }
        }
        Err(why) => warn!(
            "no cgroup v2 containment ({why}): instances are contained by process groups only, so a daemon that calls setsid escapes its instance's stop and kill, and they cannot be frozen across a suspend"
        ),
    }
    if s.server.is_some() && !s.auth.required() && !s.http.ip().is_loopback() {
        warn!(
            http = %s.http,
            "this server has no tokens file: its whole API, and this host's own routes, answer anyone who can reach {}; give it --tokens FILE (see the README's `Tokens`)",
            s.http
        );
    }
    if watchdog.is_none() && s.watchdog_device.is_none() {
        if s.unsafe_no_watchdog {
            warn!(
                "no watchdog (--unsafe-no-watchdog): if this agent hangs, its instances keep running past its lease while the leader starts them elsewhere"
            );
        } else {
            error!(
                "no watchdog: this host runs no instances (give --watchdog with the socket of a running `buoy watchdog`, or --watchdog-device, or accept the risk with --unsafe-no-watchdog)"
            );
        }
    }
    let supervisor = Supervisor::new(
        s.name.clone(),
        s.advertise.ip().to_string(),
        s.data_dir.join("instances"),
        watchdog,
        s.unsafe_no_watchdog || s.watchdog_device.is_some(),
    );
    keeper.report_for(supervisor.clone());
    tools::start(&s, &cp, shared.clone(), keeper.clone(), &supervisor)?;
    {
        let clock = shared.clone();
        tokio::spawn(supervisor.clone().run(keeper.clone(), move || clock.now()));
    }
    // HAProxy copies run here keep their backends equal to the leader's lists.
    let balancers = node::balancer::syncer::Syncer::new(s.name.clone(), supervisor.clone());
    tokio::spawn(balancers.clone().run(keeper.clone()));
    let host_actions = host_actions::router(host_actions::HostActions {
        api: state_api.clone(),
        grants: grants.clone(),
        fencer,
    });
    let lease_routes = server::lease::routes::router(
        LeaseApi {
            grants,
            gossip: shared.clone(),
            verifier: s.identity.verifier(),
        },
        cp.clone(),
        s.auth.clone(),
    );
    let attribute_routes = server::attributes::router(
        server::attributes::AttributesApi {
            cp: cp.clone(),
            verifier: s.identity.verifier(),
        },
        s.auth.clone(),
    );
    let host_gate = node::http::host_gate::HostGate {
        auth: s.auth.clone(),
        credential: s.identity.credential(),
        signed_only: matches!(s.identity, Identity::Host(_)),
    };
    let host_routes = node::host_api::router(
        HostApi {
            keeper: keeper.clone(),
            gossip: shared.clone(),
            supervisor: supervisor.clone(),
            balancers,
        },
        host_gate.clone(),
    );
    let router = node::local_api::router(api, host_gate)
        .merge(lease_routes)
        .merge(attribute_routes)
        .merge(host_routes)
        .nest(server::masakari::PREFIX, masakari_router)
        .route("/masakari/", axum::routing::get(server::masakari::versions))
        .merge(server::api::router(state_api))
        .merge(host_actions)
        .merge(server::dashboard::router(s.auth.clone()))
        .merge(server::raft_http::router(
            server::raft_http::RaftRoute {
                replica: cp.replica.clone(),
                verifier: s.identity.verifier(),
            },
            s.auth.clone(),
        ))
        .merge(node::server_proof::router(prover))
        // Every body is capped by route (node::http::limits), before any extractor reads it.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn(node::http::limits::limit_bodies));
    spawn_http("HTTP API", http_listener, tls.map(|(c, _)| c), router)?;
    // Armed last: once open, the device resets the machine unless the agent keeps petting it.
    let device = match &s.watchdog_device {
        Some(path) => Some(Arc::new(std::sync::Mutex::new(Some(
            WatchdogDevice::open(path, s.lease.ttl)
                .map_err(|e| anyhow::anyhow!("--watchdog-device: {e}"))?,
        )))),
        None => None,
    };
    if let Some(d) = &device {
        tokio::spawn(feed::feed_device(keeper.clone(), shared.clone(), d.clone()));
    }

    // Watched before the join: a conflict found in the join's answer must not be missed.
    let mut fatal = shared.fatal.subscribe();
    if !s.join.is_empty() {
        let seeds = s.join.clone();
        shared.with_swim(|sw, now| sw.join(now, &seeds));
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        // `wait_for` also sees a value set before this point (`changed` would not).
        msg = async { fatal.wait_for(|f| f.is_some()).await.ok().and_then(|f| f.clone()) } => {
            let msg = msg.unwrap_or_default();
            // Whatever ends the agent, nothing it started outlives it (rule S1).
            tracing::error!("{msg}: stopping this host's instances before exiting");
            supervisor.shutdown().await;
            bail!("{msg}");
        }
    }
    info!("stopping this host's instances");
    supervisor.shutdown().await;
    if let Some(d) = device.and_then(|d| d.lock().unwrap_or_else(|p| p.into_inner()).take()) {
        d.disarm();
    }
    info!("leaving the cluster");
    shared.with_swim(|sw, now| sw.leave(now));
    // Give the leave message a few gossip rounds to spread.
    let gossip = s.swim.gossip_interval;
    for _ in 0..20 {
        tokio::time::sleep(gossip).await;
        if shared.read(|sw| sw.queued_broadcasts()) == 0 {
            break;
        }
    }
    tokio::time::sleep(gossip * 2).await;
    if let Some(r) = &cp.replica {
        r.shutdown().await;
    }
    Ok(())
}
