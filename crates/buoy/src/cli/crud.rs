//! `buoy segment|host|instance|placement create|list|show|update|delete`: the generic
//! commands over any kind. Specs come from a TOML or JSON file (`-f`), from `--set key=value`
//! flags, or both (flags win); output is a table, or JSON with `--json`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use super::output::*;

/// Where the agent is, and how to print.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// HTTP address of any agent (it relays to the control-plane leader).
    #[arg(
        long,
        env = "BUOY_HTTP_ADDR",
        default_value = "127.0.0.1:7070",
        global = true,
        value_parser = parse_http_addr
    )]
    pub http: SocketAddr,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// An agent's HTTP address as operators write it: `10.0.0.5:7070`, `node-1:7070`, or a URL
/// (`http://10.0.0.5:7070/`); for HTTPS give the URL or the address with `--tls-ca`.
pub fn parse_http_addr(s: &str) -> Result<SocketAddr, String> {
    let bare = s
        .trim()
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/');
    if bare.contains('/') {
        return Err(format!(
            "`{s}`: expected an agent's address, HOST:PORT (e.g. 127.0.0.1:7070), not a path"
        ));
    }
    use std::net::ToSocketAddrs;
    match bare.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("`{s}`: the name resolves to no address")),
        Err(e) if !bare.contains(':') => Err(format!(
            "`{s}`: expected HOST:PORT with the agent's --http port (e.g. {bare}:7070): {e}"
        )),
        Err(e) => Err(format!("`{s}`: not an address HOST:PORT: {e}")),
    }
}

/// A spec from a file and flags.
#[derive(Args, Debug, Clone, Default)]
pub struct SpecArgs {
    /// A spec file: TOML (`.toml`) or JSON.
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Set a field: `--set description="rack 3"`, `--set capacity.cpu=4`,
    /// `--set params.command=sleep --set 'params.args=["100"]'`. Values that parse as JSON
    /// are taken as JSON.
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

/// Reads `-f` and applies `--set` and the shortcut flags over it.
pub(super) fn build_spec(name: Option<&str>, spec: &SpecArgs) -> Result<Value> {
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
pub(super) fn set_path(obj: &mut Map<String, Value>, key: &str, value: Value) -> Result<()> {
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

/// Percent-encodes `s` for one segment of a URL path.
pub(super) fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
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
pub(super) fn segment_names(addr: SocketAddr, plural: &str) -> Map<String, Value> {
    match plural {
        "segments" => Map::new(),
        // Placements name an instance and a host: both maps, ids being unique.
        "placements" => {
            let mut m = names(addr, "instances");
            m.extend(names(addr, "hosts"));
            m
        }
        _ => names(addr, "segments"),
    }
}

/// Id -> name of every object of `plural`.
fn names(addr: SocketAddr, plural: &str) -> Map<String, Value> {
    client::call_json(addr, "GET", &format!("/v1/{plural}?limit=10000"), None)
        .ok()
        .and_then(|v| {
            v[plural].as_array().map(|a| {
                a.iter()
                    .filter_map(|s| Some((s["id"].as_str()?.to_string(), s["name"].clone())))
                    .collect()
            })
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_address_may_be_written_as_a_url_and_a_bad_one_is_explained() {
        let want: SocketAddr = "127.0.0.1:7070".parse().unwrap();
        for ok in [
            "127.0.0.1:7070",
            "http://127.0.0.1:7070",
            "http://127.0.0.1:7070/",
            "https://127.0.0.1:7070",
        ] {
            assert_eq!(parse_http_addr(ok), Ok(want), "{ok}");
        }
        let e = parse_http_addr("127.0.0.1").unwrap_err();
        assert!(
            e.contains("HOST:PORT") && e.contains("127.0.0.1:7070"),
            "{e}"
        );
        let e = parse_http_addr("http://127.0.0.1:7070/v1/status").unwrap_err();
        assert!(e.contains("not a path"), "{e}");
    }
}
