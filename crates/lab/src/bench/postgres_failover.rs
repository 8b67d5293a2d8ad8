//! `buoy bench failover --workload postgres`: the PostgreSQL lab ([`crate::postgres_lab`]:
//! pgsql with synchronous replication and its virtual IP, hosts in namespaces, a client
//! writing one row per transaction through the address). Each run crashes the primary's host
//! (every process in its namespace killed, its link cut) and measures `recovery_ms`: from the
//! crash to the acknowledgement of the first write the client sent after it. After each run
//! every acknowledged commit is read back (`lost_acked_transactions`, counted over the whole
//! benchmark), then the old primary is rejoined as an operator would (its data rebuilt with
//! `pg_basebackup` from the new primary, pgsql's lock file removed) and the next run waits for
//! it to be a synchronous replica again. Exits non-zero when a commit was lost.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use sim::stats::Percentiles;

use super::failover::FailoverBenchArgs;
use crate::postgres_lab::PgLab;

/// One run: which host crashed, which took over, and how long writes were refused.
struct Run {
    crashed: usize,
    promoted: Option<usize>,
    recovery_ms: u64,
}

/// Runs the benchmark (see the module's doc).
pub fn run(args: &FailoverBenchArgs) -> Result<()> {
    if let Some(why) = PgLab::missing() {
        bail!("--workload postgres cannot run here: {why}");
    }
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let stop = crate::interrupt::flag();
    let say = |m: &str| {
        if !args.json {
            eprintln!("{m}");
        }
    };
    let dir: PathBuf = std::env::temp_dir().join(format!("buoy-bench-pg-{}", std::process::id()));
    let exe = std::env::current_exe().context("cannot find the buoy binary")?;
    let mut lab = PgLab::create(&exe, dir)?;
    if args.keep {
        lab.ns.keep_files();
    }
    say("starting the server h1 and the database hosts h2, h3 (network namespaces)");
    lab.start()?;
    let mut primary = lab.wait_replicated(Duration::from_secs(120))?;
    let settings: Value =
        serde_json::from_str(&lab.ns.cli(&["settings", "show", "--json"]).1).unwrap_or(Value::Null);
    say(&format!(
        "primary on {}, its replica synchronous; the client writes through the VIP",
        PgLab::name(primary)
    ));
    lab.start_client()?;
    wait_until(Duration::from_secs(30), || lab.acked().len() >= 20)
        .with_context(|| format!("the client never wrote:\n{}", lab.logs()))?;

    let mut runs: Vec<Run> = Vec::new();
    for n in 0..args.runs {
        if stop.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        let crashed_ms = lab.ns.crash(primary);
        let mut first: Option<u64> = None;
        wait_until(Duration::from_secs(120), || {
            first = lab
                .acked()
                .iter()
                .filter(|a| a.sent_ms >= crashed_ms)
                .map(|a| a.acked_ms)
                .min();
            first.is_some() || stop.load(Ordering::Relaxed)
        })
        .with_context(|| {
            format!(
                "run {}: no write succeeded within 120 s of crashing {}:\n{}",
                n + 1,
                PgLab::name(primary),
                lab.logs()
            )
        })?;
        let Some(first) = first else {
            bail!("interrupted");
        };
        let promoted = lab.vip_holder(&[primary]);
        let run = Run {
            crashed: primary,
            promoted,
            recovery_ms: first.saturating_sub(crashed_ms),
        };
        say(&format!(
            "run {}: {} crashed; writes through the VIP resumed after {} ms (VIP on {})",
            n + 1,
            PgLab::name(run.crashed),
            run.recovery_ms,
            promoted.map_or("no host".into(), PgLab::name)
        ));
        runs.push(run);
        let Some(new_primary) = promoted else {
            bail!("the VIP is on no surviving host:\n{}", lab.logs());
        };
        if n + 1 < args.runs {
            say(&format!(
                "rejoining {} as a replica (pg_basebackup from {})",
                PgLab::name(primary),
                PgLab::name(new_primary)
            ));
            lab.rejoin(primary, new_primary)?;
            primary = lab.wait_replicated(Duration::from_secs(120))?;
        }
    }
    lab.stop_client();
    let acked = lab.acked();
    let lost = lab.lost()?;

    let rec = Percentiles::of(
        &runs
            .iter()
            .map(|r| Duration::from_millis(r.recovery_ms))
            .collect::<Vec<_>>(),
    );
    let report = json!({
        "workload": "postgres",
        "runs": args.runs,
        "profile": "local",
        "lease": settings["lease"],
        "recovery_ms": {"p50": rec.p50 as u64, "p99": rec.p99 as u64, "max": rec.max as u64},
        "per_run": runs.iter().map(|r| json!({
            "crashed": PgLab::name(r.crashed),
            "promoted": r.promoted.map(PgLab::name),
            "recovery_ms": r.recovery_ms,
        })).collect::<Vec<_>>(),
        "acked_transactions": acked.len(),
        "lost_acked_transactions": lost.len(),
        "lost_ids": lost.iter().take(20).collect::<Vec<_>>(),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "recovery_ms p50 {} p99 {} max {}; {} acknowledged transactions, {} lost",
            report["recovery_ms"]["p50"],
            report["recovery_ms"]["p99"],
            report["recovery_ms"]["max"],
            acked.len(),
            lost.len()
        );
    }
    if args.keep {
        eprintln!("files kept in {}", lab.ns.dir.display());
    }
    if !lost.is_empty() {
        eprintln!("LOST: acknowledged commits missing after failover: {lost:?}");
        drop(lab);
        std::process::exit(1);
    }
    Ok(())
}

/// Polls `ok` every 100 ms until it holds, or `timeout` passes (an error).
fn wait_until(timeout: Duration, mut ok: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !ok() {
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
