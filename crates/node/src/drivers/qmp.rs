//! A minimal QMP client (QEMU Machine Protocol): JSON objects, one per line, over the VM's
//! unix socket. Enough to ask a VM's status and to power it down or quit it.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

/// An open QMP session, past the capabilities handshake.
pub struct Qmp {
    lines: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    write: OwnedWriteHalf,
}

/// How long one QMP exchange may take.
const TIMEOUT: Duration = Duration::from_secs(5);

impl Qmp {
    /// Connects to `socket` and negotiates capabilities.
    pub async fn connect(socket: &Path) -> Result<Qmp, String> {
        let stream = UnixStream::connect(socket)
            .await
            .map_err(|e| format!("QMP socket {}: {e}", socket.display()))?;
        let (read, write) = stream.into_split();
        let mut q = Qmp {
            lines: BufReader::new(read).lines(),
            write,
        };
        let greeting = q.next_object().await?;
        if greeting.get("QMP").is_none() {
            return Err(format!("not a QMP greeting: {greeting}"));
        }
        q.execute("qmp_capabilities").await?;
        Ok(q)
    }

    async fn next_object(&mut self) -> Result<Value, String> {
        loop {
            let line = tokio::time::timeout(TIMEOUT, self.lines.next_line())
                .await
                .map_err(|_| "QMP: no answer".to_string())?
                .map_err(|e| format!("QMP: {e}"))?
                .ok_or("QMP: the VM closed the socket")?;
            let v: Value = serde_json::from_str(&line).map_err(|e| format!("QMP: {e}: {line}"))?;
            // Events (SHUTDOWN, POWERDOWN...) come unasked; answers are what we wait for.
            if v.get("event").is_none() {
                return Ok(v);
            }
        }
    }

    /// Runs `command` and returns its `return` value.
    pub async fn execute(&mut self, command: &str) -> Result<Value, String> {
        let mut line = json!({ "execute": command }).to_string();
        line.push('\n');
        self.write
            .write_all(line.as_bytes())
            .await
            .map_err(|e| format!("QMP: {e}"))?;
        let answer = self.next_object().await?;
        match (answer.get("return"), answer.get("error")) {
            (Some(r), _) => Ok(r.clone()),
            (None, Some(e)) => Err(format!("QMP {command}: {e}")),
            _ => Err(format!("QMP {command}: unexpected answer {answer}")),
        }
    }

    /// The VM's run state (`running`, `paused`, `shutdown`, `guest-panicked`...).
    pub async fn status(&mut self) -> Result<String, String> {
        let r = self.execute("query-status").await?;
        r["status"]
            .as_str()
            .map(String::from)
            .ok_or_else(|| format!("QMP query-status: {r}"))
    }
}
