//! The API against Schemathesis (installed into `target/schemathesis-venv` by
//! scripts/setup-test-deps.sh), as a new user would run it: `st run .../v1/openapi.json`
//! with every check on a running server with tokens, bounded in time. Every check must pass: no
//! 5xx, answers that match the document, schema-valid requests taken (or refused only for
//! what the schema cannot state, see `api_fuzz/schemathesis.toml`), schema-invalid ones
//! refused, and no route but liveness answering without a token. The same for the
//! Masakari-compatible API, from its own document (`/masakari/v1/openapi.json`).
//!
//! The streaming routes (`/v1/events`, instance logs) are left out: they follow until the
//! client leaves, which a fuzzer's request never does.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Cluster;

const NET: u8 = 86;
const ADMIN: &str = "admin-0123456789abcdef";

/// Schemathesis's `st`, or why the test skips (CI must have it).
fn schemathesis() -> Option<PathBuf> {
    let st =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/schemathesis-venv/bin/st");
    if st.exists() {
        return Some(st);
    }
    if std::env::var_os("CI").is_some() {
        panic!("target/schemathesis-venv is missing: scripts/setup-test-deps.sh installs it");
    }
    eprintln!("SKIPPED: no target/schemathesis-venv (run scripts/setup-test-deps.sh)");
    None
}

#[test]
fn schemathesis_finds_nothing_wrong_with_the_api() {
    let Some(st) = schemathesis() else {
        return;
    };
    let mut c = Cluster::new(NET);
    let http = c.start_with_tokens(&[(ADMIN, "admin")]);
    let budget = std::env::var("BUOY_FUZZ_SECONDS").unwrap_or_else(|_| "60".into());
    let buoy = [
        "--exclude-path",
        "/v1/events",
        "--exclude-path-regex",
        "/logs",
    ];
    fuzz(
        &st,
        &c,
        "schemathesis.toml",
        "/v1/openapi.json",
        &budget,
        &buoy,
    );
    // The Masakari-compatible API, under the agent's /masakari prefix.
    let base = format!("http://{http}/masakari");
    let masakari = ["--url", base.as_str()];
    fuzz(
        &st,
        &c,
        "masakari.toml",
        "/masakari/v1/openapi.json",
        &budget,
        &masakari,
    );
}

/// Runs `st run` with every check on the document at `doc` of agent 1, for `budget` seconds.
fn fuzz(st: &Path, c: &Cluster, config: &str, doc: &str, budget: &str, extra: &[&str]) {
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/api_fuzz")
        .join(config);
    let out = Command::new(st)
        .arg("--config-file")
        .arg(&config)
        .args(["run", &format!("http://{}{doc}", c.http(1))])
        // Every check runs by default; `--checks all` here would override the per-operation
        // settings in the config file (see schemathesis.toml).
        .args(["--max-time", budget, "--workers", "1"])
        .args(["-H", &format!("Authorization: Bearer {ADMIN}")])
        .args(["--wait-for-schema", "10"])
        .args(extra)
        .env("NO_COLOR", "1")
        .current_dir(&c.dir)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems in {doc}:\n{report}\n{}\n--- agent log ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.log(1)
    );
    assert!(report.contains("Tested: "), "{report}");
}
