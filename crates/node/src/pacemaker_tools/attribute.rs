//! `crm_attribute`, `crm_master` and `attrd_updater`: the forms the resource agents use, read
//! into one [`Request`] on the cluster's attribute store, and the answers they parse.

use super::{Answer, Args, EXIT_NO_SUCH, UsageError};

/// Where an attribute lives, in Pacemaker's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A node attribute kept until the node restarts or leaves (`-l reboot`; promotion scores).
    Status,
    /// A node attribute kept across restarts (`-l forever`).
    Nodes,
    /// A cluster-wide property (`--type crm_config`), in an optional named set.
    CrmConfig,
}

impl Scope {
    /// The name `crm_attribute` prints (`scope=status name=... value=...`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Status => "status",
            Scope::Nodes => "nodes",
            Scope::CrmConfig => "crm_config",
        }
    }
}

/// What to do with the attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Query,
    Update(String),
    Delete,
}

/// The tool the agent called, which decides the answer's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    CrmAttribute,
    CrmMaster,
    AttrdUpdater,
}

/// One operation on the attribute store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub tool: Tool,
    pub scope: Scope,
    /// The node the attribute belongs to (`None` for a cluster property).
    pub node: Option<String>,
    /// The property set of a cluster property (`-s mysql_replication`).
    pub set: Option<String>,
    pub name: String,
    pub op: Op,
    /// Print the value alone.
    pub quiet: bool,
}

/// What the agent's environment says by default: its resource (`OCF_RESOURCE_INSTANCE`) and
/// the node it runs on (`OCF_RESKEY_CRM_meta_on_node`, else this host's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defaults {
    pub resource: Option<String>,
    pub node: String,
}

/// The attribute a promotion score is kept in.
pub fn promotion_attribute(resource: &str) -> String {
    // Strip a clone suffix (`db:1`): the score belongs to the resource on that node.
    let base = resource.split(':').next().unwrap_or(resource);
    format!("master-{base}")
}

/// The options `crm_attribute` and `crm_master` share, as read so far.
#[derive(Default)]
struct Parsed {
    name: Option<String>,
    node: Option<String>,
    lifetime: Option<Scope>,
    kind: Option<Scope>,
    set: Option<String>,
    op: Option<Op>,
    quiet: bool,
    promotion: Option<Option<String>>,
    resource: Option<String>,
}

fn set_op(args: &Args, parsed: &mut Parsed, op: Op) -> Result<(), UsageError> {
    if parsed.op.as_ref().is_some_and(|o| *o != op) {
        return Err(args.usage("give one of --update, --delete and --query".into()));
    }
    parsed.op = Some(op);
    Ok(())
}

fn lifetime(args: &Args, v: &str) -> Result<Scope, UsageError> {
    match v {
        "reboot" => Ok(Scope::Status),
        "forever" => Ok(Scope::Nodes),
        other => Err(args.usage(format!("--lifetime {other}: expected reboot or forever"))),
    }
}

/// Reads the options `crm_attribute` takes (and `crm_master`, which passes its own on).
fn parse_common(args: &mut Args, parsed: &mut Parsed) -> Result<(), UsageError> {
    while let Some(opt) = args.next_option() {
        let (key, attached) = opt?;
        match key.as_str() {
            "-n" | "--name" | "--attr-name" => parsed.name = Some(args.value(&key, attached)?),
            "-N" | "--node" | "-U" | "--uname" => parsed.node = Some(args.value(&key, attached)?),
            "-l" | "--lifetime" => {
                let v = args.value(&key, attached)?;
                parsed.lifetime = Some(lifetime(args, &v)?);
            }
            "-t" | "--type" => {
                let v = args.value(&key, attached)?;
                parsed.kind = Some(match v.as_str() {
                    "crm_config" => Scope::CrmConfig,
                    "nodes" => Scope::Nodes,
                    "status" => Scope::Status,
                    other => {
                        return Err(args.usage(format!(
                            "--type {other}: this shim keeps crm_config, nodes and status attributes"
                        )));
                    }
                });
            }
            "-s" | "--set-name" => parsed.set = Some(args.value(&key, attached)?),
            "-v" | "--update" | "--attr-value" => {
                let v = args.value(&key, attached)?;
                set_op(args, parsed, Op::Update(v))?;
            }
            "-D" | "--delete" | "--delete-attr" => set_op(args, parsed, Op::Delete)?,
            "-G" | "--query" | "--get-value" => set_op(args, parsed, Op::Query)?,
            "-q" | "--quiet" | "-Q" => parsed.quiet = true,
            "-p" | "--promotion" => parsed.promotion = Some(args.optional_value(attached)),
            "-r" | "--resource" => parsed.resource = Some(args.value(&key, attached)?),
            "-i" | "--id" | "-d" | "--default" | "-V" | "--verbose" => {
                // Accepted and of no effect here (ids and defaults of the CIB's XML).
                if matches!(key.as_str(), "-i" | "--id" | "-d" | "--default") {
                    args.value(&key, attached)?;
                }
            }
            other => return Err(args.usage(format!("unknown option {other}"))),
        }
    }
    Ok(())
}

