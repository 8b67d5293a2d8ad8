//! `buoy` called as one of Pacemaker's tools (`crm_attribute`, `crm_master`,
//! `attrd_updater`, `crm_node`, `crm_mon`, `pacemakerd`, `cibadmin`, `crm_resource`) through a link in the agent's shim directory: it sends its
//! command line to the local agent (`BUOY_TOOLS_SOCKET`), prints the answer and exits with
//! its code, as the real tool would.

use std::path::Path;
use std::process::ExitCode;

use node::pacemaker_tools::service::{SOCKET_ENV, ShimCall, TOOLS, call_agent};

/// Runs the shim when the binary's name is a tool's; `None` otherwise.
pub fn run_if_called_as_tool() -> Option<ExitCode> {
    let mut args = std::env::args();
    let argv0 = args.next()?;
    let name = Path::new(&argv0).file_name()?.to_str()?;
    let tool = TOOLS.into_iter().find(|t| *t == name)?;
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let Some(socket) = env(SOCKET_ENV) else {
        eprintln!(
            "{tool} (Buoy's shim): {SOCKET_ENV} is not set: this shim answers OCF agents that a Buoy agent runs"
        );
        return Some(ExitCode::from(1));
    };
    let call = ShimCall {
        tool: tool.to_string(),
        args: args.collect(),
        resource: env("OCF_RESOURCE_INSTANCE"),
        node: env("OCF_RESKEY_CRM_meta_on_node"),
    };
    let answer = call_agent(Path::new(&socket), &call);
    print!("{}", answer.stdout);
    eprint!("{}", answer.stderr);
    Some(ExitCode::from(u8::try_from(answer.exit_code).unwrap_or(1)))
}
