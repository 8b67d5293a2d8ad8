//! `buoy bench planner`: the recovery planner on a synthetic cluster. Builds `--hosts` hosts in
//! segments of 100, places `--instances` instances (seeded sizes and priorities, some clones,
//! some anti-affinity groups) with the planner itself, fails `--fail` random hosts, and times
//! the plan that moves their instances.

use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use engine::planner::{
    HostView, InstanceView, PlanInput, RecoveryMethod, Resources, overcommitted, plan,
};
use serde_json::json;

/// Flags of `buoy bench planner`.
#[derive(Args, Debug)]
pub struct PlannerBenchArgs {
    #[arg(long, default_value_t = 1000)]
    pub hosts: usize,
    #[arg(long, default_value_t = 20000)]
    pub instances: usize,
    /// Hosts that fail at once.
    #[arg(long, default_value_t = 50)]
    pub fail: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// SplitMix64: a small seeded generator, so a run can be repeated exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

pub fn planner(args: PlannerBenchArgs) -> Result<()> {
    if args.hosts == 0 || args.fail > args.hosts {
        bail!("--hosts must be at least 1 and --fail at most --hosts");
    }
    let mut rng = Rng(args.seed);
    let segments = args.hosts.div_ceil(100);
    let mut input = PlanInput {
        max_starts_per_host: 0,
        ..Default::default()
    };
    for h in 0..args.hosts {
        input.hosts.push(HostView {
            id: format!("host-{h:05}"),
            segment: format!("seg-{}", h % segments),
            capacity: Resources {
                cpu_millis: 64_000,
                memory_mb: 256 * 1024,
            },
            // One host in twenty is kept as a reserved spare.
            reserved: h % 20 == 19,
            starting: 0,
            labels: Default::default(),
            on_maintenance: false,
            failed: false,
            down: false,
        });
    }
    for s in 0..segments {
        input
            .recovery
            .insert(format!("seg-{s}"), RecoveryMethod::AutoPriority);
    }
    for i in 0..args.instances {
        let clone = rng.below(10) == 0;
        input.instances.push(InstanceView {
            id: format!("inst-{i:06}"),
            segment: format!("seg-{}", i % segments),
            needs: Resources {
                cpu_millis: 250 * (1 + rng.below(8)),
                memory_mb: 512 * (1 + rng.below(16)),
            },
            priority: rng.below(1001) as u16,
            copies: if clone { 2 + rng.below(2) as u32 } else { 1 },
            anti_affinity: (rng.below(20) == 0).then(|| format!("group-{}", rng.below(50))),
            wanted: true,
            colocate: None,
            host_labels: Default::default(),
            spread: None,
        });
    }
    // Initial placement: the planner places everything on the healthy cluster.
    let initial = plan(&input);
    for m in initial.moves {
        input.placements.insert(m.slot, m.to);
    }
    // Fail random hosts.
    let mut failed = 0;
    while failed < args.fail {
        let h = rng.below(args.hosts as u64) as usize;
        if !input.hosts[h].failed {
            input.hosts[h].failed = true;
            failed += 1;
        }
    }
    let to_move = input
        .placements
        .values()
        .filter(|h| input.hosts.iter().any(|x| &x.id == *h && x.failed))
        .count();
    let t = Instant::now();
    let p = plan(&input);
    let plan_ms = t.elapsed().as_secs_f64() * 1000.0;
    let report = json!({
        "hosts": args.hosts,
        "instances": args.instances,
        "copies_placed_before": input.placements.len(),
        "failed_hosts": args.fail,
        "copies_on_failed_hosts": to_move,
        "plan_ms": (plan_ms * 1000.0).round() / 1000.0,
        "moved": p.moves.len(),
        "unplaced": p.unplaced.len(),
        "reserved_taken": p.reserved_taken.len(),
        "overcommitted_hosts": overcommitted(&input, &p).len(),
        "seed": args.seed,
    });
    if args.json {
        println!("{report}");
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}
