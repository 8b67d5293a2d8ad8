//! The agent's settings: the config file merged with the flags, checked, with defaults
//! filled in. Every mistake is reported with the flag or field that holds it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use state::replica::ReplicaConfig;
use swim::keyring::ENCRYPTION_OVERHEAD;
use swim::{Capacity, Metadata, NetAddress, Role};

use super::args::AgentArgs;
use super::config;
use node::http::auth::Auth;
use node::http::tls::TlsFiles;
use node::identity::{ClusterSecret, HostKey, Verifier};
use server::control_plane::ServerSettings;

/// The agent's settings after merging the config file and flags.
pub struct Settings {
    pub name: String,
    pub bind: SocketAddr,
    pub advertise: SocketAddr,
    pub http: SocketAddr,
    pub join: Vec<SocketAddr>,
    pub keyring: Option<PathBuf>,
    pub label: String,
    pub swim: swim::Config,
    pub meta: Metadata,
    pub fault_injection: bool,
    pub udp_payload: usize,
    /// Present when this agent is a control-plane server.
    pub server: Option<ServerSettings>,
    pub masakari_http: Option<SocketAddr>,
    pub auth: Auth,
    pub identity: Identity,
    pub tls: Option<TlsFiles>,
    pub lease: engine::host_lease::LeaseTiming,
    pub watchdog: Option<PathBuf>,
    pub watchdog_device: Option<PathBuf>,
    /// Run instances with no watchdog at all (`--unsafe-no-watchdog`).
    pub unsafe_no_watchdog: bool,
    pub data_dir: PathBuf,
    /// Where `buoy sleep-hook` finds this agent's instances (`node::sleep`).
    pub run_dir: PathBuf,
}

/// How this agent proves who it is (`node::identity`).
#[derive(Clone)]
pub enum Identity {
    /// A server: checks hosts' calls against the cluster secret; its own credential derives
    /// from it.
    Server(Arc<Verifier>, HostKey),
    /// A host with its credential.
    Host(HostKey),
    /// `--unsafe-no-host-identity`.
    Off,
}

impl Identity {
    /// This agent's own credential, if any.
    pub fn credential(&self) -> Option<HostKey> {
        match self {
            Identity::Server(_, k) | Identity::Host(k) => Some(k.clone()),
            Identity::Off => None,
        }
    }

    /// The verifier of hosts' calls, on servers.
    pub fn verifier(&self) -> Option<Arc<Verifier>> {
        match self {
            Identity::Server(v, _) => Some(v.clone()),
            _ => None,
        }
    }
}

fn identity(
    args: &AgentArgs,
    file: &config::FileConfig,
    name: &str,
    server: bool,
) -> Result<Identity> {
    let secret = args
        .cluster_secret
        .as_ref()
        .or(file.cluster_secret.as_ref());
    let credential = args.credential.as_ref().or(file.credential.as_ref());
    let unsafe_off = args.unsafe_no_host_identity || file.unsafe_no_host_identity.unwrap_or(false);
    match (server, secret, credential) {
        (_, _, _) if unsafe_off => {
            if secret.is_some() || credential.is_some() {
                bail!(
                    "--unsafe-no-host-identity turns host identity off: drop it, or drop --cluster-secret/--credential"
                );
            }
            Ok(Identity::Off)
        }
        (true, Some(p), _) => {
            let secret = ClusterSecret::load(p).context("--cluster-secret")?;
            let own = secret.host_key(name);
            Ok(Identity::Server(Arc::new(Verifier::new(secret)), own))
        }
        (true, None, _) => bail!(
            "a server needs the cluster secret: --cluster-secret FILE (create it once with `buoy credential secret FILE` and give every server the same file; issue each host its credential with `buoy credential issue HOST --cluster-secret FILE --out HOST.cred`), or --unsafe-no-host-identity to try Buoy out without"
        ),
        (false, Some(_), _) => bail!(
            "--cluster-secret is for servers only (add --server): a host holds its own credential, --credential FILE from `buoy credential issue {name}`"
        ),
        (false, None, Some(p)) => Ok(Identity::Host(
            HostKey::load(p, name).context("--credential")?,
        )),
        (false, None, None) => bail!(
            "this host needs its credential to hold a lease: --credential FILE, issued where the cluster secret is with `buoy credential issue {name} --cluster-secret FILE --out {name}.cred`; or --unsafe-no-host-identity to try Buoy out without"
        ),
    }
}

