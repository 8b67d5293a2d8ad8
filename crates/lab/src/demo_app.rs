//! `buoy demo-app`: the sandbox's and benchmarks' instance. A tiny HTTP service that says
//! which instance, epoch and host it is and the time, and that appends heartbeats
//! `instance epoch host unix_millis` to a shared file while it runs: the record the chaos
//! checker and `buoy bench failover` judge rule S1 from (`sim::heartbeats`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use model::Timestamp;

/// Flags of `buoy demo-app`.
#[derive(Args, Debug)]
pub struct DemoAppArgs {
    /// Append a heartbeat line to this file every `--interval`.
    #[arg(long)]
    pub heartbeats: Option<PathBuf>,
    /// Time between heartbeats (the resolution of the double-run check).
    #[arg(long, default_value = "10ms", value_parser = parse_duration)]
    pub interval: Duration,
    /// Serve HTTP on this address: every request gets `instance epoch host time`.
    #[arg(long)]
    pub http: Option<SocketAddr>,
    /// Serve HTTP on this port of the host's address (`BUOY_HOST_IP`, set by the supervisor).
    #[arg(long, conflicts_with = "http")]
    pub http_port: Option<u16>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    model::duration_text::parse(s).map_err(|e| e.to_string())
}

/// Who this copy is: from the supervisor's environment.
struct Identity {
    instance: String,
    epoch: String,
    host: String,
}

impl Identity {
    fn from_env() -> Identity {
        let var = |k: &str, default: &str| std::env::var(k).unwrap_or_else(|_| default.into());
        Identity {
            instance: var("BUOY_INSTANCE", "demo"),
            epoch: var("BUOY_EPOCH", "0"),
            host: var("BUOY_HOST", "local"),
        }
    }
}

pub fn run(args: DemoAppArgs) -> Result<()> {
    let me = Identity::from_env();
    let port_addr = match args.http_port {
        Some(port) => {
            let ip = std::env::var("BUOY_HOST_IP").unwrap_or_else(|_| "127.0.0.1".into());
            let ip: std::net::IpAddr = ip
                .parse()
                .with_context(|| format!("BUOY_HOST_IP `{ip}` is not an IP address"))?;
            Some(SocketAddr::new(ip, port))
        }
        None => None,
    };
    if let Some(addr) = args.http.or(port_addr) {
        let listener =
            TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
        let answer = format!("{} {} {}", me.instance, me.epoch, me.host);
        std::thread::spawn(move || serve(listener, answer));
    }
    let mut file = match &args.heartbeats {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("cannot open {}", p.display()))?,
        ),
        None => None,
    };
    println!(
        "demo-app: instance {} epoch {} on {}",
        me.instance, me.epoch, me.host
    );
    loop {
        if let Some(f) = file.as_mut() {
            let line = format!(
                "{} {} {} {}\n",
                me.instance,
                me.epoch,
                me.host,
                Timestamp::now().unix_millis()
            );
            // One write per line: appends of a short line are not interleaved.
            f.write_all(line.as_bytes())
                .context("cannot write a heartbeat")?;
        }
        std::thread::sleep(args.interval);
    }
}

/// Answers every connection with one line, HTTP/1.0 style.
fn serve(listener: TcpListener, answer: String) {
    for stream in listener.incoming() {
        let Ok(mut s) = stream else { continue };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf);
        let body = format!("{answer} {}\n", Timestamp::now());
        let _ = write!(
            s,
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nAccess-Control-Allow-Origin: *\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
}
