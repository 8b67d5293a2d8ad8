//! `buoy agent`: runs the membership core on tokio UDP + TCP, with the HTTP API and metrics.

mod auth;
mod config;
mod control;
mod faults;
mod forward;
mod host_actions;
mod http;
pub mod http_client;
mod instance_logs;
pub mod lease;
mod masakari;
mod openapi;
mod raft_http;
mod recovery;
mod resources;
mod runtime;
mod state_api;
mod stream;
mod ui;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use axum::serve::ListenerExt;
use clap::Args;
use state::raft::replica::ReplicaConfig;
use swim::keyring::ENCRYPTION_OVERHEAD;
use swim::{Capacity, Metadata, NetAddress, Role, Swim};
use tokio::net::{TcpListener, UdpSocket};
use tracing::info;

pub use config::load_keyring;

/// Flags of `buoy agent` (each overrides the same field of `--config`).
#[derive(Args, Debug, Default)]
pub struct AgentArgs {
    /// Unique name of this host in the cluster [default: the machine's host name].
    #[arg(long)]
    pub name: Option<String>,
    /// Gossip address (UDP and TCP) [default: 127.0.0.1:7946].
    #[arg(long)]
    pub bind: Option<SocketAddr>,
    /// Address announced to others when it differs from --bind (e.g. bind 0.0.0.0).
    #[arg(long)]
    pub advertise: Option<SocketAddr>,
    /// Seed members to join through (repeat, or separate with commas).
    #[arg(long, value_delimiter = ',')]
    pub join: Vec<SocketAddr>,
    /// HTTP API address [default: 127.0.0.1:7070].
    #[arg(long)]
    pub http: Option<SocketAddr>,
    /// Keyring file ({"keys": ["<64 hex chars>", ...]}, first key encrypts): encrypts gossip.
    #[arg(long)]
    pub keyring: Option<PathBuf>,
    /// Cluster label, bound to every encrypted packet [default: buoy].
    #[arg(long)]
    pub label: Option<String>,
    /// Timing profile: lan (default), wan or local.
    #[arg(long)]
    pub profile: Option<String>,
    /// Segment (failover domain) this host belongs to [default: default].
    #[arg(long)]
    pub segment: Option<String>,
    /// TOML config file; flags override its fields.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Allow POST /v1/debug/faults to drop traffic (tests only).
    #[arg(long)]
    pub enable_fault_injection: bool,
    /// Log format: text or json.
    #[arg(long, default_value = "text")]
    pub log_format: String,
    /// Make this agent a control-plane server (a Raft voter holding the cluster state).
    #[arg(long)]
    pub server: bool,
    /// Servers that must meet through gossip before a fresh control plane forms (1, 3 or 5)
    /// [default: 1].
    #[arg(long)]
    pub bootstrap_expect: Option<usize>,
    /// Raft log entries between two snapshots of the cluster state on a server (the log
    /// before a snapshot is then purged) [default: 5000].
    #[arg(long)]
    pub snapshot_every: Option<u64>,
    /// Where the agent keeps its instances' logs, and a server its Raft log and snapshots
    /// [default: ./buoy-data/NAME].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// API tokens file (`{"tokens": [{"token": "...", "role": "admin"|"read"}]}`): with it,
    /// the control-plane API and Raft RPCs need a bearer token.
    #[arg(long)]
    pub tokens: Option<PathBuf>,
    /// Also serve the Masakari-compatible API at the root of this address (Masakari's port is
    /// 15868). It is always served under /masakari/v1 of --http.
    #[arg(long)]
    pub masakari_http: Option<SocketAddr>,
    /// How long a granted lease lasts (e.g. 3s): a host cut from the control plane for this
    /// long stops its instances [default: 3s; 1s with --profile local].
    #[arg(long)]
    pub lease_ttl: Option<String>,
    /// How often the lease is renewed [default: a sixth of the TTL].
    #[arg(long)]
    pub lease_renew: Option<String>,
    /// Socket of this host's `buoy watchdog`: the agent arms it with its lease's end, so a
    /// hung or killed agent leaves nothing running past its lease.
    #[arg(long)]
    pub watchdog: Option<PathBuf>,
    /// A hardware watchdog device (e.g. /dev/watchdog): petted at every lease renewal, it
    /// resets the machine when the agent hangs or dies (needs a lease of at least 2s).
    #[arg(long)]
    pub watchdog_device: Option<PathBuf>,
    /// PEM certificate (chain) this agent serves its API with; turns on TLS (with --tls-key
    /// and --tls-ca). It must name the --http address (an IP address SAN).
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle the certificates of other agents are checked against.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
}

