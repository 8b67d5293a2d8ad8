//! `buoy bench failover --workload postgres`: the PostgreSQL lab ([`crate::postgres_lab`]:
//! pgsql with synchronous replication and its virtual IP, hosts in namespaces, a client
//! writing one row per transaction through the address). Each run crashes the primary's host
//! (every process in its namespace killed, its link cut) and measures `recovery_ms`: from the
//! crash to the acknowledgement of the first write the client sent after it. After each run
//! every acknowledged commit is read back (`lost_acked_transactions`, counted over the whole
//! benchmark), then the old primary is rejoined as an operator would (its data rebuilt with
//! `pg_basebackup` from the new primary, pgsql's lock file removed) and the next run waits for
//! it to be a synchronous replica again. Exits non-zero when a commit was lost.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::failover::FailoverBenchArgs;
use super::wait_until;
use crate::postgres_lab::PgLab;

/// One run: which host crashed, which took over, and how long writes were refused.
struct Run {
    crashed: usize,
    promoted: Option<usize>,
    recovery_ms: u64,
}

/// Runs the benchmark (see the module's doc).
pub fn run(args: &FailoverBenchArgs) -> Result<()> {
    let bench = super::DatabaseBench::begin("postgres", PgLab::missing(), args.runs, args.json)?;
    let say = |m: &str| bench.say(m);
    let mut lab = PgLab::create(&bench.exe, bench.dir.clone())?;
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
        if bench.interrupted() {
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
            first.is_some() || bench.interrupted()
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

    let report = json!({
        "workload": "postgres",
        "runs": args.runs,
        "profile": "local",
        "lease": settings["lease"],
        "recovery_ms": super::percentiles_ms(runs.iter().map(|r| r.recovery_ms)),
        "per_run": runs.iter().map(|r| json!({
            "crashed": PgLab::name(r.crashed),
            "promoted": r.promoted.map(PgLab::name),
            "recovery_ms": r.recovery_ms,
        })).collect::<Vec<_>>(),
    });
    super::finish_database_bench(args.json, report, "recovery_ms", acked.len(), &lost, lab.ns)
}
