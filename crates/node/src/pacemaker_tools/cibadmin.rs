//! `cibadmin -Q`: Pacemaker's cluster information base (CIB) as the resource agents read it,
//! built from the [`ClusterStatus`] the leader answers. It holds what agents look for: the
//! nodes with their permanent attributes (`configuration/nodes`) and, per node, a
//! `node_state` saying whether it is online with its transient attributes (what
//! `crm_attribute -l reboot` and `attrd_updater` wrote). Buoy's instances are not Pacemaker
//! primitives, so `resources` and `constraints` are empty; `crm_mon` is where agents read
//! resources. Only queries exist: Buoy keeps the configuration, and a command that would change
//! the CIB is refused with a usage error.
//!
//! `--xpath` takes the subset the agents use: steps `/name` or `//name` (`*` for any element),
//! each with predicates `[@attr='value']` (several, or joined by `and`), such as
//! rabbitmq-cluster's `//node_state[@crmd='online']//nvpair[@name='NAME']`. One match prints
//! the element, several are wrapped in `<xpath-query>`, none exits 105 as Pacemaker does.

use proto::ClusterStatus;

use super::crm_mon::{esc, node_id};
use super::{Answer, Args, EXIT_NO_SUCH, UsageError};
use crate::drivers::ocf::CRM_FEATURE_SET;

/// What `cibadmin` was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `--xpath`: print only the matching elements.
    pub xpath: Option<XPath>,
    /// `--scope` / `-o`: print only this section (`nodes`, `status`, ...).
    pub scope: Option<String>,
}

/// Reads a `cibadmin` command line: `-Q` with `--xpath`, `--scope`, `-l` (local) allowed.
pub fn parse(words: &[String]) -> Result<Request, UsageError> {
    let mut args = Args::new("cibadmin", words);
    let mut query = false;
    let mut req = Request {
        xpath: None,
        scope: None,
    };
    while let Some(option) = args.next_option() {
        let (key, attached) = option?;
        match key.as_str() {
            "-Q" | "--query" => query = true,
            "-l" | "--local" | "-s" | "--sync-call" | "--no-children" | "-n" => {}
            "-A" | "--xpath" => req.xpath = Some(XPath::parse(&args.value("--xpath", attached)?)?),
            "-o" | "--scope" => {
                let s = args.value("--scope", attached)?;
                if !SECTIONS.contains(&s.as_str()) {
                    return Err(
                        args.usage(format!("no section `{s}` (one of {})", SECTIONS.join(", ")))
                    );
                }
                req.scope = Some(s);
            }
            "-R" | "--replace" | "-C" | "--create" | "-M" | "--modify" | "-D" | "--delete"
            | "-E" | "--erase" | "-P" | "--patch" | "-B" | "--bump" | "-u" | "--upgrade" => {
                return Err(args.usage(format!(
                    "{key}: only queries (-Q) are provided; Buoy keeps the cluster's configuration \
                     (use the `buoy` CLI or API)"
                )));
            }
            other => return Err(args.usage(format!("unknown option {other}"))),
        }
    }
    if !query {
        return Err(args.usage("only queries (-Q) are provided".into()));
    }
    Ok(req)
}

/// The sections `--scope` names.
const SECTIONS: [&str; 6] = [
    "configuration",
    "nodes",
    "resources",
    "constraints",
    "crm_config",
    "status",
];

/// One XML element of the CIB.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Element {
    name: &'static str,
    attrs: Vec<(&'static str, String)>,
    children: Vec<Element>,
}

impl Element {
    fn new(name: &'static str, attrs: Vec<(&'static str, String)>) -> Element {
        Element {
            name,
            attrs,
            children: Vec::new(),
        }
    }

    fn with(mut self, children: Vec<Element>) -> Element {
        self.children = children;
        self
    }

    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    fn write(&self, depth: usize, out: &mut String) {
        let pad = "  ".repeat(depth);
        out.push_str(&pad);
        out.push('<');
        out.push_str(self.name);
        for (k, v) in &self.attrs {
            out.push_str(&format!(" {k}=\"{}\"", esc(v)));
        }
        if self.children.is_empty() {
            out.push_str("/>\n");
            return;
        }
        out.push_str(">\n");
        for c in &self.children {
            c.write(depth + 1, out);
        }
        out.push_str(&format!("{pad}</{}>\n", self.name));
    }

    /// Every element under this one, depth first.
    fn descendants<'a>(&'a self, out: &mut Vec<&'a Element>) {
        for c in &self.children {
            out.push(c);
            c.descendants(out);
        }
    }
}

