//! openraft's three RPCs (append entries, vote, install snapshot) carried as JSON over any
//! [`Transport`]: HTTP between agents, an in-memory faulty network in the simulator. Both
//! ends live here so that the agent and the simulator speak exactly the same protocol.

use std::future::Future;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;

use crate::raft::types::{NodeId, Raft, ServerNode, TypeConfig};

/// Which Raft RPC a request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rpc {
    Append,
    Vote,
    Snapshot,
}

impl Rpc {
    /// Its name in URLs (`/internal/raft/append`).
    pub fn as_str(self) -> &'static str {
        match self {
            Rpc::Append => "append",
            Rpc::Vote => "vote",
            Rpc::Snapshot => "snapshot",
        }
    }

    pub fn parse(s: &str) -> Option<Rpc> {
        match s {
            "append" => Some(Rpc::Append),
            "vote" => Some(Rpc::Vote),
            "snapshot" => Some(Rpc::Snapshot),
            _ => None,
        }
    }
}

/// Why a request did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The peer could not be reached at all (openraft backs off).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The exchange started but failed (timeout, reset, bad answer).
    #[error("{0}")]
    Failed(String),
}

/// Carries one request to a server and brings its answer back.
pub trait Transport: Clone + Send + Sync + 'static {
    fn call(
        &self,
        to: &ServerNode,
        rpc: Rpc,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, TransportError>> + Send;
}

/// The network factory handed to openraft.
#[derive(Clone)]
pub struct RaftTransport<T> {
    transport: T,
}

impl<T: Transport> RaftTransport<T> {
    pub fn new(transport: T) -> Self {
        RaftTransport { transport }
    }
}

impl<T: Transport> RaftNetworkFactory<TypeConfig> for RaftTransport<T> {
    type Network = Connection<T>;

    async fn new_client(&mut self, target: NodeId, node: &ServerNode) -> Self::Network {
        Connection {
            transport: self.transport.clone(),
            target,
            node: node.clone(),
        }
    }
}

/// openraft's view of one peer.
pub struct Connection<T> {
    transport: T,
    target: NodeId,
    node: ServerNode,
}

impl<T: Transport> Connection<T> {
    async fn send<Req, Resp, E>(
        &self,
        rpc: Rpc,
        req: &Req,
    ) -> Result<Resp, RPCError<NodeId, ServerNode, RaftError<NodeId, E>>>
    where
        Req: WireEncode,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body = req
            .encode()
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let reply = match self.transport.call(&self.node, rpc, body).await {
            Ok(r) => r,
            Err(e @ TransportError::Unreachable(_)) => {
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
            Err(e) => return Err(RPCError::Network(NetworkError::new(&e))),
        };
        let answer: Result<Resp, RaftError<NodeId, E>> =
            serde_json::from_slice(&reply).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        answer.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }
}

type RpcResult<R, E = openraft::error::Infallible> =
    Result<R, RPCError<NodeId, ServerNode, RaftError<NodeId, E>>>;

impl<T: Transport> RaftNetwork<TypeConfig> for Connection<T> {
    async fn append_entries(
        &mut self,
        req: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        self.send(Rpc::Append, &req).await
    }

    async fn install_snapshot(
        &mut self,
        req: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.send(Rpc::Snapshot, &SnapshotChunk(req)).await
    }

    async fn vote(
        &mut self,
        req: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        self.send(Rpc::Vote, &req).await
    }
}

/// The receiving end: decodes a request for `raft`, runs it, and encodes the answer (a
/// `Result`, so the sender sees Raft's own errors). `Err` means the request was malformed.
pub async fn serve_rpc(raft: &Raft, rpc: Rpc, body: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
    match rpc {
        Rpc::Append => {
            let req: AppendEntriesRequest<TypeConfig> = serde_json::from_slice(body)?;
            serde_json::to_vec(&raft.append_entries(req).await)
        }
        Rpc::Vote => {
            let req: VoteRequest<NodeId> = serde_json::from_slice(body)?;
            serde_json::to_vec(&raft.vote(req).await)
        }
        Rpc::Snapshot => {
            let req = SnapshotChunk::decode(body)?;
            serde_json::to_vec(&raft.install_snapshot(req).await)
        }
    }
}

/// A snapshot chunk on the wire: the request as JSON without its data, a newline (compact
/// JSON has none of its own), then the data as raw bytes. JSON would spell each byte as a
/// number, three to four times its size, for chunks of megabytes.
struct SnapshotChunk(InstallSnapshotRequest<TypeConfig>);

impl SnapshotChunk {
    fn header(req: &InstallSnapshotRequest<TypeConfig>) -> InstallSnapshotRequest<TypeConfig> {
        InstallSnapshotRequest {
            vote: req.vote,
            meta: req.meta.clone(),
            offset: req.offset,
            data: Vec::new(),
            done: req.done,
        }
    }

    fn decode(body: &[u8]) -> Result<InstallSnapshotRequest<TypeConfig>, serde_json::Error> {
        let Some(split) = body.iter().position(|b| *b == b'\n') else {
            // The whole request as JSON, as earlier builds send it.
            return serde_json::from_slice(body);
        };
        let mut req: InstallSnapshotRequest<TypeConfig> = serde_json::from_slice(&body[..split])?;
        req.data = body[split + 1..].to_vec();
        Ok(req)
    }
}

impl WireEncode for SnapshotChunk {
    fn encode(&self) -> serde_json::Result<Vec<u8>> {
        let mut out = serde_json::to_vec(&Self::header(&self.0))?;
        out.push(b'\n');
        out.extend_from_slice(&self.0.data);
        Ok(out)
    }
}

/// How a request is put on the wire: JSON, except for snapshot chunks.
trait WireEncode {
    fn encode(&self) -> serde_json::Result<Vec<u8>>;
}

impl WireEncode for AppendEntriesRequest<TypeConfig> {
    fn encode(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(self)
    }
}

impl WireEncode for VoteRequest<NodeId> {
    fn encode(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::types::{LogId, SnapshotMeta};

    #[test]
    fn a_snapshot_chunk_travels_as_raw_bytes_and_decodes_to_the_same_request() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 256) as u8).collect();
        let req = InstallSnapshotRequest::<TypeConfig> {
            vote: openraft::Vote::new_committed(3, 7),
            meta: SnapshotMeta {
                last_log_id: Some(LogId::new(openraft::CommittedLeaderId::new(3, 7), 42)),
                last_membership: Default::default(),
                snapshot_id: "3-7-42".into(),
            },
            offset: 1_000,
            data: data.clone(),
            done: false,
        };
        let wire = SnapshotChunk(req.clone()).encode().unwrap();
        assert!(
            wire.len() < data.len() + 1_000,
            "{} bytes on the wire for {} of data",
            wire.len(),
            data.len()
        );
        assert_eq!(SnapshotChunk::decode(&wire).unwrap(), req);
        // An empty chunk (the last one often is) and a body without data at all.
        let empty = InstallSnapshotRequest {
            data: Vec::new(),
            done: true,
            ..req.clone()
        };
        assert_eq!(
            SnapshotChunk::decode(&SnapshotChunk(empty.clone()).encode().unwrap()).unwrap(),
            empty
        );
        // Earlier builds send the whole request as JSON.
        let all_json = serde_json::to_vec(&req).unwrap();
        assert_eq!(SnapshotChunk::decode(&all_json).unwrap(), req);
        assert!(SnapshotChunk::decode(b"not json\nxyz").is_err());
    }
}
