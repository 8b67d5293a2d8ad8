//! Host identity (issue 17), from an attacker's side: a host's credential renews its own lease
//! only; unsigned, forged, replayed and foreign-secret renewals are refused; and a member that
//! claims the server role without the cluster secret hands no host a lease.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{Cluster, get, json, wait_until};
use node::identity::{ClusterSecret, HostKey, MAC_HEADER, Signature};

const NET: u8 = 82;
/// `proto::RENEW_PATH`.
const RENEW_PATH: &str = "/internal/lease";

/// `POST /internal/lease` with `sig`'s headers: status, the answer's MAC header, body.
fn renew(addr: SocketAddr, body: &str, sig: Option<&Signature>) -> (u16, Option<String>, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let headers: String = sig
        .map(|sig| {
            sig.headers()
                .iter()
                .map(|(k, v)| format!("{k}: {v}\r\n"))
                .collect()
        })
        .unwrap_or_default();
    let req = format!(
        "POST {RENEW_PATH} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mac = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(MAC_HEADER)
            .then(|| v.trim().to_string())
    });
    (status, mac, body.to_string())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn signed(key: &HostKey, nonce: &str, body: &str) -> Signature {
    key.sign("POST", RENEW_PATH, now_ms(), nonce, body.as_bytes())
}

