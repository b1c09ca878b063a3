//! Redirects on the WebSocket handshake (`-L/--location`).
//!
//! A server may answer the upgrade request with a 3xx and a `Location`.
//! These functions decide where that leads and what may be sent there; the
//! dialer does the following. Credentials (`Authorization` and `Cookie`
//! headers, `--user`) go only to the scheme, host and port the user named,
//! as curl does since CVE-2022-27776, so a redirect cannot hand them to
//! another server or send them in clear text.

use crate::net::endpoint::{Endpoint, redact_url};

/// The statuses that are followed. The handshake is a GET, so 303 means the
/// same as the others.
pub fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// Where a `Location` from `current` leads: relative references resolve
/// against `current`; `http(s)://` mean `ws(s)://`. The error says why it
/// cannot be followed.
pub fn resolve(current: &Endpoint, location: &str) -> Result<Endpoint, String> {
    let location = location.trim();
    // As shown in errors: a Location may carry a token too.
    let shown = redact_url(location);
    let joined = current
        .url
        .join(location)
        .map_err(|err| format!("its Location {shown:?} is not a URL ({err})"))?;
    match joined.scheme() {
        "ws" | "wss" | "http" | "https" => {}
        other => {
            return Err(format!(
                "it points to a {other}:// URL, which is not a WebSocket server"
            ));
        }
    }
    // As in curl, a connection over a Unix socket stays on it: the
    // Location changes the Host and the path only.
    Endpoint::parse(joined.as_str())
        .map(|parsed| Endpoint {
            unix: current.unix.clone(),
            ..parsed.endpoint
        })
        .map_err(|err| format!("its Location {shown:?} is not usable: {err}"))
}

/// Whether credentials meant for `original` may be sent to `next`.
pub fn same_origin(original: &Endpoint, next: &Endpoint) -> bool {
    original.tls == next.tls
        && original.unix == next.unix
        && original.port == next.port
        && original.host.eq_ignore_ascii_case(&next.host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(url: &str) -> Endpoint {
        Endpoint::parse(url).unwrap().endpoint
    }

    fn follow(from: &str, location: &str) -> String {
        resolve(&ep(from), location).unwrap().to_string()
    }

    #[test]
    fn locations_resolve_against_the_current_url() {
        assert_eq!(follow("ws://a:1/x/y?q=1", "/new"), "ws://a:1/new");
        assert_eq!(follow("ws://a:1/x/y", "z"), "ws://a:1/x/z");
        assert_eq!(follow("wss://a/x", "//b:2/y"), "wss://b:2/y");
        assert_eq!(follow("ws://a/", "ws://b/c#frag"), "ws://b/c");
    }

    #[test]
    fn http_locations_mean_websocket_ones() {
        assert_eq!(follow("ws://a/", "https://b/c"), "wss://b/c");
        assert_eq!(follow("wss://a/", "http://b:8080/c"), "ws://b:8080/c");
    }

    #[test]
    fn other_schemes_and_garbage_are_refused() {
        let err = resolve(&ep("ws://a/"), "ftp://b/").unwrap_err();
        assert!(err.contains("ftp://"), "{err}");
        assert!(resolve(&ep("ws://a/"), "http://").is_err());
    }

    #[test]
    fn credentials_stay_with_the_scheme_host_and_port_the_user_named() {
        let original = ep("wss://api.example.com/ws");
        assert!(same_origin(
            &original,
            &ep("wss://API.example.com:443/other")
        ));
        assert!(!same_origin(&original, &ep("wss://evil.example/ws")));
        assert!(!same_origin(
            &original,
            &ep("wss://api.example.com:8443/ws")
        ));
        assert!(!same_origin(&original, &ep("ws://api.example.com:443/ws")));
    }

    #[test]
    fn only_redirect_statuses_are_followed() {
        for status in [301, 302, 303, 307, 308] {
            assert!(is_redirect(status));
        }
        for status in [300, 304, 305, 200, 101, 404] {
            assert!(!is_redirect(status));
        }
    }
}
