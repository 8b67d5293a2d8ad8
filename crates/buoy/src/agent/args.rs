//! The flags of `buoy agent`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

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
    /// Gossip in the clear on an address other machines reach (without --keyring). Unsafe:
    /// anyone who can send this agent a packet can forge membership news.
    #[arg(long)]
    pub unsafe_no_gossip_encryption: bool,
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
    /// The cluster secret (servers only; `buoy credential secret FILE` creates one, and every
    /// server gets the same file): servers check hosts' signed calls against it and sign their
    /// answers with it. Must be readable by its owner only.
    #[arg(long)]
    pub cluster_secret: Option<PathBuf>,
    /// This host's credential (`buoy credential issue NAME`): it signs the host's lease
    /// renewals and reports, and proves the servers' answers genuine. Servers derive theirs
    /// from --cluster-secret. Must be readable by its owner only.
    #[arg(long)]
    pub credential: Option<PathBuf>,
    /// Run without host identity: servers take unsigned renewals (any host, or anyone reaching
    /// the API, can renew any host's lease and report for it) and this host obeys unsigned
    /// grants. For trying Buoy out only.
    #[arg(long)]
    pub unsafe_no_host_identity: bool,
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
    /// Run instances with neither --watchdog nor --watchdog-device. Unsafe: an agent that
    /// hangs leaves its instances running past its lease while the leader starts them
    /// elsewhere (two copies at once). Without a watchdog and without this flag, the agent runs
    /// no instances and reports every copy placed on it failed, with the reason.
    #[arg(long)]
    pub unsafe_no_watchdog: bool,
    /// Where this agent registers its instances for `buoy sleep-hook`, which freezes them
    /// before the machine sleeps [default: /run/buoy].
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
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