/// The agent's settings after merging the config file and flags.
struct Settings {
    name: String,
    bind: SocketAddr,
    advertise: SocketAddr,
    http: SocketAddr,
    join: Vec<SocketAddr>,
    keyring: Option<PathBuf>,
    label: String,
    swim: swim::Config,
    meta: Metadata,
    fault_injection: bool,
    udp_payload: usize,
    /// Present when this agent is a control-plane server.
    server: Option<control::ServerSettings>,
    masakari_http: Option<SocketAddr>,
    auth: auth::Auth,
    tls: Option<crate::tls::TlsFiles>,
    lease: engine::host_lease::LeaseTiming,
    watchdog: Option<PathBuf>,
    watchdog_device: Option<PathBuf>,
    data_dir: PathBuf,
}

fn settings(args: &AgentArgs) -> Result<Settings> {
    let file = match &args.config {
        Some(p) => config::load(p)?,
        None => config::FileConfig::default(),
    };
    let name = match args.name.clone().or(file.name.clone()) {
        Some(n) => n,
        None => {
            hostname().context("no --name given and the host name cannot be read; pass --name")?
        }
    };
    swim::message::validate_name(&name)
        .map_err(anyhow::Error::msg)
        .context("--name")?;
    let bind = args
        .bind
        .or(file.bind)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7946)));
    let advertise = args.advertise.or(file.advertise).unwrap_or(bind);
    if advertise.ip().is_unspecified() {
        bail!(
            "--bind {bind} listens on every interface: also give --advertise with the address other hosts should use"
        );
    }
    let http = args
        .http
        .or(file.http)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7070)));
    let mut join = file.join.clone();
    join.extend(args.join.iter().copied());
    let profile = args
        .profile
        .clone()
        .or(file.profile.clone())
        .unwrap_or_else(|| "lan".into());
    let mut swim_config = swim::Config::profile(&profile).context("--profile")?;
    file.timing.apply(&mut swim_config)?;
    let keyring = args.keyring.clone().or(file.keyring.clone());
    let udp_payload = file.udp_payload.unwrap_or(1400);
    if !(512..=9000).contains(&udp_payload) {
        bail!("udp_payload = {udp_payload}: expected 512..=9000 bytes");
    }
    swim_config.max_packet_bytes = udp_payload
        - if keyring.is_some() {
            ENCRYPTION_OVERHEAD
        } else {
            0
        };
    swim_config.validate().context("timing settings")?;
    let is_server = args.server || file.server.unwrap_or(false);
    let role = match file.metadata.role.as_deref() {
        None if is_server => Role::Server,
        None | Some("client") if !is_server => Role::Client,
        Some("server") if is_server => Role::Server,
        Some(r @ ("client" | "server")) => bail!(
            "metadata.role = `{r}` contradicts --server/server = {is_server}: drop metadata.role, the server flag sets it"
        ),
        Some(other) => bail!("metadata.role = `{other}`: expected client or server"),
        None => Role::Client,
    };
    // Every agent keeps its instances' logs here; servers also their Raft data.
    let data_dir = args
        .data_dir
        .clone()
        .or(file.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("buoy-data").join(&name));
    let server = if is_server {
        let expect = args.bootstrap_expect.or(file.bootstrap_expect).unwrap_or(1);
        if !matches!(expect, 1 | 3 | 5) {
            bail!(
                "--bootstrap-expect {expect}: expected 1, 3 or 5 servers (an odd number keeps a majority through failures)"
            );
        }
        let snapshot_every = args
            .snapshot_every
            .or(file.snapshot_every)
            .unwrap_or(ReplicaConfig::default().snapshot_every);
        if snapshot_every == 0 {
            bail!("--snapshot-every 0: expected a number of log entries, at least 1");
        }
        Some(control::ServerSettings {
            data_dir: data_dir.clone(),
            bootstrap_expect: expect,
            snapshot_every,
        })
    } else {
        if args.bootstrap_expect.is_some() {
            bail!("--bootstrap-expect applies to servers only: add --server");
        }
        if args.snapshot_every.is_some() {
            bail!("--snapshot-every applies to servers only: add --server");
        }
        None
    };
    let meta = Metadata {
        segment: args
            .segment
            .clone()
            .or(file.metadata.segment.clone())
            .unwrap_or_else(|| "default".into()),
        role,
        capacity: Capacity {
            cpus: file.metadata.cpus.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
            }),
            memory_mb: file.metadata.memory_mb.unwrap_or_else(total_memory_mb),
        },
        addresses: file
            .metadata
            .addresses
            .iter()
            .map(|a| NetAddress {
                label: a.label.clone(),
                addr: a.address,
            })
            .collect(),
        http: Some(http),
    };
    Ok(Settings {
        name,
        bind,
        advertise,
        http,
        join,
        keyring,
        label: args
            .label
            .clone()
            .or(file.label.clone())
            .unwrap_or_else(|| "buoy".into()),
        swim: swim_config,
        meta,
        fault_injection: args.enable_fault_injection
            || file.enable_fault_injection.unwrap_or(false),
        udp_payload,
        server,
        masakari_http: args.masakari_http.or(file.masakari_http),
        auth: match args.tokens.as_ref().or(file.tokens.as_ref()) {
            Some(p) => auth::Auth::load(p)?,
            None => auth::Auth::open(),
        },
        watchdog: args.watchdog.clone().or(file.watchdog.clone()),
        watchdog_device: args
            .watchdog_device
            .clone()
            .or(file.watchdog_device.clone()),
        data_dir,
        lease: lease_timing(
            args.lease_ttl.as_ref().or(file.lease_ttl.as_ref()),
            args.lease_renew.as_ref().or(file.lease_renew.as_ref()),
            &profile,
        )?,
        tls: tls_files(
            args.tls_cert.clone().or(file.tls_cert.clone()),
            args.tls_key.clone().or(file.tls_key.clone()),
            args.tls_ca.clone().or(file.tls_ca.clone()),
        )?,
    })
}

