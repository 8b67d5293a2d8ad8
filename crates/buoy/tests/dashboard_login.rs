//! The dashboard with API tokens: a token never travels in a URL. `/ui/login` takes it in a
//! form and sets an `HttpOnly`, `SameSite=Strict` cookie; the cookie lets the page read the
//! API, never change it (so another site cannot make a logged-in browser change anything), and
//! a login form posted from another origin is refused.

mod common;

use common::{Cluster, get, request_with};

const NET: u8 = 89;
const READ: &str = "reader-0123456789abcdef";
const ADMIN: &str = "admin-0123456789abcdef";

/// The raw answer's head of a `POST /ui/login` with `form`.
fn login(c: &Cluster, form: &str, extra: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(c.http(1)).unwrap();
    let host = c.http(1);
    write!(
        s,
        "POST /ui/login HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{extra}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let head = raw.split("\r\n\r\n").next().unwrap_or_default().to_string();
    (
        head.split_whitespace().nth(1).unwrap().parse().unwrap(),
        head,
    )
}

#[test]
fn the_dashboard_logs_in_with_a_cookie_that_only_reads() {
    let mut c = Cluster::new(NET);
    let http = c.start_with_tokens(&[(ADMIN, "admin"), (READ, "read")]);

    // The page itself never reads a token from its URL.
    let (status, page) = get(http, "/ui").unwrap();
    assert_eq!(status, 200);
    assert!(
        !page.contains("params.get(\"token\")"),
        "the page takes ?token="
    );
    assert_eq!(get(http, "/v1/hosts").unwrap().0, 401);

    // A wrong token, then a login posted from another site: no cookie.
    let (status, head) = login(&c, "token=wrong-token-000000000", "");
    assert_eq!(status, 401, "{head}");
    assert!(!head.to_lowercase().contains("set-cookie"), "{head}");
    let (status, head) = login(
        &c,
        &format!("token={ADMIN}"),
        "Origin: http://evil.example\r\n",
    );
    assert_eq!(status, 403, "{head}");
    assert!(!head.to_lowercase().contains("set-cookie"), "{head}");

    // The admin token, from the dashboard's own origin: a cookie no script can read and no
    // other site's page sends.
    let (status, head) = login(
        &c,
        &format!("token={ADMIN}"),
        &format!("Origin: http://{http}\r\n"),
    );
    assert_eq!(status, 303, "{head}");
    let cookie_line = head
        .lines()
        .find(|l| l.to_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie: {head}"));
    assert!(
        cookie_line.contains("HttpOnly") && cookie_line.contains("SameSite=Strict"),
        "{cookie_line}"
    );
    let cookie = cookie_line
        .split_once(':')
        .unwrap()
        .1
        .split(';')
        .next()
        .unwrap()
        .trim()
        .to_string();

    // The cookie reads the API...
    let with_cookie = [("Cookie", cookie.as_str())];
    let (status, body) = request_with(http, "GET", "/v1/hosts", &with_cookie, "").unwrap();
    assert_eq!(status, 200, "{body}");
    // ...and changes nothing, even though it carries the admin token.
    let (status, body) = request_with(
        http,
        "POST",
        "/v1/segments",
        &with_cookie,
        r#"{"name": "made-by-a-cookie"}"#,
    )
    .unwrap();
    assert_eq!(status, 401, "{body}");
    // The same change with the token in its header is taken.
    let bearer = format!("Bearer {ADMIN}");
    let (status, body) = request_with(
        http,
        "POST",
        "/v1/segments",
        &[("Authorization", bearer.as_str())],
        r#"{"name": "made-with-the-header"}"#,
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
}
