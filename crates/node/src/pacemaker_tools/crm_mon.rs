//! `crm_mon`: the cluster's status as the resource agents read it (`crm_mon -1`,
//! `--output-as=xml` or `--as-xml` or `-X`, `-r` for inactive copies), from the
//! [`ClusterStatus`] the leader answers. The XML keeps Pacemaker's element and attribute
//! order, which agents match with regular expressions (galera: `id=... role=... active=...
//! orphaned=... failed=` on one line). Also `pacemakerd -$` (the version line
//! `ocf_local_nodename` checks before it asks `crm_node -n`).

use proto::{ClusterStatus, CopyRole};

use super::{Answer, UsageError};

/// The Pacemaker version the shims speak for (`pacemakerd -$`).
pub const PACEMAKER_VERSION: &str = "2.1.5";

/// What `crm_mon` was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub xml: bool,
    /// `-r`: list copies that are not running too.
    pub inactive: bool,
}

/// Reads a `crm_mon` command line. Only one-shot output exists here: `-1` is implied.
pub fn parse(words: &[String]) -> Result<Request, UsageError> {
    let usage = |problem: String| UsageError {
        tool: "crm_mon",
        problem,
    };
    let mut req = Request {
        xml: false,
        inactive: false,
    };
    let mut words = words.iter();
    while let Some(w) = words.next() {
        if let Some(long) = w.strip_prefix("--") {
            let (key, value) = match long.split_once('=') {
                Some((k, v)) => (k, Some(v.to_string())),
                None => (long, None),
            };
            match key {
                "one-shot"
                | "inactive"
                | "show-detail"
                | "group-by-node"
                | "failcounts"
                | "show-node-attributes"
                | "operations"
                | "timing-details"
                | "brief"
                | "quiet"
                | "verbose" => req.inactive |= key == "inactive",
                "as-xml" => req.xml = true,
                "output-as" => {
                    let v = match value {
                        Some(v) => v,
                        None => words
                            .next()
                            .cloned()
                            .ok_or_else(|| usage("--output-as needs a value".into()))?,
                    };
                    req.xml = match v.as_str() {
                        "xml" => true,
                        "text" => false,
                        other => return Err(usage(format!("no output format `{other}`"))),
                    };
                }
                other => return Err(usage(format!("unknown option --{other}"))),
            }
        } else if let Some(flags) = w.strip_prefix('-').filter(|f| !f.is_empty()) {
            for f in flags.chars() {
                match f {
                    '1' | 's' | 'n' | 'N' | 'f' | 'A' | 'o' | 't' | 'Q' | 'b' | 'V' => {}
                    'r' => req.inactive = true,
                    'X' => req.xml = true,
                    other => return Err(usage(format!("unknown option -{other}"))),
                }
            }
        } else {
            return Err(usage(format!("unexpected argument `{w}`")));
        }
    }
    Ok(req)
}

/// `s` with XML's special characters escaped, for an attribute value.
pub(super) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// What `crm_mon` prints for `req`, given the cluster's status and the command line it ran.
pub fn render(req: Request, st: &ClusterStatus, command: &str) -> Answer {
    let stdout = if req.xml {
        xml(req, st, command)
    } else {
        text(req, st)
    };
    Answer {
        stdout,
        stderr: String::new(),
        exit_code: 0,
    }
}

/// Node ids: 1-based positions in the status's list.
pub(super) fn node_id(st: &ClusterStatus, name: &str) -> usize {
    st.nodes
        .iter()
        .position(|n| n.name == name)
        .map_or(0, |i| i + 1)
}

