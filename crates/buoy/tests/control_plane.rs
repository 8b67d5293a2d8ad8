//! The control plane with real agents: three servers lose their leader to `kill -9` while a
//! client writes, and every acknowledged write survives it and a full restart; client agents
//! relay to the leader; every error code the API promises.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Cluster, buoy, get, post, request, request_with, wait_until};
use serde_json::Value;

fn server_args(c: &Cluster, i: u8, expect: u8) -> Vec<String> {
    vec![
        "--server".into(),
        "--bootstrap-expect".into(),
        expect.to_string(),
        "--data-dir".into(),
        c.dir.join(format!("data-h{i}")).display().to_string(),
    ]
}

/// A cluster of one server, `h1`, leading.
fn one_server(net: u8) -> Cluster {
    let mut c = Cluster::new(net);
    let args = server_args(&c, 1, 1);
    c.start(1, &args);
    wait_for_leader(&c, &[1]);
    c
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// The leader's name as agent `i` reports it.
fn leader(c: &Cluster, i: u8) -> Option<String> {
    let (status, body) = get(c.http(i), "/v1/status")?;
    (status == 200).then(|| json(&body)["leader"]["name"].as_str().map(String::from))?
}

fn wait_for_leader(c: &Cluster, observers: &[u8]) -> String {
    wait_for_new_leader(c, observers, None)
}

/// Waits until every observer names the same leader, other than `not` (a server just killed,
/// which the survivors remember until they elect another).
fn wait_for_new_leader(c: &Cluster, observers: &[u8], not: Option<&str>) -> String {
    let mut found = None;
    wait_until(Duration::from_secs(20), || {
        let seen: BTreeSet<Option<String>> = observers.iter().map(|&i| leader(c, i)).collect();
        found = seen.iter().next().cloned().flatten();
        seen.len() == 1 && found.is_some() && found.as_deref() != not
    })
    .unwrap_or_else(|| panic!("no agreed leader among {observers:?}"));
    found.unwrap()
}

/// Every segment as (id, name, version), read through agent `i`.
fn segments(c: &Cluster, i: u8) -> BTreeSet<(String, String, u64)> {
    let (status, body) = get(c.http(i), "/v1/segments?limit=10000").unwrap();
    assert_eq!(status, 200, "{body}");
    json(&body)["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_string(),
                s["name"].as_str().unwrap().to_string(),
                s["version"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn three_servers_keep_every_acknowledged_write_through_a_leader_kill_and_a_full_restart() {
    let mut c = Cluster::new(37);
    for i in 1..=3 {
        let args = server_args(&c, i, 3);
        c.start(i, &args);
    }
    let first = wait_for_leader(&c, &[1, 2, 3]);

    // A client writes continuously, spreading its calls over all three agents.
    let acked: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let addrs = [c.http(1), c.http(2), c.http(3)];
    let writer = {
        let (acked, stop) = (acked.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let name = format!("w-{n}");
                let to = addrs[n as usize % 3];
                let body = format!("{{\"name\":\"{name}\"}}");
                if let Some((201, _)) = post(to, "/v1/segments", &body) {
                    acked.lock().unwrap().push((name, Instant::now()));
                }
            }
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let killed: u8 = first.trim_start_matches('h').parse().unwrap();
    let killed_at = Instant::now();
    c.kill(&first);
    let others: Vec<u8> = (1..=3).filter(|&i| i != killed).collect();
    wait_for_new_leader(&c, &others, Some(&first));
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    let after_kill: Vec<&(String, Instant)> =
        acked.iter().filter(|(_, t)| *t > killed_at).collect();
    assert!(acked.len() > 50, "only {} writes acknowledged", acked.len());
    assert!(
        !after_kill.is_empty(),
        "writes resumed after the leader died"
    );
    let failover = after_kill[0].1 - killed_at;
    assert!(
        failover < Duration::from_secs(5),
        "first write after the kill took {failover:?}"
    );

    // Every acknowledged write is there, seen through the survivors.
    let names = |set: &BTreeSet<(String, String, u64)>| -> BTreeSet<String> {
        set.iter().map(|(_, n, _)| n.clone()).collect()
    };
    let present = names(&segments(&c, others[0]));
    let lost: Vec<&String> = acked
        .iter()
        .map(|(n, _)| n)
        .filter(|n| !present.contains(*n))
        .collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");

    // The killed server comes back and catches up.
    let args = server_args(&c, killed, 3);
    c.start(killed, &args);
    wait_until(Duration::from_secs(20), || {
        get(c.http(killed), "/v1/status").is_some_and(|(_, b)| {
            let v = json(&b);
            v["raft"]["last_applied"].as_u64() >= Some(acked.len() as u64)
        })
    })
    .expect("the restarted server caught up");

    // Stop everything, start again: the same state.
    let before = segments(&c, killed);
    for i in 1..=3 {
        c.kill(&format!("h{i}"));
    }
    for i in 1..=3 {
        let args = server_args(&c, i, 3);
        c.start(i, &args);
    }
    wait_for_leader(&c, &[1, 2, 3]);
    let after = segments(&c, 1);
    let missing: Vec<_> = before.difference(&after).take(5).collect();
    let extra: Vec<_> = after.difference(&before).take(5).collect();
    if !(missing.is_empty() && extra.is_empty()) {
        std::thread::sleep(Duration::from_secs(2));
        eprintln!("2 s later: {} segments", segments(&c, 1).len());
        for i in 1..=3 {
            eprintln!("h{i} status: {:?}", get(c.http(i), "/v1/status"));
        }
    }
    assert!(
        missing.is_empty() && extra.is_empty(),
        "the state after a full restart differs from the state before it: {} before, {} after; missing {missing:?}, extra {extra:?}",
        before.len(),
        after.len()
    );
}

#[test]
fn a_client_agent_relays_to_the_leader_and_reads_its_own_writes() {
    let mut c = one_server(38);
    c.start(2, &[]);
    // The client relays to a server it knows through gossip: wait until it knows h1.
    c.wait_all_see(&[2], "h1", "alive", Duration::from_secs(10));
    let (status, body) = post(c.http(2), "/v1/segments", r#"{"name":"via-client"}"#).unwrap();
    assert_eq!(status, 201, "{body}");
    let (status, body) = get(c.http(2), "/v1/segments/via-client").unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["name"], "via-client");
    let (status, body) = get(c.http(2), "/v1/status").unwrap();
    assert_eq!(
        (status, json(&body)["leader"]["name"].as_str()),
        (200, Some("h1")),
        "{body}"
    );
}

#[test]
fn every_error_code_comes_with_a_json_body_that_names_the_problem() {
    let mut c = one_server(39);
    let http = c.http(1);
    let check = |method: &str,
                 path: &str,
                 body: &str,
                 headers: &str,
                 status: u16,
                 code: &str,
                 field: Option<&str>| {
        let extra: Vec<(&str, &str)> = headers.split_once(": ").into_iter().collect();
        let (got, answer) = request_with(http, method, path, &extra, body).unwrap();
        assert_eq!(got, status, "{method} {path}: {answer}");
        let e = &json(&answer)["error"];
        assert_eq!(e["code"], code, "{answer}");
        assert!(!e["message"].as_str().unwrap().is_empty());
        assert_eq!(e["field"].as_str(), field, "{answer}");
    };
    assert_eq!(
        post(http, "/v1/segments", r#"{"name":"zone-a"}"#)
            .unwrap()
            .0,
        201
    );
    check(
        "POST",
        "/v1/segments",
        r#"{"name":"zone-a"}"#,
        "",
        409,
        "already_exists",
        Some("name"),
    );
    check(
        "POST",
        "/v1/segments",
        r#"{"name":"zone-b","colour":"red"}"#,
        "",
        400,
        "invalid",
        Some("colour"),
    );
    check(
        "POST",
        "/v1/segments",
        r#"{"name":"b","recovery_method":"fast"}"#,
        "",
        400,
        "invalid",
        Some("recovery_method"),
    );
    check("POST", "/v1/segments", "[1,2]", "", 400, "invalid", None);
    check(
        "POST",
        "/v1/hosts",
        r#"{"name":"n1","segment":"nowhere"}"#,
        "",
        422,
        "unprocessable",
        Some("segment"),
    );
    check(
        "POST",
        "/v1/instances",
        r#"{"name":"web","segment":"zone-a","driver":"process","params":{"command":"x"},"health_checks":[{"type":"tcp","port":0}]}"#,
        "",
        400,
        "invalid",
        Some("health_checks[0].port"),
    );
    check("GET", "/v1/segments/nope", "", "", 404, "not_found", None);
    check(
        "PATCH",
        "/v1/segments/zone-a",
        r#"{"description":"x"}"#,
        "If-Match: \"9\"",
        412,
        "version_mismatch",
        Some("version"),
    );
    check(
        "GET",
        "/v1/hosts?colour=red",
        "",
        "",
        400,
        "invalid",
        Some("colour"),
    );
    assert_eq!(
        post(http, "/v1/hosts", r#"{"name":"n1","segment":"zone-a"}"#)
            .unwrap()
            .0,
        201
    );
    check("DELETE", "/v1/segments/zone-a", "", "", 409, "in_use", None);
    // A server still waiting for two more servers has no leader yet.
    let args = server_args(&c, 2, 3);
    c.start(2, &args);
    check_no_leader(c.http(2));
    let (status, body) = request(
        http,
        "PATCH",
        "/v1/segments/zone-a",
        r#"{"description":"rack 3"}"#,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["version"], 2);
}

fn check_no_leader(addr: std::net::SocketAddr) {
    let (status, body) = get(addr, "/v1/segments").unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(json(&body)["error"]["code"], "no_leader", "{body}");
}

#[test]
fn the_cli_manages_objects_from_flags_and_files_with_tables_and_json() {
    let c = one_server(40);
    let http = c.http(1);
    let (ok, out, err) = buoy(
        http,
        &["segment", "create", "zone-a", "--set", "description=rack 3"],
    );
    assert!(ok && out.contains("rack 3"), "{out}{err}");
    let spec = c.dir.join("host.toml");
    std::fs::write(
        &spec,
        "name = \"node-1\"\nsegment = \"zone-a\"\n[capacity]\ncpu = 8\nmemory_mb = 16384\n",
    )
    .unwrap();
    let (ok, _, err) = buoy(http, &["host", "create", "-f", spec.to_str().unwrap()]);
    assert!(ok, "{err}");
    let (ok, out, err) = buoy(http, &["host", "list"]);
    assert!(ok, "{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with("node-1"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        row.contains("zone-a") && row.contains("16384"),
        "the table shows the segment by name: {out}"
    );
    let (ok, out, _) = buoy(http, &["host", "show", "node-1", "--json"]);
    assert!(ok);
    assert_eq!(json(&out)["capacity"]["cpu"], 8);
    let (ok, out, err) = buoy(
        http,
        &[
            "instance",
            "create",
            "web",
            "--segment",
            "zone-a",
            "--driver",
            "process",
            "--set",
            "params.command=sleep",
            "--set",
            r#"params.args=["100"]"#,
            "--set",
            "cpu=0.5",
        ],
    );
    assert!(ok, "{out}{err}");
    // A bad value is refused with the field the API names (issue 16).
    let (ok, _, err) = buoy(
        http,
        &["instance", "update", "web", "--set", "priority=high"],
    );
    assert!(
        !ok && err.contains("HTTP 400: priority: invalid type"),
        "{err}"
    );
    // An address written as a URL is taken.
    let url = format!("http://{http}/");
    let (ok, out, err) = buoy(http, &["segment", "list", "--http", &url]);
    assert!(ok && out.contains("zone-a"), "{out}{err}");
    // A stale version is refused with the API's message.
    let (ok, _, err) = buoy(
        http,
        &[
            "segment",
            "update",
            "zone-a",
            "--version",
            "9",
            "--set",
            "description=x",
        ],
    );
    assert!(
        !ok && err.contains("HTTP 412") && err.contains("version 1, not 9"),
        "{err}"
    );
    let (ok, _, err) = buoy(
        http,
        &[
            "instance",
            "create",
            "bad",
            "--segment",
            "zone-a",
            "--driver",
            "process",
        ],
    );
    assert!(!ok && err.contains("params.command"), "{err}");
    let (ok, out, _) = buoy(http, &["events"]);
    assert!(
        ok && out.contains("segment") && out.contains("host") && out.contains("instance"),
        "{out}"
    );
    let (ok, out, _) = buoy(http, &["status"]);
    assert!(ok && out.contains("leader       h1"), "{out}");
    let (ok, _, _) = buoy(http, &["instance", "delete", "web"]);
    assert!(ok);
    let (ok, out, _) = buoy(http, &["instance", "list", "--json"]);
    assert!(
        ok && json(&out)["instances"].as_array().unwrap().is_empty(),
        "{out}"
    );
}

#[test]
fn with_tokens_the_api_needs_one_and_read_tokens_only_read() {
    let mut c = Cluster::new(43);
    let tokens = c.dir.join("tokens.json");
    std::fs::write(
        &tokens,
        r#"{"tokens": [{"token": "admin-0123456789abcdef", "role": "admin"}, {"token": "reader-0123456789abcdef", "role": "read"}]}"#,
    )
    .unwrap();
    // Readable by others, the file is refused, naming the fix.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_buoy"))
        .args([
            "agent",
            "--name",
            "t",
            "--unsafe-no-host-identity",
            "--tokens",
        ])
        .arg(&tokens)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("chmod 600"), "{err}");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o600)).unwrap();
    for i in 1..=3 {
        let mut args = server_args(&c, i, 3);
        args.extend(["--tokens".into(), tokens.display().to_string()]);
        c.start(i, &args);
    }
    let http = c.http(1);
    let admin = [("Authorization", "Bearer admin-0123456789abcdef")];
    let reader = [("Authorization", "Bearer reader-0123456789abcdef")];
    // Three servers elect and replicate: their Raft RPCs carry the admin token.
    wait_until(Duration::from_secs(20), || {
        request_with(http, "GET", "/v1/status", &admin, "")
            .is_some_and(|(s, b)| s == 200 && json(&b)["leader"]["name"].is_string())
    })
    .expect("a leader among servers that require tokens");
    let (status, body) =
        request_with(http, "POST", "/v1/segments", &admin, r#"{"name":"zone-a"}"#).unwrap();
    assert_eq!(status, 201, "{body}");
    let (status, body) = get(http, "/v1/segments").unwrap();
    assert_eq!(
        (status, json(&body)["error"]["code"].as_str()),
        (401, Some("unauthorized")),
        "{body}"
    );
    let (status, _) = request_with(http, "GET", "/v1/segments", &reader, "").unwrap();
    assert_eq!(status, 200);
    let (status, body) = request_with(
        http,
        "POST",
        "/v1/segments",
        &reader,
        r#"{"name":"zone-b"}"#,
    )
    .unwrap();
    assert_eq!(
        (status, json(&body)["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let (status, _) = request_with(
        http,
        "GET",
        "/v1/segments",
        &[("X-Auth-Token", "admin-0123456789abcdef")],
        "",
    )
    .unwrap();
    assert_eq!(status, 200, "Masakari clients send X-Auth-Token");
    let (status, _) = post(http, "/internal/raft/vote", "{}").unwrap();
    assert_eq!(status, 401, "Raft RPCs need a token too");
    let (status, _) = post(http, "/v1/debug/faults", r#"{"drop":[]}"#).unwrap();
    assert_eq!(status, 401, "so does the fault filter");
    assert_eq!(get(http, "/v1/health").unwrap().0, 200, "health stays open");
    // The CLI passes --token.
    let (ok, out, err) = buoy(
        http,
        &["--token", "reader-0123456789abcdef", "segment", "list"],
    );
    assert!(ok && out.contains("zone-a"), "{out}{err}");
    let (ok, _, err) = buoy(http, &["segment", "list"]);
    assert!(!ok && err.contains("HTTP 401"), "{err}");
}

#[test]
fn every_route_in_the_openapi_document_is_served() {
    let c = one_server(44);
    let http = c.http(1);
    let (status, body) = get(http, "/v1/openapi.json").unwrap();
    assert_eq!(status, 200);
    let doc = json(&body);
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 15, "{} paths", paths.len());
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            if path == "/v1/events" {
                continue; // A stream: checked by the CLI test.
            }
            let concrete = path
                .replace("{id}", "no-such-id")
                .replace("{name}", "no-such-server");
            let (status, answer) = request(http, &method.to_uppercase(), &concrete, "{}").unwrap();
            assert_ne!(status, 405, "{method} {path}: {answer}");
            assert!(
                !answer.contains("no such endpoint"),
                "{method} {path} is documented but not served: {answer}"
            );
        }
    }
}

#[test]
fn lists_page_in_name_order_with_limit_marker_and_filters() {
    let c = one_server(68);
    let http = c.http(1);
    // Created out of name order; every third one disabled.
    let mut names = Vec::new();
    for i in 0..25u32 {
        let name = format!("seg-{:02}", (i * 7) % 25);
        let enabled = i % 3 != 0;
        let (status, body) = post(
            http,
            "/v1/segments",
            &format!(r#"{{"name":"{name}","enabled":{enabled}}}"#),
        )
        .unwrap();
        assert_eq!(status, 201, "{body}");
        names.push((name, enabled));
    }
    names.sort();
    let pages = |query: &str| -> (Vec<String>, usize) {
        let mut seen = Vec::new();
        let mut pages = 0;
        let mut marker: Option<String> = None;
        loop {
            let path = match &marker {
                Some(m) => format!("/v1/segments?{query}&marker={m}"),
                None => format!("/v1/segments?{query}"),
            };
            let (status, body) = get(http, &path).unwrap();
            assert_eq!(status, 200, "{path}: {body}");
            let v = json(&body);
            pages += 1;
            let page = v["segments"].as_array().unwrap();
            seen.extend(page.iter().map(|s| s["name"].as_str().unwrap().to_string()));
            match v["next_marker"].as_str() {
                Some(m) => {
                    assert_eq!(Some(m), page.last().unwrap()["id"].as_str(), "{body}");
                    marker = Some(m.to_string());
                }
                None => return (seen, pages),
            }
            assert!(pages < 50, "paging does not end: {path}");
        }
    };
    let all: Vec<String> = names.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(pages("limit=10"), (all.clone(), 3));
    assert_eq!(
        pages("limit=25"),
        (all.clone(), 1),
        "an exact fit has no next page"
    );
    let disabled: Vec<String> = names
        .iter()
        .filter(|(_, e)| !e)
        .map(|(n, _)| n.clone())
        .collect();
    assert_eq!(disabled.len(), 9);
    assert_eq!(pages("limit=4&enabled=false"), (disabled, 3));

    // Hosts filter by segment name or id, and show it as asked.
    let (_, seg) = get(http, "/v1/segments/seg-03").unwrap();
    let seg_id = json(&seg)["id"].as_str().unwrap().to_string();
    for (host, segment) in [("h-b", "seg-03"), ("h-a", "seg-03"), ("h-c", "seg-04")] {
        let (status, body) = post(
            http,
            "/v1/hosts",
            &format!(r#"{{"name":"{host}","segment":"{segment}"}}"#),
        )
        .unwrap();
        assert_eq!(status, 201, "{body}");
    }
    for (query, shown) in [
        ("segment=seg-03", "seg-03"),
        (&*format!("segment={seg_id}"), &*seg_id),
    ] {
        let (status, body) = get(http, &format!("/v1/hosts?{query}")).unwrap();
        assert_eq!(status, 200, "{body}");
        let hosts: Vec<(String, String)> = json(&body)["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["name"].as_str().unwrap().to_string(),
                    h["segment"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            hosts,
            [
                ("h-a".to_string(), shown.to_string()),
                ("h-b".into(), shown.into())
            ],
            "{query}"
        );
    }

    // Bad paging parameters name the field.
    for (query, field) in [
        ("marker=no-such-id", "marker"),
        ("limit=0", "limit"),
        ("limit=many", "limit"),
        ("colour=red", "colour"),
    ] {
        let (status, body) = get(http, &format!("/v1/segments?{query}")).unwrap();
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(json(&body)["error"]["field"], field, "{query}: {body}");
    }
}

/// This server's own Raft status: (last applied index, snapshot index).
fn raft_progress(c: &Cluster, i: u8) -> Option<(u64, Option<u64>)> {
    let (status, body) = get(c.http(i), "/v1/status")?;
    let v = json(&body);
    (status == 200).then(|| {
        (
            v["raft"]["last_applied"].as_u64().unwrap_or(0),
            v["raft"]["snapshot_index"].as_u64(),
        )
    })
}

/// The index up to which server `i` purged its log (0 before any purge).
fn purged(c: &Cluster, i: u8) -> u64 {
    get(c.http(i), "/v1/status")
        .map(|(_, body)| json(&body)["raft"]["purged_index"].as_u64().unwrap_or(0))
        .unwrap_or(0)
}

#[test]
fn a_server_behind_the_purged_log_catches_up_from_a_snapshot_of_megabytes() {
    let mut c = Cluster::new(67);
    let args = |c: &Cluster, i: u8| {
        let mut a = server_args(c, i, 3);
        a.extend(["--snapshot-every".to_string(), "100".to_string()]);
        a
    };
    for i in 1..=3 {
        let a = args(&c, i);
        c.start(i, &a);
    }
    let leader = wait_for_leader(&c, &[1, 2, 3]);
    let leader_i: u8 = leader.trim_start_matches('h').parse().unwrap();
    let down = (1..=3).find(|&i| i != leader_i).unwrap();
    c.kill(&format!("h{down}"));

    // One entry per write, with about 2.4 kB each: once the leader has purged its log past
    // the entries the stopped server has, that server can only catch up from a snapshot, and
    // a snapshot of more than 2 MB (axum's default body limit). The leader keeps 1,000 entries
    // before its last snapshot, and postpones a purge while a retry to the stopped server is
    // in flight, so it writes until the purge happened.
    let description = "d".repeat(2_400);
    let mut written = 0;
    while written < 1_300 || purged(&c, leader_i) < 100 {
        assert!(written < 4_000, "the leader never purged its log");
        let body = format!(r#"{{"name":"big-{written}","description":"{description}"}}"#);
        let (status, answer) = post(c.http(leader_i), "/v1/segments", &body).unwrap();
        assert_eq!(status, 201, "{answer}");
        written += 1;
    }
    let (applied, snapshot) = raft_progress(&c, leader_i).unwrap();
    assert!(
        snapshot.is_some_and(|s| s > 1_100),
        "the leader snapshotted: {snapshot:?}"
    );

    let a = args(&c, down);
    c.start(down, &a);
    let caught_up = wait_until(Duration::from_secs(60), || {
        raft_progress(&c, down).is_some_and(|(a, s)| a >= applied && s.is_some_and(|s| s >= 100))
    });
    assert!(
        caught_up.is_some(),
        "h{down} did not install the snapshot and catch up: {:?} (leader: {applied})",
        raft_progress(&c, down)
    );
    // With the leader gone, the two left need this server for every quorum: a new write
    // commits, and every segment is there.
    let expected = segments(&c, leader_i);
    assert_eq!(expected.len(), written);
    let other = (1..=3).find(|&i| i != down && i != leader_i).unwrap();
    c.kill(&leader);
    wait_for_new_leader(&c, &[down, other], Some(&leader));
    let (status, answer) = post(c.http(down), "/v1/segments", r#"{"name":"after"}"#).unwrap();
    assert_eq!(status, 201, "{answer}");
    let now = segments(&c, down);
    assert_eq!(now.len(), written + 1);
    assert!(expected.is_subset(&now));
}
