//! `buoy sandbox --zones N` where network namespaces can run (root, `ip netns`, `unshare`,
//! HAProxy and resource-agents): the zones lab ([`crate::zone_lab`]) as a sandbox. Each host
//! is a network and mount namespace; the clock is spread over the zones behind HAProxy (a Buoy
//! clone of 2 copies) and an `ocf:heartbeat:IPaddr2` virtual IP; where PostgreSQL 15 is
//! installed, each copy answers with the time it read from a replicated PostgreSQL (pgsql,
//! promotable, with a virtual IP of its own). The sandbox forwards two addresses of its
//! loopback network into the namespaces, so a browser reaches the dashboard and the clock
//! through the VIP. The demo crashes zone `b` (with a database, the zone of its primary); the
//! customer (a client through the VIP every 50 ms) sees no failed request; the copies come
//! back in the other zones, HAProxy's backends follow, the database fails over, all printed
//! as it happens; then the zone returns.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::{SandboxArgs, service};
use crate::netns::enter;
use crate::ns_lab::{NsLab, SERVER, unix_ms, wait_for};
use crate::zone_lab::{self, DB_ZONE, ZoneLab, db_time};

/// The sandbox port the dashboard (the server's API) is forwarded to.
const API_PORT: u16 = 7070;
/// The sandbox port the clock's VIP is forwarded to.
const CLOCK_PORT: u16 = 8080;

/// Why the namespaces scenario cannot run here (none: it can).
pub fn missing() -> Option<String> {
    ZoneLab::missing()
}