fn xml(req: Request, st: &ClusterStatus, command: &str) -> String {
    let b = |v: bool| if v { "true" } else { "false" };
    let mut o = String::from("<?xml version=\"1.0\"?>\n");
    o += &format!(
        "<pacemaker-result api-version=\"2.25\" request=\"{}\">\n",
        esc(command)
    );
    o += "  <summary>\n    <stack type=\"buoy\"/>\n";
    o += &format!(
        "    <current_dc present=\"true\" name=\"{}\" with_quorum=\"{}\"/>\n",
        esc(&st.leader),
        b(st.quorate)
    );
    o += &format!(
        "    <nodes_configured number=\"{}\"/>\n    <resources_configured number=\"{}\" disabled=\"0\" blocked=\"0\"/>\n  </summary>\n",
        st.nodes.len(),
        st.resources.iter().map(|r| r.copies.len()).sum::<usize>()
    );
    o += "  <nodes>\n";
    for n in &st.nodes {
        let running = st
            .resources
            .iter()
            .flat_map(|r| &r.copies)
            .filter(|c| c.node.as_deref() == Some(&n.name))
            .count();
        o += &format!(
            "    <node name=\"{}\" id=\"{}\" online=\"{}\" standby=\"false\" standby_onfail=\"false\" maintenance=\"false\" pending=\"false\" unclean=\"{}\" shutdown=\"false\" expected_up=\"true\" is_dc=\"{}\" resources_running=\"{running}\" type=\"member\"/>\n",
            esc(&n.name),
            node_id(st, &n.name),
            b(n.online),
            b(n.unclean),
            b(n.name == st.leader),
        );
    }
    o += "  </nodes>\n  <resources>\n";
    for r in &st.resources {
        let indent = if r.clone { "      " } else { "    " };
        if r.clone {
            o += &format!(
                "    <clone id=\"{}-clone\" multi_state=\"{}\" unique=\"false\" maintenance=\"false\" managed=\"true\" disabled=\"false\" failed=\"{}\" failure_ignored=\"false\">\n",
                esc(&r.name),
                b(r.promotable),
                b(r.copies.iter().any(|c| c.failed))
            );
        }
        for c in &r.copies {
            let active = c.role != CopyRole::Stopped;
            if !active && !req.inactive && !c.failed {
                continue;
            }
            let on = c.node.iter().count();
            o += &format!(
                "{indent}<resource id=\"{}\" resource_agent=\"{}\" role=\"{}\" active=\"{}\" orphaned=\"false\" removed=\"false\" blocked=\"false\" maintenance=\"false\" managed=\"true\" failed=\"{}\" failure_ignored=\"false\" nodes_running_on=\"{on}\"",
                esc(&r.name),
                esc(&r.agent),
                c.role.as_str(),
                b(active),
                b(c.failed),
            );
            match &c.node {
                Some(n) => {
                    o += &format!(
                        ">\n{indent}  <node name=\"{}\" id=\"{}\" cached=\"true\"/>\n{indent}</resource>\n",
                        esc(n),
                        node_id(st, n)
                    );
                }
                None => o += "/>\n",
            }
        }
        if r.clone {
            o += "    </clone>\n";
        }
    }
    o += "  </resources>\n  <status code=\"0\" message=\"OK\"/>\n</pacemaker-result>\n";
    o
}

fn text(req: Request, st: &ClusterStatus) -> String {
    let mut o = format!(
        "Cluster Summary:\n  * Stack: buoy\n  * Current DC: {} (partition with quorum)\n  * {} nodes configured\n\nNode List:\n",
        st.leader,
        st.nodes.len()
    );
    let online: Vec<&str> = st
        .nodes
        .iter()
        .filter(|n| n.online)
        .map(|n| n.name.as_str())
        .collect();
    let offline: Vec<&str> = st
        .nodes
        .iter()
        .filter(|n| !n.online)
        .map(|n| n.name.as_str())
        .collect();
    o += &format!("  * Online: [ {} ]\n", online.join(" "));
    if !offline.is_empty() {
        o += &format!("  * OFFLINE: [ {} ]\n", offline.join(" "));
    }
    o += "\nFull List of Resources:\n";
    for r in &st.resources {
        for c in &r.copies {
            if c.role == CopyRole::Stopped && !req.inactive {
                continue;
            }
            o += &format!(
                "  * {}\t({}):\t {}{}{}\n",
                r.name,
                r.agent,
                c.role.as_str(),
                c.node
                    .as_deref()
                    .map(|n| format!(" {n}"))
                    .unwrap_or_default(),
                if c.failed { " (failed)" } else { "" }
            );
        }
    }
    o
}

