//! The sandbox's health-checked TCP load balancer in front of the active-active clock app (or
//! of the HAProxy copies, standing in for their virtual IP): it checks every backend every
//! 250 ms with `GET /`, healthy only on a 200 (an HAProxy whose backend is still empty answers
//! 503), and sends each connection to the next healthy one, trying the others when a connect
//! fails, so a client sees no failed request while at least one copy serves.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};

const CHECK_EVERY: Duration = Duration::from_millis(250);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);

/// A running load balancer; it stops with `stop`.
pub struct LoadBalancer {
    backends: Vec<SocketAddr>,
    healthy: Mutex<Vec<bool>>,
    next: AtomicUsize,
}

impl LoadBalancer {
    /// Listens on `listen` and balances over `backends` until `stop` is set.
    pub fn start(
        listen: SocketAddr,
        backends: Vec<SocketAddr>,
        stop: Arc<AtomicBool>,
    ) -> Result<Arc<LoadBalancer>> {
        let listener = TcpListener::bind(listen)
            .with_context(|| format!("the load balancer cannot listen on {listen}"))?;
        listener.set_nonblocking(true)?;
        let lb = Arc::new(LoadBalancer {
            healthy: Mutex::new(vec![false; backends.len()]),
            backends,
            next: AtomicUsize::new(0),
        });
        {
            let (lb, stop) = (lb.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let up: Vec<bool> = lb.backends.iter().map(|b| answers_200(*b)).collect();
                    *lb.healthy.lock().unwrap_or_else(|p| p.into_inner()) = up;
                    std::thread::sleep(CHECK_EVERY);
                }
            });
        }
        {
            let lb = lb.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            let lb = lb.clone();
                            std::thread::spawn(move || lb.serve(client));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            });
        }
        Ok(lb)
    }

    /// How many backends passed the last health check.
    pub fn healthy_count(&self) -> usize {
        self.healthy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|h| **h)
            .count()
    }

    /// Healthy backends first (round robin), then the others: a connect that fails moves on.
    fn candidates(&self) -> Vec<SocketAddr> {
        let healthy = self
            .healthy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let n = self.backends.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let order = (0..n).map(|k| (start + k) % n);
        let (up, down): (Vec<usize>, Vec<usize>) = order.partition(|&i| healthy[i]);
        up.into_iter()
            .chain(down)
            .map(|i| self.backends[i])
            .collect()
    }

    fn serve(&self, client: TcpStream) {
        let _ = client.set_nonblocking(false);
        for backend in self.candidates() {
            let Ok(server) = TcpStream::connect_timeout(&backend, CONNECT_TIMEOUT) else {
                continue;
            };
            pipe(client, server);
            return;
        }
        let _ = client.shutdown(Shutdown::Both);
    }
}

/// Whether `GET /` at `addr` answers 200.
fn answers_200(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"GET / HTTP/1.0\r\nHost: check\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok()
        && head.starts_with(b"HTTP/1.")
        && head[8..].starts_with(b" 200")
}

/// Copies both ways until either side closes.
pub(super) fn pipe(client: TcpStream, server: TcpStream) {
    let (Ok(mut c2), Ok(mut s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let up = std::thread::spawn(move || {
        let mut c = client;
        let mut s = server;
        copy(&mut c, &mut s);
        let _ = s.shutdown(Shutdown::Write);
    });
    copy(&mut s2, &mut c2);
    let _ = c2.shutdown(Shutdown::Write);
    let _ = up.join();
}

fn copy(from: &mut TcpStream, to: &mut TcpStream) {
    let _ = from.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}