/// `nvpair`s of a set, with ids as Pacemaker makes them (`SET-NAME`).
fn nvpairs(set_id: &str, pairs: &std::collections::BTreeMap<String, String>) -> Vec<Element> {
    pairs
        .iter()
        .map(|(name, value)| {
            Element::new(
                "nvpair",
                vec![
                    ("id", format!("{set_id}-{name}")),
                    ("name", name.clone()),
                    ("value", value.clone()),
                ],
            )
        })
        .collect()
}

/// The CIB for `st`.
fn cib(st: &ClusterStatus) -> Element {
    let b = |v: bool| if v { "true" } else { "false" }.to_string();
    let nodes = st
        .nodes
        .iter()
        .map(|n| {
            let id = node_id(st, &n.name).to_string();
            let mut node =
                Element::new("node", vec![("id", id.clone()), ("uname", n.name.clone())]);
            if !n.permanent.is_empty() {
                let set = format!("nodes-{id}");
                node.children.push(
                    Element::new("instance_attributes", vec![("id", set.clone())])
                        .with(nvpairs(&set, &n.permanent)),
                );
            }
            node
        })
        .collect();
    let states = st
        .nodes
        .iter()
        .map(|n| {
            let id = node_id(st, &n.name).to_string();
            let mut state = Element::new(
                "node_state",
                vec![
                    ("id", id.clone()),
                    ("uname", n.name.clone()),
                    ("in_ccm", b(n.online)),
                    ("crmd", if n.online { "online" } else { "offline" }.into()),
                    ("join", if n.online { "member" } else { "down" }.into()),
                    ("expected", if n.online { "member" } else { "down" }.into()),
                ],
            );
            if !n.transient.is_empty() {
                let set = format!("status-{id}");
                state.children.push(
                    Element::new("transient_attributes", vec![("id", id.clone())]).with(vec![
                        Element::new("instance_attributes", vec![("id", set.clone())])
                            .with(nvpairs(&set, &n.transient)),
                    ]),
                );
            }
            state
        })
        .collect();
    let dc = node_id(st, &st.leader);
    Element::new(
        "cib",
        vec![
            ("crm_feature_set", CRM_FEATURE_SET.into()),
            ("validate-with", "pacemaker-3.9".into()),
            ("epoch", "1".into()),
            ("num_updates", "0".into()),
            ("admin_epoch", "0".into()),
            ("have-quorum", if st.quorate { "1" } else { "0" }.into()),
            ("dc-uuid", dc.to_string()),
        ],
    )
    .with(vec![
        Element::new("configuration", vec![]).with(vec![
            Element::new("crm_config", vec![]),
            Element::new("nodes", vec![]).with(nodes),
            Element::new("resources", vec![]),
            Element::new("constraints", vec![]),
        ]),
        Element::new("status", vec![]).with(states),
    ])
}

/// What `cibadmin` prints for `req`, given the cluster's status.
pub fn render(req: &Request, st: &ClusterStatus) -> Answer {
    let root = cib(st);
    let mut found: Vec<&Element> = vec![&root];
    if let Some(scope) = &req.scope {
        let mut all = Vec::new();
        root.descendants(&mut all);
        found = all
            .into_iter()
            .filter(|e| e.name == scope)
            .take(1)
            .collect();
    }
    if let Some(x) = &req.xpath {
        found = found.into_iter().flat_map(|e| x.select(e)).collect();
    }
    let mut stdout = String::new();
    match found.as_slice() {
        [] => {
            return Answer {
                stdout,
                stderr: "Call cib_query failed (-6): No such device or address\n".into(),
                exit_code: EXIT_NO_SUCH,
            };
        }
        [one] => one.write(0, &mut stdout),
        many => {
            stdout.push_str("<xpath-query>\n");
            for e in many {
                e.write(1, &mut stdout);
            }
            stdout.push_str("</xpath-query>\n");
        }
    }
    Answer {
        stdout,
        stderr: String::new(),
        exit_code: 0,
    }
}

