//! `buoy credential`: the cluster secret and the hosts' credentials (`node::identity`).
//! Offline commands: they run where the secret file is, and talk to no agent.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use node::identity::ClusterSecret;
use node::secret_file;

/// `buoy credential secret|issue`.
#[derive(Subcommand, Debug)]
pub enum CredentialCommand {
    /// Create the cluster secret (once per cluster; every server gets the same file, with
    /// `--cluster-secret`). The file is created readable by you only; an existing one is kept.
    Secret {
        /// Where to write it.
        file: PathBuf,
    },
    /// Issue host NAME's credential (give it to that host's agent with `--credential`).
    Issue {
        /// The host's name, as its agent's `--name`.
        name: String,
        /// The cluster secret file.
        #[arg(long)]
        cluster_secret: PathBuf,
        /// Write it to this new file (readable by you only) instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub fn run(op: CredentialCommand) -> Result<()> {
    match op {
        CredentialCommand::Secret { file } => {
            let secret = ClusterSecret::generate().context("no OS randomness")?;
            secret_file::write_new(&file, &secret.to_file_text(), "cluster secret file")?;
            eprintln!(
                "wrote {}: give it to every server (--cluster-secret) and keep it off the hosts",
                file.display()
            );
        }
        CredentialCommand::Issue {
            name,
            cluster_secret,
            out,
        } => {
            swim::message::validate_name(&name)
                .map_err(anyhow::Error::msg)
                .context("NAME")?;
            let key = ClusterSecret::load(&cluster_secret)?.host_key(&name);
            match out {
                Some(path) => {
                    secret_file::write_new(&path, &key.to_file_text(), "host credential file")?;
                    eprintln!(
                        "wrote {}: start host {name}'s agent with --credential {}",
                        path.display(),
                        path.display()
                    );
                }
                None => print!("{}", key.to_file_text()),
            }
        }
    }
    Ok(())
}
