//! The server address: scheme checks, aliases, userinfo taken out of the URL
//! so it can never be printed, and credentials in the query (`?token=...`)
//! redacted wherever the URL is shown.

use std::path::PathBuf;

use url::Url;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The URL that is dialled, without userinfo.
    pub url: Url,
    pub host: String,
    pub port: u16,
    pub tls: bool,
    /// Credentials that were in the URL: (user, password).
    pub userinfo: Option<(String, Option<String>)>,
    /// The Unix-domain socket to connect to instead of `host:port`
    /// (`ws+unix://`, `--unix-socket`); `url` still gives Host and path.
    pub unix: Option<PathBuf>,
}

/// What parsing the user's URL produced, plus any note worth telling them.
pub struct Parsed {
    pub endpoint: Endpoint,
    pub note: Option<String>,
}

impl Endpoint {
    pub fn parse(input: &str) -> Result<Parsed> {
        let input = input.trim();
        if let Some(split) = crate::net::unix::split_url(input) {
            let (url, socket) = split?;
            let mut parsed = Endpoint::parse(&url)?;
            parsed.endpoint.unix = Some(socket);
            return Ok(parsed);
        }
        // Quoted in errors: the user's own URL, but still no tokens on screen.
        let shown = redact_url(input);
        let no_scheme = || {
            Error::Usage(format!(
                "invalid URL {shown:?}: it has no scheme; try ws://{shown} or wss://{shown}"
            ))
        };
        // `localhost:9001` parses as scheme "localhost"; `127.0.0.1:9001`
        // does not parse at all. Both are a host and a port.
        if is_host_and_port(input) {
            return Err(no_scheme());
        }
        let mut url = Url::parse(input).map_err(|err| match err {
            url::ParseError::RelativeUrlWithoutBase => no_scheme(),
            other => Error::Usage(format!("invalid URL {shown:?}: {other}")),
        })?;
        let mut note = None;
        let tls = match url.scheme() {
            "ws" => false,
            "wss" => true,
            alias @ ("http" | "https") => {
                let ws = if alias == "http" { "ws" } else { "wss" };
                note = Some(format!("treating {alias}:// as {ws}://"));
                url.set_scheme(ws)
                    .map_err(|()| Error::Usage(format!("cannot use {shown:?} as a {ws}:// URL")))?;
                ws == "wss"
            }
            other => {
                return Err(Error::Usage(format!(
                    "unsupported scheme {other:?} in {shown:?}: use ws://, wss:// or ws+unix://"
                )));
            }
        };
        // The url crate is lenient with its special schemes: `ws:///path` and
        // `ws:/path` come out with host "path". Judge the text as written.
        let no_host = || {
            Error::Usage(format!(
                "invalid URL {shown:?}: it has no host; write it as {}://HOST[:PORT]/PATH",
                url.scheme()
            ))
        };
        if !has_host(input) {
            return Err(no_host());
        }
        let host = match url.host_str() {
            Some(host) if !host.is_empty() => host.to_owned(),
            _ => return Err(no_host()),
        };
        let port = url
            .port_or_known_default()
            .ok_or_else(|| Error::Usage(format!("invalid URL {shown:?}: it has no port")))?;
        if url.fragment().is_some() {
            url.set_fragment(None);
        }
        let userinfo = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            let user = percent_decode(url.username());
            let pass = url.password().map(percent_decode);
            // Cannot fail for URLs with a host, which we checked above.
            let _ = url.set_username("");
            let _ = url.set_password(None);
            Some((user, pass))
        };
        Ok(Parsed {
            endpoint: Endpoint {
                url,
                host,
                port,
                tls,
                userinfo,
                unix: None,
            },
            note,
        })
    }

    /// The host without IPv6 brackets, as TLS and DNS want it.
    pub fn bare_host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }
}

/// The URL as shown to people: never with credentials. Userinfo was taken
/// out when it was parsed; credential parameters in the query are shown as
/// `name=<redacted>` (see [`SECRET_QUERY_PARAMS`]). Dialing uses `url` itself.
impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(socket) = &self.unix {
            let path = &self.url[url::Position::BeforePath..];
            return f.write_str(&crate::net::unix::shown(self.tls, socket, path));
        }
        f.write_str(&redact_url(self.url.as_str()))
    }
}

/// Whether the text after `scheme:` starts with `//` and an authority that
/// names a host (not empty, not only userinfo or a port).
/// `HOST:PORT`, maybe with a path: a URL written without its scheme (a
/// scheme is never followed by digits alone, as a port is). `ws:9001` is a
/// URL without its host, not a host named "ws".
fn is_host_and_port(input: &str) -> bool {
    let Some((host, rest)) = input.split_once(':') else {
        return false;
    };
    if ["ws", "wss", "http", "https"].contains(&host.to_ascii_lowercase().as_str()) {
        return false;
    }
    let port_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && port_len > 0
        && matches!(
            rest.as_bytes().get(port_len),
            None | Some(b'/' | b'?' | b'#')
        )
}

fn has_host(input: &str) -> bool {
    let Some((_, rest)) = input.split_once(':') else {
        return false;
    };
    let Some(rest) = rest.strip_prefix("//") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#', '\\']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    !(host_port.is_empty() || host_port.starts_with(':'))
}

/// Query parameters whose values are credentials, compared without regard to
/// case (and after percent-decoding). Documented in the README's Secrets.
pub const SECRET_QUERY_PARAMS: &[&str] = &[
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "auth",
    "authorization",
    "api_key",
    "apikey",
    "api-key",
    "key",
    "secret",
    "client_secret",
    "password",
    "passwd",
    "pwd",
    "sig",
    "signature",
    "session",
    "sessionid",
    "session_id",
    "jwt",
    "bearer",
    "x-amz-signature",
    "x-amz-security-token",
    "x-goog-signature",
];

