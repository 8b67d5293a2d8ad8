//! `buoy sim membership`: one simulated scenario, printed as a table or JSON.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;
use sim::stats::Percentiles;
use sim::{MembershipReport, MembershipScenario};

/// Flags of `buoy sim membership`.
#[derive(Args, Debug)]
pub struct MembershipArgs {
    /// Members in the simulated cluster.
    #[arg(long, default_value_t = 100)]
    pub nodes: usize,
    /// Probability that a datagram is lost (0.01 = 1%).
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// Members crashed, staggered over the run.
    #[arg(long, default_value_t = 0)]
    pub crash: usize,
    /// Fraction of members that stall (stop processing) at random times.
    #[arg(long, default_value_t = 0.0)]
    pub stall: f64,
    /// Length of each stall, as MIN..MAX in milliseconds.
    #[arg(long, default_value = "200..2000", value_parser = parse_range_ms)]
    pub stall_ms: (Duration, Duration),
    /// Simulated seconds measured (after a 5 s warm-up).
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Seed: the same seed replays the same run exactly.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Timing profile: lan, wan or local.
    #[arg(long, default_value = "lan")]
    pub profile: String,
    /// Protocol implementation: buoy, or foca (SWIM without Lifeguard; needs a build with
    /// `--features foca`).
    #[arg(long = "impl", default_value = "buoy")]
    pub implementation: String,
    /// With --impl foca: `native` (foca's own LAN settings) or `buoy` (Buoy's timings).
    #[arg(long, default_value = "native")]
    pub foca_timing: String,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Model agents without a keyring (no encryption overhead on the wire).
    #[arg(long)]
    pub plaintext: bool,
    /// Print every membership event about this member to stderr (study a replayed seed).
    #[arg(long)]
    pub trace: Option<String>,
    /// Override one setting of the profile, as the agent's `[timing]` section does:
    /// `--timing probe_interval=200ms --timing gossip_nodes=3` (repeatable). Try a tuning here
    /// before an agent runs it.
    #[arg(long = "timing", value_name = "KEY=VALUE")]
    pub timing: Vec<String>,
    /// Pad member names to this many bytes (`n000123`), as real host names are long; names
    /// travel in every ping, suspicion and refutation. Default: as short as can be (`n123`).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=64))]
    pub name_len: u16,
}

fn parse_range_ms(s: &str) -> Result<(Duration, Duration), String> {
    let (a, b) = s.split_once("..").ok_or_else(|| {
        format!("`{s}` is not a range: expected MIN..MAX in milliseconds, e.g. 200..2000")
    })?;
    let a: u64 = a
        .trim()
        .parse()
        .map_err(|_| format!("`{a}` is not a number of milliseconds"))?;
    let b: u64 = b
        .trim()
        .parse()
        .map_err(|_| format!("`{b}` is not a number of milliseconds"))?;
    if a > b {
        return Err(format!("range {a}..{b} is empty: MIN must not exceed MAX"));
    }
    Ok((Duration::from_millis(a), Duration::from_millis(b)))
}

pub fn membership(args: MembershipArgs) -> Result<()> {
    // Large simulations live in a few GB of membership tables touched at random.
    crate::use_huge_pages();
    let implementation = implementation(&args)?;
    let mut config = swim::Config::profile(&args.profile).context("--profile")?;
    node::gossip::timing::from_pairs(&args.timing)?.apply(&mut config)?;
    config.validate().context("--timing")?;
    let scenario = MembershipScenario {
        nodes: args.nodes,
        loss: args.loss,
        crashes: args.crash,
        stall_fraction: args.stall,
        stall_min: args.stall_ms.0,
        stall_max: args.stall_ms.1,
        duration: Duration::from_secs(args.duration),
        seed: args.seed,
        config,
        trace: args.trace.clone(),
        implementation,
        encrypted: !args.plaintext,
        ..MembershipScenario::new(args.nodes, Duration::from_secs(args.duration), args.seed)
    };
    sim::scenario::set_name_len(usize::from(args.name_len));
    let wall = std::time::Instant::now();
    let report = scenario.run().map_err(anyhow::Error::msg)?;
    let wall_ms = wall.elapsed().as_millis() as u64;
    if args.json {
        println!("{}", report_json(&report, &args, wall_ms));
    } else {
        print_table(&report, &args, wall_ms);
    }
    Ok(())
}

fn implementation(args: &MembershipArgs) -> Result<sim::Implementation> {
    let buoy_timing = match args.foca_timing.as_str() {
        "native" => false,
        "buoy" => true,
        other => bail!("--foca-timing {other}: expected native or buoy"),
    };
    match args.implementation.as_str() {
        "buoy" => Ok(sim::Implementation::Buoy),
        #[cfg(feature = "foca")]
        "foca" => Ok(sim::Implementation::Foca { buoy_timing }),
        #[cfg(not(feature = "foca"))]
        "foca" => {
            let _ = buoy_timing;
            bail!(
                "--impl foca needs a build with the foca crate: cargo run --release --features foca -- sim membership ..."
            )
        }
        other => bail!("--impl {other}: expected buoy or foca"),
    }
}

fn pct(p: &Percentiles) -> serde_json::Value {
    json!({"p50": p.p50.round(), "p99": p.p99.round(), "max": p.max.round()})
}