/// A renewal signed with `key` now, sent again freshly signed while the leader takes it for a
/// replay: the host's own agent renews with the same key meanwhile, and a renewal of its
/// that reached the leader first with a later time makes ours look old (a race of the test,
/// not of the rule). Returns the answer and the signature that got it.
fn renew_fresh(
    leader: SocketAddr,
    key: &HostKey,
    nonce: &str,
    body: &str,
) -> (u16, Option<String>, String, Signature) {
    let mut attempt = 0;
    loop {
        let sig = signed(key, &format!("{nonce}-{attempt}"), body);
        let (status, mac, answer) = renew(leader, body, Some(&sig));
        attempt += 1;
        if status != 401 || !answer.contains("replayed") || attempt == 5 {
            return (status, mac, answer, sig);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Agent 9, "a0" (a name that sorts first): a member with the gossip key (the tests' keyring)
/// that claims the server role without the cluster secret, a control plane of its own with no
/// identity checks.
fn start_impostor(c: &mut Cluster, join: Option<SocketAddr>) {
    let mut args = vec![
        "--server".to_string(),
        "--data-dir".into(),
        c.dir.join("d9").display().to_string(),
        "--unsafe-no-host-identity".into(),
    ];
    if let Some(j) = join {
        args.extend(["--join".to_string(), j.to_string()]);
    }
    let log = std::fs::File::create(c.dir.join("h9.log")).unwrap();
    let child = c
        .command(9, "a0", &args)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    c.agents.push(("a0".into(), child));
}

#[test]
fn a_host_renews_only_its_own_lease_and_obeys_only_the_control_plane() {
    let mut c = Cluster::new(NET);
    c.start_agent(1, None, &[]);
    c.start_agent(2, None, &[]);
    let leader = c.http(1);
    wait_until(Duration::from_secs(20), || {
        c.host_get(2, "/v1/lease")
            .is_some_and(|(_, b)| json(&b)["held"] == true)
    })
    .unwrap_or_else(|| panic!("h2 never held its lease:\n{}", c.log(2)));

    let secret = ClusterSecret::load(&c.dir.join("cluster.secret")).unwrap();
    let h2 = secret.host_key("h2");
    let for_h3 = r#"{"host":"h3"}"#;

    // Its own credential: granted, with an answer only the control plane could have signed.
    let body = r#"{"host":"h2"}"#;
    let (status, mac, answer, sig) = renew_fresh(leader, &h2, "n-own", body);
    assert_eq!(status, 200, "{answer}");
    assert!(
        h2.answer_is_genuine(&sig.nonce, 200, answer.as_bytes(), &mac.unwrap_or_default()),
        "the grant carries the control plane's MAC"
    );
    // The same request again (a capture replayed): refused.
    let (status, _, answer) = renew(leader, body, Some(&sig));
    assert_eq!(status, 401, "{answer}");
    assert!(answer.contains("replayed"), "{answer}");

    // h2's credential renewing h3's lease (or reporting for it): 403, naming both.
    let (status, _, answer, _) = renew_fresh(leader, &h2, "n-other", for_h3);
    assert_eq!(status, 403, "{answer}");
    assert!(
        answer.contains("`h2`") && answer.contains("`h3`") && answer.contains("itself only"),
        "{answer}"
    );
    // No signature at all, a signature claiming to be h3 made with h2's key, another
    // cluster's credential: 401, and none of them renews anything.
    let (status, _, answer) = renew(leader, for_h3, None);
    assert_eq!(status, 401, "{answer}");
    assert!(answer.contains("--credential"), "{answer}");
    let mut forged = signed(&h2, "n-forged", for_h3);
    forged.host = "h3".into();
    let (status, _, answer) = renew(leader, for_h3, Some(&forged));
    assert_eq!(status, 401, "{answer}");
    assert!(answer.contains("not valid"), "{answer}");
    let foreign = ClusterSecret::generate().unwrap().host_key("h3");
    let (status, _, answer) = renew(leader, for_h3, Some(&signed(&foreign, "n-foreign", for_h3)));
    assert_eq!(status, 401, "{answer}");
    let leases = json(&get(leader, "/v1/leases").unwrap().1);
    assert!(
        !leases["leases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["host"] == "h3"),
        "no lease for h3 came of it: {leases}"
    );
    // The honest host itself is unaffected by all of this.
    assert_eq!(json(&c.host_get(2, "/v1/lease").unwrap().1)["held"], true);

    // h2 holds no operator token, so its own routes answer only calls signed with its
    // credential (by a server, or by whoever holds its credential file).
    for path in [
        "/v1/lease",
        "/v1/supervisor",
        "/v1/members",
        "/v1/debug/faults",
    ] {
        let (status, answer) = get(c.http(2), path).unwrap();
        assert_eq!(status, 401, "unsigned {path}: {answer}");
        assert!(answer.contains("--credential"), "{answer}");
    }
    let call = |key: &HostKey, method: &str, path: &str, signed_body: &str, body: &str| {
        let sig = key.sign_call(
            "t",
            method,
            path,
            now_ms(),
            "n-call",
            signed_body.as_bytes(),
        );
        let headers = sig.headers();
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        common::request_with(c.http(2), method, path, &headers, body).unwrap()
    };
    let (status, answer) = call(&h2, "GET", "/v1/members", "", "");
    assert_eq!(status, 200, "signed with h2's own credential: {answer}");
    for (who, key) in [
        ("h3's credential", secret.host_key("h3")),
        ("another cluster's", foreign.clone()),
    ] {
        let (status, answer) = call(&key, "GET", "/v1/members", "", "");
        assert_eq!(status, 401, "signed with {who}: {answer}");
    }
    // A signed fault rule whose body was swapped on the way: refused, nothing applied.
    let heal = r#"{"drop": []}"#;
    let cut_all = r#"{"drop": [{"peer": "h1", "direction": "both"}]}"#;
    let (status, answer) = call(&h2, "POST", "/v1/debug/faults", heal, cut_all);
    assert_eq!(status, 401, "{answer}");
    let (status, answer) = call(&h2, "POST", "/v1/debug/faults", heal, heal);
    assert_eq!(status, 200, "{answer}");
    // An operator on h2 uses its credential file with the CLI; without it, told how.
    let (ok, _, err) = common::buoy(c.http(2), &["members"]);
    assert!(!ok && err.contains("--credential"), "{err}");
    let cred = c.dir.join("h2.cred").display().to_string();
    let (ok, out, err) = common::buoy(c.http(2), &["members", "--credential", &cred]);
    assert!(ok && out.contains("h1"), "{out}{err}");

    // h2's credential writing a segment: 403, saying what a host credential is for.
    let sig = h2.sign(
        "POST",
        "/v1/segments",
        now_ms(),
        "n-seg",
        b"{\"name\":\"x\"}",
    );
    let pairs = sig.headers().to_vec();
    let headers: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, answer) =
        common::request_with(leader, "POST", "/v1/segments", &headers, r#"{"name":"x"}"#).unwrap();
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("only renews that host's lease"), "{answer}");

    // A Raft call signed with a host's credential, or unsigned: only servers make those.
    let raft = |sig: Option<&Signature>| {
        let pairs: Vec<(&str, String)> = sig.map(|s| s.headers().to_vec()).unwrap_or_default();
        let headers: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        common::request_with(leader, "POST", "/internal/raft/vote", &headers, "{}").unwrap()
    };
    let as_host = h2.sign("POST", "/internal/raft/vote", now_ms(), "n-raft", b"{}");
    let (status, answer) = raft(Some(&as_host));
    assert_eq!(status, 401, "{answer}");
    assert!(answer.contains("without a server key"), "{answer}");
    assert_eq!(raft(None).0, 401);

    // A member that holds the gossip key and claims the server role, without the cluster
    // secret: a control plane of its own that grants every renewal it gets (no identity
    // checks). Named to sort first, so that it founds a control plane of its own. It cannot
    // prove itself to h2, so h2 sends it nothing: no renewal (its lease table stays empty of
    // h2, even once h2 is cut from the real server and has nowhere else to go), no relayed API
    // call (an operator's token would go with it).
    let join = c.gossip(1);
    start_impostor(&mut c, Some(join));
    wait_until(Duration::from_secs(20), || {
        get(c.http(9), "/v1/leases").is_some_and(|(s, b)| s == 200 && json(&b)["term"].is_number())
    })
    .unwrap_or_else(|| panic!("the impostor leads nothing:\n{}", c.log(9)));
    c.wait_all_see(&[2], "a0", "alive", Duration::from_secs(15));
    wait_until(Duration::from_secs(10), || {
        c.log(2)
            .contains("claims the server role but has not proven")
    })
    .unwrap_or_else(|| panic!("h2 did not say it ignores the impostor:\n{}", c.log(2)));
    let cut = r#"{"drop": [{"peer": "h1", "direction": "both", "scope": "all"}]}"#;
    assert_eq!(c.host_post(2, "/v1/debug/faults", cut).unwrap().0, 200);
    wait_until(Duration::from_secs(10), || {
        c.host_get(2, "/v1/lease")
            .is_some_and(|(_, b)| json(&b)["held"] == false)
    })
    .unwrap_or_else(|| panic!("h2 took the impostor's grant:\n{}", c.log(2)));
    let theirs = json(&get(c.http(9), "/v1/leases").unwrap().1);
    assert!(
        !theirs["leases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["host"] == "h2"),
        "h2 renewed with the impostor: {theirs}"
    );
    // An API call h2 relays goes to a proven server or nowhere, never to the impostor.
    if let Some((200, b)) = get(c.http(2), "/v1/servers") {
        assert_ne!(
            json(&b)["leader"]["name"],
            "a0",
            "relayed to the impostor: {b}"
        );
    }
    // Healed, the real server grants again.
    assert_eq!(
        c.host_post(2, "/v1/debug/faults", r#"{"drop": []}"#)
            .unwrap()
            .0,
        200
    );
    wait_until(Duration::from_secs(10), || {
        c.host_get(2, "/v1/lease")
            .is_some_and(|(_, b)| json(&b)["held"] == true)
    })
    .unwrap_or_else(|| panic!("h2 never got its lease back:\n{}", c.log(2)));
}

#[test]
fn agents_without_identity_refuse_to_start_and_say_how_to_get_one() {
    let c = Cluster::new(NET + 1);
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_buoy"))
            .args(["agent", "--name", "h1", "--bind", "127.0.83.1:7946"])
            .args(["--http", "127.0.83.1:7070", "--profile", "local"])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let data = c.dir.join("d").display().to_string();
    let e = run(&["--server", "--data-dir", &data]);
    assert!(
        e.contains("--cluster-secret") && e.contains("buoy credential secret"),
        "{e}"
    );
    let e = run(&["--data-dir", &data]);
    assert!(
        e.contains("--credential") && e.contains("buoy credential issue h1"),
        "{e}"
    );
    // Another host's credential, and a secret file others can read.
    let args = lab::identity_files::agent_args(&c.dir, "h2", false).unwrap();
    let e = run(&["--data-dir", &data, &args[0], &args[1]]);
    assert!(e.contains("host `h2`'s"), "{e}");
    let secret = c.dir.join("cluster.secret");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = run(&[
        "--server",
        "--data-dir",
        &data,
        "--cluster-secret",
        &secret.display().to_string(),
    ]);
    assert!(e.contains("chmod 600"), "{e}");
}

#[test]
fn a_member_claiming_the_server_role_cannot_join_the_founding_servers() {
    // Bootstrap forms the group from the first `bootstrap-expect` servers by name. A member
    // with the gossip key that claims the role under a name that sorts first ("a0") is there
    // before the real servers; without proofs it would be a founding voter (and h3 would be
    // left waiting to be added).
    let mut c = Cluster::new(NET + 3);
    start_impostor(&mut c, None);
    let dir = c.dir.clone();
    let server = |i: u8, join: SocketAddr| {
        vec![
            "--server".to_string(),
            "--bootstrap-expect".into(),
            "3".into(),
            "--data-dir".into(),
            dir.join(format!("d{i}")).display().to_string(),
            "--join".into(),
            join.to_string(),
        ]
    };
    for i in 1..=3 {
        let args = server(i, c.gossip(9));
        c.start(i, &args);
    }
    let voters = wait_until(Duration::from_secs(20), || {
        get(c.http(1), "/v1/servers").is_some_and(|(s, b)| {
            s == 200 && json(&b)["voters"].as_array().is_some_and(|v| v.len() == 3)
        })
    });
    let answer = get(c.http(1), "/v1/servers")
        .map(|(_, b)| b)
        .unwrap_or_default();
    assert!(
        voters.is_some(),
        "no control plane of h1, h2 and h3 formed: {answer}\n{}\n{}",
        c.log(1),
        c.log(2)
    );
    let mut names: Vec<String> = json(&answer)["voters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["h1", "h2", "h3"], "{answer}");
    assert!(
        c.log(1)
            .contains("claims the server role but has not proven"),
        "{}",
        c.log(1)
    );
}

#[test]
fn hosts_that_are_not_registered_cannot_grow_the_lease_table_without_end() {
    let mut c = Cluster::new(92);
    c.start_agent(1, None, &[]);
    let leader = c.http(1);
    let secret = ClusterSecret::load(&c.dir.join("cluster.secret")).unwrap();
    wait_until(Duration::from_secs(20), || {
        get(leader, "/v1/leases").is_some_and(|(s, _)| s == 200)
    })
    .expect("a leader");
    let max = 1024;
    for i in 0..max {
        let host = format!("u{i}");
        let body = format!(r#"{{"host":"{host}"}}"#);
        let (status, _, answer) = renew(
            leader,
            &body,
            Some(&signed(&secret.host_key(&host), "n", &body)),
        );
        assert_eq!(status, 200, "{host}: {answer}");
    }
    // One more invented name (its credential is valid: the secret's holder made it).
    let body = r#"{"host":"one-too-many"}"#;
    let key = secret.host_key("one-too-many");
    let (status, _, answer) = renew(leader, body, Some(&signed(&key, "n", body)));
    assert_eq!(status, 409, "{answer}");
    assert!(answer.contains("register `one-too-many` first"), "{answer}");
    // Registered, it gets its lease; and the hosts already holding one keep renewing.
    common::create(&c, "/v1/segments", serde_json::json!({"name": "zone"}));
    common::create(
        &c,
        "/v1/hosts",
        serde_json::json!({"name": "one-too-many", "segment": "zone"}),
    );
    let (status, _, answer) = renew(leader, body, Some(&signed(&key, "m", body)));
    assert_eq!(status, 200, "{answer}");
    let body = r#"{"host":"u7"}"#;
    let (status, _, answer) = renew(
        leader,
        body,
        Some(&signed(&secret.host_key("u7"), "m", body)),
    );
    assert_eq!(status, 200, "{answer}");
}

#[test]
fn with_api_tokens_a_host_renews_with_its_credential_alone() {
    // Hosts hold no API token: the servers' tokens file must not stop their renewals.
    let mut c = Cluster::new(93);
    c.start_with_tokens(&[("admin-0123456789abcdef", "admin")]);
    c.start_agent(2, None, &[]);
    wait_until(Duration::from_secs(20), || {
        c.host_get(2, "/v1/lease")
            .is_some_and(|(s, b)| s == 401 || json(&b)["held"] == true)
    })
    .unwrap_or_else(|| panic!("h2 never held its lease:\n{}\n{}", c.log(2), c.log(1)));
    // (h2's own API has no tokens file: it answers; the leader's lease table has h2.)
    let bearer = "Bearer admin-0123456789abcdef";
    let (status, leases) = common::request_with(
        c.http(1),
        "GET",
        "/v1/leases",
        &[("Authorization", bearer)],
        "",
    )
    .unwrap();
    assert_eq!(status, 200, "{leases}");
    assert!(leases.contains("\"h2\""), "{leases}");
}

#[test]
fn a_host_answers_the_control_plane_for_an_operator_it_holds_no_token_for() {
    // The server knows the operator's token; host h2 has a tokens file of its own without it.
    // The operator reads an instance's log through the server, which checked the token and
    // signs its relay for h2; the same token sent to h2 itself gets nothing.
    use std::os::unix::fs::PermissionsExt;
    let mut c = Cluster::new(94);
    let admin = "admin-0123456789abcdef";
    c.start_with_tokens(&[(admin, "admin")]);
    let own = c.dir.join("h2-tokens.json");
    std::fs::write(
        &own,
        r#"{"tokens": [{"token": "h2-only-0123456789abcdef", "role": "admin"}]}"#,
    )
    .unwrap();
    std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o600)).unwrap();
    c.start_agent(2, None, &["--tokens", &own.display().to_string()]);
    let bearer = format!("Bearer {admin}");
    let call = |method: &str, path: &str, body: &str| {
        common::request_with(c.http(1), method, path, &[("Authorization", &bearer)], body).unwrap()
    };
    for (path, body) in [
        ("/v1/segments", r#"{"name": "zone"}"#),
        ("/v1/hosts", r#"{"name": "h2", "segment": "zone"}"#),
        (
            "/v1/instances",
            r#"{"name": "ticker", "segment": "zone", "driver": "process", "desired_state": "stopped",
                "params": {"command": "/bin/sh", "args": ["-c", "while true; do echo tick; sleep 0.2; done"]}}"#,
        ),
        ("/v1/placements", r#"{"instance": "ticker", "host": "h2"}"#),
    ] {
        let (status, answer) = call("POST", path, body);
        assert!(status < 300, "{path}: {status} {answer}");
    }
    let (status, answer) = call(
        "PATCH",
        "/v1/instances/ticker",
        r#"{"desired_state": "started"}"#,
    );
    assert_eq!(status, 200, "{answer}");
    let mut log = String::new();
    wait_until(Duration::from_secs(30), || {
        let (status, body) = call("GET", "/v1/instances/ticker/logs?tail=2", "");
        log = format!("{status} {body}");
        status == 200 && body.contains("tick")
    })
    .unwrap_or_else(|| panic!("no log through the server: {log}\n{}", c.log(2)));

    // Straight to h2, the operator's token is unknown there; a host's own signature, or a
    // call signed with another cluster's secret, is not the control plane's.
    let path = "/v1/supervisor/logs/ticker?tail=2";
    let direct = |headers: &[(&str, &str)]| {
        common::request_with(c.http(2), "GET", path, headers, "")
            .unwrap()
            .0
    };
    assert_eq!(direct(&[("Authorization", &bearer)]), 401);
    let other = ClusterSecret::generate().unwrap();
    let forged = other
        .host_key("h2")
        .sign_call("s1", "GET", path, now_ms(), "n", b"");
    let as_host = other.host_key("h2").sign("GET", path, now_ms(), "n", b"");
    for sig in [forged, as_host] {
        let headers: Vec<(&str, String)> = sig.headers().into();
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(direct(&headers), 401, "{sig:?}");
    }
    // h2's own token still works on h2.
    assert_eq!(
        direct(&[("Authorization", "Bearer h2-only-0123456789abcdef")]),
        200
    );
}

#[test]
fn a_host_cut_from_the_leader_renews_its_signed_lease_through_a_follower() {
    let mut c = Cluster::new(95);
    for i in 1..=3 {
        let dir = c.dir.join(format!("d{i}")).display().to_string();
        let args = ["--server", "--bootstrap-expect", "3", "--data-dir", &dir];
        c.start(i, &args.map(String::from));
    }
    c.start_agent(4, None, &[]);
    let held = |c: &Cluster| {
        c.host_get(4, "/v1/lease")
            .is_some_and(|(_, b)| json(&b)["held"] == true)
    };
    wait_until(Duration::from_secs(30), || held(&c))
        .unwrap_or_else(|| panic!("h4 never held its lease:\n{}", c.log(4)));
    let leader = json(&get(c.http(1), "/v1/status").unwrap().1)["leader"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    // h4 loses every packet to and from the leader, gossip and HTTP: its signed renewals go
    // to a follower, which forwards them to the leader with the host's signature.
    c.faults(
        4,
        &format!(r#"{{"drop":[{{"peer":"{leader}","direction":"both"}}]}}"#),
    );
    // Five lease lifetimes (1 s each with the local profile): held throughout.
    let t0 = std::time::Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        assert!(
            held(&c),
            "h4 lost its lease {:?} after being cut from the leader {leader}:\n{}",
            t0.elapsed(),
            c.log(4)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
