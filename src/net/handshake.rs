//! What the HTTP exchanges before the first frame said: the upgrade request
//! and the server's answer, and the proxy's `CONNECT` before them. `-v` shows
//! each line as `curl -v` does (`> ` sent, `< ` received: DEBUG events under
//! the target `tether::handshake`), `--json` has each exchange as a
//! `handshake` event.
//!
//! Heads are kept as they crossed the wire: the request as tungstenite writes
//! it (its own `generate_request`), the answer as read from the socket
//! ([`Recorded`]), headers in order with duplicates, names as spelled. Secrets
//! never get in: the values of secret headers (`Authorization`, `Cookie`,
//! `Proxy-Authorization`, `Set-Cookie`) and of credential query parameters are
//! replaced by `<redacted>` as a head is parsed.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use crate::headers::is_secret_header;
use crate::net::endpoint::{REDACTED, redact_url};
use crate::net::proxy::redact_userinfo;

const TARGET: &str = "tether::handshake";
/// Enough for any head tungstenite or the tunnel accepts (64 KiB and 16 KiB).
const CAPTURE_MAX: usize = 80 * 1024;
const MAX_HEADERS: usize = 128;

/// Who answered an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// An HTTP proxy, asked for a tunnel with `CONNECT`.
    Proxy,
    /// The WebSocket server, asked for the upgrade.
    Server,
}

/// One request and its answer (`None` when none came, or it was not HTTP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    pub peer: Peer,
    /// The WebSocket URL this exchange was for, as shown (redacted).
    pub url: String,
    pub request: Request,
    pub response: Option<Response>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub version: &'static str,
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub version: &'static str,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
}

fn version(minor: Option<u8>) -> &'static str {
    match minor {
        Some(0) => "HTTP/1.0",
        _ => "HTTP/1.1",
    }
}

/// Name parts of headers that carry credentials besides the standard ones
/// (`X-Api-Key`, `X-Auth-Token`, `X-Session-Id`...): `--json` logs every
/// handshake, and the README sends tokens to headers rather than the query.
const SECRET_NAME_PARTS: &[&str] = &[
    "auth",
    "token",
    "secret",
    "key",
    "pass",
    "session",
    "signature",
    "credential",
];

/// Whether a header's value is shown as `<redacted>`. The handshake's own
/// `Sec-WebSocket-*` headers, CORS's `Access-Control-*` and the
/// `WWW-Authenticate` and `Proxy-Authenticate` challenges hold no secret.
fn shown_redacted(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let public = name.starts_with("sec-websocket-")
        || name.starts_with("access-control-")
        || name.ends_with("-authenticate");
    is_secret_header(&name) || !public && SECRET_NAME_PARTS.iter().any(|part| name.contains(part))
}

/// Headers as shown: names as sent, values as text with secrets redacted
/// (those of the names in `secret` too, whatever they are). A redirect's `Location` is a URL, which may hold userinfo or a token.
fn shown_headers(headers: &[httparse::Header<'_>], secret: &[&str]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|h| {
            let named = secret.iter().any(|s| s.eq_ignore_ascii_case(h.name));
            let value = if named || shown_redacted(h.name) {
                REDACTED.to_owned()
            } else if h.name.eq_ignore_ascii_case("location")
                || h.name.eq_ignore_ascii_case("content-location")
            {
                let url = String::from_utf8_lossy(h.value);
                redact_url(&redact_userinfo(&url)).into_owned()
            } else {
                String::from_utf8_lossy(h.value).into_owned()
            };
            (h.name.to_owned(), value)
        })
        .collect()
}

impl Request {
    /// The head of a request tether wrote (it is always complete HTTP);
    /// `secret` names headers redacted besides the usual ones
    /// (`--header-cmd`'s).
    pub fn parse(bytes: &[u8], secret: &[&str]) -> Option<Request> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(bytes) {
            Ok(httparse::Status::Complete(_)) => Some(Request {
                method: request.method?.to_owned(),
                target: redact_url(request.path?).into_owned(),
                version: version(request.version),
                headers: shown_headers(request.headers, secret),
            }),
            _ => None,
        }
    }

    /// `> GET /path HTTP/1.1`, `> Host: …`, …
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "> {} {} {}",
            self.method, self.target, self.version
        )];
        lines.extend(self.headers.iter().map(|(n, v)| format!("> {n}: {v}")));
        lines
    }
}

/// The reason phrase of a (parsed) status line, from its bytes: httparse
/// gives an empty one when it holds anything but ASCII.
fn reason_phrase(head: &[u8]) -> String {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let reason = line.splitn(3, |&b| b == b' ').nth(2).unwrap_or_default();
    String::from_utf8_lossy(reason).into_owned()
}

