//! Health checks beside the driver's own status: TCP connect, HTTP GET with an expected status
//! range, or a command that must exit 0; each on its interval, with a timeout, failing the
//! instance after `failure_threshold` failures in a row.
//!
//! A copy with health checks counts as running only once every check has passed
//! ([`HealthWatch::passed`]): until then it is starting, so a load balancer's backend, an
//! instance started after it, and a move that waits for it, all wait for it to be healthy.
//! While starting, the checks probe every [`STARTUP_PROBE`] (at most their interval), and
//! failures count only once one interval has gone by (start-up time).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use model::health::{HealthCheck, Probe};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How often a check probes until it has passed once.
pub const STARTUP_PROBE: Duration = Duration::from_millis(200);

/// A probe `host` that stands for the address of the host running the instance.
pub const HOST_IP: &str = "host-ip";

/// Whether `status` is within `range` (`200-399` or `204`).
pub fn status_matches(range: &str, status: u16) -> bool {
    let parse = |s: &str| s.trim().parse::<u16>().ok();
    match range.split_once('-') {
        Some((lo, hi)) => match (parse(lo), parse(hi)) {
            (Some(lo), Some(hi)) => (lo..=hi).contains(&status),
            _ => false,
        },
        None => parse(range) == Some(status),
    }
}

/// What one probe is, for messages.
fn describe(p: &Probe) -> String {
    match p {
        Probe::Tcp { host, port } => format!("tcp {host}:{port}"),
        Probe::Http {
            host, port, path, ..
        } => format!("http://{host}:{port}{path}"),
        Probe::Exec { command } => format!("exec {}", command.join(" ")),
    }
}