/// Forwards every connection to `listen` (this namespace) to `target`, reached from the
/// network namespace at `netns`, until `stop`.
fn forward(
    listen: SocketAddr,
    netns: String,
    target: SocketAddr,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    let listener =
        TcpListener::bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
    listener.set_nonblocking(true)?;
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((client, _)) => {
                    let netns = netns.clone();
                    std::thread::spawn(move || {
                        let _ = client.set_nonblocking(false);
                        // The connection out is made from inside the namespace; the accepted
                        // one stays where it was made.
                        if enter(&netns).is_err() {
                            return;
                        }
                        if let Ok(server) =
                            TcpStream::connect_timeout(&target, Duration::from_secs(2))
                        {
                            super::lb::pipe(client, server);
                        }
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    Ok(())
}

/// Runs the scenario (see the module's doc) until `stop` or `--duration`.
pub fn run(args: &SandboxArgs, stop: &Arc<AtomicBool>, say: &dyn Fn(String)) -> Result<()> {
    let started = Instant::now();
    let per_zone = (args.hosts.saturating_sub(1) / args.zones).clamp(2, 8);
    let db = crate::postgres_lab::PgLab::missing().is_none();
    let exe = std::env::current_exe().context("cannot find the buoy binary")?;
    let dir = std::env::temp_dir().join(format!("buoy-sandbox-zones-{}", std::process::id()));
    let mut lab = ZoneLab::create(&exe, dir, args.zones, per_zone)?;
    let copies = args.zones;
    say(format!(
        "starting the server h1 and {} zones of {per_zone} hosts, each host a network and mount namespace; files in {}",
        args.zones,
        lab.ns.dir.display()
    ));
    if db {
        say(format!(
            "the clock reads its time from PostgreSQL: pgsql promotable on {} and {} (synchronous replication) behind {}; starting it takes about 30 s",
            NsLab::name(1),
            NsLab::name(1 + per_zone),
            zone_lab::DB_VIP
        ));
    } else {
        say(format!(
            "PostgreSQL 15 is not installed ({}): the clock answers with its host's time",
            crate::postgres_lab::PgLab::missing().unwrap_or_default()
        ));
    }
    lab.start(copies as u32, db)?;
    lab.wait_ready(copies, Duration::from_secs(180))?;
    let switch = format!("/run/netns/{}", lab.ns.net.switch());
    let api_in: SocketAddr = format!("{}:7070", NsLab::ip(SERVER)).parse()?;
    let clock_in: SocketAddr = format!("{}:{}", zone_lab::VIP, zone_lab::LB_PORT).parse()?;
    let (api, clock) = (service(args.net, API_PORT), service(args.net, CLOCK_PORT));
    forward(api, switch.clone(), api_in, stop.clone())?;
    forward(clock, switch, clock_in, stop.clone())?;
    say(format!(
        "the clock ({copies} copies, one per zone) runs behind HAProxy on {} (a Buoy clone of 2) and its VIP {}",
        lab.running("lb")
            .iter()
            .map(|(_, h)| h.as_str())
            .collect::<Vec<_>>()
            .join(" and "),
        zone_lab::VIP
    ));
    println!();
    println!("  dashboard:  http://{api}/ui?clock=http://{clock}");
    println!("  try:        buoy host list --http {api}");
    println!("              buoy instance show clock --http {api}");
    println!("              curl http://{clock}/      (the VIP, forwarded)");
    println!();

    let client = lab.start_client()?;
    client.wait_answered(5, Duration::from_secs(20))?;
    let mut backends = lab.backends_line();
    say(format!("HAProxy backends: {backends}"));
    if let Some(a) = client
        .requests()
        .iter()
        .rev()
        .find_map(|r| r.answer.clone().ok())
    {
        say(format!("the customer sees: {a}"));
    }
    let until = args.duration.map(|d| started + Duration::from_secs(d));
    let running = |stop: &AtomicBool| {
        !stop.load(Ordering::Relaxed) && until.is_none_or(|u| Instant::now() < u)
    };
    if !args.no_demo && running(stop) {
        if args.demo_delay > 0 {
            say(format!(
                "demo: zone {} crashes in {} s; open the dashboard to watch",
                ZoneLab::zone_name(DB_ZONE),
                args.demo_delay
            ));
            let t = Instant::now();
            while running(stop) && t.elapsed() < Duration::from_secs(args.demo_delay) {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if running(stop) {
            demo(&mut lab, &client, &mut backends, stop, say)?;
        }
    }
    say("live: HAProxy's backends when they change; Ctrl-C stops the sandbox".into());
    let mut last_line = Instant::now();
    while running(stop) {
        let now = lab.backends_line();
        if now != backends {
            say(format!("HAProxy backends: {now}"));
            backends = now;
        }
        if last_line.elapsed() >= Duration::from_secs(30) {
            last_line = Instant::now();
            say(customer_line(&client.requests()));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let reqs = client.stop();
    say(format!(
        "clock app seen by its customer: {} requests answered, {} failed",
        reqs.iter().filter(|r| r.answer.is_ok()).count(),
        reqs.iter().filter(|r| r.answer.is_err()).count()
    ));
    say("stopping every agent and removing the namespaces and files".to_string());
    drop(lab);
    Ok(())
}

/// The customer's view in one line.
fn customer_line(reqs: &[zone_lab::Request]) -> String {
    let last = reqs.iter().rev().find_map(|r| r.answer.clone().ok());
    format!(
        "customer: {} answered, {} failed; last answer: {}",
        reqs.iter().filter(|r| r.answer.is_ok()).count(),
        reqs.iter().filter(|r| r.answer.is_err()).count(),
        last.unwrap_or_default()
    )
}

/// Crashes zone `b`; prints the copies, backends and database as they recover; brings the
/// zone back.
fn demo(
    lab: &mut ZoneLab,
    client: &zone_lab::Client,
    backends: &mut String,
    stop: &AtomicBool,
    say: &dyn Fn(String),
) -> Result<()> {
    let zone = DB_ZONE;
    let dead: Vec<String> = lab.zone_hosts(zone).into_iter().map(NsLab::name).collect();
    let copies = lab.zones;
    let primary = lab.db_primary(&[]);
    say(format!(
        "demo: zone {} crashes: every process of {} killed, their links cut{}",
        ZoneLab::zone_name(zone),
        dead.join(", "),
        primary.map_or(String::new(), |p| format!(
            " (the database's primary is on {})",
            NsLab::name(p)
        ))
    ));
    let killed = lab.kill_zone(zone);
    let t = Instant::now();
    let (mut back, mut fresh) = (None, None);
    while !stop.load(Ordering::Relaxed) && t.elapsed() < Duration::from_secs(90) {
        let now = lab.backends_line();
        if &now != backends {
            say(format!("HAProxy backends: {now}"));
            *backends = now;
        }
        if back.is_none() {
            let running = lab.running("clock");
            if running.len() == copies && running.iter().all(|(_, h)| !dead.contains(h)) {
                back = Some(t.elapsed());
                say(format!(
                    "demo: the clock's {copies} copies run again in the other zones after {:.2} s",
                    t.elapsed().as_secs_f64()
                ));
            }
        }
        if primary.is_some() && fresh.is_none() {
            let reqs = client.requests();
            if let Some(a) = reqs
                .iter()
                .filter_map(|r| r.answer.as_ref().ok())
                .find(|a| db_time(a).is_some_and(|d| d > killed))
            {
                fresh = Some(t.elapsed());
                say(format!(
                    "demo: the database failed over to {}; the clock reads from it again after {:.2} s: {a}",
                    lab.db_primary(&lab.zone_hosts(zone))
                        .map_or("?".into(), NsLab::name),
                    t.elapsed().as_secs_f64()
                ));
            }
        }
        let done = back.is_some() && (primary.is_none() || fresh.is_some());
        if done && lab.backends_match() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // A little longer, so the record covers the settled state too.
    std::thread::sleep(Duration::from_secs(2));
    let reqs: Vec<_> = client
        .requests()
        .into_iter()
        .filter(|r| r.sent_ms >= killed)
        .collect();
    let oldest = reqs
        .iter()
        .filter_map(|r| Some(r.sent_ms.saturating_sub(db_time(r.answer.as_ref().ok()?)?)))
        .max();
    say(format!(
        "demo: while zone {} was down the clock answered {} requests, {} failed{}",
        ZoneLab::zone_name(zone),
        reqs.iter().filter(|r| r.answer.is_ok()).count(),
        reqs.iter().filter(|r| r.answer.is_err()).count(),
        oldest.map_or(String::new(), |o| format!(
            " (the database's time they showed was at most {:.1} s old)",
            o as f64 / 1000.0
        ))
    ));
    say(format!(
        "demo: zone {} returns: {} reboot{}; copies spread back to it",
        ZoneLab::zone_name(zone),
        dead.join(", "),
        if primary.is_some() {
            ", the old primary's data rebuilt from the new one (pg_basebackup) so it rejoins as a replica"
        } else {
            ""
        }
    ));
    lab.revive_zone(zone)?;
    let settled = wait_for(Duration::from_secs(120), || {
        stop.load(Ordering::Relaxed)
            || (lab.running("clock").len() == copies && lab.backends_match())
    });
    if settled && !stop.load(Ordering::Relaxed) {
        say(format!(
            "demo: zone {} is back, {:.1} s after the crash",
            ZoneLab::zone_name(zone),
            (unix_ms() - killed) as f64 / 1000.0
        ));
    }
    if let Some(db) = &lab.db {
        match db.wait_replicated(&lab.ns, Duration::from_secs(90)) {
            Ok(p) => say(format!(
                "demo: the database's primary on {} replicates synchronously to {} again",
                NsLab::name(p),
                NsLab::name(if p == db.hosts[0] {
                    db.hosts[1]
                } else {
                    db.hosts[0]
                })
            )),
            Err(e) => say(format!("demo: the database is not replicated again: {e:#}")),
        }
    }
    Ok(())
}
