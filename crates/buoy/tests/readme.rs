//! The README's operator examples work when pasted (issue 16). Every block the README marks
//! `<!-- tested: crates/buoy/tests/readme.rs -->` runs here, in order, in `bash -e` against a
//! fresh cluster, with `buoy` on the PATH and the README's `host.toml` in the directory; only
//! the address is changed to this test's network. Every other `buoy` line of the README is
//! parsed by the real CLI parser (`cli::readme_commands`), and the agent's config file example
//! by the agent's config loader.

mod common;

use std::process::Command;

use common::Cluster;

const NET: u8 = 79;
const MARK: &str = "<!-- tested: crates/buoy/tests/readme.rs";

/// The code block right after each marker: (its language, its text).
fn marked_blocks(readme: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = readme.lines();
    while let Some(l) = lines.next() {
        if !l.starts_with(MARK) {
            continue;
        }
        let Some(fence) = lines.next().and_then(|f| f.strip_prefix("```")) else {
            panic!("a marker must be followed by a code block: {l}");
        };
        let body: Vec<&str> = lines
            .by_ref()
            .take_while(|x| !x.starts_with("```"))
            .collect();
        out.push((fence.to_string(), body.join("\n")));
    }
    out
}

#[test]
fn the_readme_operator_examples_work_as_pasted() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("the README");
    let blocks = marked_blocks(&readme);
    assert!(blocks.len() >= 3, "the README's tested blocks: {blocks:?}");
    let mut c = Cluster::new(NET);
    c.start_agent(1, None, &[]);
    common::wait_until(std::time::Duration::from_secs(20), || {
        common::get(c.http(1), "/v1/status")
            .is_some_and(|(s, b)| s == 200 && common::json(&b)["leader"]["name"].is_string())
    })
    .unwrap_or_else(|| panic!("no leader:\n{}", c.log(1)));
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_buoy"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // Files first (the commands name them), then the shell blocks in order.
    for (lang, body) in blocks.iter().filter(|(l, _)| l == "toml") {
        assert_eq!(lang, "toml");
        std::fs::write(c.dir.join("host.toml"), body).unwrap();
    }
    for (n, (_, body)) in blocks.iter().filter(|(l, _)| l == "sh").enumerate() {
        let script = body.replace("127.0.10.1:7070", &c.http(1).to_string());
        let out = Command::new("bash")
            .args(["-e", "-c", &script])
            .current_dir(&c.dir)
            .env("PATH", &path)
            .env("BUOY_HTTP_ADDR", c.http(1).to_string())
            .env_remove("BUOY_TOKEN")
            .env_remove("BUOY_TLS_CA")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "README block {n} failed:\n{script}\n--- stdout\n{}\n--- stderr\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The key rotation block wrote a keyring an agent accepts.
    let keyring = std::fs::read_to_string(c.dir.join("keyring.json")).expect("keyring.json");
    let key = common::json(&keyring)["keys"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        key.len() >= 32 && key.chars().all(|ch| ch.is_ascii_hexdigit()),
        "{keyring}"
    );
}
