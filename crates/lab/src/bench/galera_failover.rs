//! `buoy bench failover --workload galera`: the Galera lab ([`crate::galera_lab`]: three
//! MariaDB nodes under the galera agent, all promoted, hosts in namespaces, a client writing
//! one row per transaction to one node). Each run crashes one of the two nodes the client does
//! not write to (every process in its namespace killed, its link cut; the two alternate) and
//! measures how long the crash held writes up: `write_pause_ms`, the longest wait for an
//! acknowledgement after the crash, and `recovery_ms`, from the crash to the end of that wait.
//! For comparison, `baseline_pause_ms` is the longest wait in the 5 s before the crash. The
//! survivors are checked for every acknowledged commit, then the crashed host is brought back
//! and the next run waits for the cluster of three. Once all runs are done, every acknowledged
//! commit is read back from each node (`lost_acked_transactions`, counted over the whole
//! benchmark). Exits non-zero when a commit was lost.
//!
//! Writes pause because Galera's group communication waits for the crashed node until it is
//! suspected (`evs.suspect_timeout`, 3 s in the lab's configuration): the figure measures
//! that, and that Buoy's recovery (the crashed copy failed, nothing promoted twice) does not
//! add to it.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::failover::FailoverBenchArgs;
use super::wait_until;
use crate::acks::write_pause;
use crate::galera_lab::{DB, GaleraLab, WRITTEN};

/// One run: the node crashed and how long writes were held up.
struct Run {
    crashed: usize,
    write_pause_ms: u64,
    recovery_ms: u64,
    baseline_pause_ms: u64,
}

/// How long writes keep being watched after the survivors re-form, for a later, longer pause.
const WATCH_AFTER: Duration = Duration::from_secs(3);

/// Runs the benchmark (see the module's doc).
pub fn run(args: &FailoverBenchArgs) -> Result<()> {
    let bench = super::DatabaseBench::begin("galera", GaleraLab::missing(), args.runs, args.json)?;
    let say = |m: &str| bench.say(m);
    let mut lab = GaleraLab::create(&bench.exe, bench.dir.clone())?;
    if args.keep {
        lab.ns.keep_files();
    }
    say("starting the server h1 and the Galera hosts h2-h4 (network namespaces)");
    lab.start()?;
    lab.wait_cluster(&DB, Duration::from_secs(180))?;
    lab.prepare_schema(WRITTEN)?;
    let settings: Value =
        serde_json::from_str(&lab.ns.cli(&["settings", "show", "--json"]).1).unwrap_or(Value::Null);
    say(&format!(
        "a Galera cluster of 3 formed; the client writes to {}",
        GaleraLab::name(WRITTEN)
    ));
    lab.start_client()?;
    wait_until(Duration::from_secs(30), || lab.acked().len() >= 20)
        .with_context(|| format!("the client never wrote:\n{}", lab.logs()))?;

    let mut runs: Vec<Run> = Vec::new();
    let mut lost_during: Vec<i64> = Vec::new();
    for n in 0..args.runs {
        if bench.interrupted() {
            bail!("interrupted");
        }
        let victim = DB[n % 2];
        let survivors: Vec<usize> = DB.iter().copied().filter(|&i| i != victim).collect();
        // Writes have flowed for 5 s since the cluster (re-)formed: the baseline.
        std::thread::sleep(Duration::from_secs(5));
        let crashed_ms = lab.ns.crash(victim);
        let before: Vec<_> = lab
            .acked()
            .into_iter()
            .filter(|a| a.acked_ms < crashed_ms)
            .collect();
        let baseline = write_pause(&before, crashed_ms.saturating_sub(5_000)).map_or(0, |p| p.ms);
        lab.wait_cluster(&survivors, Duration::from_secs(60))
            .with_context(|| format!("run {}: the survivors did not re-form", n + 1))?;
        let re_formed_ms = crate::ns_lab::unix_ms();
        wait_until(Duration::from_secs(60), || {
            lab.acked()
                .last()
                .is_some_and(|a| a.acked_ms >= re_formed_ms + WATCH_AFTER.as_millis() as u64)
                || bench.interrupted()
        })
        .with_context(|| {
            format!(
                "run {}: writes did not resume within 60 s of crashing {}:\n{}",
                n + 1,
                GaleraLab::name(victim),
                lab.logs()
            )
        })?;
        let pause = write_pause(&lab.acked(), crashed_ms).context("no write after the crash")?;
        let run = Run {
            crashed: victim,
            write_pause_ms: pause.ms,
            recovery_ms: pause.ended_ms - crashed_ms,
            baseline_pause_ms: baseline,
        };
        say(&format!(
            "run {}: {} crashed; writes paused {} ms at most (until {} ms after the crash; before it, {} ms at most)",
            n + 1,
            GaleraLab::name(victim),
            run.write_pause_ms,
            run.recovery_ms,
            run.baseline_pause_ms
        ));
        runs.push(run);
        for &i in &survivors {
            lost_during.extend(lab.lost_on(i)?);
        }
        say(&format!(
            "bringing {} back; waiting for the cluster of 3",
            GaleraLab::name(victim)
        ));
        lab.ns.revive(victim)?;
        lab.wait_cluster(&DB, Duration::from_secs(180))?;
    }
    lab.stop_client();
    let acked = lab.acked();
    let mut lost: Vec<i64> = lost_during;
    for &i in &DB {
        lost.extend(lab.lost_on(i)?);
    }
    lost.sort_unstable();
    lost.dedup();

    let pct = |f: fn(&Run) -> u64| super::percentiles_ms(runs.iter().map(f));
    let report = json!({
        "workload": "galera",
        "runs": args.runs,
        "profile": "local",
        "lease": settings["lease"],
        "write_pause_ms": pct(|r| r.write_pause_ms),
        "recovery_ms": pct(|r| r.recovery_ms),
        "baseline_pause_ms": pct(|r| r.baseline_pause_ms),
        "per_run": runs.iter().map(|r| json!({
            "crashed": GaleraLab::name(r.crashed),
            "write_pause_ms": r.write_pause_ms,
            "recovery_ms": r.recovery_ms,
            "baseline_pause_ms": r.baseline_pause_ms,
        })).collect::<Vec<_>>(),
    });
    super::finish_database_bench(
        args.json,
        report,
        "write_pause_ms",
        acked.len(),
        &lost,
        lab.ns,
    )
}