/// Runs one probe once.
pub async fn probe(p: &Probe, timeout: Duration) -> Result<(), String> {
    let attempt = async {
        match p {
            Probe::Tcp { host, port } => TcpStream::connect((host.as_str(), *port))
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Probe::Http {
                host,
                port,
                path,
                expect_status,
            } => {
                let mut s = TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(|e| e.to_string())?;
                let req = format!(
                    "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: buoy-health\r\n\r\n"
                );
                s.write_all(req.as_bytes())
                    .await
                    .map_err(|e| e.to_string())?;
                let mut head = vec![0u8; 64];
                let n = s.read(&mut head).await.map_err(|e| e.to_string())?;
                let line = String::from_utf8_lossy(&head[..n]);
                let status: u16 = line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .ok_or_else(|| format!("not an HTTP answer: {line:?}"))?;
                if status_matches(expect_status, status) {
                    Ok(())
                } else {
                    Err(format!("status {status}, expected {expect_status}"))
                }
            }
            Probe::Exec { command } => {
                let Some((program, args)) = command.split_first() else {
                    return Err("empty command".into());
                };
                let status = tokio::process::Command::new(program)
                    .args(args)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .status()
                    .await
                    .map_err(|e| e.to_string())?;
                if status.success() {
                    Ok(())
                } else {
                    Err(format!("exited with {status}"))
                }
            }
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// The checks of one running instance, each in its own task; `failed()` says why the
/// instance counts as failed once a check failed `failure_threshold` times in a row.
pub struct HealthWatch {
    failed: Arc<Mutex<Option<String>>>,
    /// Checks that have passed at least once.
    passed: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl HealthWatch {
    /// Starts watching `checks` (see the module's doc for start-up); a probe's `host` of
    /// `host-ip` means this host's address (`host_ip`), for services that listen on it rather
    /// than on loopback.
    pub fn start(checks: &[HealthCheck], host_ip: &str) -> Self {
        let failed = Arc::new(Mutex::new(None));
        let passed = Arc::new(AtomicUsize::new(0));
        let tasks = checks
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut c = c.clone();
                match &mut c.probe {
                    Probe::Tcp { host, .. } | Probe::Http { host, .. } if host == HOST_IP => {
                        *host = host_ip.to_string();
                    }
                    _ => {}
                }
                tokio::spawn(watch(i, c, failed.clone(), passed.clone()))
            })
            .collect();
        HealthWatch {
            failed,
            passed,
            tasks,
        }
    }

    /// Whether every check has passed at least once (the copy is healthy: it runs).
    pub fn passed(&self) -> bool {
        self.passed.load(Ordering::Relaxed) >= self.tasks.len()
    }

    pub fn failed(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for HealthWatch {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn watch(
    i: usize,
    check: HealthCheck,
    failed: Arc<Mutex<Option<String>>>,
    passed: Arc<AtomicUsize>,
) {
    let started = tokio::time::Instant::now();
    let mut in_a_row = 0;
    let mut healthy = false;
    loop {
        let startup = !healthy && started.elapsed() < check.interval;
        tokio::time::sleep(if startup {
            STARTUP_PROBE.min(check.interval)
        } else {
            check.interval
        })
        .await;
        match probe(&check.probe, check.timeout).await {
            Ok(()) => {
                in_a_row = 0;
                if !healthy {
                    healthy = true;
                    passed.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Start-up time: not a failure yet.
            Err(_) if !healthy && started.elapsed() < check.interval => {}
            Err(e) => {
                in_a_row += 1;
                if in_a_row >= check.failure_threshold {
                    *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!(
                        "health check {i} ({}) failed {in_a_row} times in a row: {e}",
                        describe(&check.probe)
                    ));
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_ranges() {
        assert!(status_matches("200-399", 302));
        assert!(!status_matches("200-399", 404));
        assert!(status_matches("204", 204));
        assert!(!status_matches("2xx", 200));
    }

    #[tokio::test]
    async fn probes_pass_and_fail_for_real() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 256];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let path = String::from_utf8_lossy(&buf[..n])
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("")
                    .to_string();
                let status = if path == "/ok" {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                let _ = s
                    .write_all(format!("HTTP/1.0 {status}\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let t = Duration::from_secs(2);
        let host = "127.0.0.1".to_string();
        assert_eq!(
            probe(
                &Probe::Tcp {
                    host: host.clone(),
                    port
                },
                t
            )
            .await,
            Ok(())
        );
        let http = |path: &str| Probe::Http {
            host: host.clone(),
            port,
            path: path.into(),
            expect_status: "200-399".into(),
        };
        assert_eq!(probe(&http("/ok"), t).await, Ok(()));
        let e = probe(&http("/down"), t).await.unwrap_err();
        assert!(e.contains("status 503, expected 200-399"), "{e}");
        assert_eq!(
            probe(
                &Probe::Exec {
                    command: vec!["/bin/true".into()]
                },
                t
            )
            .await,
            Ok(())
        );
        let e = probe(
            &Probe::Exec {
                command: vec!["/bin/false".into()],
            },
            t,
        )
        .await
        .unwrap_err();
        assert!(e.contains("exited with"), "{e}");
        let e = probe(
            &Probe::Exec {
                command: vec!["/bin/sleep".into(), "5".into()],
            },
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
        assert!(e.contains("no answer within"), "{e}");
        // A closed port: the TCP probe fails.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        assert!(probe(&Probe::Tcp { host, port: closed }, t).await.is_err());
    }

    #[tokio::test]
    async fn a_check_fails_the_instance_after_its_threshold() {
        let check = HealthCheck {
            probe: Probe::Exec {
                command: vec!["/bin/false".into()],
            },
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(100),
            failure_threshold: 3,
        };
        let w = HealthWatch::start(&[check], "127.0.0.1");
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(w.failed(), None, "two failures are below the threshold");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let why = w.failed().expect("failed after three in a row");
        assert!(
            why.contains("health check 0 (exec /bin/false) failed 3 times in a row"),
            "{why}"
        );
    }

    /// A service that takes a while to listen: its copy is healthy (running) soon after it
    /// does, long before the check's 10 s interval, and the failures before do not count.
    #[tokio::test]
    async fn a_check_passes_soon_after_start_up_and_early_failures_do_not_count() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let check = HealthCheck {
            probe: Probe::Tcp {
                host: "127.0.0.1".into(),
                port,
            },
            interval: Duration::from_secs(10),
            timeout: Duration::from_millis(100),
            failure_threshold: 1,
        };
        let w = HealthWatch::start(&[check], "127.0.0.1");
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(!w.passed(), "nothing listens yet");
        assert_eq!(w.failed(), None, "start-up time: not failed");
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let t = std::time::Instant::now();
        while !w.passed() {
            assert!(t.elapsed() < Duration::from_secs(2), "not healthy in 2 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(w.failed(), None);
        drop(listener);
        // No checks: nothing to wait for.
        assert!(HealthWatch::start(&[], "127.0.0.1").passed());
    }
}
