//! `buoy`: the Buoy agent, its command-line client, the local sandbox and the simulator front end.

mod agent;
mod client;
mod cmd_bench;
mod cmd_bench_failover;
mod cmd_bench_planner;
mod cmd_chaos;
mod cmd_host;
mod cmd_members;
mod demo_app;
mod local_cluster;
mod netns;
mod sandbox;
mod supervisor;
mod tls;
mod watchdog;

mod cli;

mod cmd_sim;
mod cmd_state;
mod huge_arena;

/// The system allocator, with a huge-page arena that only `buoy sim` switches on.
#[global_allocator]
static ALLOCATOR: huge_arena::Allocator = huge_arena::Allocator::new();

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
