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
    let header = |name: &str| {
        text.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    // Only pages of this sandbox's own agents (its loopback net) may ask: a page of any
    // other origin gets no CORS answer, and a plain cross-site form cannot set the header.
    let ours = s.local_addr().ok().map(|a| match a.ip() {
        std::net::IpAddr::V4(ip) => format!(
            "http://{}.{}.{}.",
            ip.octets()[0],
            ip.octets()[1],
            ip.octets()[2]
        ),
        std::net::IpAddr::V6(ip) => format!("http://[{ip}"),
    });
    let origin = header("origin");
    let allowed = match (&origin, &ours) {
        (None, _) => true,
        (Some(o), Some(prefix)) => o.starts_with(prefix.as_str()),
        _ => false,
    };
    let cors = match (&origin, allowed) {
        (Some(o), true) => format!(
            "Access-Control-Allow-Origin: {o}\r\nAccess-Control-Allow-Methods: POST\r\nAccess-Control-Allow-Headers: X-Buoy-Chaos\r\nVary: Origin\r\n"
        ),
        _ => String::new(),
    };
    let (status, body) = if method == "OPTIONS" {
        ("204 No Content", String::new())
    } else if !allowed || header("x-buoy-chaos").as_deref() != Some("1") {
        (
            "403 Forbidden",
            "chaos needs the X-Buoy-Chaos: 1 header, from the sandbox's own pages or CLI\n"
                .to_string(),
        )
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
        "HTTP/1.0 {status}\r\nContent-Type: text/plain\r\n{cors}Content-Length: {}\r\n\r\n{body}",
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
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nX-Buoy-Chaos: 1\r\nContent-Length: 0\r\n\r\n"
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Sends `request` to `serve` and answers its queue with "done"; the answer's head and body.
    fn ask(request: &str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client.write_all(request.as_bytes()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let (tx, rx) = channel::<Request>();
        let answer = std::thread::spawn(move || {
            if let Ok(r) = rx.recv_timeout(Duration::from_secs(5)) {
                let _ = r.reply.send(Ok("done".into()));
            }
        });
        serve(server, &tx);
        drop(tx);
        answer.join().unwrap();
        let mut text = String::new();
        client.read_to_string(&mut text).unwrap();
        text
    }

    #[test]
    fn chaos_needs_its_header_and_answers_only_its_own_pages() {
        let own = "Origin: http://127.0.0.1:7070\r\n";
        let other = "Origin: http://evil.example\r\n";
        let post = |headers: &str| {
            ask(&format!(
                "POST /chaos/kill/h2 HTTP/1.0\r\n{headers}Content-Length: 0\r\n\r\n"
            ))
        };
        // A plain cross-site form: no header.
        assert!(post(other).starts_with("HTTP/1.0 403"), "{}", post(other));
        assert!(post("").starts_with("HTTP/1.0 403"));
        // The header from another site's page (had the browser let it through).
        assert!(post(&format!("{other}X-Buoy-Chaos: 1\r\n")).starts_with("HTTP/1.0 403"));
        // The CLI (no Origin) and the sandbox's own dashboard.
        assert!(post("X-Buoy-Chaos: 1\r\n").starts_with("HTTP/1.0 200"));
        let ok = post(&format!("{own}X-Buoy-Chaos: 1\r\n"));
        assert!(
            ok.contains("Access-Control-Allow-Origin: http://127.0.0.1:7070"),
            "{ok}"
        );
        // The browser's preflight: allowed for its own pages only.
        let pre = |o: &str| ask(&format!("OPTIONS /chaos/kill/h2 HTTP/1.0\r\n{o}\r\n"));
        assert!(pre(own).contains("Access-Control-Allow-Headers: X-Buoy-Chaos"));
        assert!(
            !pre(other).contains("Access-Control-Allow"),
            "{}",
            pre(other)
        );
    }
}
