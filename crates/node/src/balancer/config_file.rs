//! HAProxy's configuration file kept equal to what the Runtime API was told, so that a reload
//! (or a restart) starts with the same servers: Buoy rewrites the lines between
//! `# buoy:begin BACKEND` and `# buoy:end BACKEND` inside the backend's section, and nothing
//! else. Sans-IO here; the syncer writes the file (a temporary file renamed over it).

use proto::BackendServer;

/// Why a configuration file was not rewritten.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "no `# buoy:begin {0}` / `# buoy:end {0}` lines in the configuration: add them inside `backend {0}` for Buoy to keep its servers there"
    )]
    NoMarkers(String),
}

/// The server line Buoy writes for `s`.
pub fn server_line(s: &BackendServer) -> String {
    format!("    server {} {}:{} check", s.name, s.addr, s.port)
}

/// The backends whose servers Buoy keeps in `text` (their `# buoy:begin NAME` lines).
pub fn marked_backends(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("# buoy:begin "))
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .collect()
}

/// `text` with the lines between `backend`'s markers replaced by `servers`; `None` when it
/// already says exactly that.
pub fn rewrite(
    text: &str,
    backend: &str,
    servers: &[BackendServer],
) -> Result<Option<String>, ConfigError> {
    let begin = format!("# buoy:begin {backend}");
    let end = format!("# buoy:end {backend}");
    let lines: Vec<&str> = text.lines().collect();
    let b = lines.iter().position(|l| l.trim() == begin);
    let e = lines.iter().position(|l| l.trim() == end);
    let (Some(b), Some(e)) = (b, e) else {
        return Err(ConfigError::NoMarkers(backend.to_string()));
    };
    if e < b {
        return Err(ConfigError::NoMarkers(backend.to_string()));
    }
    let wanted: Vec<String> = servers.iter().map(server_line).collect();
    if lines[b + 1..e]
        .iter()
        .copied()
        .eq(wanted.iter().map(String::as_str))
    {
        return Ok(None);
    }
    let mut out: Vec<&str> = lines[..=b].to_vec();
    out.extend(wanted.iter().map(String::as_str));
    out.extend(&lines[e..]);
    let mut text = out.join("\n");
    text.push('\n');
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marked_backends_are_the_ones_buoy_keeps() {
        let text = "backend web\n  # buoy:begin web\n  # buoy:end web\nbackend api\n  server a 1.2.3.4:80\nbackend db\n    # buoy:begin db\n    server db-0 10.0.0.1:5432 check\n    # buoy:end db\n";
        assert_eq!(marked_backends(text), vec!["web", "db"]);
        assert!(marked_backends("# buoy:begin \n").is_empty());
    }

    fn server(name: &str, port: u16) -> BackendServer {
        BackendServer {
            name: name.into(),
            addr: "10.0.0.1".into(),
            port,
        }
    }

    const CFG: &str = "global\n  stats socket /run/a.sock level admin\nbackend web\n  balance roundrobin\n  # buoy:begin web\n  # buoy:end web\n  retries 3\n";

    #[test]
    fn only_the_lines_between_the_markers_change() {
        let once = rewrite(CFG, "web", &[server("web-0", 80), server("web-1", 81)])
            .unwrap()
            .unwrap();
        assert_eq!(
            once,
            "global\n  stats socket /run/a.sock level admin\nbackend web\n  balance roundrobin\n  # buoy:begin web\n    server web-0 10.0.0.1:80 check\n    server web-1 10.0.0.1:81 check\n  # buoy:end web\n  retries 3\n"
        );
        assert_eq!(
            rewrite(&once, "web", &[server("web-0", 80), server("web-1", 81)]).unwrap(),
            None,
            "unchanged: nothing to write"
        );
        let less = rewrite(&once, "web", &[server("web-1", 81)])
            .unwrap()
            .unwrap();
        assert!(!less.contains("web-0") && less.contains("web-1"));
        assert_eq!(
            rewrite(CFG, "api", &[]),
            Err(ConfigError::NoMarkers("api".into()))
        );
    }
}
