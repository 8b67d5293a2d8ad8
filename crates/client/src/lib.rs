//! A minimal HTTP/1.1 client for the CLI: one request per connection, JSON bodies.
//! (The CLI talks only to Buoy agents, so a full client library is not worth its build time.)

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// The API token every request of this process carries (`buoy --token` / `BUOY_TOKEN`), set
/// once at start-up.
static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Makes every later request carry `Authorization: Bearer token`.
pub fn set_token(token: String) {
    let _ = TOKEN.set(token);
}

fn auth_header() -> String {
    TOKEN
        .get()
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default()
}

/// The TLS client settings of this process (`buoy --tls-ca` / `BUOY_TLS_CA`), set once at
/// start-up; without them requests go over plain HTTP.
static TLS: std::sync::OnceLock<std::sync::Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();

/// Makes every later request use HTTPS, checking the agent's certificate against `config`.
pub fn set_tls(config: std::sync::Arc<rustls::ClientConfig>) {
    let _ = TLS.set(config);
}

/// A connection to an agent: plain TCP or TLS over TCP.
trait Conn: Read + Write {}
impl<T: Read + Write> Conn for T {}

/// Connects to the agent at `addr`, over TLS when the process has a CA bundle. Reads time
/// out after `timeout` unless `streaming` (an event stream may be silent for long).
fn connect(addr: SocketAddr, timeout: Duration, streaming: bool) -> Result<Box<dyn Conn>> {
    let s = TcpStream::connect_timeout(&addr, timeout).with_context(|| {
        format!(
            "cannot reach the Buoy agent at {addr}: is `buoy agent` running there? (set --http)"
        )
    })?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let Some(config) = TLS.get() else {
        if streaming {
            s.set_read_timeout(None)?;
        }
        return Ok(Box::new(s));
    };
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let mut conn = rustls::ClientConnection::new(config.clone(), name)
        .with_context(|| format!("TLS to {addr}"))?;
    let mut s = s;
    // Finish the handshake here so a certificate problem is reported as one.
    while conn.is_handshaking() {
        conn.complete_io(&mut s).with_context(|| {
            format!(
                "TLS handshake with the agent at {addr} failed: does it serve TLS (--tls-cert), and does --tls-ca hold the CA that signed its certificate for {}?",
                addr.ip()
            )
        })?;
    }
    if streaming {
        s.set_read_timeout(None)?;
    }
    Ok(Box::new(rustls::StreamOwned::new(conn, s)))
}

/// A response: status code and body.
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// Sends one request to the agent at `addr`.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> Result<Response> {
    request_with(addr, method, path, body, timeout, &[])
}

/// Sends one request to the agent at `addr` with `headers` besides the usual ones (a
/// signature made for that agent's own routes, for instance).
pub fn request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
    headers: &[(&str, String)],
) -> Result<Response> {
    let mut s = connect(addr, timeout, false)?;
    let body = body.unwrap_or("");
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{}{extra}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        auth_header(),
        body.len()
    );
    let mut exchange = || -> Result<Response> {
        s.write_all(req.as_bytes())
            .with_context(|| format!("sending the request to {addr}"))?;
        let mut raw = Vec::new();
        match s.read_to_end(&mut raw) {
            Ok(_) => {}
            // A TLS peer that closes without close_notify, after a whole answer.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
            Err(e) => return Err(e).with_context(|| format!("reading the answer of {addr}")),
        }
        parse(&raw).with_context(|| format!("bad HTTP answer from {addr}"))
    };
    exchange().map_err(|e| {
        if TLS.get().is_none() {
            e.context(format!(
                "no HTTP answer from {addr}; if that agent serves TLS, pass --tls-ca (or set BUOY_TLS_CA)"
            ))
        } else {
            e
        }
    })
}

fn parse(raw: &[u8]) -> Result<Response> {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("no header terminator")
    };
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status code")?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_string()
    };
    Ok(Response { status, body })
}

fn dechunk(mut s: &str) -> Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").context("truncated chunk")?;
        let n = usize::from_str_radix(size.trim(), 16).context("bad chunk size")?;
        if n == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..n).context("truncated chunk body")?);
        s = rest.get(n + 2..).unwrap_or("");
    }
}

/// GETs `path` and parses the JSON body; a non-2xx answer becomes an error with its message.
pub fn get_json(addr: SocketAddr, path: &str) -> Result<serde_json::Value> {
    let r = request(addr, "GET", path, None, Duration::from_secs(5))?;
    json_or_error(r)
}

/// Sends `method path` with an optional JSON body and returns the parsed answer (null for
/// an empty one); a non-2xx answer becomes an error with the API's message.
pub fn call_json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<serde_json::Value> {
    call_json_with(addr, method, path, body, |_| Vec::new())
}

/// Like [`call_json`], with the headers `sign` makes from the exact body sent.
pub fn call_json_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
    sign: impl FnOnce(&[u8]) -> Vec<(&'static str, String)>,
) -> Result<serde_json::Value> {
    let text = body.map(|b| b.to_string());
    let headers = sign(text.as_deref().unwrap_or("").as_bytes());
    let r = request_with(
        addr,
        method,
        path,
        text.as_deref(),
        Duration::from_secs(10),
        &headers,
    )?;
    json_or_error(r)
}

fn json_or_error(r: Response) -> Result<serde_json::Value> {
    if r.body.trim().is_empty() && (200..300).contains(&r.status) {
        return Ok(serde_json::Value::Null);
    }
    let v: serde_json::Value =
        serde_json::from_str(&r.body).with_context(|| format!("answer is not JSON: {}", r.body))?;
    if !(200..300).contains(&r.status) {
        let msg = v["error"]["message"].as_str().unwrap_or(&r.body);
        // Keep the field the API names (`priority: invalid type...`), once.
        match v["error"]["field"].as_str() {
            Some(f) if !msg.starts_with(f) => bail!("HTTP {}: {f}: {msg}", r.status),
            _ => bail!("HTTP {}: {msg}", r.status),
        }
    }
    Ok(v)
}

/// Opens `path` as an HTTP/1.0 stream (no chunked framing) and hands each line to `line`
/// until it returns false or the server closes.
pub fn stream_lines(
    addr: SocketAddr,
    path: &str,
    mut line: impl FnMut(&str) -> bool,
) -> Result<()> {
    use std::io::BufRead;
    let mut s = connect(addr, Duration::from_secs(5), true)?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{}Accept: text/event-stream\r\n\r\n",
        auth_header()
    )?;
    let mut reader = std::io::BufReader::new(s);
    let mut head = String::new();
    reader.read_line(&mut head)?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut in_body = false;
    let mut error_body = String::new();
    for l in reader.lines() {
        let l = l.with_context(|| format!("reading the stream from {addr}"))?;
        if !in_body {
            in_body = l.is_empty();
            continue;
        }
        if status != 200 {
            error_body.push_str(&l);
            continue;
        }
        if !line(&l) {
            return Ok(());
        }
    }
    if status != 200 {
        return json_or_error(Response {
            status,
            body: error_body,
        })
        .map(drop);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_chunked_bodies_parse() {
        let r = parse(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "{}"));
        let r = parse(b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!((r.status, r.body.as_str()), (404, "abcde"));
        assert!(parse(b"garbage").is_err());
    }
}
