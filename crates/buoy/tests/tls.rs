//! TLS end to end: three servers that serve their API over TLS form their Raft group over
//! TLS, relay writes to the leader over TLS, and refuse plain HTTP; the CLI needs the right CA.
//! Certificates come from the `openssl` command (skipped with a message where it is missing).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Cluster, buoy, get, wait_until};
use serde_json::Value;

const NET: u8 = 45;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA named `name` (`name.pem`, `name.key`).
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

/// `agent.pem` / `agent.key`, signed by `ca`, valid for the test's agent addresses.
fn make_agent_cert(dir: &Path, ca: &str) {
    let sans: Vec<String> = (1..=3).map(|i| format!("IP:127.0.{NET}.{i}")).collect();
    std::fs::write(
        dir.join("ext.cnf"),
        format!(
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName={}\n",
            sans.join(",")
        ),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=buoy-agent",
            "-keyout",
            "agent.key",
            "-out",
            "agent.csr",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "agent.csr",
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "agent.pem",
        ],
    );
}

#[test]
fn servers_speak_tls_to_each_other_and_to_the_cli() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("SKIPPED: the `openssl` command is missing (apt-get install openssl)");
        return;
    }
    let mut c = Cluster::new(NET);
    make_ca(&c.dir, "ca");
    make_ca(&c.dir, "other-ca");
    make_agent_cert(&c.dir, "ca");
    let file = |n: &str| c.dir.join(n).display().to_string();
    let (cert, key, ca, other_ca) = (
        file("agent.pem"),
        file("agent.key"),
        file("ca.pem"),
        file("other-ca.pem"),
    );

    // Half a TLS configuration is refused, naming what is missing.
    let (ok, _, err) = buoy(
        c.http(1),
        &["agent", "--name", "x", "--server", "--tls-cert", &cert],
    );
    assert!(!ok);
    assert!(err.contains("missing --tls-key, --tls-ca"), "{err}");

    for i in 1..=3u8 {
        let data = c.dir.join(format!("data-h{i}")).display().to_string();
        let args: Vec<String> = [
            "--server",
            "--bootstrap-expect",
            "3",
            "--data-dir",
            &data,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tls-ca",
            &ca,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        c.spawn(i, &args);
    }

    // The group forms: its Raft RPCs go over TLS, so a leader means TLS works between servers.
    let mut status = Value::Null;
    wait_until(Duration::from_secs(30), || {
        let (ok, out, _) = buoy(c.http(3), &["--tls-ca", &ca, "status", "--json"]);
        status = serde_json::from_str(&out).unwrap_or(Value::Null);
        ok && status["leader"]["name"].is_string()
    })
    .unwrap_or_else(|| panic!("no leader over TLS: {status}\n{}", c.log(1)));
    eprintln!("status over TLS: {status}");
    let leader = status["leader"]["name"].as_str().unwrap().to_string();
    let follower: u8 = (1..=3u8)
        .find(|i| format!("h{i}") != leader)
        .expect("three servers, one leader");

    // A write sent to a follower is relayed to the leader (over TLS) and read back elsewhere.
    let (ok, out, err) = buoy(
        c.http(follower),
        &["--tls-ca", &ca, "segment", "create", "tls-zone", "--json"],
    );
    assert!(ok, "create through a follower: {out} {err}");
    for i in 1..=3u8 {
        let (ok, out, err) = buoy(
            c.http(i),
            &["--tls-ca", &ca, "segment", "show", "tls-zone", "--json"],
        );
        assert!(ok, "show on h{i}: {err}");
        let seg: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(seg["name"], "tls-zone", "{out}");
    }

    // Plain HTTP gets no HTTP answer.
    assert_eq!(get(c.http(1), "/v1/health"), None);
    // Without the CA, or with another CA, the CLI refuses the agent and says why.
    let (ok, _, err) = buoy(c.http(1), &["status"]);
    assert!(!ok, "plain HTTP to a TLS agent must fail");
    assert!(
        err.contains("if that agent serves TLS, pass --tls-ca"),
        "{err}"
    );
    let (ok, _, err) = buoy(c.http(1), &["--tls-ca", &other_ca, "status"]);
    assert!(!ok, "a certificate from another CA must be refused");
    assert!(err.contains("TLS handshake with the agent"), "{err}");
    assert!(err.contains("UnknownIssuer"), "{err}");
}
