//! Every `buoy` command line in the README's shell blocks is one the CLI accepts. The blocks an
//! operator pastes against a cluster also run for real (`tests/readme.rs`); the rest (agents,
//! benchmarks, simulations that take minutes) are at least parsed here with the real parser, so
//! a renamed flag or subcommand breaks the build's tests, not a reader's first try.

use clap::Parser;

use super::Cli;

/// The README's shell blocks, continuation lines joined.
fn shell_lines(readme: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in readme.lines() {
        if let Some(fence) = line.strip_prefix("```") {
            in_sh = !in_sh && fence == "sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let line = strip_comment(line);
        if let Some(head) = line.trim_end().strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(&line);
        out.push(std::mem::take(&mut pending));
    }
    out
}

/// A line without its trailing `# comment` (a `#` outside quotes, after a space).
fn strip_comment(line: &str) -> String {
    let mut quote = None;
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if prev.is_whitespace() => return line[..i].to_string(),
            _ => {}
        }
        prev = c;
    }
    line.to_string()
}

/// Splits a command line as a shell would (quotes, no expansion).
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote = None;
    let mut any = false;
    for c in line.chars() {
        match (quote, c) {
            (None, '\'' | '"') => {
                quote = Some(c);
                any = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if any {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            (_, c) => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// The `buoy` invocations a line holds, as argument lists: `cargo run --release -- X` is
/// `buoy X`, `[--json]` is written out, and `a|b|c` gives one invocation per alternative.
fn invocations(line: &str) -> Vec<Vec<String>> {
    let mut w = words(line);
    if w.last().is_some_and(|x| x == "&") {
        w.pop();
    }
    let args: Vec<String> = match w.first().map(String::as_str) {
        Some("buoy") => w[1..].to_vec(),
        Some("cargo") => match w.iter().position(|x| x == "--") {
            Some(i) if w.get(1).is_some_and(|x| x == "run") => w[i + 1..].to_vec(),
            _ => return vec![],
        },
        _ => return vec![],
    };
    let args: Vec<String> = args
        .into_iter()
        .map(|a| {
            a.strip_prefix('[')
                .and_then(|a| a.strip_suffix(']'))
                .map_or(a.clone(), str::to_string)
        })
        .collect();
    let mut out = vec![vec!["buoy".to_string()]];
    for a in args {
        let alts: Vec<&str> = if a.contains('|') && !a.contains('=') {
            a.split('|').collect()
        } else {
            vec![a.as_str()]
        };
        out = out
            .into_iter()
            .flat_map(|prefix| {
                alts.iter().map(move |alt| {
                    let mut p = prefix.clone();
                    p.push(alt.to_string());
                    p
                })
            })
            .collect();
    }
    out
}

#[test]
fn every_buoy_command_in_the_readme_parses() {
    let readme = include_str!("../../../../README.md");
    let mut checked = 0;
    for line in shell_lines(readme) {
        if line.contains("--features foca") && !cfg!(feature = "foca") {
            continue;
        }
        for argv in invocations(&line) {
            if let Err(e) = Cli::try_parse_from(&argv) {
                panic!("README: `{}` is refused by the CLI:\n{e}", argv.join(" "));
            }
            checked += 1;
        }
    }
    // The README has dozens; a parser that found none would pass by checking nothing.
    assert!(checked >= 40, "only {checked} README commands found");
}

#[test]
fn the_splitter_reads_quotes_comments_and_alternatives() {
    assert_eq!(
        words(r#"buoy x --set 'a=["-m","b"]' "c d""#),
        ["buoy", "x", "--set", r#"a=["-m","b"]"#, "c d"]
    );
    assert_eq!(strip_comment("buoy x  # a 'note'"), "buoy x  ");
    assert_eq!(strip_comment("echo '#not'"), "echo '#not'");
    let inv = invocations("buoy bench failover --fault crash|hang [--json]");
    assert_eq!(inv.len(), 2);
    assert_eq!(inv[1].join(" "), "buoy bench failover --fault hang --json");
    // A misspelt flag is refused, so the test above can fail.
    assert!(Cli::try_parse_from(["buoy", "members", "--htp", "x"]).is_err());
}