/// `pacemakerd ARGS`: only `-$` / `--version` (what `ocf_local_nodename` asks).
pub fn pacemakerd(words: &[String]) -> Answer {
    if words.len() == 1 && matches!(words[0].as_str(), "-$" | "--version") {
        return Answer {
            stdout: format!(
                // One line only names the version: `ocf_local_nodename` greps for it.
                "Pacemaker {PACEMAKER_VERSION}\n(a shim: Buoy runs this cluster)\n"
            ),
            stderr: String::new(),
            exit_code: 0,
        };
    }
    Answer {
        stdout: String::new(),
        stderr:
            "pacemakerd (Buoy's shim): only `pacemakerd -$` is provided; Buoy runs the cluster\n"
                .into(),
        exit_code: super::EXIT_USAGE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pacemaker_tools::words;
    use proto::{CopyStatus, NodeStatus, ResourceStatus};

    fn status() -> ClusterStatus {
        ClusterStatus {
            leader: "h1".into(),
            quorate: true,
            nodes: vec![
                NodeStatus {
                    name: "h1".into(),
                    online: true,
                    unclean: false,
                    ..NodeStatus::default()
                },
                NodeStatus {
                    name: "h2".into(),
                    online: false,
                    unclean: true,
                    ..NodeStatus::default()
                },
            ],
            resources: vec![ResourceStatus {
                name: "db".into(),
                agent: "ocf:heartbeat:galera".into(),
                promotable: true,
                clone: true,
                copies: vec![
                    CopyStatus {
                        replica: 0,
                        node: Some("h1".into()),
                        role: CopyRole::Promoted,
                        failed: false,
                    },
                    CopyStatus {
                        replica: 1,
                        node: None,
                        role: CopyRole::Stopped,
                        failed: false,
                    },
                ],
            }],
        }
    }

    #[test]
    fn the_command_forms_the_agents_use_are_read() {
        for (line, xml, inactive) in [
            ("-1 --output-as=xml", true, false),
            ("-1 --output-as xml", true, false),
            ("-1 --as-xml", true, false),
            ("-1X", true, false),
            ("-1 -r --output-as=xml", true, true),
            ("-1", false, false),
        ] {
            assert_eq!(
                parse(&words(line)).unwrap(),
                Request { xml, inactive },
                "{line}"
            );
        }
        assert!(parse(&words("-1 --output-as=html")).is_err());
        assert!(parse(&words("-1 -Z")).is_err());
        assert!(parse(&words("status")).is_err());
    }

    #[test]
    fn the_xml_matches_the_patterns_galera_and_pgsql_grep_for() {
        let req = parse(&words("-1 --output-as=xml")).unwrap();
        let out = render(req, &status(), "crm_mon -1 --output-as=xml").stdout;
        // galera's master_exists
        let galera = regex_lite(
            &out,
            &[
                "resource",
                "id=\"db\"",
                "role=\"Promoted\"",
                "active=\"true\"",
                "orphaned=\"false\"",
                "failed=\"false\"",
            ],
        );
        assert!(galera, "{out}");
        // pgsql's is_node_online
        assert!(regex_lite(&out, &["<node name=\"h1\" ", "online=\"true\""]));
        assert!(!regex_lite(
            &out,
            &["<node name=\"h2\" ", "online=\"true\""]
        ));
        assert!(out.contains("unclean=\"true\""));
        // The stopped copy is listed only with -r.
        assert_eq!(out.matches("<resource ").count(), 1);
        let all = render(
            parse(&words("-1 -r -X")).unwrap(),
            &status(),
            "crm_mon -1 -r -X",
        )
        .stdout;
        assert_eq!(all.matches("<resource ").count(), 2);
        assert!(all.contains("role=\"Stopped\" active=\"false\""));
    }

    /// Whether one line of `text` holds every part, in order (what `grep -E 'a.*b.*c'` does).
    fn regex_lite(text: &str, parts: &[&str]) -> bool {
        text.lines().any(|line| {
            let mut rest = line;
            parts.iter().all(|p| match rest.find(p) {
                Some(i) => {
                    rest = &rest[i + p.len()..];
                    true
                }
                None => false,
            })
        })
    }

    #[test]
    fn pacemakerd_says_a_version_newer_than_1_1_8() {
        let a = pacemakerd(&words("-$"));
        assert_eq!(a.exit_code, 0);
        assert!(a.stdout.starts_with("Pacemaker 2."));
        // What `ocf_local_nodename` reads: `grep "Pacemaker .*" | awk '{ print $2 }'`.
        let versions: Vec<&str> = a
            .stdout
            .lines()
            .filter(|l| l.contains("Pacemaker "))
            .filter_map(|l| l.split_whitespace().nth(1))
            .collect();
        assert_eq!(versions, [PACEMAKER_VERSION]);
        assert_ne!(pacemakerd(&words("--foreground")).exit_code, 0);
    }
}