impl Response {
    /// The head at the start of what the peer sent, if it is complete HTTP.
    pub fn parse(bytes: &[u8]) -> Option<Response> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(bytes) {
            Ok(httparse::Status::Complete(_)) => Some(Response {
                version: version(response.version),
                status: response.code?,
                reason: reason_phrase(bytes),
                headers: shown_headers(response.headers, &[]),
            }),
            _ => None,
        }
    }

    /// `< HTTP/1.1 101 Switching Protocols`, `< Upgrade: websocket`, …
    pub fn lines(&self) -> Vec<String> {
        let status = format!("< {} {} {}", self.version, self.status, self.reason);
        let mut lines = vec![status.trim_end().to_owned()];
        lines.extend(self.headers.iter().map(|(n, v)| format!("< {n}: {v}")));
        lines
    }
}

/// Shows a head's lines on the trace (`-v`), escaped: a header value is the
/// peer's text.
pub fn trace(lines: &[String]) {
    if tracing::enabled!(target: TARGET, tracing::Level::DEBUG) {
        for line in lines {
            tracing::debug!(target: TARGET, "{}", crate::render::escape_controls(line));
        }
    }
}

/// Where the exchanges of one dial are kept, for the `handshake` events.
pub type Log = Vec<Exchange>;

/// A stream that keeps a copy of what it reads until [`Recorded::stop`]: how
/// the server's answer to the upgrade is seen as it came. The copy is shared,
/// so it outlives a stream that a failed handshake dropped.
pub struct Recorded<S> {
    inner: S,
    capture: Option<Arc<Mutex<Vec<u8>>>>,
}

impl<S> Recorded<S> {
    pub fn new(inner: S) -> (Recorded<S>, Arc<Mutex<Vec<u8>>>) {
        let capture = Arc::new(Mutex::new(Vec::new()));
        let stream = Recorded {
            inner,
            capture: Some(Arc::clone(&capture)),
        };
        (stream, capture)
    }

    /// Stops copying: the handshake is over.
    pub fn stop(&mut self) {
        self.capture = None;
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Recorded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Some(capture) = &self.capture
            && let Ok(mut capture) = capture.lock()
        {
            let room = CAPTURE_MAX.saturating_sub(capture.len());
            let read = &buf.filled()[before..];
            capture.extend_from_slice(&read[..read.len().min(room)]);
        }
        poll
    }
}

write_through!(Recorded);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_keep_order_duplicates_and_spelling_and_lose_their_secrets() {
        let request = Request::parse(
            b"GET /feed?token=abc&room=1 HTTP/1.1\r\nHost: h:1\r\nAuthorization: Bearer s3cret\r\n\
              cookie: a=1\r\nX-Team: blue\r\nX-Team: red\r\nX-Fresh: s3cret\r\n\r\n",
            &["x-fresh"],
        )
        .unwrap();
        assert_eq!(
            request.lines(),
            [
                "> GET /feed?token=<redacted>&room=1 HTTP/1.1",
                "> Host: h:1",
                "> Authorization: <redacted>",
                "> cookie: <redacted>",
                "> X-Team: blue",
                "> X-Team: red",
                "> X-Fresh: <redacted>",
            ]
        );
        let response = Response::parse(
            b"HTTP/1.1 401 Unauthorized\r\nSet-Cookie: s=1\r\nSet-Cookie: t=2\r\n\
              Content-Length: 0\r\n\r\n\x81\x02hi",
        )
        .unwrap();
        assert_eq!(
            response.lines(),
            [
                "< HTTP/1.1 401 Unauthorized",
                "< Set-Cookie: <redacted>",
                "< Set-Cookie: <redacted>",
                "< Content-Length: 0",
            ]
        );
        let custom = Request::parse(
            b"GET / HTTP/1.1\r\nSec-WebSocket-Key: k==\r\nx-api-key: s1\r\nX-Auth-Token: s2\r\n\
              X-Session-Id: s3\r\nX-Request-Id: r\r\nAccess-Control-Allow-Credentials: true\r\n\r\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            custom.lines()[1..],
            [
                "> Sec-WebSocket-Key: k==",
                "> x-api-key: <redacted>",
                "> X-Auth-Token: <redacted>",
                "> X-Session-Id: <redacted>",
                "> X-Request-Id: r",
                "> Access-Control-Allow-Credentials: true",
            ]
        );
        let redirect = Response::parse(
            b"HTTP/1.1 302 Found\r\nLocation: wss://al:pw@h/n?token=t&a=1\r\n\
              content-location: //al:pw@h/\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            redirect.lines(),
            [
                "< HTTP/1.1 302 Found",
                "< Location: wss://<redacted>@h/n?token=<redacted>&a=1",
                "< content-location: //<redacted>@h/",
            ]
        );
        assert_eq!(Response::parse(b"HTTP/1.1 101 Switching"), None);
        assert_eq!(Response::parse(b"SSH-2.0-OpenSSH\r\n\r\n"), None);
        // Reasons as sent, not only ASCII ones.
        assert_eq!(
            Response::parse("HTTP/1.1 403 Interdit é\r\n\r\n".as_bytes())
                .unwrap()
                .reason,
            "Interdit é"
        );
        // An empty reason leaves no trailing space.
        assert_eq!(
            Response::parse(b"HTTP/1.0 200 \r\n\r\n").unwrap().lines(),
            ["< HTTP/1.0 200"]
        );
    }
}
