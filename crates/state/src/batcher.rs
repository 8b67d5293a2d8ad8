//! Groups concurrent writes into one Raft entry. While a batch is being replicated, new writes
//! queue up; the next batch takes all of them (up to a limit), so one fsync'd append and one
//! replication round serve many clients instead of one each.

use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::types::{Proposal, Raft, ServerNode};
use model::command::{Command, Outcome};

/// At most this many commands in one entry.
pub const MAX_BATCH: usize = 512;
/// Before sealing a batch, let the runtime run this many times with nothing new: writers whose
/// requests are already being parsed join this batch instead of waiting a whole round.
const LINGER_YIELDS: usize = 16;
/// Batches replicating at once. One: openraft replicates a second concurrent entry in a round
/// of its own anyway, so a second slot only splits the writers into smaller batches (measured:
/// 4,000 vs 4,450 writes/s with 16 writers and 3 servers).
const IN_FLIGHT: usize = 1;

/// Why a batched write failed (cloned to every writer of the batch).
#[derive(Clone, Debug)]
pub enum WriteFailure {
    NotLeader(Option<ServerNode>),
    Raft(String),
}

/// A write waiting for its batch.
pub struct PendingWrite {
    pub command: Command,
    pub reply: oneshot::Sender<Result<Outcome, WriteFailure>>,
}

/// Starts the batcher for `raft`; send writes to the returned channel.
pub fn spawn(raft: Raft) -> mpsc::Sender<PendingWrite> {
    let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
    tokio::spawn(run(raft, rx));
    tx
}

async fn run(raft: Raft, mut rx: mpsc::Receiver<PendingWrite>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        let mut idle = 0;
        while batch.len() < MAX_BATCH && idle < LINGER_YIELDS {
            match rx.try_recv() {
                Ok(w) => {
                    batch.push(w);
                    idle = 0;
                }
                Err(_) => {
                    idle += 1;
                    tokio::task::yield_now().await;
                }
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let (commands, replies): (Vec<Command>, Vec<_>) =
                batch.into_iter().map(|w| (w.command, w.reply)).unzip();
            match raft.client_write(Proposal(commands)).await {
                Ok(resp) => {
                    for (reply, outcome) in replies.into_iter().zip(resp.data.0) {
                        let _ = reply.send(Ok(outcome));
                    }
                }
                Err(e) => {
                    let failure = match e {
                        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                            WriteFailure::NotLeader(f.leader_node)
                        }
                        e => WriteFailure::Raft(e.to_string()),
                    };
                    for reply in replies {
                        let _ = reply.send(Err(failure.clone()));
                    }
                }
            }
        });
    }
}
