//! How the CLI prints objects: tables per kind, aligned rows, JSON.

use serde_json::{Map, Value};

pub(super) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// `names` maps ids to names: segments for hosts and instances, instances and hosts for
/// placements.
pub(super) fn print_table(plural: &str, items: &[Value], names: &Map<String, Value>) {
    let seg = |v: &Value| text(names.get(v.as_str().unwrap_or("")).unwrap_or(v));
    let (head, rows): (Vec<&str>, Vec<Vec<String>>) = match plural {
        "segments" => (
            vec!["NAME", "RECOVERY", "ENABLED", "TOLERATE", "VERSION", "ID"],
            items
                .iter()
                .map(|s| {
                    vec![
                        text(&s["name"]),
                        text(&s["recovery_method"]),
                        text(&s["enabled"]),
                        text(&s["tolerate_host_failures"]),
                        text(&s["version"]),
                        text(&s["id"]),
                    ]
                })
                .collect(),
        ),
        "hosts" => (
            vec![
                "NAME",
                "SEGMENT",
                "STATUS",
                "MEMBERSHIP",
                "RESERVED",
                "MAINTENANCE",
                "CPU",
                "MEMORY_MB",
                "VERSION",
            ],
            items
                .iter()
                .map(|h| {
                    vec![
                        text(&h["name"]),
                        seg(&h["segment"]),
                        text(&h["status"]),
                        text(&h["membership"]["state"]),
                        text(&h["reserved"]),
                        text(&h["on_maintenance"]),
                        text(&h["capacity"]["cpu"]),
                        text(&h["capacity"]["memory_mb"]),
                        text(&h["version"]),
                    ]
                })
                .collect(),
        ),
        "instances" => (
            vec![
                "NAME", "SEGMENT", "DRIVER", "MODE", "PRIORITY", "HOSTS", "STATUS", "REASON",
            ],
            items
                .iter()
                .map(|i| {
                    let hosts: Vec<String> = i["copies"]
                        .as_array()
                        .map_or(&[][..], |c| c)
                        .iter()
                        .map(|c| match c["role"].as_str() {
                            Some("promoted") => format!("{}(promoted)", text(&c["host"])),
                            _ => text(&c["host"]),
                        })
                        .collect();
                    vec![
                        text(&i["name"]),
                        seg(&i["segment"]),
                        text(&i["driver"]),
                        text(&i["mode"]),
                        text(&i["priority"]),
                        if hosts.is_empty() {
                            "-".into()
                        } else {
                            hosts.join(",")
                        },
                        text(&i["status"]),
                        shorten(&i["reason"], 70),
                    ]
                })
                .collect(),
        ),
        "placements" => (
            vec!["ID", "INSTANCE", "REPLICA", "HOST", "EPOCH", "VERSION"],
            items
                .iter()
                .map(|p| {
                    vec![
                        text(&p["id"]),
                        seg(&p["instance"]),
                        text(&p["replica"]),
                        seg(&p["host"]),
                        text(&p["epoch"]),
                        text(&p["version"]),
                    ]
                })
                .collect(),
        ),
        _ => (
            vec!["ID", "TYPE", "HOSTNAME", "STATUS", "GENERATED"],
            items
                .iter()
                .map(|n| {
                    vec![
                        text(&n["id"]),
                        text(&n["type"]),
                        text(&n["hostname"]),
                        text(&n["status"]),
                        text(&n["generated_time"]),
                    ]
                })
                .collect(),
        ),
    };
    print_rows(&head, &rows);
    if rows.is_empty() {
        println!("(no {plural})");
    }
}

/// `v` as text, cut to `max` characters (with an ellipsis); `-` when absent.
fn shorten(v: &Value, max: usize) -> String {
    let t = text(v);
    if t.chars().count() <= max {
        return t;
    }
    let cut: String = t.chars().take(max.saturating_sub(1)).collect();
    format!("{cut}…")
}

pub(super) fn print_rows(head: &[&str], rows: &[Vec<String>]) {
    let widths: Vec<usize> = (0..head.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].len())
                .chain([head[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(head.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

/// One object as `field: value` lines.
pub(super) fn print_object(v: &Value) {
    if let Some(map) = v.as_object() {
        let width = map.keys().map(String::len).max().unwrap_or(0);
        for (k, val) in map {
            if k == "scaling" {
                continue;
            }
            let shown = match val {
                Value::Object(_) | Value::Array(_) => val.to_string(),
                other => text(other),
            };
            println!("{k:<width$}  {shown}");
        }
        if let Some(s) = map.get("scaling") {
            print_scaling(s);
        }
    }
}

/// An instance's scale record: the count in force, the alerts firing, what happened.
fn print_scaling(s: &Value) {
    let firing = s["firing"].as_object().map_or(0, |f| f.len());
    println!(
        "scaling: {} copies, {firing} alert(s) firing{}",
        text(&s["replicas"]),
        s["last_change"]
            .as_str()
            .map(|t| format!(", last change {t}"))
            .unwrap_or_default()
    );
    for e in s["events"].as_array().map_or(&[][..], |a| a) {
        let what = match e["kind"].as_str() {
            Some("scaled") => format!("scaled {} -> {}", text(&e["from"]), text(&e["to"])),
            Some(kind) => format!(
                "{kind} {}{}",
                text(&e["alert"]),
                e["rule"]
                    .as_str()
                    .map(|r| format!(" (rule {r})"))
                    .unwrap_or_default()
            ),
            None => "?".into(),
        };
        println!(
            "  {}  {what}  by {}: {}",
            text(&e["at"]),
            text(&e["by"]),
            text(&e["why"])
        );
    }
}

/// A recovery record as text: what, where, its status, each step with its time from the
/// first, and each copy moved.
pub(super) fn print_notification(n: &Value) {
    println!(
        "notification {} (#{}): {} on {}, {}",
        text(&n["id"]),
        text(&n["serial"]),
        text(&n["type"]),
        text(&n["hostname"]),
        text(&n["status"])
    );
    println!("generated    {}", text(&n["generated_time"]));
    let millis = |v: &Value| {
        v.as_str()
            .and_then(|t| model::Timestamp::parse(t).ok())
            .map(|t| t.unix_millis())
    };
    let steps = n["steps"].as_array().map_or(&[][..], |a| a);
    let start = steps.first().and_then(|s| millis(&s["at"]));
    if !steps.is_empty() {
        println!("steps");
    }
    for s in steps {
        let after = match (start, millis(&s["at"])) {
            (Some(a), Some(b)) => format!("+{:.2} s", b.saturating_sub(a) as f64 / 1000.0),
            _ => "-".into(),
        };
        let detail = s["detail"].as_str().filter(|d| !d.is_empty());
        println!(
            "  {:<14} {:>10}  {}{}",
            text(&s["name"]),
            after,
            text(&s["at"]),
            detail.map(|d| format!("  {d}")).unwrap_or_default()
        );
    }
    let moves = n["vmoves"].as_array().map_or(&[][..], |a| a);
    if !moves.is_empty() {
        println!("copies moved");
    }
    for m in moves {
        let took = match (millis(&m["start_time"]), millis(&m["end_time"])) {
            (Some(a), Some(b)) => format!(" in {:.2} s", b.saturating_sub(a) as f64 / 1000.0),
            _ => String::new(),
        };
        let message = m["message"].as_str().filter(|x| !x.is_empty());
        println!(
            "  {} {} -> {}: {}{took}{}",
            text(&m["instance_name"]),
            text(&m["source_host"]),
            text(&m["dest_host"]),
            text(&m["status"]),
            message.map(|x| format!(" ({x})")).unwrap_or_default()
        );
    }
}
