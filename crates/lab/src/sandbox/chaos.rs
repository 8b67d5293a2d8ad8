//! The sandbox's fault injection: a small HTTP endpoint (`POST /chaos/ACTION/HOST` on
//! 127.0.NET.100:7000) that the dashboard's buttons and `buoy sandbox chaos` call. Requests are
//! queued for the sandbox's main loop, which owns the processes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::local_cluster::LocalCluster;

/// The faults the sandbox knows.
pub const ACTIONS: &[&str] = &["kill", "hang", "unhang", "partition", "heal", "restart"];

/// One request, with where to send the outcome.
struct Request {
    action: String,
    host: Option<String>,
    reply: Sender<Result<String, String>>,
}

/// The control endpoint and its queue.
pub struct Control {
    queue: Mutex<Receiver<Request>>,
}

impl Control {
    pub fn start(listen: SocketAddr, stop: Arc<AtomicBool>) -> Result<Control> {
        let listener = TcpListener::bind(listen)
            .with_context(|| format!("the sandbox's control endpoint cannot listen on {listen}"))?;
        listener.set_nonblocking(true)?;
        let (tx, rx) = channel::<Request>();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let tx = tx.clone();
                        std::thread::spawn(move || serve(s, &tx));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok(Control {
            queue: Mutex::new(rx),
        })
    }

    /// Applies the queued requests (called by the sandbox's main loop).
    pub fn apply_pending(&self, c: &mut LocalCluster, say: &dyn Fn(String)) {
        let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        while let Ok(r) = queue.try_recv() {
            let outcome = apply(c, &r.action, r.host.as_deref());
            match &outcome {
                Ok(m) => say(format!("chaos: {m}")),
                Err(e) => say(format!("chaos refused: {e}")),
            }
            let _ = r.reply.send(outcome);
        }
    }
}

fn apply(c: &mut LocalCluster, action: &str, host: Option<&str>) -> Result<String, String> {
    if action == "heal" {
        c.heal();
        return Ok("healed every partition".into());
    }
    let name = host.ok_or_else(|| format!("`{action}` needs a host"))?;
    let i = c
        .hosts
        .iter()
        .position(|h| h.name == name)
        .ok_or_else(|| format!("no host `{name}` in this sandbox"))?;
    match action {
        "kill" => {
            let n = c.crash(i);
            Ok(format!(
                "{name} crashed (kill -9 of its agent and {n} instance copies)"
            ))
        }
        "hang" => {
            c.signal_agent(i, libc::SIGSTOP);
            Ok(format!("{name}'s agent hangs (SIGSTOP)"))
        }
        "unhang" => {
            c.signal_agent(i, libc::SIGCONT);
            Ok(format!("{name}'s agent resumes (SIGCONT)"))
        }
        "partition" => c
            .partition(i)
            .map(|_| format!("{name} cut from every other host"))
            .map_err(|e| e.to_string()),
        "restart" => c
            .restart(i)
            .map(|_| format!("{name}'s agent restarted"))
            .map_err(|e| e.to_string()),
        other => Err(format!(
            "unknown action `{other}`: expected one of {}",
            ACTIONS.join(", ")
        )),
    }
}

/// Answers one HTTP request: `POST /chaos/ACTION[/HOST]`.
fn serve(mut s: TcpStream, queue: &Sender<Request>) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 2048];
    let n = s.read(&mut buf).unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]);
    let line = text.lines().next().unwrap_or("");
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, body) = if method == "OPTIONS" {
        ("204 No Content", String::new())
    } else if method != "POST" || !path.starts_with("/chaos/") {
        (
            "404 Not Found",
            "expected POST /chaos/ACTION/HOST\n".to_string(),
        )
    } else {
        let mut seg = path["/chaos/".len()..].split('/');
        let action = seg.next().unwrap_or("").to_string();
        let host = seg.next().filter(|h| !h.is_empty()).map(String::from);
        let (tx, rx) = channel();
        let _ = queue.send(Request {
            action,
            host,
            reply: tx,
        });
        match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(Ok(m)) => ("200 OK", format!("{m}\n")),
            Ok(Err(e)) => ("400 Bad Request", format!("{e}\n")),
            Err(_) => ("503 Service Unavailable", "the sandbox is busy\n".into()),
        }
    };
    let _ = write!(
        s,
        "HTTP/1.0 {status}\r\nContent-Type: text/plain\r\nAccess-Control-Allow-Origin: *\r\nAccess-Control-Allow-Methods: POST\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
}

/// `buoy sandbox chaos ACTION HOST`: asks the running sandbox.
pub fn send(net: u8, action: &str, host: Option<&str>) -> Result<()> {
    if !ACTIONS.contains(&action) {
        bail!(
            "unknown action `{action}`: expected one of {}",
            ACTIONS.join(", ")
        );
    }
    let addr = SocketAddr::from(([127, 0, net, 100], super::CONTROL_PORT));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).with_context(|| {
        format!("no sandbox answers on {addr}: start one with `buoy sandbox` (and the same --net)")
    })?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let path = match host {
        Some(h) => format!("/chaos/{action}/{h}"),
        None => format!("/chaos/{action}"),
    };
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if head.starts_with("HTTP/1.0 200") {
        print!("{body}");
        Ok(())
    } else {
        bail!("{}", body.trim())
    }
}