/// `crm_attribute ARGS`.
pub fn crm_attribute(words: &[String], defaults: &Defaults) -> Result<Request, UsageError> {
    let mut args = Args::new("crm_attribute", words);
    let mut parsed = Parsed::default();
    parse_common(&mut args, &mut parsed)?;
    finish(Tool::CrmAttribute, &args, parsed, defaults)
}

/// `crm_master ARGS`: `crm_attribute -n master-RESOURCE --lifetime forever ARGS`.
pub fn crm_master(words: &[String], defaults: &Defaults) -> Result<Request, UsageError> {
    let mut args = Args::new("crm_master", words);
    let mut parsed = Parsed::default();
    parse_common(&mut args, &mut parsed)?;
    if parsed.name.is_some() {
        return Err(args.usage("crm_master names its own attribute (master-RESOURCE)".into()));
    }
    let resource = parsed
        .resource
        .clone()
        .or_else(|| defaults.resource.clone())
        .ok_or_else(|| args.usage("no resource: set OCF_RESOURCE_INSTANCE or give -r".into()))?;
    parsed.name = Some(promotion_attribute(&resource));
    parsed.lifetime = parsed.lifetime.or(Some(Scope::Nodes));
    finish(Tool::CrmMaster, &args, parsed, defaults)
}

fn finish(
    tool: Tool,
    args: &Args,
    mut parsed: Parsed,
    defaults: &Defaults,
) -> Result<Request, UsageError> {
    if let Some(resource) = parsed.promotion.take() {
        // `-p [RESOURCE]`: the promotion score of RESOURCE (default: the agent's own) on this
        // node (or -N's), kept until the node restarts unless told otherwise.
        let resource = resource
            .or_else(|| parsed.resource.clone())
            .or_else(|| defaults.resource.clone())
            .ok_or_else(|| args.usage("-p: no resource; set OCF_RESOURCE_INSTANCE".into()))?;
        parsed.name = Some(promotion_attribute(&resource));
        parsed.lifetime = parsed.lifetime.or(Some(Scope::Status));
    }
    let name = parsed
        .name
        .ok_or_else(|| args.usage("which attribute? give --name NAME".into()))?;
    let scope = match (parsed.kind, parsed.lifetime) {
        (Some(Scope::CrmConfig), _) => Scope::CrmConfig,
        (_, Some(l)) => l,
        (Some(k), None) => k,
        // A node attribute with no lifetime is a permanent one, as in Pacemaker.
        (None, None) => Scope::Nodes,
    };
    let node = match scope {
        Scope::CrmConfig => None,
        _ => Some(parsed.node.unwrap_or_else(|| defaults.node.clone())),
    };
    Ok(Request {
        tool,
        scope,
        node,
        set: parsed.set,
        name,
        op: parsed.op.unwrap_or(Op::Query),
        quiet: parsed.quiet,
    })
}