pub fn settings(args: &AgentArgs) -> Result<Settings> {
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
    let plain_ok =
        args.unsafe_no_gossip_encryption || file.unsafe_no_gossip_encryption.unwrap_or(false);
    if keyring.is_none() && !advertise.ip().is_loopback() && !plain_ok {
        bail!(
            "gossip on {advertise} is reachable from other machines and has no keyring: anyone who can send it a packet could forge membership news. Give every agent the same --keyring FILE (create it with `buoy keygen`, see the README), or accept the risk with --unsafe-no-gossip-encryption"
        );
    }
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
        Some(ServerSettings {
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
    let tls = tls_files(
        args.tls_cert.clone().or(file.tls_cert.clone()),
        args.tls_key.clone().or(file.tls_key.clone()),
        args.tls_ca.clone().or(file.tls_ca.clone()),
    )?;
    let identity = identity(args, &file, &name, server.is_some())?;
    Ok(Settings {
        identity,
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
            Some(p) => Auth::load(p)?,
            None => Auth::open(),
        },
        watchdog: args.watchdog.clone().or(file.watchdog.clone()),
        watchdog_device: args
            .watchdog_device
            .clone()
            .or(file.watchdog_device.clone()),
        unsafe_no_watchdog: args.unsafe_no_watchdog || file.unsafe_no_watchdog.unwrap_or(false),
        data_dir,
        run_dir: args
            .run_dir
            .clone()
            .or(file.run_dir.clone())
            .unwrap_or_else(|| PathBuf::from(node::sleep::DEFAULT_RUN_DIR)),
        lease: lease_timing(
            args.lease_ttl.as_ref().or(file.lease_ttl.as_ref()),
            args.lease_renew.as_ref().or(file.lease_renew.as_ref()),
            &profile,
        )?,
        tls,
    })
}

/// The lease timing from `--lease-ttl` / `--lease-renew` (duration text) or the profile.
fn lease_timing(
    ttl: Option<&String>,
    renew: Option<&String>,
    profile: &str,
) -> Result<engine::host_lease::LeaseTiming> {
    let parse = |flag: &str, v: &String| {
        model::duration_text::parse(v).map_err(|e| anyhow::anyhow!("{flag} {v}: {e}"))
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
) -> Result<Option<TlsFiles>> {
    match (cert, key, ca) {
        (None, None, None) => Ok(None),
        (Some(cert), Some(key), Some(ca)) => Ok(Some(TlsFiles { cert, key, ca })),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 17: gossip other machines can reach is encrypted, or the risk is named. (Only
    /// settings are read here: nothing binds or sends.)
    #[test]
    fn gossip_reachable_from_other_machines_needs_a_keyring_or_the_unsafe_flag() {
        let mut args = AgentArgs {
            name: Some("h1".into()),
            bind: Some("0.0.0.0:7946".parse().unwrap()),
            advertise: Some("10.1.2.3:7946".parse().unwrap()),
            unsafe_no_host_identity: true,
            ..Default::default()
        };
        let e = settings(&args).err().unwrap().to_string();
        assert!(
            e.contains("no keyring") && e.contains("--unsafe-no-gossip-encryption"),
            "{e}"
        );
        args.unsafe_no_gossip_encryption = true;
        assert!(settings(&args).is_ok());
        // Loopback (a laptop, the tests) may stay in the clear.
        let local = AgentArgs {
            name: Some("h1".into()),
            unsafe_no_host_identity: true,
            ..Default::default()
        };
        assert!(settings(&local).is_ok());
    }
}
