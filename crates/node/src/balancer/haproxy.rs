//! HAProxy's Runtime API, sans-IO. [`parse_state`] reads the answer to `show servers state
//! BACKEND`; [`reconcile`] compares it with the servers wanted and gives the commands, in
//! order, that bring the backend there. A server that joins is added with its health check
//! and enabled (HAProxy adds a server in maintenance); a server that leaves is drained first
//! (new connections go elsewhere, open ones finish), then, once the caller says its drain
//! time is over, put in maintenance and deleted (HAProxy deletes only servers in
//! maintenance). Written against HAProxy 2.6 (Debian 12), checked with a real one.

use std::collections::BTreeMap;

/// A server the backend should have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// The server's name in the backend (one per copy, e.g. `web-2`).
    pub name: String,
    pub addr: String,
    pub port: u16,
}

impl Wanted {
    pub fn new(name: &str, addr: &str, port: u16) -> Self {
        Wanted {
            name: name.into(),
            addr: addr.into(),
            port,
        }
    }
}

/// A server as `show servers state` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerState {
    pub name: String,
    pub addr: String,
    pub port: u16,
    /// `srv_op_state`: 0 stopped, 1 starting, 2 running, 3 stopping.
    pub op_state: u8,
    /// `srv_admin_state` bits: 0x01 forced maintenance, 0x08 forced drain (others are
    /// inherited or set by DNS resolution).
    pub admin_state: u8,
}

impl ServerState {
    pub fn in_maintenance(&self) -> bool {
        self.admin_state & 0x07 != 0
    }

    pub fn draining(&self) -> bool {
        self.admin_state & 0x18 != 0
    }
}

/// Why an answer could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateError {
    #[error("HAProxy has no backend `{0}`")]
    NoBackend(String),
    #[error("HAProxy answered `show servers state` with {0}")]
    Unexpected(String),
}

/// The servers of `backend` from the answer to `show servers state BACKEND` (format 1: a
/// version line, a `#` header naming the fields, then one line per server).
pub fn parse_state(backend: &str, answer: &str) -> Result<Vec<ServerState>, StateError> {
    let mut lines = answer.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("");
    if first.starts_with("Can't find backend") {
        return Err(StateError::NoBackend(backend.to_string()));
    }
    if first != "1" {
        return Err(StateError::Unexpected(format!("version line `{first}`")));
    }
    let header: Vec<&str> = match lines.next() {
        Some(h) if h.starts_with('#') => h.trim_start_matches('#').split_whitespace().collect(),
        other => {
            return Err(StateError::Unexpected(format!(
                "no field header (`{}`)",
                other.unwrap_or("")
            )));
        }
    };
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| StateError::Unexpected(format!("no `{name}` field")))
    };
    let (be, name, addr, port, op, admin) = (
        column("be_name")?,
        column("srv_name")?,
        column("srv_addr")?,
        column("srv_port")?,
        column("srv_op_state")?,
        column("srv_admin_state")?,
    );
    let mut out = Vec::new();
    for line in lines {
        let f: Vec<&str> = line.split_whitespace().collect();
        let get = |i: usize| {
            f.get(i)
                .copied()
                .ok_or_else(|| StateError::Unexpected(format!("a short line `{line}`")))
        };
        let number = |i: usize| -> Result<u64, StateError> {
            get(i)?
                .parse()
                .map_err(|_| StateError::Unexpected(format!("a bad number in `{line}`")))
        };
        if get(be)? != backend {
            continue;
        }
        out.push(ServerState {
            name: get(name)?.to_string(),
            addr: get(addr)?.to_string(),
            port: u16::try_from(number(port)?)
                .map_err(|_| StateError::Unexpected(format!("a bad port in `{line}`")))?,
            op_state: u8::try_from(number(op)?).unwrap_or(u8::MAX),
            admin_state: u8::try_from(number(admin)?).unwrap_or(u8::MAX),
        });
    }
    Ok(out)
}