/// `attrd_updater ARGS`: transient node attributes (`-p`/`--private` ones are kept the same
/// way; nothing here shows them in a status dump anyway).
pub fn attrd_updater(words: &[String], defaults: &Defaults) -> Result<Request, UsageError> {
    let mut args = Args::new("attrd_updater", words);
    let (mut name, mut node, mut op) = (None, None, None);
    while let Some(opt) = args.next_option() {
        let (key, attached) = opt?;
        let next = match key.as_str() {
            "-n" | "--name" => {
                name = Some(args.value(&key, attached)?);
                continue;
            }
            "-N" | "--node" => {
                node = Some(args.value(&key, attached)?);
                continue;
            }
            "-v" | "-U" | "--update" => Op::Update(args.value(&key, attached)?),
            "-D" | "--delete" => Op::Delete,
            "-Q" | "--query" => Op::Query,
            "-l" | "--lifetime" => {
                let v = args.value(&key, attached)?;
                lifetime(&args, &v)?;
                continue;
            }
            "-p" | "--private" | "-q" | "--quiet" | "-A" | "--all" => continue,
            other => return Err(args.usage(format!("unknown option {other}"))),
        };
        if op.as_ref().is_some_and(|o| *o != next) {
            return Err(args.usage("give one of --update, --delete and --query".into()));
        }
        op = Some(next);
    }
    Ok(Request {
        tool: Tool::AttrdUpdater,
        scope: Scope::Status,
        node: Some(node.unwrap_or_else(|| defaults.node.clone())),
        set: None,
        name: name.ok_or_else(|| args.usage("which attribute? give --name NAME".into()))?,
        op: op.ok_or_else(|| args.usage("give --update VALUE, --delete or --query".into()))?,
        quiet: false,
    })
}