fn report_json(r: &MembershipReport, args: &MembershipArgs, wall_ms: u64) -> serde_json::Value {
    json!({
        "impl": args.implementation,
        "foca_timing": (args.implementation == "foca").then_some(&args.foca_timing),
        "profile": args.profile,
        "timing": args.timing,
        "name_len": args.name_len,
        "nodes": r.nodes,
        "seed": r.seed,
        "duration_s": r.duration_s,
        "loss": args.loss,
        "crashes": r.crashes,
        "stall": args.stall,
        "detect_first_ms": pct(&r.detect_first_ms),
        "detect_all_ms": pct(&r.detect_all_ms),
        "undetected": r.undetected,
        "false_positives": r.false_positives,
        "false_positive_details": r.false_positive_details.iter().map(|(t, by, who)| json!({"at_s": t, "declared_by": by, "member": who})).collect::<Vec<_>>(),
        "false_suspicions": r.false_suspicions,
        "refutations": r.refutations,
        "dissemination_ms": r.dissemination_ms.p99.round(),
        "dissemination_p50_ms": r.dissemination_ms.p50.round(),
        "dissemination_updates": r.dissemination_ms.count,
        "dissemination_incomplete": r.dissemination_incomplete,
        "msgs_per_member_per_s": (r.msgs_per_member_per_s * 100.0).round() / 100.0,
        "bytes_per_member_per_s": r.bytes_per_member_per_s.round(),
        "wire_bytes_per_member_per_s": r.wire_bytes_per_member_per_s.round(),
        "encrypted": !args.plaintext,
        "sim_events": r.sim_events,
        "wall_ms": wall_ms,
    })
}

fn print_table(r: &MembershipReport, args: &MembershipArgs, wall_ms: u64) {
    let row = |k: &str, v: String| println!("  {k:<26} {v}");
    let p = |p: &Percentiles| {
        format!(
            "p50 {:>7.0} ms   p99 {:>7.0} ms   max {:>7.0} ms",
            p.p50, p.p99, p.max
        )
    };
    println!(
        "membership simulation: {} members, profile {}, loss {}, {} crashes, {:.0}% stalling, {} s, seed {}",
        r.nodes,
        args.profile,
        args.loss,
        r.crashes,
        args.stall * 100.0,
        r.duration_s,
        r.seed
    );
    if !args.timing.is_empty() {
        row("timing overrides", args.timing.join(" "));
    }
    row("detect (first member)", p(&r.detect_first_ms));
    row("detect (all members)", p(&r.detect_all_ms));
    row("undetected crashes", r.undetected.to_string());
    row("false positives", r.false_positives.to_string());
    for (t, by, who) in &r.false_positive_details {
        row(
            "",
            format!(
                "{who} declared dead by {by} at {t:.3} s (replay with --seed {} --trace {who})",
                r.seed
            ),
        );
    }
    row(
        "suspicions refuted",
        format!(
            "{} suspicions, {} refutations",
            r.false_suspicions, r.refutations
        ),
    );
    row(
        "dissemination (99.99%)",
        format!(
            "{} ({} updates, {} incomplete)",
            p(&r.dissemination_ms),
            r.dissemination_ms.count,
            r.dissemination_incomplete
        ),
    );
    row(
        "messages / member / s",
        format!("{:.2}", r.msgs_per_member_per_s),
    );
    row(
        "bytes / member / s",
        format!(
            "{:.0} plaintext, {:.0} on the wire{}",
            r.bytes_per_member_per_s,
            r.wire_bytes_per_member_per_s,
            if args.plaintext { "" } else { " (sealed)" }
        ),
    );
    row(
        "wall time",
        format!("{wall_ms} ms ({} simulated events)", r.sim_events),
    );
    println!("replay this run exactly with --seed {}", r.seed);
}

/// Flags of `buoy sim control-plane`.
#[derive(Args, Debug)]
pub struct ControlPlaneSimArgs {
    /// Raft servers (3 or 5).
    #[arg(long, default_value_t = 3)]
    pub servers: usize,
    /// Concurrent writers.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Virtual seconds of crashes, restarts and partitions before the final checks.
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Seed of the fault schedule, latency and loss.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Datagram loss on every link (0 to 0.5).
    #[arg(long, default_value_t = 0.01)]
    pub loss: f64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `buoy sim control-plane`: real replicas (openraft + redb) under a paused clock with a
/// seeded fault schedule; prints what broke, if anything, and fails when a rule broke.
pub fn control_plane(args: ControlPlaneSimArgs) -> Result<()> {
    if !matches!(args.servers, 3 | 5) {
        anyhow::bail!("--servers {}: expected 3 or 5", args.servers);
    }
    if !(0.0..=0.5).contains(&args.loss) {
        anyhow::bail!("--loss {}: expected 0 to 0.5", args.loss);
    }
    let scenario = sim::control_plane::ControlPlaneScenario {
        servers: args.servers,
        clients: args.clients.max(1),
        duration: Duration::from_secs(args.duration),
        seed: args.seed,
        loss: args.loss,
        dir: std::env::temp_dir().join(format!("buoy-sim-cp-{}-{}", std::process::id(), args.seed)),
    };
    let report = scenario.run().map_err(anyhow::Error::msg)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    if !report.ok() {
        anyhow::bail!(
            "seed {} broke a rule; replay with: buoy sim control-plane --servers {} --seed {} --duration {}",
            args.seed,
            args.servers,
            args.seed,
            args.duration
        );
    }
    Ok(())
}
