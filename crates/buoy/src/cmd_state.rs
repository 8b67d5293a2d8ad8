//! `buoy segment|host|instance|notification|servers|status|events`: the control-plane CLI.
//! Specs come from a TOML or JSON file (`-f`), from `--set key=value` flags, or both (flags
//! win); output is a table, or JSON with `--json`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use crate::client;

/// Where the agent is, and how to print.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// HTTP address of any agent (it relays to the control-plane leader).
    #[arg(
        long,
        env = "BUOY_HTTP_ADDR",
        default_value = "127.0.0.1:7070",
        global = true
    )]
    pub http: SocketAddr,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// A spec from a file and flags.
#[derive(Args, Debug, Clone, Default)]
pub struct SpecArgs {
    /// A spec file: TOML (`.toml`) or JSON.
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Set a field: `--set description="rack 3"`, `--set capacity.cpu=4`,
    /// `--set params.command="sleep 100"`. Values that parse as JSON are taken as JSON.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// The segment (name or id), for hosts and instances.
    #[arg(long)]
    pub segment: Option<String>,
    /// The driver, for instances: process, qemu or ocf.
    #[arg(long)]
    pub driver: Option<String>,
}

/// The operations on one kind.
#[derive(Subcommand, Debug)]
pub enum Crud {
    /// Create one: `buoy segment create zone-a --set description="rack 3"`.
    Create {
        name: Option<String>,
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// List them, optionally filtered: `--filter segment=zone-a`.
    List {
        #[arg(long = "filter", value_name = "FIELD=VALUE")]
        filters: Vec<String>,
    },
    /// Show one, by name or id.
    Show { name: String },
    /// Change fields of one; `--version` makes it fail if someone changed it meanwhile.
    Update {
        name: String,
        #[command(flatten)]
        spec: SpecArgs,
        #[arg(long)]
        version: Option<u64>,
    },
    /// Delete one.
    Delete {
        name: String,
        #[arg(long)]
        version: Option<u64>,
    },
}

/// `buoy servers ...`
#[derive(Subcommand, Debug)]
pub enum ServersCommand {
    /// The voters and learners, and who leads.
    List,
    /// Add a running `--server` agent to the voters.
    Add { name: String },
    /// Remove a server from the voters.
    Remove { name: String },
}

/// `buoy notification ...`
#[derive(Subcommand, Debug)]
pub enum NotificationCommand {
    /// Report a failure (Masakari's notification): `--type COMPUTE_HOST --hostname node-1`.
    Create {
        #[arg(long = "type")]
        notification_type: String,
        #[arg(long)]
        hostname: String,
        /// Payload as JSON, e.g. '{"event":"STOPPED"}'.
        #[arg(long, default_value = "{\"event\":\"STOPPED\"}")]
        payload: String,
    },
    List,
    Show {
        id: String,
    },
}

/// Reads `-f` and applies `--set` and the shortcut flags over it.
fn build_spec(name: Option<&str>, spec: &SpecArgs) -> Result<Value> {
    let mut obj = match &spec.file {
        None => Map::new(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let v: Value = if path.extension().is_some_and(|e| e == "toml") {
                let t: toml::Value = toml::from_str(&text)
                    .with_context(|| format!("{} is not valid TOML", path.display()))?;
                serde_json::to_value(t)?
            } else {
                serde_json::from_str(&text)
                    .with_context(|| format!("{} is not valid JSON", path.display()))?
            };
            match v {
                Value::Object(m) => m,
                _ => bail!("{}: the spec must be a table/object", path.display()),
            }
        }
    };
    if let Some(n) = name {
        obj.insert("name".into(), json!(n));
    }
    if let Some(s) = &spec.segment {
        obj.insert("segment".into(), json!(s));
    }
    if let Some(d) = &spec.driver {
        obj.insert("driver".into(), json!(d));
    }
    for kv in &spec.set {
        let Some((key, value)) = kv.split_once('=') else {
            bail!("--set {kv}: expected KEY=VALUE");
        };
        let value = serde_json::from_str(value).unwrap_or_else(|_| json!(value));
        set_path(&mut obj, key, value)?;
    }
    Ok(Value::Object(obj))
}

/// Sets `a.b.c` in a JSON object, creating the intermediate objects.
fn set_path(obj: &mut Map<String, Value>, key: &str, value: Value) -> Result<()> {
    let mut parts = key.split('.').peekable();
    let mut cur = obj;
    while let Some(part) = parts.next() {
        if part.is_empty() {
            bail!("--set {key}: empty field name");
        }
        if parts.peek().is_none() {
            cur.insert(part.to_string(), value);
            return Ok(());
        }
        let next = cur.entry(part.to_string()).or_insert_with(|| json!({}));
        cur = next
            .as_object_mut()
            .with_context(|| format!("--set {key}: `{part}` is not an object"))?;
    }
    Ok(())
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `buoy instance ...`: the common operations, plus its logs.
#[derive(Subcommand, Debug)]
pub enum InstanceCommand {
    #[command(flatten)]
    Crud(Crud),
    /// Show an instance's output, from the host that runs it: `buoy instance logs web -f`.
    Logs {
        name: String,
        /// Keep printing what it writes.
        #[arg(short, long)]
        follow: bool,
        /// Lines from the end to show first.
        #[arg(long, default_value_t = 100)]
        tail: usize,
        /// Which copy of a clone instance.
        #[arg(long, default_value_t = 0)]
        replica: u32,
    },
}

pub fn instance(common: &Common, op: InstanceCommand) -> Result<()> {
    match op {
        InstanceCommand::Crud(op) => crud(common, "instances", op),
        InstanceCommand::Logs {
            name,
            follow,
            tail,
            replica,
        } => {
            let path = format!(
                "/v1/instances/{}/logs?tail={tail}&replica={replica}&follow={follow}",
                encode(&name)
            );
            client::stream_lines(common.http, &path, |line| {
                println!("{line}");
                true
            })
        }
    }
}

/// Runs a create/list/show/update/delete of `plural` (`segments`, `hosts`, `instances`).
pub fn crud(common: &Common, plural: &str, op: Crud) -> Result<()> {
    let addr = common.http;
    let v = match op {
        Crud::Create { name, spec } => {
            let body = build_spec(name.as_deref(), &spec)?;
            client::call_json(addr, "POST", &format!("/v1/{plural}"), Some(&body))?
        }
        Crud::List { filters } => {
            let mut q = vec!["limit=10000".to_string()];
            for f in &filters {
                let Some((k, v)) = f.split_once('=') else {
                    bail!("--filter {f}: expected FIELD=VALUE");
                };
                q.push(format!("{}={}", encode(k), encode(v)));
            }
            let v = client::call_json(addr, "GET", &format!("/v1/{plural}?{}", q.join("&")), None)?;
            if common.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let segments = segment_names(addr, plural);
                print_table(
                    plural,
                    v[plural].as_array().map_or(&[][..], |a| a),
                    &segments,
                );
            }
            return Ok(());
        }
        Crud::Show { name } => client::call_json(
            addr,
            "GET",
            &format!("/v1/{plural}/{}", encode(&name)),
            None,
        )?,
        Crud::Update {
            name,
            spec,
            version,
        } => {
            let mut body = build_spec(None, &spec)?;
            if let Some(v) = version {
                body["version"] = json!(v);
            }
            client::call_json(
                addr,
                "PATCH",
                &format!("/v1/{plural}/{}", encode(&name)),
                Some(&body),
            )?
        }
        Crud::Delete { name, version } => {
            let q = version.map(|v| format!("?version={v}")).unwrap_or_default();
            client::call_json(
                addr,
                "DELETE",
                &format!("/v1/{plural}/{}{q}", encode(&name)),
                None,
            )?;
            if !common.json {
                println!("deleted {name}");
            }
            return Ok(());
        }
    };
    if common.json || !v.is_object() {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_object(&v);
    }
    Ok(())
}

/// Segment id -> name, to show names in host and instance tables.
fn segment_names(addr: SocketAddr, plural: &str) -> Map<String, Value> {
    if plural == "segments" {
        return Map::new();
    }
    client::call_json(addr, "GET", "/v1/segments?limit=10000", None)
        .ok()
        .and_then(|v| {
            v["segments"].as_array().map(|a| {
                a.iter()
                    .filter_map(|s| Some((s["id"].as_str()?.to_string(), s["name"].clone())))
                    .collect()
            })
        })
        .unwrap_or_default()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn print_table(plural: &str, items: &[Value], segments: &Map<String, Value>) {
    let seg = |v: &Value| text(segments.get(v.as_str().unwrap_or("")).unwrap_or(v));
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
                "NAME",
                "SEGMENT",
                "DRIVER",
                "MODE",
                "REPLICAS",
                "PRIORITY",
                "DESIRED",
                "CPU",
                "MEMORY_MB",
            ],
            items
                .iter()
                .map(|i| {
                    vec![
                        text(&i["name"]),
                        seg(&i["segment"]),
                        text(&i["driver"]),
                        text(&i["mode"]),
                        text(&i["replicas"]),
                        text(&i["priority"]),
                        text(&i["desired_state"]),
                        text(&i["cpu"]),
                        text(&i["memory_mb"]),
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
                        text(&p["instance"]),
                        text(&p["replica"]),
                        text(&p["host"]),
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

fn print_rows(head: &[&str], rows: &[Vec<String>]) {
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
fn print_object(v: &Value) {
    if let Some(map) = v.as_object() {
        let width = map.keys().map(String::len).max().unwrap_or(0);
        for (k, val) in map {
            let shown = match val {
                Value::Object(_) | Value::Array(_) => val.to_string(),
                other => text(other),
            };
            println!("{k:<width$}  {shown}");
        }
    }
}

pub fn notification(common: &Common, cmd: NotificationCommand) -> Result<()> {
    let addr = common.http;
    let v = match cmd {
        NotificationCommand::Create {
            notification_type,
            hostname,
            payload,
        } => {
            let payload: Value = serde_json::from_str(&payload).context("--payload is not JSON")?;
            let body = json!({
                "type": notification_type,
                "hostname": hostname,
                "generated_time": state::Timestamp::now().to_string(),
                "payload": payload,
            });
            client::call_json(addr, "POST", "/v1/notifications", Some(&body))?
        }
        NotificationCommand::List => {
            let v = client::call_json(addr, "GET", "/v1/notifications", None)?;
            if !common.json {
                print_table(
                    "notifications",
                    v["notifications"].as_array().map_or(&[][..], |a| a),
                    &Map::new(),
                );
                return Ok(());
            }
            v
        }
        NotificationCommand::Show { id } => client::call_json(
            addr,
            "GET",
            &format!("/v1/notifications/{}", encode(&id)),
            None,
        )?,
    };
    if common.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_object(&v);
    }
    Ok(())
}

pub fn servers(common: &Common, cmd: ServersCommand) -> Result<()> {
    let addr = common.http;
    let v = match cmd {
        ServersCommand::List => client::call_json(addr, "GET", "/v1/servers", None)?,
        ServersCommand::Add { name } => {
            client::call_json(addr, "POST", "/v1/servers", Some(&json!({"name": name})))?
        }
        ServersCommand::Remove { name } => client::call_json(
            addr,
            "DELETE",
            &format!("/v1/servers/{}", encode(&name)),
            None,
        )?,
    };
    if common.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let leader = v["leader"]["name"].as_str().unwrap_or("");
    let mut rows = Vec::new();
    for (list, role) in [("voters", "voter"), ("learners", "learner")] {
        for s in v[list].as_array().into_iter().flatten() {
            let name = text(&s["name"]);
            let role = if name == leader { "leader" } else { role };
            rows.push(vec![name, text(&s["http"]), role.to_string()]);
        }
    }
    print_rows(&["NAME", "HTTP", "ROLE"], &rows);
    println!("(term {})", text(&v["term"]));
    Ok(())
}

pub fn status(common: &Common) -> Result<()> {
    let v = client::call_json(common.http, "GET", "/v1/status", None)?;
    if common.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let r = &v["raft"];
    println!("agent        {}", text(&v["agent"]));
    println!(
        "leader       {}",
        v["leader"]["name"].as_str().unwrap_or("(none yet)")
    );
    println!("role         {}", text(&r["role"]));
    println!("term         {}", text(&r["term"]));
    println!(
        "log index    {} (applied {})",
        text(&r["last_log_index"]),
        text(&r["last_applied"])
    );
    let voters: Vec<String> = r["voters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| text(&s["name"]))
        .collect();
    println!("voters       {}", voters.join(", "));
    let m = &v["members"];
    println!(
        "members      {} alive of {} ({})",
        text(&m["alive"]),
        text(&m["total"]),
        m["by_state"]
    );
    Ok(())
}

/// `buoy events [--since N] [--watch]`: prints changes as they are applied.
pub fn events(common: &Common, since: Option<u64>, watch: bool) -> Result<()> {
    let path = format!("/v1/events?since={}&follow={watch}", since.unwrap_or(0));
    let mut event = String::new();
    client::stream_lines(common.http, &path, |line| {
        if let Some(e) = line.strip_prefix("event: ") {
            event = e.to_string();
        } else if let Some(data) = line.strip_prefix("data: ") {
            if common.json {
                println!("{data}");
            } else if let Ok(v) = serde_json::from_str::<Value>(data) {
                if event == "reset" {
                    println!(
                        "(history dropped before {}: re-read the lists)",
                        text(&v["since"])
                    );
                } else {
                    let o = &v["object"]["object"];
                    let name = o["name"].as_str().or(o["hostname"].as_str()).unwrap_or("");
                    println!(
                        "{:>6}  {}  {:<12} {:<8} {} {}",
                        text(&v["index"]),
                        text(&v["at"]),
                        text(&v["kind"]),
                        text(&v["action"]),
                        name,
                        text(&v["id"])
                    );
                }
            }
        }
        true
    })
}
