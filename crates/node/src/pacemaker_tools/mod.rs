//! Pacemaker's command-line tools as the unmodified OCF resource agents call them
//! (`crm_attribute`, `crm_master`, `attrd_updater`, `crm_node`, `crm_mon`, `cibadmin`,
//! `crm_resource`): the command forms they use,
//! read into requests, and the answers in the formats and exit codes they parse
//! (`../shared/OCF-CONTRACT.md`, section 4). The parsers are pure: the `buoy` shims run these against the
//! cluster's attribute store through the local agent.
//!
//! - [`attribute`]: `crm_attribute`, `crm_master` and `attrd_updater` -> [`attribute::Request`].
//! - [`crm_node`]: `crm_node -n|-p|-q|-l` from the membership as this host sees it.
//! - [`crm_mon`]: `crm_mon -1 [--output-as=xml]` from the leader's status; `pacemakerd -$`.
//! - [`crm_resource`]: `crm_resource -B` (an agent bans its copy from this host).
//! - [`cibadmin`]: `cibadmin -Q [--xpath ...]`, the CIB's nodes and node attributes, from the
//!   same status.
//! - [`service`]: the agent answers the shims on a Unix socket, as this host; the shims call it.

pub mod attribute;
pub mod cibadmin;
pub mod crm_mon;
pub mod crm_node;
pub mod crm_resource;
pub mod service;

/// A command line the tool does not take: the shim prints it and exits 64 (usage), as the
/// real tools exit non-zero on bad arguments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{tool}: {problem}")]
pub struct UsageError {
    pub tool: &'static str,
    pub problem: String,
}

/// Pacemaker's exit code for "no such attribute" (`CRM_EX_NOSUCH`), which agents test for.
pub const EXIT_NO_SUCH: i32 = 105;
/// The exit code of a command line the tool does not take (`CRM_EX_USAGE`).
pub const EXIT_USAGE: i32 = 64;

/// What a shim prints and how it exits.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Answer {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: i32,
}

/// Splits `--name=value` into its two halves; other words pass as they are.
fn split_long(arg: &str) -> (&str, Option<&str>) {
    match arg.split_once('=') {
        Some((k, v)) if k.starts_with("--") => (k, Some(v)),
        _ => (arg, None),
    }
}

/// The words of a command line, read option by option.
struct Args<'a> {
    tool: &'static str,
    words: std::iter::Peekable<std::slice::Iter<'a, String>>,
}

impl<'a> Args<'a> {
    fn new(tool: &'static str, words: &'a [String]) -> Self {
        Args {
            tool,
            words: words.iter().peekable(),
        }
    }

    /// The next option and its attached value (`--name=x`, or `-nx` for a short one).
    fn next_option(&mut self) -> Option<Result<(String, Option<String>), UsageError>> {
        let word = self.words.next()?;
        if !word.starts_with('-') || word == "-" {
            return Some(Err(self.usage(format!("unexpected argument `{word}`"))));
        }
        let (key, value) = split_long(word);
        if !key.starts_with("--") && key.len() > 2 {
            // `-nNAME`: a short option with its value attached.
            return Some(Ok((key[..2].to_string(), Some(key[2..].to_string()))));
        }
        Some(Ok((key.to_string(), value.map(str::to_string))))
    }

    /// The value of option `key`: attached, or the next word.
    fn value(&mut self, key: &str, attached: Option<String>) -> Result<String, UsageError> {
        if let Some(v) = attached {
            return Ok(v);
        }
        self.words
            .next()
            .cloned()
            .ok_or_else(|| self.usage(format!("{key} needs a value")))
    }

    /// The optional value of `key`: attached, or the next word unless it is an option.
    fn optional_value(&mut self, attached: Option<String>) -> Option<String> {
        if attached.is_some() {
            return attached;
        }
        match self.words.peek() {
            Some(w) if !w.starts_with('-') => self.words.next().cloned(),
            _ => None,
        }
    }

    fn usage(&self, problem: String) -> UsageError {
        UsageError {
            tool: self.tool,
            problem,
        }
    }
}

/// A command line's words, split on spaces (the tools' tests).
#[cfg(test)]
fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}
