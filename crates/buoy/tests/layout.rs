//! The layout is the architecture: these checks keep it so. Inside `node`, `server` and `lab`
//! the top-level modules (role folders) may not use each other in a cycle, and the sans-IO
//! crates (`swim`, `model`, `proto`, `engine`) may not reach tokio, openraft or redb, even
//! through another workspace crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file of `src` belongs to (`supervisor/health.rs` -> `supervisor`).
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then(|| name.to_string())
}

/// Which top-level modules each top-level module of crate `name` uses (`crate::x` paths).
fn module_graph(name: &str) -> BTreeMap<String, BTreeSet<String>> {
    let src = crates_dir().join(name).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let tops: BTreeSet<String> = files.iter().filter_map(|f| top_module(&src, f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let Some(from) = top_module(&src, f) else {
            continue;
        };
        let text = std::fs::read_to_string(f).unwrap();
        let uses = graph.entry(from.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + "crate::".len()..];
            let to: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if to != from && tops.contains(&to) {
                uses.insert(to);
            }
        }
    }
    graph
}

/// A cycle in `graph`, if there is one, as the list of modules along it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut cycle = path[i..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for m in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn role_folders_inside_a_crate_use_each_other_without_cycles() {
    for name in ["node", "server", "lab", "buoy"] {
        let graph = module_graph(name);
        assert!(graph.len() > 1, "{name}: no modules found");
        if let Some(cycle) = find_cycle(&graph) {
            panic!("crate {name}: modules in a cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_cycle_check_sees_a_cycle() {
    // Negative control: the checker must catch what it guards against.
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("lease".into())
        .or_default()
        .insert("supervisor".into());
    g.entry("supervisor".into())
        .or_default()
        .insert("drivers".into());
    assert_eq!(find_cycle(&g), None);
    g.entry("drivers".into())
        .or_default()
        .insert("lease".into());
    let cycle = find_cycle(&g).expect("a cycle");
    assert_eq!(cycle.first(), cycle.last());
}

/// The workspace crates and external crates `name` depends on (normal dependencies only).
fn dependencies(name: &str) -> Vec<String> {
    let toml = std::fs::read_to_string(crates_dir().join(name).join("Cargo.toml")).unwrap();
    let mut in_deps = false;
    let mut deps = Vec::new();
    for line in toml.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps && !line.is_empty() && !line.starts_with('#') {
            let dep = line.split(['=', '.', ' ']).next().unwrap_or_default();
            deps.push(dep.to_string());
        }
    }
    deps
}

#[test]
fn sans_io_crates_reach_no_runtime_raft_or_database() {
    let workspace: BTreeSet<&str> = [
        "swim", "model", "state", "proto", "engine", "sim", "client", "node", "server", "lab",
        "buoy",
    ]
    .into_iter()
    .collect();
    for root in ["swim", "model", "proto", "engine"] {
        let mut seen = BTreeSet::new();
        let mut todo = vec![root.to_string()];
        while let Some(c) = todo.pop() {
            if !seen.insert(c.clone()) {
                continue;
            }
            for d in dependencies(&c) {
                assert!(
                    !["tokio", "openraft", "redb"].contains(&d.as_str()),
                    "{root} reaches {d} through {c}: the sans-IO crates must stay free of IO"
                );
                if workspace.contains(d.as_str()) {
                    todo.push(d);
                }
            }
        }
        assert!(seen.contains(root));
    }
    // The check reads real manifests: `state` does depend on openraft.
    assert!(dependencies("state").iter().any(|d| d == "openraft"));
}