/// An XPath of the subset the agents use (see the module's doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XPath {
    steps: Vec<Step>,
}

/// One step: `/name` (a child) or `//name` (any descendant), with attribute tests.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    descendant: bool,
    /// `*`: any element.
    name: String,
    /// Every `@attr='value'` must hold.
    tests: Vec<(String, String)>,
}

impl XPath {
    /// Reads `text`; a usage error naming what is not supported.
    pub fn parse(text: &str) -> Result<XPath, UsageError> {
        let bad = |why: &str| UsageError {
            tool: "cibadmin",
            problem: format!(
                "--xpath `{text}`: {why} (Buoy's shim takes steps /name or //name with \
                 [@attr='value'] tests)"
            ),
        };
        let mut steps = Vec::new();
        let mut rest = text.trim();
        if !rest.starts_with('/') {
            return Err(bad("the path must start with / or //"));
        }
        while !rest.is_empty() {
            let descendant = rest.starts_with("//");
            rest = rest
                .strip_prefix("//")
                .or_else(|| rest.strip_prefix('/'))
                .ok_or_else(|| bad("a step must start with / or //"))?;
            let end = rest.find(['/', '[']).unwrap_or(rest.len());
            let name = &rest[..end];
            if name.is_empty()
                || !(name == "*"
                    || name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            {
                return Err(bad(&format!("`{name}` is not an element name")));
            }
            rest = &rest[end..];
            let mut tests = Vec::new();
            while let Some(after) = rest.strip_prefix('[') {
                let close = after.find(']').ok_or_else(|| bad("a [ is not closed"))?;
                for test in after[..close].split(" and ") {
                    tests.push(
                        attr_test(test.trim()).ok_or_else(|| {
                            bad(&format!("`[{test}]` is not an @attr='value' test"))
                        })?,
                    );
                }
                rest = &after[close + 1..];
            }
            steps.push(Step {
                descendant,
                name: name.to_string(),
                tests,
            });
        }
        Ok(XPath { steps })
    }

    /// The elements `root` (the document's element) and its descendants that match, in
    /// document order, each once.
    fn select<'a>(&self, root: &'a Element) -> Vec<&'a Element> {
        // The context starts at the document node, whose only child is `root`.
        let mut context: Vec<&Element> = Vec::new();
        let mut at_document = true;
        for step in &self.steps {
            let mut next: Vec<&'a Element> = Vec::new();
            let candidates: Vec<&'a Element> = if at_document {
                let mut c = vec![root];
                if step.descendant {
                    root.descendants(&mut c);
                }
                c
            } else {
                let mut c = Vec::new();
                for e in &context {
                    if step.descendant {
                        e.descendants(&mut c);
                    } else {
                        c.extend(e.children.iter());
                    }
                }
                c
            };
            for e in candidates {
                if step.matches(e) && !next.iter().any(|n| std::ptr::eq(*n, e)) {
                    next.push(e);
                }
            }
            at_document = false;
            context = next;
        }
        context
    }
}

impl Step {
    fn matches(&self, e: &Element) -> bool {
        (self.name == "*" || self.name == e.name)
            && self
                .tests
                .iter()
                .all(|(k, v)| e.attr(k) == Some(v.as_str()))
    }
}

