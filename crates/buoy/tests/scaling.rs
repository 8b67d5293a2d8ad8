//! Scale policies driven by a real Prometheus Alertmanager (Debian's
//! `prometheus-alertmanager`, installed by `scripts/setup-test-deps.sh`; issue 19). A clone
//! of 2 copies with `scale: {min 2, max 4, rule HighLatency +2}`. The test posts an alert to
//! Alertmanager's own API; Alertmanager delivers its webhook to Buoy (with a token of the
//! `alerts` role, which posts webhooks and nothing else, as its `http_config` says); the clone
//! grows to 4. The alert is resolved; the clone comes
//! back to 2 only after the cool-down. Every step is recorded with who asked and why, shown
//! by `buoy instance show`. Bad webhooks are refused with the field named.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Cluster, get, observed, request_with, wait_until};
use serde_json::{Value, json};

const TOKEN: &str = "scaling-admin-token-0123456789";
/// Alertmanager's token: the `alerts` role posts webhooks and nothing else.
const ALERTS_TOKEN: &str = "scaling-alerts-token-0123456789";
const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";
const COOLDOWN_S: u64 = 8;

/// Alertmanager, killed by PID on drop.
struct Alertmanager(Child);

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn call(c: &Cluster, method: &str, path: &str, body: Value) -> (u16, Value) {
    let auth = format!("Bearer {TOKEN}");
    let (s, b) = request_with(
        c.http(1),
        method,
        path,
        &[("Authorization", &auth)],
        &body.to_string(),
    )
    .expect("an answer");
    (s, serde_json::from_str(&b).unwrap_or(Value::Null))
}

fn made(c: &Cluster, path: &str, body: Value) {
    let (s, b) = call(c, "POST", path, body);
    assert_eq!(s, 201, "{path}: {b}");
}

/// Hosts running a copy of `web`.
fn running(c: &Cluster) -> usize {
    (2..=5)
        .filter(|&i| observed(c, i, "web").is_some_and(|o| o["phase"] == "running"))
        .count()
}

fn web(c: &Cluster) -> Value {
    call(c, "GET", "/v1/instances/web", Value::Null).1
}

/// The alert as Alertmanager's API v2 takes it; `ends` resolves it.
fn post_alert(am: SocketAddr, ends: Option<&str>) {
    let mut alert = json!({"labels": {"alertname": "HighLatency", "service": "web"},
                           "annotations": {"summary": "p99 over 1 s"}});
    if let Some(t) = ends {
        alert["endsAt"] = t.into();
    }
    let (s, b) = request_with(
        am,
        "POST",
        "/api/v2/alerts",
        &[],
        &json!([alert]).to_string(),
    )
    .expect("Alertmanager answers");
    assert_eq!(s, 200, "Alertmanager took the alert: {b}");
}

