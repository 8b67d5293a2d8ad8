//! `buoy demo-app`: the sandbox's and benchmarks' instance. A tiny HTTP service that says
//! which instance, epoch and host it is and the time, and that appends heartbeats
//! `instance epoch host unix_millis` to a shared file while it runs: the record the chaos
//! checker and `buoy bench failover` judge rule S1 from (`sim::heartbeats`).
//!
//! With `--db-time`, each copy also reads the time from a PostgreSQL database every
//! `--db-every` (5 s: the clock page of the zones demo, issue 19; every second while reads
//! fail) and answers with the last time it read and how old that read is. Until its first read it answers 503 (so a health
//! check keeps it out of a load balancer); during a database failover it keeps answering with
//! its last read, and turns to 503 only once that read is older than `--db-max-age`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
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
    /// Read the time from this PostgreSQL database (a libpq connection string, e.g.
    /// `host=10.77.0.50 user=postgres dbname=postgres`) and answer with it.
    #[arg(long, value_name = "CONNINFO")]
    pub db_time: Option<String>,
    /// The `psql` program that reads it.
    #[arg(long, default_value = "psql", requires = "db_time")]
    pub psql: PathBuf,
    /// Time between two reads of the database's time.
    #[arg(long, default_value = "5s", value_parser = parse_duration, requires = "db_time")]
    pub db_every: Duration,
    /// Answer 503 once the last successful read is older than this.
    #[arg(long, default_value = "60s", value_parser = parse_duration, requires = "db_time")]
    pub db_max_age: Duration,
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
        let db = match &args.db_time {
            Some(conninfo) => {
                let reader = DbTime::new(args.db_max_age);
                let (r, psql, conninfo) = (reader.clone(), args.psql.clone(), conninfo.clone());
                let every = args.db_every;
                std::thread::spawn(move || r.read_forever(&psql, &conninfo, every));
                Some(reader)
            }
            None => None,
        };
        std::thread::spawn(move || serve(listener, answer, db));
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

/// Answers every connection with one line, HTTP/1.0 style: `instance epoch host time`, and
/// with a database, ` db DB_TIME age MSms` (503 with the reason while there is no fresh read).
fn serve(listener: TcpListener, answer: String, db: Option<DbTime>) {
    for stream in listener.incoming() {
        let Ok(mut s) = stream else { continue };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf);
        let now = Timestamp::now();
        let (status, body) = match db.as_ref().map(|d| d.answer(now)) {
            None => ("200 OK", format!("{answer} {now}\n")),
            Some(Ok(db)) => ("200 OK", format!("{answer} {now} {db}\n")),
            Some(Err(why)) => ("503 Service Unavailable", format!("{answer} {now} {why}\n")),
        };
        let _ = write!(
            s,
            "HTTP/1.0 {status}\r\nContent-Type: text/plain\r\nAccess-Control-Allow-Origin: *\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
}

/// The last time read from the database, shared between the reader thread and the server.
#[derive(Clone)]
struct DbTime {
    max_age: Duration,
    /// (the database's time, when it was read), or the last error before any read.
    last: Arc<Mutex<LastRead>>,
}

#[derive(Default)]
struct LastRead {
    read: Option<(Timestamp, Timestamp)>,
    error: Option<String>,
}

impl DbTime {
    fn new(max_age: Duration) -> DbTime {
        DbTime {
            max_age,
            last: Arc::new(Mutex::new(LastRead::default())),
        }
    }

    /// Reads every `every` (every second at most while reads fail: a database that fails
    /// over is read again soon after it is back), forever.
    fn read_forever(&self, psql: &Path, conninfo: &str, every: Duration) {
        loop {
            let result = read_db_time(psql, conninfo, Duration::from_secs(3));
            let next = if result.is_ok() {
                every
            } else {
                every.min(Duration::from_secs(1))
            };
            {
                let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
                match result {
                    Ok(t) => {
                        last.read = Some((t, Timestamp::now()));
                        last.error = None;
                    }
                    Err(e) => last.error = Some(e),
                }
            }
            std::thread::sleep(next);
        }
    }

    /// `db TIME age MSms`, or why there is no answer.
    fn answer(&self, now: Timestamp) -> Result<String, String> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let why = last.error.as_deref().unwrap_or("not read yet");
        match last.read {
            None => Err(format!("no database time yet: {why}")),
            Some((_, at)) if now.since(at) > self.max_age => Err(format!(
                "the database time is stale (read {} ms ago): {why}",
                now.since(at).as_millis()
            )),
            Some((t, at)) => Ok(format!("db {t} age {}ms", now.since(at).as_millis())),
        }
    }
}

/// The database's clock, through `psql` (killed after `timeout`).
fn read_db_time(psql: &Path, conninfo: &str, timeout: Duration) -> Result<Timestamp, String> {
    let conninfo = format!("{conninfo} connect_timeout=2");
    let mut child = Command::new(psql)
        .args([
            "-XqAt",
            "-d",
            &conninfo,
            "-c",
            "select (extract(epoch from clock_timestamp()) * 1000)::bigint",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", psql.display()))?;
    let start = std::time::Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() < timeout => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("psql took more than {timeout:?}"));
            }
        }
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "psql: {}",
            err.trim().lines().last().unwrap_or("failed")
        ));
    }
    text.trim()
        .parse::<u64>()
        .map(Timestamp::from_unix_millis)
        .map_err(|_| format!("psql answered `{}`, not a time", text.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_psql(dir: &Path, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join("psql");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn reads_the_time_psql_prints_and_says_why_it_cannot() {
        let dir = std::env::temp_dir().join(format!("buoy-demo-psql-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let t = Duration::from_secs(2);
        let ok = fake_psql(&dir, "echo 1764800000123");
        assert_eq!(
            read_db_time(&ok, "host=x", t),
            Ok(Timestamp::from_unix_millis(1_764_800_000_123))
        );
        let down = fake_psql(&dir, "echo 'psql: error: connection refused' >&2; exit 2");
        let e = read_db_time(&down, "host=x", t).unwrap_err();
        assert!(e.contains("connection refused"), "{e}");
        let hangs = fake_psql(&dir, "exec sleep 10");
        let e = read_db_time(&hangs, "host=x", Duration::from_millis(200)).unwrap_err();
        assert!(e.contains("took more than"), "{e}");
        let garbage = fake_psql(&dir, "echo hello");
        assert!(read_db_time(&garbage, "host=x", t).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn answers_503_until_the_first_read_and_once_the_last_is_stale() {
        let db = DbTime::new(Duration::from_secs(60));
        let t0 = Timestamp::from_unix_millis(1_000_000);
        assert!(db.answer(t0).unwrap_err().contains("no database time yet"));
        db.last.lock().unwrap().read = Some((t0, t0));
        db.last.lock().unwrap().error = Some("psql: connection refused".into());
        let a = db.answer(t0.plus(Duration::from_secs(7))).unwrap();
        assert!(a.starts_with("db ") && a.ends_with("age 7000ms"), "{a}");
        let e = db.answer(t0.plus(Duration::from_secs(61))).unwrap_err();
        assert!(
            e.contains("stale") && e.contains("connection refused"),
            "{e}"
        );
    }
}