/// `@attr='value'` (or double quotes) -> (attr, value).
fn attr_test(test: &str) -> Option<(String, String)> {
    let (attr, value) = test.strip_prefix('@')?.split_once('=')?;
    let value = value.trim();
    let quote = value.chars().next().filter(|q| *q == '\'' || *q == '"')?;
    let inner = value.strip_prefix(quote)?.strip_suffix(quote)?;
    Some((attr.trim().to_string(), inner.to_string()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proto::NodeStatus;

    use super::*;
    use crate::pacemaker_tools::words;

    fn status() -> ClusterStatus {
        let attrs = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        ClusterStatus {
            leader: "h1".into(),
            quorate: true,
            nodes: vec![
                NodeStatus {
                    name: "h1".into(),
                    online: true,
                    transient: attrs(&[("rmq-node-attr-rabbitmq", "rabbit@h1")]),
                    ..NodeStatus::default()
                },
                NodeStatus {
                    name: "h2".into(),
                    online: false,
                    unclean: true,
                    transient: attrs(&[("rmq-node-attr-rabbitmq", "rabbit@h2")]),
                    permanent: attrs(&[("site", "a")]),
                },
                NodeStatus {
                    name: "h3".into(),
                    online: true,
                    transient: attrs(&[("rmq-node-attr-rabbitmq", "rabbit@h3"), ("x", "1")]),
                    ..NodeStatus::default()
                },
            ],
            resources: Vec::new(),
        }
    }

    /// The `value="..."` of each line, as rabbitmq-cluster's `sed` reads them.
    fn values(out: &str, name: &str) -> Vec<String> {
        out.lines()
            .filter(|l| l.contains(name))
            .filter_map(|l| {
                let v = l.split("value=\"").nth(1)?;
                Some(v[..v.find('"')?].to_string())
            })
            .collect()
    }

    #[test]
    fn rabbitmq_clusters_queries_find_the_online_nodes_cookies() {
        let st = status();
        let q = |x: &str| {
            let mut w = words("-Q --xpath");
            w.push(x.into());
            render(&parse(&w).unwrap(), &st)
        };
        let online = q("//node_state[@crmd='online']//nvpair[@name='rmq-node-attr-rabbitmq']");
        assert_eq!(online.exit_code, 0, "{online:?}");
        assert_eq!(
            values(&online.stdout, "rmq-node-attr-rabbitmq"),
            ["rabbit@h1", "rabbit@h3"]
        );
        assert!(online.stdout.starts_with("<xpath-query>"));
        let all = q("//node_state//nvpair[@name='rmq-node-attr-rabbitmq']");
        assert_eq!(
            values(&all.stdout, "rmq-node-attr-rabbitmq"),
            ["rabbit@h1", "rabbit@h2", "rabbit@h3"]
        );
        // One match: the element alone.
        let one = q("//node_state[@uname='h3']//nvpair[@name='x']");
        assert_eq!(
            one.stdout,
            "<nvpair id=\"status-3-x\" name=\"x\" value=\"1\"/>\n"
        );
        // None: Pacemaker's "no such object".
        let none = q("//node_state//nvpair[@name='absent']");
        assert_eq!(none.exit_code, EXIT_NO_SUCH);
        assert!(none.stdout.is_empty());
        // Absolute steps and `and`.
        let abs = q("/cib/configuration/nodes/node[@uname='h2' and @id='2']//nvpair");
        assert_eq!(values(&abs.stdout, "site"), ["a"]);
        assert!(
            q("/configuration").exit_code == EXIT_NO_SUCH,
            "the root is cib"
        );
    }

    #[test]
    fn the_whole_cib_has_nodes_states_and_the_dc() {
        let a = render(&parse(&words("-Q")).unwrap(), &status());
        assert_eq!(a.exit_code, 0);
        let o = &a.stdout;
        assert!(o.starts_with("<cib crm_feature_set="), "{o}");
        assert!(o.contains(" validate-with=\"pacemaker-3.9\""), "{o}");
        assert!(o.contains(" dc-uuid=\"1\""), "{o}");
        assert!(
            o.contains("<node_state id=\"2\" uname=\"h2\" in_ccm=\"false\" crmd=\"offline\""),
            "{o}"
        );
        assert!(o.contains("<node id=\"1\" uname=\"h1\"/>"), "{o}");
        let nodes = render(&parse(&words("-Q -o nodes")).unwrap(), &status());
        assert!(nodes.stdout.starts_with("<nodes>"), "{}", nodes.stdout);
        assert!(!nodes.stdout.contains("node_state"));
    }

    #[test]
    fn changes_and_odd_paths_are_refused_with_the_reason() {
        for (line, says) in [
            ("-R -x cib.xml", "only queries"),
            ("-M -X <x/>", "only queries"),
            ("--xpath //a", "only queries (-Q)"),
            ("-Q --xpath", "needs a value"),
            ("-Q -o everything", "no section"),
            ("-Q --frobnicate", "unknown option"),
        ] {
            let e = parse(&words(line)).unwrap_err();
            assert!(e.to_string().contains(says), "{line}: {e}");
        }
        for x in [
            "node_state",
            "//node_state[@crmd]",
            "//node_state[1]",
            "//a|//b",
            "//node_state[@crmd='online'",
            "//text()",
        ] {
            assert!(XPath::parse(x).is_err(), "{x}");
        }
    }
}
