//! openraft's three RPCs (append entries, vote, install snapshot) carried as JSON over any
//! [`Transport`]: HTTP between agents, an in-memory faulty network in the simulator. Both
//! ends live here so that the agent and the simulator speak exactly the same protocol.

use std::future::Future;
use std::sync::Arc;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;

use crate::recent_entries::{EncodedTexts, RecentEntries};
use crate::types::{Entry, LogId, NodeId, Raft, ServerNode, TypeConfig, Vote};

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
    recent: Arc<RecentEntries>,
}

impl<T: Transport> RaftTransport<T> {
    /// `recent`: the log store's newest entries, whose encodings go on the wire as they are.
    pub fn new(transport: T, recent: Arc<RecentEntries>) -> Self {
        RaftTransport { transport, recent }
    }
}

impl<T: Transport> RaftNetworkFactory<TypeConfig> for RaftTransport<T> {
    type Network = Connection<T>;

    async fn new_client(&mut self, target: NodeId, node: &ServerNode) -> Self::Network {
        Connection {
            transport: self.transport.clone(),
            recent: self.recent.clone(),
            target,
            node: node.clone(),
        }
    }
}

/// openraft's view of one peer.
pub struct Connection<T> {
    transport: T,
    recent: Arc<RecentEntries>,
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
        let recent = self.recent.clone();
        self.send(Rpc::Append, &AppendWire { req: &req, recent })
            .await
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
/// `recent` is the receiving server's log cache: it gets the entries' encodings as they came,
/// so its log store does not encode them again.
pub async fn serve_rpc(
    raft: &Raft,
    recent: &RecentEntries,
    rpc: Rpc,
    body: &[u8],
) -> Result<Vec<u8>, serde_json::Error> {
    match rpc {
        Rpc::Append => {
            let (req, encoded) = AppendWire::decode(body)?;
            recent.offer(encoded);
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

/// AppendEntries as JSON, each entry's JSON taken from the log cache when it is there (it
/// is the same text `serde_json` would write for it).
struct AppendWire<'a> {
    req: &'a AppendEntriesRequest<TypeConfig>,
    recent: Arc<RecentEntries>,
}

impl AppendWire<'_> {
    /// The request, and each entry's JSON text as it came.
    fn decode(body: &[u8]) -> serde_json::Result<(AppendEntriesRequest<TypeConfig>, EncodedTexts)> {
        /// The request with its entries left as text.
        #[derive(serde::Deserialize)]
        struct Raw<'a> {
            vote: Vote,
            prev_log_id: Option<LogId>,
            leader_commit: Option<LogId>,
            #[serde(borrow)]
            entries: Vec<&'a serde_json::value::RawValue>,
        }
        let raw: Raw = serde_json::from_slice(body)?;
        let mut entries = Vec::with_capacity(raw.entries.len());
        let mut encoded = Vec::with_capacity(raw.entries.len());
        for text in raw.entries {
            let entry: Entry = serde_json::from_str(text.get())?;
            encoded.push((entry.log_id, Arc::from(text.get().as_bytes())));
            entries.push(entry);
        }
        let req = AppendEntriesRequest {
            vote: raw.vote,
            prev_log_id: raw.prev_log_id,
            leader_commit: raw.leader_commit,
            entries,
        };
        Ok((req, encoded))
    }
}

impl WireEncode for AppendWire<'_> {
    fn encode(&self) -> serde_json::Result<Vec<u8>> {
        let req = self.req;
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"{\"vote\":");
        serde_json::to_writer(&mut out, &req.vote)?;
        out.extend_from_slice(b",\"prev_log_id\":");
        serde_json::to_writer(&mut out, &req.prev_log_id)?;
        out.extend_from_slice(b",\"leader_commit\":");
        serde_json::to_writer(&mut out, &req.leader_commit)?;
        out.extend_from_slice(b",\"entries\":[");
        for (i, entry) in req.entries.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            match self.recent.bytes_of(&entry.log_id) {
                Some(text) => out.extend_from_slice(&text),
                None => serde_json::to_writer(&mut out, entry)?,
            }
        }
        out.extend_from_slice(b"]}");
        Ok(out)
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
    use crate::types::{LogId, SnapshotMeta};

    fn entry(index: u64, name: &str) -> Entry {
        use model::command::{Command, Expect, Object, Op};
        use model::segment::{Segment, SegmentSpec};
        let spec = SegmentSpec {
            name: Some(name.into()),
            ..Default::default()
        };
        let meta = model::ObjectMeta {
            id: format!("id-{name}"),
            ..Default::default()
        };
        let command = Command {
            at: model::Timestamp::from_unix_millis(1_800_000_000_000 + index),
            op: Op::Put {
                object: Box::new(Object::Segment(Segment::create(meta, &spec).unwrap())),
                expect: Expect::Absent,
            },
        };
        Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(2, 5), index),
            payload: openraft::EntryPayload::Normal(crate::types::Proposal(vec![command])),
        }
    }

    #[test]
    fn append_entries_go_out_with_cached_texts_and_come_in_with_theirs() {
        let recent = Arc::new(RecentEntries::default());
        let cached = entry(7, "cached");
        let cached_text = serde_json::to_vec(&cached).unwrap();
        recent.insert(cached.clone(), cached_text.clone().into());
        let req = AppendEntriesRequest::<TypeConfig> {
            vote: openraft::Vote::new_committed(2, 5),
            prev_log_id: Some(LogId::new(openraft::CommittedLeaderId::new(2, 5), 6)),
            entries: vec![cached.clone(), entry(8, "not-cached")],
            leader_commit: Some(LogId::new(openraft::CommittedLeaderId::new(1, 5), 3)),
        };
        let wire = AppendWire {
            req: &req,
            recent: recent.clone(),
        }
        .encode()
        .unwrap();
        // Any JSON reader takes it as the request (what an earlier build receives).
        let plain: AppendEntriesRequest<TypeConfig> = serde_json::from_slice(&wire).unwrap();
        type Parts = (Vote, Option<LogId>, Option<LogId>, Vec<Entry>);
        let parts = |r: &AppendEntriesRequest<TypeConfig>| -> Parts {
            (r.vote, r.prev_log_id, r.leader_commit, r.entries.clone())
        };
        assert_eq!(parts(&plain), parts(&req));
        let (decoded, texts) = AppendWire::decode(&wire).unwrap();
        assert_eq!(parts(&decoded), parts(&req));
        assert_eq!(
            texts,
            vec![
                (req.entries[0].log_id, Arc::from(cached_text)),
                (
                    req.entries[1].log_id,
                    Arc::from(serde_json::to_vec(&req.entries[1]).unwrap())
                ),
            ]
        );
        // A heartbeat: no entries at all.
        let beat = AppendEntriesRequest::<TypeConfig> {
            entries: Vec::new(),
            ..req.clone()
        };
        let wire = AppendWire { req: &beat, recent }.encode().unwrap();
        let (decoded, texts) = AppendWire::decode(&wire).unwrap();
        assert_eq!((parts(&decoded), texts), (parts(&beat), Vec::new()));
        assert!(AppendWire::decode(b"{\"vote\":1}").is_err());
    }

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