fn events(c: &Cluster) -> Vec<Value> {
    web(c)["scaling"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn millis(e: &Value) -> u64 {
    model::Timestamp::parse(e["at"].as_str().unwrap())
        .unwrap()
        .unix_millis()
}

#[test]
fn alertmanager_alerts_grow_a_clone_and_it_shrinks_after_the_cool_down() {
    if !std::path::Path::new(ALERTMANAGER).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{ALERTMANAGER} is missing: scripts/setup-test-deps.sh installs prometheus-alertmanager"
        );
        eprintln!("SKIPPED: no {ALERTMANAGER} (scripts/setup-test-deps.sh installs it)");
        return;
    }
    let mut c = Cluster::new(104);
    c.start_with_tokens(&[(TOKEN, "admin"), (ALERTS_TOKEN, "alerts")]);
    for i in 2..=5 {
        c.start_agent(i, None, &[]);
    }
    made(&c, "/v1/segments", json!({"name": "zone"}));
    for i in 2..=5 {
        made(
            &c,
            "/v1/hosts",
            json!({"name": format!("h{i}"), "segment": "zone"}),
        );
    }
    made(
        &c,
        "/v1/instances",
        json!({"name": "web", "segment": "zone", "driver": "process", "mode": "clone",
               "replicas": 2, "params": {"command": "/bin/sleep", "args": ["600"]},
               "scale": {"min_replicas": 2, "max_replicas": 4, "cooldown": format!("{COOLDOWN_S}s"),
                         "rules": [{"name": "latency", "match": {"alertname": "HighLatency"}, "step": 2}]}}),
    );
    wait_until(Duration::from_secs(20), || running(&c) == 2)
        .unwrap_or_else(|| panic!("2 copies do not run: {}", web(&c)));

    // Bad input first: each a clear error, the instance untouched.
    let hook = "/v1/alertmanager/webhook";
    let (s, b) = call(&c, "POST", hook, json!({"version": "3", "alerts": []}));
    assert_eq!(
        (s, b["error"]["field"].as_str()),
        (400, Some("version")),
        "{b}"
    );
    let (s, b) = call(
        &c,
        "POST",
        hook,
        json!({"version": "4", "alerts": [{"status": "burning", "fingerprint": "ab"}]}),
    );
    assert_eq!(
        (s, b["error"]["field"].as_str()),
        (400, Some("alerts[0].status")),
        "{b}"
    );
    let (s, b) = request_with(
        c.http(1),
        "POST",
        hook,
        &[],
        r#"{"version":"4","alerts":[]}"#,
    )
    .expect("an answer");
    assert_eq!(s, 401, "a webhook without the token is refused: {b}");
    let alerts_auth = format!("Bearer {ALERTS_TOKEN}");
    let (s, b) = request_with(
        c.http(1),
        "PATCH",
        "/v1/instances/web",
        &[("Authorization", &alerts_auth)],
        r#"{"replicas": 4}"#,
    )
    .expect("an answer");
    assert_eq!(s, 403, "the alerts token changes nothing else: {b}");
    let (s, b) = call(
        &c,
        "POST",
        hook,
        json!({"version": "4", "receiver": "r", "alerts": [
            {"status": "firing", "fingerprint": "00ff", "labels": {"alertname": "DiskFull"}}]}),
    );
    assert_eq!((s, &b["unmatched"]), (200, &json!(1)), "{b}");
    assert_eq!(running(&c), 2);

    // Alertmanager, delivering to Buoy with the admin token.
    let dir = c.dir.join("alertmanager");
    std::fs::create_dir_all(&dir).unwrap();
    let am: SocketAddr = ([127, 0, 104, 9], 9093).into();
    let config = format!(
        "route:\n  receiver: buoy\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n\
         receivers:\n  - name: buoy\n    webhook_configs:\n      - url: http://{}/v1/alertmanager/webhook\n        send_resolved: true\n        max_alerts: 100\n        http_config:\n          authorization:\n            type: Bearer\n            credentials: {ALERTS_TOKEN}\n",
        c.http(1)
    );
    std::fs::write(dir.join("alertmanager.yml"), config).unwrap();
    let _am = Alertmanager(
        Command::new(ALERTMANAGER)
            .arg(format!(
                "--config.file={}",
                dir.join("alertmanager.yml").display()
            ))
            .arg(format!("--storage.path={}", dir.display()))
            .arg(format!("--web.listen-address={am}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("log")).unwrap())
            .spawn()
            .expect("Alertmanager starts"),
    );
    wait_until(Duration::from_secs(20), || {
        get(am, "/-/ready").is_some_and(|(s, _)| s == 200)
    })
    .expect("Alertmanager is ready");

    post_alert(am, None);
    wait_until(Duration::from_secs(30), || running(&c) == 4).unwrap_or_else(|| {
        panic!(
            "the clone did not grow to 4: {}\nAlertmanager: {}",
            web(&c),
            std::fs::read_to_string(dir.join("log")).unwrap_or_default()
        )
    });
    let ev = events(&c);
    let up = ev
        .iter()
        .find(|e| e["kind"] == "scaled" && e["to"] == 4)
        .unwrap_or_else(|| panic!("no decision recorded: {ev:?}"));
    assert_eq!(up["from"], 2);
    assert_eq!(up["by"], "alertmanager receiver `buoy`", "{up}");
    assert!(
        ev.iter().any(|e| e["kind"] == "fired"
            && e["rule"] == "latency"
            && e["alert"].as_str().unwrap_or("").contains("HighLatency")),
        "{ev:?}"
    );

    // Resolved: Alertmanager sends it; the count waits out the cool-down.
    post_alert(am, Some(&model::Timestamp::now().to_string()));
    wait_until(Duration::from_secs(30), || {
        events(&c).iter().any(|e| e["kind"] == "resolved")
    })
    .unwrap_or_else(|| panic!("the resolution never arrived: {:?}", events(&c)));
    wait_until(Duration::from_secs(COOLDOWN_S + 20), || running(&c) == 2)
        .unwrap_or_else(|| panic!("the clone did not shrink back: {}", web(&c)));
    let ev = events(&c);
    let down = ev
        .iter()
        .find(|e| e["kind"] == "scaled" && e["to"] == 2)
        .unwrap_or_else(|| panic!("no scale-down recorded: {ev:?}"));
    assert_eq!(down["by"], "buoy");
    assert!(
        millis(down) >= millis(up) + COOLDOWN_S * 1000,
        "down before the cool-down: {ev:?}"
    );
    assert_eq!(web(&c)["scaling"]["replicas"], 2);

    // The operator sees it all.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_buoy"))
        .args(["instance", "show", "web"])
        .env("BUOY_HTTP_ADDR", c.http(1).to_string())
        .env("BUOY_TOKEN", TOKEN)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("scaling: 2 copies")
            && text.contains("scaled 2 -> 4")
            && text.contains("scaled 4 -> 2")
            && text.contains("alertmanager receiver `buoy`"),
        "{text}"
    );
}
