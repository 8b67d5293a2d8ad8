//! `crm_resource`: only the form the agents use to ban their own copy from a node,
//! `crm_resource -B -r RESOURCE [-N NODE] [-Q]` (pgsql, when its data is newer than the new
//! primary's). Buoy's ban: the copy on this host is stopped and counted failed here, so the
//! leader places it elsewhere (or nowhere, saying why) until `buoy instance reset`. A host bans
//! only its own copies. Clearing a ban and the other commands are refused with a usage error
//! naming Buoy's way.

use super::{Args, UsageError};

/// A ban asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    pub resource: String,
    /// `-N`: the node to ban it from (default: this host).
    pub node: Option<String>,
}

/// Reads a `crm_resource` command line.
pub fn parse(words: &[String]) -> Result<Ban, UsageError> {
    let mut args = Args::new("crm_resource", words);
    let mut ban = false;
    let (mut resource, mut node) = (None, None);
    while let Some(option) = args.next_option() {
        let (key, attached) = option?;
        match key.as_str() {
            "-B" | "--ban" => ban = true,
            "-r" | "--resource" => resource = Some(args.value("--resource", attached)?),
            "-N" | "--node" => node = Some(args.value("--node", attached)?),
            "-Q" | "--quiet" | "-f" | "--force" => {}
            "-U" | "--clear" | "--un-ban" | "--un-move" => {
                return Err(args.usage(format!(
                    "{key}: a ban is cleared by the operator with `buoy instance reset NAME`"
                )));
            }
            other => {
                return Err(args.usage(format!(
                    "{other}: only bans (-B -r RESOURCE [-N NODE]) are provided; Buoy keeps the \
                     cluster's configuration (use the `buoy` CLI or API)"
                )));
            }
        }
    }
    if !ban {
        return Err(args.usage("only bans (-B) are provided".into()));
    }
    let resource = resource.ok_or_else(|| args.usage("-B needs the resource (-r)".into()))?;
    Ok(Ban { resource, node })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pacemaker_tools::words;

    #[test]
    fn pgsqls_ban_is_read_and_everything_else_refused() {
        assert_eq!(
            parse(&words("-B -r pgsql -N h3 -Q")).unwrap(),
            Ban {
                resource: "pgsql".into(),
                node: Some("h3".into())
            }
        );
        assert_eq!(
            parse(&words("--ban --resource=db")).unwrap(),
            Ban {
                resource: "db".into(),
                node: None
            }
        );
        for (line, says) in [
            ("-B", "needs the resource"),
            ("-r db", "only bans"),
            ("--clear -r db", "buoy instance reset"),
            ("-r db --locate", "only bans"),
            ("-B -r", "needs a value"),
        ] {
            let e = parse(&words(line)).unwrap_err().to_string();
            assert!(e.contains(says), "{line}: {e}");
        }
    }
}