/// What a redacted value is shown as.
pub const REDACTED: &str = "<redacted>";

/// Whether a query parameter's value is a credential.
pub fn is_secret_param(name: &str) -> bool {
    let name = percent_decode(&name.replace('+', " "));
    SECRET_QUERY_PARAMS
        .iter()
        .any(|secret| name.eq_ignore_ascii_case(secret))
}

/// A URL (or text that was meant to be one) with the values of credential
/// parameters in its query replaced by `<redacted>`. Everything else is kept
/// as written; a URL without such parameters comes back borrowed.
pub fn redact_url(url: &str) -> std::borrow::Cow<'_, str> {
    let Some(start) = url.find('?').map(|q| q + 1) else {
        return std::borrow::Cow::Borrowed(url);
    };
    let end = url[start..].find('#').map_or(url.len(), |f| start + f);
    let query = &url[start..end];
    let secret = |pair: &str| match pair.split_once('=') {
        Some((name, value)) => !value.is_empty() && is_secret_param(name),
        None => false,
    };
    if !query.split('&').any(secret) {
        return std::borrow::Cow::Borrowed(url);
    }
    let mut out = String::with_capacity(url.len());
    out.push_str(&url[..start]);
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((name, _)) if secret(pair) => {
                out.push_str(name);
                out.push('=');
                out.push_str(REDACTED);
            }
            _ => out.push_str(pair),
        }
    }
    out.push_str(&url[end..]);
    std::borrow::Cow::Owned(out)
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_taken_out_of_the_url() {
        let parsed = Endpoint::parse("wss://alice:s%40cret@example.com/feed?x=1").unwrap();
        let ep = parsed.endpoint;
        assert_eq!(ep.to_string(), "wss://example.com/feed?x=1");
        assert_eq!(ep.userinfo, Some(("alice".into(), Some("s@cret".into()))));
        assert_eq!(ep.port, 443);
        assert!(ep.tls);
    }

    #[test]
    fn http_schemes_are_aliases_with_a_note() {
        let parsed = Endpoint::parse("http://localhost:8080/ws").unwrap();
        assert_eq!(parsed.endpoint.url.scheme(), "ws");
        assert!(parsed.note.unwrap().contains("http://"));
        assert!(Endpoint::parse("https://x").unwrap().endpoint.tls);
    }

    #[test]
    fn bad_urls_name_the_problem() {
        let msg = |u| match Endpoint::parse(u) {
            Err(Error::Usage(m)) => m,
            _ => panic!("{u} should be a usage error"),
        };
        assert!(msg("ftp://x").contains("unsupported scheme \"ftp\""));
        assert!(msg("localhost:8080").contains("ws://"));
        assert!(msg("example.com").contains("no scheme"));
        assert!(msg("localhost:9001").contains("try ws://localhost:9001 or"));
        assert!(
            msg("ws:9001").contains("it has no host"),
            "{}",
            msg("ws:9001")
        );
        assert!(msg("ws://").contains("invalid URL"));
    }

    #[test]
    fn a_url_without_a_host_is_a_usage_error() {
        let msg = |u| match Endpoint::parse(u) {
            Err(Error::Usage(m)) => m,
            other => panic!(
                "{u} should be a usage error, not {:?}",
                other.map(|p| p.endpoint)
            ),
        };
        assert_eq!(
            msg("ws:///path"),
            "invalid URL \"ws:///path\": it has no host; write it as ws://HOST[:PORT]/PATH"
        );
        for url in [
            "wss:///x",
            "ws:/path",
            "ws:path",
            "ws://:8080/x",
            "ws://user:pw@/x",
            "ws://?token=1",
            "https:///x",
        ] {
            assert!(msg(url).contains("host"), "{url}: {}", msg(url));
        }
        assert!(!msg("ws:///x?token=s3cret").contains("s3cret"));
        for url in [
            "ws://h/",
            "ws://h",
            "ws://u@h:1/",
            "ws://[::1]:9/",
            "WS://H/x",
        ] {
            assert!(Endpoint::parse(url).is_ok(), "{url}");
        }
    }

    #[test]
    fn credential_parameters_are_redacted_when_shown() {
        assert_eq!(
            redact_url("wss://h/ws?token=abc&room=1&API_KEY=k%20y&Sig=&x-amz-signature=f#frag"),
            "wss://h/ws?token=<redacted>&room=1&API_KEY=<redacted>&Sig=&x-amz-signature=<redacted>#frag"
        );
        assert_eq!(redact_url("ws://h/?a=1&token"), "ws://h/?a=1&token");
        assert_eq!(redact_url("ws://h/?tokens=1&k=2"), "ws://h/?tokens=1&k=2");
        assert_eq!(
            redact_url("ws://h/?api%5Fkey=1"),
            "ws://h/?api%5Fkey=<redacted>"
        );
        assert!(matches!(
            redact_url("ws://h/x?a=1"),
            std::borrow::Cow::Borrowed(_)
        ));
        for name in SECRET_QUERY_PARAMS {
            assert!(is_secret_param(&name.to_uppercase()), "{name}");
        }
        // Shown redacted, dialled as given.
        let ep = Endpoint::parse("ws://h/x?access_token=t0p&v=2")
            .unwrap()
            .endpoint;
        assert_eq!(ep.to_string(), "ws://h/x?access_token=<redacted>&v=2");
        assert_eq!(ep.url.as_str(), "ws://h/x?access_token=t0p&v=2");
    }
}
