//! `crm_node`: this host's name, the members of its partition, quorum, and the member list, as
//! the resource agents read them (`crm_node -n|-p|-q|-l`).

use super::{Answer, UsageError};

/// A member as this host's gossip sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    /// Alive (or suspect) in this host's view: in its partition.
    pub up: bool,
}

/// `crm_node ARGS` for host `me`, given the members it sees (itself included) and whether its
/// partition holds a quorum (it reaches the control plane's leader).
pub fn crm_node(
    words: &[String],
    me: &str,
    members: &[Member],
    quorate: bool,
) -> Result<Answer, UsageError> {
    let usage = |problem: String| UsageError {
        tool: "crm_node",
        problem,
    };
    let mut what = None;
    for w in words {
        let next = match w.as_str() {
            "-n" | "--name" => 'n',
            "-p" | "--partition" => 'p',
            "-q" | "--quorum" => 'q',
            "-l" | "--list" => 'l',
            "-V" | "--verbose" => continue,
            other => return Err(usage(format!("unknown option {other}"))),
        };
        // `-l -p` lists the partition, as `-p` does.
        what = Some(match (what, next) {
            (Some('l'), 'p') | (Some('p'), 'l') => 'p',
            (None, x) => x,
            (Some(a), b) if a == b => a,
            _ => return Err(usage("give one of -n, -p, -q and -l".into())),
        });
    }
    let mut up: Vec<&str> = members
        .iter()
        .filter(|m| m.up)
        .map(|m| m.name.as_str())
        .collect();
    up.sort_unstable();
    let stdout = match what.ok_or_else(|| usage("give -n, -p, -q or -l".into()))? {
        'n' => format!("{me}\n"),
        'p' => format!("{}\n", up.join(" ")),
        'q' => format!("{}\n", u8::from(quorate)),
        _ => {
            let mut all: Vec<&Member> = members.iter().collect();
            all.sort_by(|a, b| a.name.cmp(&b.name));
            all.iter()
                .enumerate()
                .map(|(i, m)| {
                    let state = if m.up { "member" } else { "lost" };
                    format!("{} {} {state}\n", i + 1, m.name)
                })
                .collect()
        }
    };
    Ok(Answer {
        stdout,
        ..Answer::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members() -> Vec<Member> {
        [("h3", true), ("h1", true), ("h2", false)]
            .into_iter()
            .map(|(n, up)| Member { name: n.into(), up })
            .collect()
    }

    fn run(args: &str) -> Result<Answer, UsageError> {
        let words: Vec<String> = args.split_whitespace().map(str::to_string).collect();
        crm_node(&words, "h1", &members(), true)
    }

    #[test]
    fn each_form_answers_as_pacemaker_prints_it() {
        assert_eq!(run("-n").unwrap().stdout, "h1\n");
        assert_eq!(run("-p").unwrap().stdout, "h1 h3\n");
        assert_eq!(run("-l -p").unwrap().stdout, "h1 h3\n");
        assert_eq!(run("-q").unwrap().stdout, "1\n");
        assert_eq!(
            run("-l").unwrap().stdout,
            "1 h1 member\n2 h2 lost\n3 h3 member\n"
        );
        assert!(run("").is_err());
        assert!(run("-n -q").is_err());
        assert!(run("--bogus").is_err());
    }
}
