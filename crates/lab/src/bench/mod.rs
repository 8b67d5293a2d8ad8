//! Benchmarks that start what they measure and print figures (JSON with `--json`):
//! the replicated [`control_plane`], the recovery [`planner`], and [`failover`] of real hosts
//! ([`postgres_failover`] and [`galera_failover`] with real databases), and a whole
//! [`zone_failure`] behind HAProxy.

pub mod control_plane;
pub mod failover;
pub mod galera_failover;
pub mod planner;
pub mod postgres_failover;
pub mod zone_failure;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use sim::stats::Percentiles;

use crate::ns_lab::NsLab;

/// Polls `ok` every 100 ms until it holds, or `timeout` passes (an error).
pub(crate) fn wait_until(timeout: Duration, mut ok: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !ok() {
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// `{"p50", "p99", "max"}` of `ms`, in milliseconds.
pub(crate) fn percentiles_ms(ms: impl Iterator<Item = u64>) -> Value {
    let p = Percentiles::of(&ms.map(Duration::from_millis).collect::<Vec<_>>());
    json!({"p50": p.p50 as u64, "p99": p.p99 as u64, "max": p.max as u64})
}

/// Ends a database benchmark: adds the acknowledged and the lost commits to `report`, prints
/// it (JSON, or a line with `figure`'s percentiles), says where the lab's files are kept, and
/// exits 1 once the lab is dropped (its processes ended) when an acknowledged commit was lost.
pub(crate) fn finish_database_bench(
    json_out: bool,
    mut report: Value,
    figure: &str,
    acked: usize,
    lost: &[i64],
    lab: NsLab,
) -> Result<()> {
    report["acked_transactions"] = json!(acked);
    report["lost_acked_transactions"] = json!(lost.len());
    report["lost_ids"] = json!(lost.iter().take(20).collect::<Vec<_>>());
    if json_out {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let f = &report[figure];
        println!(
            "{figure} p50 {} p99 {} max {}; {acked} acknowledged transactions, {} lost",
            f["p50"],
            f["p99"],
            f["max"],
            lost.len()
        );
    }
    if lab.kept() {
        eprintln!("files kept in {}", lab.dir.display());
    }
    if !lost.is_empty() {
        eprintln!("LOST: acknowledged commits missing after a crash: {lost:?}");
        drop(lab);
        std::process::exit(1);
    }
    Ok(())
}

/// What a database benchmark starts from: its arguments checked, its directory, the binary
/// its agents run, and Ctrl-C.
pub(crate) struct DatabaseBench {
    pub dir: PathBuf,
    pub exe: PathBuf,
    stop: Arc<AtomicBool>,
    json: bool,
}

impl DatabaseBench {
    /// Checks that the lab can run (`missing`: what this machine lacks) and that `runs` is
    /// at least 1.
    pub fn begin(
        workload: &str,
        missing: Option<String>,
        runs: usize,
        json: bool,
    ) -> Result<DatabaseBench> {
        if let Some(why) = missing {
            bail!("--workload {workload} cannot run here: {why}");
        }
        if runs == 0 {
            bail!("--runs must be at least 1");
        }
        Ok(DatabaseBench {
            dir: std::env::temp_dir().join(format!("buoy-bench-{workload}-{}", std::process::id())),
            exe: std::env::current_exe().context("cannot find the buoy binary")?,
            stop: crate::interrupt::flag(),
            json,
        })
    }

    /// Progress, on stderr unless the output is JSON.
    pub fn say(&self, m: &str) {
        if !self.json {
            eprintln!("{m}");
        }
    }

    /// Whether Ctrl-C (or SIGTERM) came.
    pub fn interrupted(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}
