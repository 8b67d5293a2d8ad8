//! `buoy bench zone-failure`: the zones lab ([`crate::zone_lab`]: the clock spread over zones
//! behind HAProxy, a Buoy clone of 2 copies, and its virtual IP; a client requesting through
//! the VIP every 50 ms). Each run crashes every host of one zone that does not hold the VIP
//! (the VIP's own failover is `buoy bench failover`'s business) and measures:
//!
//! - `failed_requests`: client requests that got no answer, from the crash until the next run
//!   (so the zone's return and the copies re-spreading to it count too);
//! - `recovery_ms`: from the crash until the copy count is back (as many copies as the
//!   surviving hosts can hold: never two on one host, so 6 copies on 6 hosts come back as 4
//!   when a zone of 2 dies, which the report says with `copies_after`);
//! - `backend_ms`: from the crash until every HAProxy's backend equals the copies that run.
//!
//! Then the zone comes back (its hosts rebooted, their agents started, the hosts enabled) and
//! the next run waits until every copy runs and the backends match again.
//!
//! With `--db` the clock copies read their time from a replicated PostgreSQL (the zones lab's
//! database: pgsql promotable, primary preferred in zone `b`), and every run crashes zone `b`
//! with the database's primary. Also measured: `db_read_again_ms`, from the crash until the
//! client gets an answer read from the new primary, and `db_age_max_ms`, the oldest database
//! time an answer showed meanwhile (the copies answer with their last read during the
//! failover). Each `--db` run has a lab of its own (the primary in zone `b` again).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;

use super::{percentiles_ms, wait_until};
use crate::ns_lab::unix_ms;
use crate::zone_lab::{Client, ZoneLab, db_time};

/// Flags of `buoy bench zone-failure`.
#[derive(Args, Debug)]
pub struct ZoneFailureBenchArgs {
    /// Zones (a host label `zone`).
    #[arg(long, default_value_t = 3)]
    pub zones: usize,
    /// Hosts in each zone.
    #[arg(long, default_value_t = 2)]
    pub hosts_per_zone: usize,
    /// Copies of the clock, spread over the zones.
    #[arg(long, default_value_t = 6)]
    pub copies: usize,
    /// Zone crashes.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Keep the lab's directory (logs) and print where it is.
    #[arg(long)]
    pub keep: bool,
    /// The clock reads a replicated PostgreSQL; every run crashes the zone of its primary.
    #[arg(long)]
    pub db: bool,
}

/// One zone crash.
struct Run {
    zone: String,
    recovery_ms: u64,
    backend_ms: u64,
    copies_after: usize,
    requests: usize,
    failed: usize,
    /// With `--db`: (until an answer read from the new primary, the oldest database time
    /// shown), in ms.
    db: Option<(u64, u64)>,
}

