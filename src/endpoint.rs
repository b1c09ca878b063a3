//! The server address: scheme checks, aliases, and userinfo taken out of the
//! URL so it can never be printed.

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
}

/// What parsing the user's URL produced, plus any note worth telling them.
pub struct Parsed {
    pub endpoint: Endpoint,
    pub note: Option<String>,
}

impl Endpoint {
    pub fn parse(input: &str) -> Result<Parsed> {
        let input = input.trim();
        let mut url = Url::parse(input).map_err(|err| match err {
            url::ParseError::RelativeUrlWithoutBase => Error::Usage(format!(
                "invalid URL {input:?}: it has no scheme; try ws://{input} or wss://{input}"
            )),
            other => Error::Usage(format!("invalid URL {input:?}: {other}")),
        })?;
        let mut note = None;
        let tls = match url.scheme() {
            "ws" => false,
            "wss" => true,
            alias @ ("http" | "https") => {
                let ws = if alias == "http" { "ws" } else { "wss" };
                note = Some(format!("treating {alias}:// as {ws}://"));
                url.set_scheme(ws)
                    .map_err(|()| Error::Usage(format!("cannot use {input:?} as a {ws}:// URL")))?;
                ws == "wss"
            }
            other => {
                return Err(Error::Usage(format!(
                    "unsupported scheme {other:?} in {input:?}: use ws:// or wss://"
                )));
            }
        };
        let host = match url.host_str() {
            Some(host) if !host.is_empty() => host.to_owned(),
            _ => {
                return Err(Error::Usage(format!(
                    "invalid URL {input:?}: it has no host"
                )));
            }
        };
        let port = url
            .port_or_known_default()
            .ok_or_else(|| Error::Usage(format!("invalid URL {input:?}: it has no port")))?;
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
            },
            note,
        })
    }

    /// The host without IPv6 brackets, as TLS and DNS want it.
    pub fn bare_host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }
}

/// The URL as shown to people: never with credentials, since they were taken
/// out when it was parsed.
impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.url.as_str())
    }
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
        assert!(msg("ws://").contains("invalid URL"));
    }
}