/// The commands that bring `backend`'s servers (`current`) to `wanted`. `drained(name)` says
/// whether a draining server's drain time is over (the caller keeps the clock); a server
/// named in `keep` is never touched (servers of the configuration file that Buoy does not
/// manage).
pub fn reconcile(
    backend: &str,
    wanted: &[Wanted],
    current: &[ServerState],
    keep: &[String],
    drained: impl Fn(&str) -> bool,
) -> Vec<String> {
    let now: BTreeMap<&str, &ServerState> = current.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut out = Vec::new();
    for w in wanted {
        let id = format!("{backend}/{}", w.name);
        match now.get(w.name.as_str()) {
            None => {
                out.push(format!("add server {id} {}:{} check", w.addr, w.port));
                out.push(format!("enable health {id}"));
                out.push(format!("set server {id} state ready"));
            }
            Some(s) => {
                if s.addr != w.addr || s.port != w.port {
                    out.push(format!("set server {id} addr {} port {}", w.addr, w.port));
                }
                if s.in_maintenance() || s.draining() {
                    out.push(format!("set server {id} state ready"));
                }
            }
        }
    }
    for s in current {
        if keep.contains(&s.name) || wanted.iter().any(|w| w.name == s.name) {
            continue;
        }
        let id = format!("{backend}/{}", s.name);
        if s.in_maintenance() {
            out.push(format!("del server {id}"));
        } else if !s.draining() {
            out.push(format!("set server {id} state drain"));
        } else if drained(&s.name) {
            out.push(format!("set server {id} state maint"));
            out.push(format!("del server {id}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Copied from a real HAProxy 2.6.12 (Debian 12): s1 from the configuration file, s2
    /// added at run time (in maintenance until enabled).
    const STATE: &str = "1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
2 web 1 s1 127.0.0.1 0 0 1 1 0 8 2 0 6 0 0 0 - 9999 - 0 0 - - 0
2 web 2 s2 127.0.0.1 0 1 1 1 0 1 0 0 6 0 0 0 - 9998 - 0 0 - - 0
";

    fn wanted(name: &str, port: u16) -> Wanted {
        Wanted::new(name, "127.0.0.1", port)
    }

    #[test]
    fn the_state_is_read_by_its_header_and_errors_say_what_was_wrong() {
        let s = parse_state("web", STATE).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].name.as_str(), s[0].port), ("s1", 9999));
        assert!(!s[0].in_maintenance());
        assert!(
            s[1].in_maintenance(),
            "an added server starts in maintenance"
        );
        assert!(parse_state("other", STATE).unwrap().is_empty());
        assert_eq!(
            parse_state("nosuch", "Can't find backend.\n"),
            Err(StateError::NoBackend("nosuch".into()))
        );
        for bad in [
            "",
            "2\n# be_name\n",
            "1\nno header\n",
            "1\n# be_name srv_name\n",
        ] {
            assert!(
                matches!(parse_state("web", bad), Err(StateError::Unexpected(_))),
                "{bad:?}"
            );
        }
        let short = STATE.replace(
            "2 web 2 s2 127.0.0.1 0 1 1 1 0 1 0 0 6 0 0 0 - 9998 - 0 0 - - 0",
            "2 web 2",
        );
        assert!(
            parse_state("web", &short).is_err(),
            "a short line is an error, not a panic"
        );
    }

    #[test]
    fn joining_servers_are_added_checked_and_enabled_leaving_ones_drained_then_deleted() {
        let current = parse_state("web", STATE).unwrap();
        let keep = vec!["s1".to_string()];
        // s2 is wanted (it is in maintenance: enabled), s3 is new.
        let cmds = reconcile(
            "web",
            &[wanted("s2", 9998), wanted("s3", 9997)],
            &current,
            &keep,
            |_| false,
        );
        assert_eq!(
            cmds,
            [
                "set server web/s2 state ready",
                "add server web/s3 127.0.0.1:9997 check",
                "enable health web/s3",
                "set server web/s3 state ready",
            ]
        );
        // s2 leaves: drained first, deleted once its drain time is over.
        let mut ready = current.clone();
        ready[1].admin_state = 0;
        assert_eq!(
            reconcile("web", &[], &ready, &keep, |_| true),
            ["set server web/s2 state drain"]
        );
        ready[1].admin_state = 8;
        assert!(
            reconcile("web", &[], &ready, &keep, |_| false).is_empty(),
            "still draining"
        );
        assert_eq!(
            reconcile("web", &[], &ready, &keep, |_| true),
            ["set server web/s2 state maint", "del server web/s2"]
        );
        // A server that moved gets its new address; s1 (kept) is never touched.
        assert_eq!(
            reconcile("web", &[wanted("s2", 9000)], &ready, &keep, |_| true),
            [
                "set server web/s2 addr 127.0.0.1 port 9000",
                "set server web/s2 state ready"
            ]
        );
    }
}