/// Runs the benchmark (see the module's doc).
pub fn zone_failure(args: ZoneFailureBenchArgs) -> Result<()> {
    let missing = if args.db {
        ZoneLab::missing_with_db()
    } else {
        ZoneLab::missing()
    };
    let bench = super::DatabaseBench::begin("zones", missing, args.runs, args.json)?;
    let hosts = args.zones * args.hosts_per_zone;
    if args.copies == 0 || args.copies > hosts {
        bail!("--copies must be 1 to the number of hosts ({hosts}): never two copies on one host");
    }
    let say = |m: &str| bench.say(m);
    // A lab, started, with its client answered.
    let fresh = || -> Result<(ZoneLab, Client)> {
        let mut lab = ZoneLab::create(
            &bench.exe,
            bench.dir.clone(),
            args.zones,
            args.hosts_per_zone,
        )?;
        if args.keep {
            lab.ns.keep_files();
        }
        say(&format!(
            "starting the server h1 and {} zones of {} hosts (network namespaces); the clock ({} copies) behind HAProxy (2 copies) and its VIP{}",
            args.zones,
            args.hosts_per_zone,
            args.copies,
            if args.db {
                "; the replicated PostgreSQL"
            } else {
                ""
            }
        ));
        lab.start(args.copies as u32, args.db)?;
        lab.wait_ready(args.copies, Duration::from_secs(180))?;
        let client = lab.start_client()?;
        client.wait_answered(20, Duration::from_secs(30))?;
        Ok((lab, client))
    };
    let (mut lab, mut client) = fresh()?;
    // Requests of the labs already ended (`--db` runs each in a lab of its own).
    let mut earlier: Vec<crate::zone_lab::Request> = Vec::new();

    let mut runs: Vec<Run> = Vec::new();
    for n in 0..args.runs {
        if bench.interrupted() {
            bail!("interrupted");
        }
        if args.db && n > 0 {
            // Each run in a new lab, its primary in zone b again (a switchover back would
            // leave the old primary's data locked by pgsql until rebuilt).
            earlier.extend(client.stop());
            drop(lab);
            (lab, client) = fresh()?;
        }
        let vip_zone = lab.vip_holder().map(|h| lab.zone_of(h));
        let others: Vec<usize> = (0..args.zones).filter(|z| Some(*z) != vip_zone).collect();
        let zone = if args.db {
            crate::zone_lab::DB_ZONE
        } else {
            *others
                .get(n % others.len().max(1))
                .context("no zone without the VIP")?
        };
        let dead: Vec<String> = lab
            .zone_hosts(zone)
            .iter()
            .map(|&i| crate::ns_lab::NsLab::name(i))
            .collect();
        let target = args.copies.min(hosts - dead.len());
        let killed = lab.kill_zone(zone);
        let mut recovery_ms = None;
        wait_until(Duration::from_secs(120), || {
            let now = lab.running("clock");
            let back = now.len() == target && now.iter().all(|(_, h)| !dead.contains(h));
            if back && recovery_ms.is_none() {
                recovery_ms = Some(unix_ms() - killed);
            }
            back && lab.backends_match()
        })
        .with_context(|| {
            format!(
                "zone {} crashed: the copies did not come back: {:?}\n{}",
                ZoneLab::zone_name(zone),
                lab.running("clock"),
                lab.logs()
            )
        })?;
        let backend_ms = unix_ms() - killed;
        let recovery_ms = recovery_ms.unwrap_or(backend_ms);
        let db = if args.db {
            let mut again = None;
            wait_until(Duration::from_secs(120), || {
                again = client.requests().iter().find_map(|r| {
                    let t = db_time(r.answer.as_ref().ok()?)?;
                    (t > killed).then(|| r.sent_ms + r.took_ms - killed)
                });
                again.is_some()
            })
            .with_context(|| format!("no answer read from the new primary:\n{}", lab.logs()))?;
            let oldest = client
                .requests()
                .iter()
                .filter(|r| r.sent_ms >= killed)
                .filter_map(|r| Some(r.sent_ms.saturating_sub(db_time(r.answer.as_ref().ok()?)?)))
                .max()
                .unwrap_or(0);
            again.map(|a| (a, oldest))
        } else {
            None
        };
        if args.db {
            // The record covers the settled state too; the next run has a lab of its own.
            std::thread::sleep(Duration::from_secs(2));
        } else {
            // The zone returns; the copies spread back to it.
            lab.revive_zone(zone)?;
            lab.wait_ready(args.copies, Duration::from_secs(180))?;
        }
        let reqs: Vec<_> = client
            .requests()
            .into_iter()
            .filter(|r| r.sent_ms >= killed)
            .collect();
        let run = Run {
            zone: ZoneLab::zone_name(zone),
            recovery_ms,
            backend_ms,
            copies_after: target,
            requests: reqs.len(),
            failed: reqs.iter().filter(|r| r.answer.is_err()).count(),
            db,
        };
        let unplaceable = if target < args.copies {
            format!(
                " (no host for the other {}: never two copies on one host)",
                args.copies - target
            )
        } else {
            String::new()
        };
        let db_text = run.db.map_or(String::new(), |(again, age)| {
            format!("; read from the new primary after {again} ms (answers at most {age} ms old)")
        });
        say(&format!(
            "run {}: zone {} ({dead:?}) crashed: {} copies running in {} ms{unplaceable}, HAProxy in sync in {} ms{db_text}; {} requests, {} failed",
            n + 1,
            run.zone,
            run.copies_after,
            run.recovery_ms,
            run.backend_ms,
            run.requests,
            run.failed
        ));
        runs.push(run);
    }
    let mut reqs = earlier;
    reqs.extend(client.stop());
    let failures: Vec<_> = reqs
        .iter()
        .filter_map(|r| r.answer.as_ref().err().map(|e| (r.sent_ms, e.clone())))
        .take(20)
        .collect();
    let failed: usize = runs.iter().map(|r| r.failed).sum();
    let mut report = json!({
        "zones": args.zones, "hosts_per_zone": args.hosts_per_zone, "copies": args.copies,
        "runs": runs.len(),
        // Whether a dead zone's copies can be placed again (else the survivors are counted).
        "lost_copies_replaced": args.copies <= hosts - args.hosts_per_zone,
        "requests": reqs.len(),
        "failed_requests": failed,
        "failures": failures,
        "recovery_ms": percentiles_ms(runs.iter().map(|r| r.recovery_ms)),
        "backend_ms": percentiles_ms(runs.iter().map(|r| r.backend_ms)),
        "per_run": runs.iter().map(|r| json!({"zone": r.zone, "recovery_ms": r.recovery_ms,
            "backend_ms": r.backend_ms, "copies_after": r.copies_after,
            "requests": r.requests, "failed_requests": r.failed,
            "db_read_again_ms": r.db.map(|d| d.0), "db_age_max_ms": r.db.map(|d| d.1)}))
            .collect::<Vec<_>>(),
    });
    if args.db {
        report["database"] = json!(
            "postgresql 15, pgsql promotable, synchronous; zone b holds the primary at each crash"
        );
        report["db_read_again_ms"] = percentiles_ms(runs.iter().filter_map(|r| r.db.map(|d| d.0)));
        report["db_age_max_ms"] = percentiles_ms(runs.iter().filter_map(|r| r.db.map(|d| d.1)));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} zone crashes: recovery_ms p50 {} p99 {}; backend_ms p50 {} p99 {}; {} requests, {failed} failed",
            runs.len(),
            report["recovery_ms"]["p50"],
            report["recovery_ms"]["p99"],
            report["backend_ms"]["p50"],
            report["backend_ms"]["p99"],
            reqs.len()
        );
    }
    if lab.ns.kept() {
        eprintln!("files kept in {}", lab.ns.dir.display());
    }
    Ok(())
}
