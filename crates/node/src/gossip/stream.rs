//! Stream transport over TCP: one request frame, one reply frame, each `u32` length-prefixed
//! and sealed like datagrams. The request starts with the sender's gossip address so the
//! receiver can apply the fault filter to the right member.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use swim::StreamFailure;
use swim::wire::{Reader, Writer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::debug;

use super::runtime::Shared;

/// Largest stream frame accepted: a push-pull of about 80,000 members fits. A frame is
/// authenticated only once whole, so memory grows with the bytes that really arrive (within
/// the exchange's timeout), never with the length a frame claims.
const MAX_FRAME: usize = 8 << 20;
/// Incoming stream exchanges handled at once; more are refused (bounds push-pull load).
const MAX_CONCURRENT: usize = 16;

async fn write_frame(s: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    s.write_all(&(bytes.len() as u32).to_be_bytes()).await?;
    s.write_all(bytes).await?;
    s.flush().await
}

async fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("stream frame of {len} bytes exceeds {MAX_FRAME}"),
        ));
    }
    let mut buf = Vec::with_capacity(len.min(64 << 10));
    (&mut *s).take(len as u64).read_to_end(&mut buf).await?;
    if buf.len() < len {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(buf)
}

/// Sends one request frame to `to` and returns the reply frame (decrypted).
pub async fn exchange(
    shared: &Arc<Shared>,
    to: SocketAddr,
    request: Vec<u8>,
) -> Result<Vec<u8>, StreamFailure> {
    let mut w = Writer::new();
    w.addr(shared.gossip_addr);
    let mut framed = w.into_bytes();
    framed.extend_from_slice(&request);
    let sealed = shared.seal(framed);
    let work = async {
        let mut s = TcpStream::connect(to)
            .await
            .map_err(|e| StreamFailure::Connect(e.to_string()))?;
        write_frame(&mut s, &sealed)
            .await
            .map_err(|e| StreamFailure::Connect(e.to_string()))?;
        let reply = read_frame(&mut s)
            .await
            .map_err(|e| StreamFailure::BadReply(e.to_string()))?;
        shared
            .open(&reply)
            .ok_or_else(|| StreamFailure::BadReply("reply did not decrypt".into()))
    };
    match tokio::time::timeout(shared.stream_timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(StreamFailure::Timeout),
    }
}

/// Accepts stream exchanges until the process ends.
pub async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    let permits = Arc::new(Semaphore::new(MAX_CONCURRENT));
    loop {
        let Ok((conn, peer)) = listener.accept().await else {
            continue;
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            shared.drops.stream_refused.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = tokio::time::timeout(shared.stream_timeout, handle(&shared, conn))
                .await
                .unwrap_or(Ok(()))
            {
                debug!(%peer, error = %e, "stream exchange failed");
            }
        });
    }
}

async fn handle(shared: &Arc<Shared>, mut conn: TcpStream) -> std::io::Result<()> {
    let wire = read_frame(&mut conn).await?;
    let Some(plain) = shared.open(&wire) else {
        return Ok(());
    };
    let mut r = Reader::new(&plain);
    let Ok(sender) = r.addr() else { return Ok(()) };
    let body = &plain[plain.len() - r.remaining()..];
    if shared.filtered(&sender, false) || shared.filtered(&sender, true) {
        return Ok(());
    }
    let reply = shared.with_swim(|s, now| s.handle_stream_request(now, sender, body));
    if let Some(reply) = reply {
        write_frame(&mut conn, &shared.seal(reply)).await?;
    }
    Ok(())
}
