//! The dashboard in headless Chromium (Debian `chromium` + `chromium-driver`, driven over the
//! WebDriver protocol): it loads from a running sandbox and shows the hosts; the kill button of
//! a host crashes it through the sandbox; the page turns that host failed and shows its
//! instances running on other hosts, without a reload. A screenshot is saved to
//! `target/test-artifacts/dashboard.png`. The zones scenario's dashboard (in network
//! namespaces, with the clock reading a replicated PostgreSQL) shows a zone failing, HAProxy's
//! backend changing and the customer's view with no failed request
//! (`target/test-artifacts/dashboard-zones.png`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const NET: u8 = 63;
const ZONES_NET: u8 = 71;
const DRIVER_PORT: u16 = 19_563;

/// One browser at a time (the tests share the driver's port, and the machine has 2 cores).
static BROWSER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Ends a child by PID when dropped (SIGINT first for the sandbox, so it cleans up, given up
/// to the third field's seconds).
struct Guard(Child, i32, u64);

impl Drop for Guard {
    fn drop(&mut self) {
        // SAFETY: kill(2) on a PID this test started.
        unsafe { libc::kill(self.0.id() as i32, self.1) };
        let deadline = Instant::now() + Duration::from_secs(self.2);
        while Instant::now() < deadline && matches!(self.0.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One WebDriver call.
fn wd(method: &str, path: &str, body: Option<Value>) -> Value {
    let addr = SocketAddr::from(([127, 0, 0, 1], DRIVER_PORT));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("chromedriver");
    s.set_read_timeout(Some(Duration::from_secs(90))).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{DRIVER_PORT}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // Read the head, then exactly Content-Length bytes (the driver may keep the connection).
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "chromedriver closed early");
        raw.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("a Content-Length");
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    let body = String::from_utf8_lossy(&body);
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn script(session: &str, js: &str) -> Value {
    wd(
        "POST",
        &format!("/session/{session}/execute/sync"),
        Some(json!({"script": js, "args": []})),
    )["value"]
        .clone()
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0);
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

#[test]
fn the_dashboard_shows_a_killed_host_fail_and_its_instances_come_back() {
    let _one = BROWSER.lock().unwrap_or_else(|p| p.into_inner());
    if !have_browser() {
        return;
    }
    let sandbox = Guard(
        Command::new(env!("CARGO_BIN_EXE_buoy"))
            .args(["sandbox", "--hosts", "4", "--instances", "6", "--no-demo"])
            .args(["--duration", "120", "--net", &NET.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        libc::SIGINT,
        15,
    );
    let api = SocketAddr::from(([127, 0, NET, 1], 7070));
    wait_for("the sandbox's instances", Duration::from_secs(60), || {
        buoy_json(api, "/v1/observed").is_some_and(|v| {
            v["hosts"].as_object().is_some_and(|h| {
                h.values()
                    .flat_map(|r| r["instances"].as_array().cloned().unwrap_or_default())
                    .filter(|o| o["phase"] == "running")
                    .count()
                    >= 7
            })
        })
    });
    let (driver, id, tmp) = browser();
    let url = format!(
        "http://{api}/ui?sandbox=http://127.0.{NET}.100:7000&clock=http://127.0.{NET}.100:8080"
    );
    wd(
        "POST",
        &format!("/session/{id}/url"),
        Some(json!({"url": url})),
    );

    // The hosts appear, with their instances.
    let hosts_js = "return [...document.querySelectorAll('.host')].map(h => ({name: h.dataset.host, cls: h.className, running: [...h.querySelectorAll('li')].filter(li => li.textContent.includes('running')).map(li => li.firstElementChild.textContent.split(' ')[0])}))";
    wait_for("the page to show 4 hosts", Duration::from_secs(30), || {
        script(&id, hosts_js)
            .as_array()
            .is_some_and(|a| a.len() == 4)
    });
    // The busiest host other than the server.
    let mut victim = None;
    wait_for("instances on the page", Duration::from_secs(30), || {
        let hosts = script(&id, hosts_js);
        victim = hosts
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["name"] != "h1")
            .max_by_key(|h| h["running"].as_array().map_or(0, Vec::len))
            .filter(|h| h["running"].as_array().is_some_and(|r| !r.is_empty()))
            .cloned();
        victim.is_some()
    });
    let victim = victim.unwrap();
    let name = victim["name"].as_str().unwrap().to_string();
    let moved: Vec<String> = victim["running"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();

    // Kill it with its button; the page follows without a reload.
    script(
        &id,
        &format!(
            "window.__marker = 1; document.querySelector('button[data-act=kill][data-host={name}]').click(); return true"
        ),
    );
    wait_for("the host to turn failed", Duration::from_secs(30), || {
        script(&id, hosts_js).as_array().unwrap().iter().any(|h| {
            h["name"] == name.as_str() && h["cls"].as_str().is_some_and(|c| c.contains("failed"))
        })
    });
    wait_for(
        "its instances to run elsewhere",
        Duration::from_secs(30),
        || {
            let hosts = script(&id, hosts_js);
            moved.iter().all(|inst| {
                hosts.as_array().unwrap().iter().any(|h| {
                    h["name"] != name.as_str()
                        && h["running"]
                            .as_array()
                            .is_some_and(|r| r.iter().any(|x| x == inst.as_str()))
                })
            })
        },
    );
    assert_eq!(
        script(&id, "return window.__marker"),
        json!(1),
        "the page never reloaded"
    );
    // The timeline shows the recovery.
    wait_for(
        "the recovery in the timeline",
        Duration::from_secs(15),
        || {
            script(
                &id,
                "return document.getElementById('timeline').textContent",
            )
            .as_str()
            .is_some_and(|t| t.contains(&name) && t.contains("healthy"))
        },
    );

    // An instance that cannot start anywhere: the page says blocked, and why (issue 16).
    let segment = buoy_json(api, "/v1/segments").unwrap()["segments"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_buoy"))
        .args(["instance", "create", "broken", "--segment", &segment])
        .args(["--driver", "process", "--set", "params.command=/bin/false"])
        .args(["--set", "max_restarts=0", "--http", &api.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    wait_for(
        "the blocked instance and its reason on the page",
        Duration::from_secs(60),
        || {
            script(
                &id,
                "return [...document.querySelectorAll('li')].map(li => li.textContent).filter(t => t.startsWith('broken')).join('|')",
            )
            .as_str()
            .is_some_and(|t| t.contains("blocked") && t.contains("failed on every usable host") && t.contains("exit code 1"))
        },
    );

    screenshot(&id, "dashboard.png");
    wd("DELETE", &format!("/session/{id}"), None);
    drop(driver);
    drop(sandbox);
    let _ = std::fs::remove_dir_all(&tmp);
}

/// Whether Chromium and its driver are here (a CI machine must have them).
fn have_browser() -> bool {
    let present = |p: &str| std::path::Path::new(p).exists();
    if !present("/usr/bin/chromium") || !present("/usr/bin/chromedriver") {
        if std::env::var_os("CI").is_some() {
            panic!(
                "chromium and chromium-driver are missing: scripts/setup-test-deps.sh installs them"
            );
        }
        eprintln!("SKIPPED: no chromium/chromedriver (scripts/setup-test-deps.sh installs them)");
        return false;
    }
    true
}

/// Starts chromedriver and a headless Chromium session: the driver, the session's id, and the
/// directory of Chromium's profile and sockets (to remove at the end; not left in /tmp).
fn browser() -> (Guard, String, std::path::PathBuf) {
    let tmp = std::env::temp_dir().join(format!("buoy-dashboard-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let driver = Guard(
        Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={DRIVER_PORT}"))
            .env("TMPDIR", &tmp)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        libc::SIGTERM,
        15,
    );
    wait_for("chromedriver", Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", DRIVER_PORT)).is_ok()
    });
    let session = wd(
        "POST",
        "/session",
        Some(
            json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"]}}}}),
        ),
    );
    let id = session["value"]["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("no session: {session}"))
        .to_string();
    (driver, id, tmp)
}

/// Saves the page's screenshot as `target/test-artifacts/NAME`.
fn screenshot(id: &str, name: &str) {
    let shot = wd("GET", &format!("/session/{id}/screenshot"), None);
    let png = base64_decode(shot["value"].as_str().expect("a screenshot"));
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let dir =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), &png).unwrap();
}

/// The zones scenario in network namespaces, watched in the browser: the hosts carry their
/// zones; the clock panel shows the database's time through the VIP; zone b crashes (the
/// sandbox's demo) and its hosts turn failed; HAProxy's backend loses zone b's copy and gets
/// its replacement; the customer's view counts no failed request.
#[test]
fn the_zones_dashboard_shows_a_zone_fail_and_the_clock_keep_answering() {
    let _one = BROWSER.lock().unwrap_or_else(|p| p.into_inner());
    if !have_browser() {
        return;
    }
    if !lab::zone_lab::ZoneLab::can_run_with_db() {
        return;
    }
    let sandbox = Guard(
        Command::new(env!("CARGO_BIN_EXE_buoy"))
            .args([
                "sandbox",
                "--zones",
                "3",
                "--hosts",
                "7",
                "--demo-delay",
                "25",
            ])
            .args(["--duration", "150", "--net", &ZONES_NET.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        libc::SIGINT,
        90,
    );
    // The dashboard and the VIP, forwarded to the sandbox's address.
    let api = SocketAddr::from(([127, 0, ZONES_NET, 100], 7070));
    wait_for("the forwarded dashboard", Duration::from_secs(150), || {
        buoy_json(api, "/v1/status").is_some_and(|v| v["leader"].is_object())
    });
    let (driver, id, tmp) = browser();
    let url = format!("http://{api}/ui?clock=http://127.0.{ZONES_NET}.100:8080");
    wd(
        "POST",
        &format!("/session/{id}/url"),
        Some(json!({"url": url})),
    );
    let text = |sel: &str| {
        script(
            &id,
            &format!("return document.querySelector('{sel}').textContent"),
        )
        .as_str()
        .unwrap_or("")
        .to_string()
    };
    let hosts_js = "return [...document.querySelectorAll('.host')].map(h => ({name: h.dataset.host, cls: h.className, text: h.textContent}))";
    // The six hosts of the zones (the server h1 runs no instances and is not registered).
    wait_for("6 hosts with their zones", Duration::from_secs(30), || {
        script(&id, hosts_js).as_array().is_some_and(|a| {
            a.len() == 6
                && a.iter()
                    .all(|h| h["text"].as_str().is_some_and(|t| t.contains("zone ")))
        })
    });
    wait_for(
        "the database's time in the clock panel",
        Duration::from_secs(30),
        || text("#clock-from").contains("the database's time") && text("#clock-ok") != "0",
    );
    let served = |t: &str| t.contains("@h4") || t.contains("@h5");
    wait_for(
        "zone b's copy in HAProxy's backend",
        Duration::from_secs(30),
        || served(&text("#lbs")),
    );
    // The demo crashes zone b: its hosts turn failed on the page.
    wait_for(
        "zone b's hosts to turn failed",
        Duration::from_secs(90),
        || {
            let hosts = script(&id, hosts_js);
            ["h4", "h5"].iter().all(|n| {
                hosts.as_array().unwrap().iter().any(|h| {
                    h["name"] == *n && h["cls"].as_str().is_some_and(|c| c.contains("failed"))
                })
            })
        },
    );
    // Their copies show as lost, not as their last report said (a stale "promoted" would
    // look like a second primary).
    wait_for(
        "zone b's copies shown lost",
        Duration::from_secs(30),
        || {
            let phases = script(
                &id,
                "return [...document.querySelectorAll('.host[data-host=h4] [class^=phase-]')].map(e => e.textContent)",
            );
            phases
                .as_array()
                .is_some_and(|p| !p.is_empty() && p.iter().all(|x| x == "lost"))
        },
    );
    // HAProxy's backend without zone b, its copy replaced: 3 servers again, none there.
    wait_for(
        "the backend to follow the copies",
        Duration::from_secs(60),
        || {
            let t = text("#lbs");
            !served(&t) && t.contains("3 server(s)")
        },
    );
    // The clock reads the database again (from the new primary) and no request failed.
    wait_for(
        "a fresh database read after the failover",
        Duration::from_secs(60),
        || text("#clock-from").contains("the database's time, read 0."),
    );
    let (ok, failed) = (text("#clock-ok"), text("#clock-failed"));
    screenshot(&id, "dashboard-zones.png");
    assert_eq!(
        failed, "0",
        "the customer's view counted failed requests ({ok} answered)"
    );
    assert!(
        ok.parse::<u32>().unwrap_or(0) >= 40,
        "too few requests: {ok}"
    );
    eprintln!("the browser's clock: {ok} requests answered, {failed} failed");
    wd("DELETE", &format!("/session/{id}"), None);
    drop(driver);
    drop(sandbox);
    let _ = std::fs::remove_dir_all(&tmp);
}

fn buoy_json(addr: SocketAddr, path: &str) -> Option<Value> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    serde_json::from_str(raw.split_once("\r\n\r\n")?.1).ok()
}
