//! `buoy`: the one binary. `buoy agent` wires a host together (`node`, and `server` on
//! control-plane servers); the other subcommands are the operator's CLI and the lab's tools
//! (sandbox, chaos, benchmarks, simulations).

mod agent;
mod cli;

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
