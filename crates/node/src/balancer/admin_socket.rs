//! HAProxy's admin socket, the IO side of [`super::haproxy`]: one command per connection
//! (HAProxy's non-interactive mode answers, then closes), and [`sync`], which reads a
//! backend's servers, sends the commands that bring it to what is wanted, and reads it back
//! to check. Blocking: run it off the async runtime.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::haproxy::{ServerState, StateError, Wanted, parse_state, reconcile};

/// Why a backend could not be brought in sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("HAProxy's admin socket {path}: {source}")]
    Socket {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    State(#[from] StateError),
    #[error("HAProxy refused `{command}`: {answer}")]
    Refused { command: String, answer: String },
}

/// The most an answer may hold (a backend of a few thousand servers).
const MAX_ANSWER: u64 = 4 << 20;

/// Sends `command` to the admin socket at `path`; its answer.
pub fn ask(path: &Path, command: &str, timeout: Duration) -> Result<String, SyncError> {
    let io = |source| SyncError::Socket {
        path: path.display().to_string(),
        source,
    };
    let mut s = UnixStream::connect(path).map_err(io)?;
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    s.set_write_timeout(Some(timeout)).map_err(io)?;
    s.write_all(format!("{command}\n").as_bytes()).map_err(io)?;
    let mut answer = String::new();
    s.take(MAX_ANSWER).read_to_string(&mut answer).map_err(io)?;
    Ok(answer)
}

/// Answers that mean a command failed (HAProxy answers success with a message or nothing).
fn refused(answer: &str) -> bool {
    let a = answer.trim();
    [
        "Unknown command",
        "No such",
        "Can't find",
        "Only servers",
        "Require",
        "Permission denied",
    ]
    .iter()
    .any(|p| a.starts_with(p))
        || a.contains("error")
        || a.contains("Error")
}

/// Brings `backend`'s servers to `wanted` (see [`reconcile`]); the commands sent, and the
/// servers read back afterwards.
pub fn sync(
    path: &Path,
    backend: &str,
    wanted: &[Wanted],
    keep: &[String],
    drained: impl Fn(&str) -> bool,
    timeout: Duration,
) -> Result<(Vec<String>, Vec<ServerState>), SyncError> {
    let current = servers(path, backend, timeout)?;
    let commands = reconcile(backend, wanted, &current, keep, drained);
    for command in &commands {
        let answer = ask(path, command, timeout)?;
        if refused(&answer) {
            return Err(SyncError::Refused {
                command: command.clone(),
                answer: answer.trim().to_string(),
            });
        }
    }
    Ok((commands, servers(path, backend, timeout)?))
}

/// `backend`'s servers, as HAProxy lists them now.
pub fn servers(
    path: &Path,
    backend: &str,
    timeout: Duration,
) -> Result<Vec<ServerState>, SyncError> {
    let answer = ask(path, &format!("show servers state {backend}"), timeout)?;
    Ok(parse_state(backend, &answer)?)
}
