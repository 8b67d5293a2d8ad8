//! `buoy`: the one binary. `buoy agent` wires a host together (`node`, and `server` on
//! control-plane servers); the other subcommands are the operator's CLI and the lab's tools
//! (sandbox, chaos, benchmarks, simulations).

mod agent;
mod cli;
mod shim;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Called as `crm_attribute`, `crm_node`...: a Pacemaker tool shim for an OCF agent.
    if let Some(code) = shim::run_if_called_as_tool() {
        return code;
    }
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