/// The lease timing from `--lease-ttl` / `--lease-renew` (duration text) or the profile.
fn lease_timing(
    ttl: Option<&String>,
    renew: Option<&String>,
    profile: &str,
) -> Result<engine::host_lease::LeaseTiming> {
    let parse = |flag: &str, v: &String| {
        state::duration_text::parse(v).map_err(|e| anyhow::anyhow!("{flag} {v}: {e}"))
    };
    let ttl = match ttl {
        Some(v) => parse("--lease-ttl", v)?,
        None if profile == "local" => Duration::from_secs(1),
        None => engine::host_lease::LeaseTiming::LAN.ttl,
    };
    let renew_every = match renew {
        Some(v) => parse("--lease-renew", v)?,
        None => ttl / 6,
    };
    let timing = engine::host_lease::LeaseTiming { ttl, renew_every };
    timing
        .validate()
        .map_err(|e| anyhow::anyhow!("--lease-ttl/--lease-renew: {e}"))?;
    Ok(timing)
}

/// TLS is on when all three files are given, off when none is; anything else is a mistake.
fn tls_files(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
) -> Result<Option<crate::tls::TlsFiles>> {
    match (cert, key, ca) {
        (None, None, None) => Ok(None),
        (Some(cert), Some(key), Some(ca)) => Ok(Some(crate::tls::TlsFiles { cert, key, ca })),
        (cert, key, ca) => {
            let missing: Vec<&str> = [
                (cert.is_none(), "--tls-cert"),
                (key.is_none(), "--tls-key"),
                (ca.is_none(), "--tls-ca"),
            ]
            .into_iter()
            .filter_map(|(m, f)| m.then_some(f))
            .collect();
            bail!(
                "TLS needs --tls-cert, --tls-key and --tls-ca together (missing {}): the agent serves with the certificate and checks other agents against the CA",
                missing.join(", ")
            )
        }
    }
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn total_memory_mb() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

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
            let listener = crate::tls::TlsListener::new(listener, config)?;
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
            crate::tls::server_config(&f.cert, &f.key)?,
            crate::tls::client_config(&f.ca)?,
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
    let shared = runtime::Shared::new(
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
    tokio::spawn(stream::serve(shared.clone(), tcp));
    let me = state::raft::types::ServerNode {
        name: s.name.clone(),
        http: s.http.to_string(),
    };
    let client = http_client::HttpClient::new(tls.as_ref().map(|(_, c)| c.clone()));
    let cp = control::ControlPlane::start(
        me,
        s.server.clone(),
        shared.clone(),
        client,
        s.auth.admin_token(),
    )
    .await?;
    if let Some(server) = &s.server {
        info!(data_dir = %server.data_dir.display(), bootstrap_expect = server.bootstrap_expect, "control-plane server");
    }
    let api = http::Api {
        shared: shared.clone(),
        keyring_path: s.keyring.clone(),
        label: s.label.clone(),
    };
    let grants = cp
        .replica
        .clone()
        .map(|r| lease::LeaseGrants::start(r, shared.clone(), s.lease.ttl));
    let state_api = state_api::StateApi {
        cp: cp.clone(),
        gossip: shared.clone(),
        auth: s.auth.clone(),
        grants: grants.clone(),
    };
    let masakari_router = masakari::router(state_api.clone());
    if let Some(addr) = s.masakari_http {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot bind the Masakari-compatible API on {addr}"))?;
        info!(%addr, "Masakari-compatible API");
        spawn_http(
            "Masakari-compatible API",
            listener,
            tls.as_ref().map(|(c, _)| c.clone()),
            masakari_router.clone(),
        )?;
    }
    let keeper = lease::LeaseKeeper::new(s.name.clone(), s.lease, shared.now());
    let fencer = recovery::fence::Fencer::new();
    if let (Some(r), Some(g)) = (&cp.replica, &grants) {
        tokio::spawn(recovery::run(
            r.clone(),
            g.clone(),
            shared.clone(),
            fencer.clone(),
        ));
    }
    tokio::spawn(keeper.clone().run(
        cp.clone(),
        grants.clone(),
        shared.clone(),
        s.auth.admin_token(),
    ));
    let watchdog = s.watchdog.as_ref().map(|socket| {
        let wd = crate::watchdog::client::WatchdogClient::start(socket.clone());
        tokio::spawn(lease::feed_watchdog(
            keeper.clone(),
            shared.clone(),
            wd.clone(),
        ));
        wd
    });
    let supervisor = crate::supervisor::reconciler::Supervisor::new(
        s.name.clone(),
        s.advertise.ip().to_string(),
        s.data_dir.join("instances"),
        watchdog,
    );
    keeper.report_for(supervisor.clone());
    {
        let clock = shared.clone();
        tokio::spawn(supervisor.clone().run(keeper.clone(), move || clock.now()));
    }
    let host_actions = host_actions::router(host_actions::HostActions {
        api: state_api.clone(),
        grants: grants.clone(),
        fencer,
    });
    let lease_api = lease::LeaseApi {
        grants,
        keeper: keeper.clone(),
        gossip: shared.clone(),
        supervisor: supervisor.clone(),
    };
    let lease_routes = axum::Router::new()
        .route("/internal/lease", axum::routing::post(lease::renew))
        .route("/v1/leases", axum::routing::get(lease::leases))
        .route("/v1/observed", axum::routing::get(lease::observed))
        .route_layer(axum::middleware::from_fn_with_state(
            cp.clone(),
            forward::to_leader,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            s.auth.clone(),
            auth::require_token,
        ))
        .with_state(lease_api.clone())
        .merge(
            axum::Router::new()
                .route("/v1/lease", axum::routing::get(lease::own_lease))
                .route("/v1/supervisor", axum::routing::get(lease::supervised))
                .route(
                    "/v1/supervisor/logs/{name}",
                    axum::routing::get(instance_logs::instance_log),
                )
                .route_layer(axum::middleware::from_fn_with_state(
                    s.auth.clone(),
                    auth::require_token,
                ))
                .with_state(lease_api),
        );
    let router = http::router(api, s.auth.clone())
        .merge(lease_routes)
        .nest(masakari::PREFIX, masakari_router)
        .merge(state_api::router(state_api))
        .merge(host_actions)
        .merge(ui::router())
        .merge(
            axum::Router::new()
                .route(
                    "/internal/raft/{rpc}",
                    axum::routing::post(raft_http::serve),
                )
                // Snapshot chunks and batches of entries run past axum's default 2 MB.
                .layer(axum::extract::DefaultBodyLimit::max(raft_http::MAX_BODY))
                .route_layer(axum::middleware::from_fn_with_state(
                    s.auth.clone(),
                    auth::require_token,
                ))
                .with_state(cp.replica.clone()),
        );
    spawn_http("HTTP API", http_listener, tls.map(|(c, _)| c), router)?;
    // Armed last: once open, the device resets the machine unless the agent keeps petting it.
    let device = match &s.watchdog_device {
        Some(path) => Some(Arc::new(std::sync::Mutex::new(Some(
            crate::watchdog::device::WatchdogDevice::open(path, s.lease.ttl)
                .map_err(|e| anyhow::anyhow!("--watchdog-device: {e}"))?,
        )))),
        None => None,
    };
    if let Some(d) = &device {
        tokio::spawn(lease::feed_device(
            keeper.clone(),
            shared.clone(),
            d.clone(),
        ));
    }

    if !s.join.is_empty() {
        let seeds = s.join.clone();
        shared.with_swim(|sw, now| sw.join(now, &seeds));
    }
    let mut fatal = shared.fatal.subscribe();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = fatal.changed() => {
            let msg = fatal.borrow().clone().unwrap_or_default();
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