/// The answer to `req`, given the attribute's value after the operation (for a query: the
/// value found, `None` when there is none).
pub fn answer(req: &Request, value: Option<&str>) -> Answer {
    if req.op != Op::Query {
        return Answer::default();
    }
    let Some(v) = value else {
        let target = req.node.as_deref().unwrap_or("the cluster");
        return Answer {
            stdout: String::new(),
            stderr: format!(
                "Error performing operation: No such device or address (attribute {} of {target})\n",
                req.name
            ),
            exit_code: EXIT_NO_SUCH,
        };
    };
    let stdout = match req.tool {
        Tool::AttrdUpdater => format!(
            "name=\"{}\" host=\"{}\" value=\"{v}\"\n",
            req.name,
            req.node.as_deref().unwrap_or("")
        ),
        _ if req.quiet => format!("{v}\n"),
        _ => format!("scope={} name={} value={v}\n", req.scope.as_str(), req.name),
    };
    Answer {
        stdout,
        ..Answer::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pacemaker_tools::words;

    fn env() -> Defaults {
        Defaults {
            resource: Some("pgsql".into()),
            node: "h2".into(),
        }
    }

    fn req(scope: Scope, node: Option<&str>, name: &str, op: Op) -> Request {
        Request {
            tool: Tool::CrmAttribute,
            scope,
            node: node.map(str::to_string),
            set: None,
            name: name.into(),
            op,
            quiet: false,
        }
    }

    #[test]
    fn promotion_scores_in_the_forms_of_both_resource_agents_releases() {
        // resource-agents 4.12 (Debian 12) and 4.13+.
        let a = crm_attribute(&words("-p -v 1000"), &env()).unwrap();
        assert_eq!(
            a,
            req(
                Scope::Status,
                Some("h2"),
                "master-pgsql",
                Op::Update("1000".into())
            )
        );
        let b = crm_attribute(&words("-p pgsql -v 1000"), &env()).unwrap();
        assert_eq!(a, b);
        let d = crm_attribute(&words("-p -D"), &env()).unwrap();
        assert_eq!(d.op, Op::Delete);
        // galera sets its peers' scores, -INFINITY included.
        let peer = crm_attribute(&words("-p galera -N h3 -v -INFINITY"), &env()).unwrap();
        assert_eq!(peer.node.as_deref(), Some("h3"));
        assert_eq!(peer.name, "master-galera");
        assert_eq!(peer.op, Op::Update("-INFINITY".into()));
    }

    #[test]
    fn node_attributes_and_cluster_properties() {
        let pgsql = crm_attribute(
            &words("-l reboot -N h1 -n master-pgsql -v -INFINITY"),
            &env(),
        )
        .unwrap();
        assert_eq!(
            pgsql,
            req(
                Scope::Status,
                Some("h1"),
                "master-pgsql",
                Op::Update("-INFINITY".into())
            )
        );
        let q = crm_attribute(
            &words("--node=h1 --lifetime=forever --name x --query -q"),
            &env(),
        )
        .unwrap();
        assert_eq!(
            (q.scope, q.op.clone(), q.quiet),
            (Scope::Nodes, Op::Query, true)
        );
        let mysql = crm_attribute(
            &words("--type crm_config --name db_REPL_INFO -s mysql_replication -v h1|bin.7|42"),
            &env(),
        )
        .unwrap();
        assert_eq!(
            (mysql.scope, mysql.node, mysql.set.as_deref()),
            (Scope::CrmConfig, None, Some("mysql_replication"))
        );
    }

    #[test]
    fn crm_master_names_the_score_itself_and_keeps_it_forever_unless_told() {
        let m = crm_master(&words("-l reboot -v 5"), &env()).unwrap();
        assert_eq!((m.name.as_str(), m.scope), ("master-pgsql", Scope::Status));
        let m = crm_master(
            &words("--lifetime forever --quiet --get-value --node h3"),
            &env(),
        )
        .unwrap();
        assert_eq!(
            (m.scope, m.node.as_deref(), m.quiet),
            (Scope::Nodes, Some("h3"), true)
        );
        let m = crm_master(&words("-r rabbit:2 -v 1"), &env()).unwrap();
        assert_eq!((m.name.as_str(), m.scope), ("master-rabbit", Scope::Nodes));
        assert!(crm_master(&words("-n other -v 1"), &env()).is_err());
    }

    #[test]
    fn attrd_updater_forms() {
        let u = attrd_updater(&words("-n rmq-start-time -v 1700000000"), &env()).unwrap();
        assert_eq!((u.scope, u.node.as_deref()), (Scope::Status, Some("h2")));
        let p = attrd_updater(
            &words("--private --lifetime reboot --name lsn --node h3 --query"),
            &env(),
        )
        .unwrap();
        assert_eq!((p.op, p.node.as_deref()), (Op::Query, Some("h3")));
        assert!(
            attrd_updater(&words("-n x"), &env()).is_err(),
            "no operation"
        );
    }

    #[test]
    fn answers_are_printed_as_the_agents_parse_them() {
        let full = crm_attribute(&words("-N h1 -l reboot -n a -G"), &env()).unwrap();
        assert_eq!(
            answer(&full, Some("7")).stdout,
            "scope=status name=a value=7\n"
        );
        let quiet = crm_attribute(&words("-N h1 -n a -G -q"), &env()).unwrap();
        assert_eq!(answer(&quiet, Some("7")).stdout, "7\n");
        let attrd = attrd_updater(&words("-n a -Q"), &env()).unwrap();
        assert_eq!(
            answer(&attrd, Some("7")).stdout,
            "name=\"a\" host=\"h2\" value=\"7\"\n"
        );
        let missing = answer(&quiet, None);
        assert_eq!(
            (missing.exit_code, missing.stdout.as_str()),
            (EXIT_NO_SUCH, "")
        );
        assert!(missing.stderr.contains("No such"));
        let update = crm_attribute(&words("-N h1 -n a -v 1"), &env()).unwrap();
        assert_eq!(answer(&update, Some("1")), Answer::default());
    }

    #[test]
    fn bad_command_lines_are_refused_naming_the_problem() {
        for bad in [
            "-n",
            "-n a -v 1 -D",
            "--frobnicate",
            "stray",
            "-l sometimes -n a -G",
            "-v 1",
        ] {
            let e = crm_attribute(&words(bad), &env()).unwrap_err();
            assert_eq!(e.tool, "crm_attribute", "{bad}");
        }
        let no_resource = Defaults {
            resource: None,
            node: "h2".into(),
        };
        assert!(crm_attribute(&words("-p -v 1"), &no_resource).is_err());
    }
}
