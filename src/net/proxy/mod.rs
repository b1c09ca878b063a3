//! Proxies: which one a connection goes through, and opening the tunnel.
//!
//! Corporate networks often reach the outside only through a proxy. The
//! choice follows curl, because that is what people's environments are set
//! up for: `--proxy` or the `HTTPS_PROXY` (for `wss://`), `HTTP_PROXY` (for
//! `ws://`) and `ALL_PROXY` variables, minus the hosts in `NO_PROXY`. The
//! environment is read by `config` and handed in as a lookup function, so
//! the rules here are plain functions of their inputs.
//!
//! A [`Proxy`] never prints its credentials: its `Display` redacts them.

mod no_proxy;
mod tunnel;

use std::fmt;

use url::Url;

pub use self::no_proxy::NoProxy;
pub use self::tunnel::open;
use crate::error::{Error, Result};
use crate::net::endpoint::Endpoint;

/// How the proxy is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    /// An HTTP proxy, asked for a tunnel with `CONNECT`.
    Http,
    /// SOCKS5; host names are resolved here and the proxy gets an address.
    Socks5,
    /// SOCKS5; host names are sent to the proxy, which resolves them.
    Socks5h,
}

impl ProxyKind {
    fn scheme(self) -> &'static str {
        match self {
            ProxyKind::Http => "http",
            ProxyKind::Socks5 => "socks5",
            ProxyKind::Socks5h => "socks5h",
        }
    }
}

/// One proxy server.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    pub kind: ProxyKind,
    /// As in a URL: IPv6 addresses keep their brackets.
    pub host: String,
    pub port: u16,
    /// (user, password), percent-decoded.
    pub credentials: Option<(String, String)>,
    /// Where the setting came from (`--proxy`, `HTTPS_PROXY`...), for `-v`.
    pub source: &'static str,
}

/// A `-x` value that no proxy URL looks like: JSON (`{"op":1}`, `[1,2]`, but
/// not an IPv6 literal such as `[::1]:3128`), or text with spaces or quotes.
/// wscat users reach for `-x` to send a message.
fn looks_like_a_message(raw: &str) -> bool {
    let ipv6 = || {
        raw.strip_prefix('[')
            .and_then(|rest| rest.split_once(']'))
            .is_some_and(|(address, _)| {
                address.contains(':')
                    && address
                        .chars()
                        .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
            })
    };
    raw.starts_with('{')
        || (raw.starts_with('[') && !ipv6())
        || raw.chars().any(|c| c.is_whitespace() || c == '"')
}

impl Proxy {
    /// Parses a proxy URL the way curl reads one: no scheme means `http://`;
    /// the port defaults to 80 for HTTP and 1080 for SOCKS.
    pub fn parse(raw: &str, source: &'static str) -> Result<Proxy> {
        let raw = raw.trim();
        let bad = |why: &str| {
            Error::Usage(format!(
                "{source} {:?} is not a usable proxy URL: {why}",
                redact_userinfo(raw)
            ))
        };
        if source == "--proxy" && looks_like_a_message(raw) {
            return Err(Error::UsageHint {
                message: format!(
                    "--proxy {:?} is not a proxy URL (-x is --proxy in tether)",
                    redact_userinfo(raw)
                ),
                hint: "to send a message once connected, use --send MSG (what wscat's -x/--execute does)",
            });
        }
        let with_scheme = if raw.contains("://") {
            raw.to_owned()
        } else {
            format!("http://{raw}")
        };
        let url = Url::parse(&with_scheme).map_err(|err| bad(&err.to_string()))?;
        let kind = match url.scheme() {
            "http" => ProxyKind::Http,
            "socks5" => ProxyKind::Socks5,
            "socks5h" => ProxyKind::Socks5h,
            "https" => {
                return Err(bad(
                    "TLS to the proxy (https://) is not supported; use http://",
                ));
            }
            other => {
                return Err(bad(&format!(
                    "unsupported scheme {other:?}; use http://, socks5:// or socks5h://"
                )));
            }
        };
        let host = match url.host_str() {
            Some(host) if !host.is_empty() => host.to_owned(),
            _ => return Err(bad("it has no host")),
        };
        let port = url.port().unwrap_or(match kind {
            ProxyKind::Http => 80,
            ProxyKind::Socks5 | ProxyKind::Socks5h => 1080,
        });
        let credentials = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            Some((decode(url.username()), decode(url.password().unwrap_or(""))))
        };
        if kind != ProxyKind::Http
            && let Some((user, pass)) = &credentials
            && (!(1..=255).contains(&user.len()) || !(1..=255).contains(&pass.len()))
        {
            return Err(bad(
                "SOCKS5 needs a user name and a password of 1 to 255 bytes each",
            ));
        }
        Ok(Proxy {
            kind,
            host,
            port,
            credentials,
            source,
        })
    }

    /// The host without IPv6 brackets, as DNS wants it.
    pub fn bare_host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }
}

/// `scheme://host:port`, with any credentials shown as `<redacted>`.
impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let userinfo = if self.credentials.is_some() {
            "<redacted>@"
        } else {
            ""
        };
        write!(
            f,
            "{}://{userinfo}{}:{}",
            self.kind.scheme(),
            self.host,
            self.port
        )
    }
}

/// Debug output is redacted too: configs get printed in panics and logs.
impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Proxy({self} from {})", self.source)
    }
}

/// How one connection reaches its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// Straight to the server; the reason is for `-v`.
    Direct(&'static str),
    Proxy(&'a Proxy),
}

impl fmt::Display for Route<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Direct(why) => write!(f, "directly ({why})"),
            Route::Proxy(proxy) => write!(f, "through proxy {proxy} (from {})", proxy.source),
        }
    }
}

/// Which proxy, if any, each URL goes through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyRules {
    mode: Mode,
    no_proxy: NoProxy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    /// `--no-proxy`: the environment is ignored.
    Off,
    /// `--proxy`: every scheme.
    Fixed(Proxy),
    /// From the environment.
    Env {
        ws: Option<Proxy>,
        wss: Option<Proxy>,
    },
}

impl Default for ProxyRules {
    fn default() -> Self {
        ProxyRules::direct()
    }
}

impl ProxyRules {
    /// Never use a proxy.
    pub fn direct() -> ProxyRules {
        ProxyRules {
            mode: Mode::Off,
            no_proxy: NoProxy::default(),
        }
    }

    /// Builds the rules from `--proxy`, `--no-proxy` and the environment,
    /// read through `env` (so tests can hand in their own).
    ///
    /// As in curl, `NO_PROXY` applies to `--proxy` too, the lowercase
    /// variables win over the uppercase ones, and empty ones count as unset.
    pub fn new(
        flag: Option<&str>,
        no_proxy_flag: bool,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ProxyRules> {
        if no_proxy_flag {
            return Ok(ProxyRules::direct());
        }
        let var = |names: [&'static str; 2]| {
            names
                .into_iter()
                .find_map(|n| env(n).filter(|v| !v.trim().is_empty()).map(|v| (n, v)))
        };
        let parse = |found: Option<(&'static str, String)>| {
            found
                .map(|(name, value)| Proxy::parse(&value, name))
                .transpose()
        };
        let no_proxy = var(["no_proxy", "NO_PROXY"])
            .map(|(_, list)| NoProxy::parse(&list))
            .unwrap_or_default();
        let mode = match flag {
            Some(url) => Mode::Fixed(Proxy::parse(url, "--proxy")?),
            None => {
                let all = parse(var(["all_proxy", "ALL_PROXY"]))?;
                let ws = parse(var(["http_proxy", "HTTP_PROXY"]))?.or_else(|| all.clone());
                let wss = parse(var(["https_proxy", "HTTPS_PROXY"]))?.or(all);
                Mode::Env { ws, wss }
            }
        };
        Ok(ProxyRules { mode, no_proxy })
    }

    /// The route to `endpoint`.
    pub fn route(&self, endpoint: &Endpoint) -> Route<'_> {
        let proxy = match &self.mode {
            Mode::Off => return Route::Direct("--no-proxy"),
            Mode::Fixed(proxy) => proxy,
            Mode::Env { ws, wss } => match if endpoint.tls { wss } else { ws } {
                Some(proxy) => proxy,
                None => return Route::Direct("no proxy set"),
            },
        };
        if self.no_proxy.matches(&endpoint.host) {
            Route::Direct("NO_PROXY matches the host")
        } else {
            Route::Proxy(proxy)
        }
    }
}

/// A URL (a proxy URL the user typed, a redirect's `Location`) with
/// anything before an `@` in its authority hidden: it may not parse, but it
/// may still hold a password. Scheme-relative `//` URLs too.
pub fn redact_userinfo(raw: &str) -> String {
    let (scheme, rest) = match raw.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => match raw.strip_prefix("//") {
            Some(rest) => ("//".to_owned(), rest),
            None => (String::new(), raw),
        },
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}<redacted>{}", &rest[at..]),
        None => raw.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn endpoint(url: &str) -> Endpoint {
        Endpoint::parse(url).unwrap().endpoint
    }

    fn rules(flag: Option<&str>, no_proxy: bool, vars: &[(&str, &str)]) -> Result<ProxyRules> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ProxyRules::new(flag, no_proxy, |name| vars.get(name).cloned())
    }

    fn route(rules: &ProxyRules, url: &str) -> String {
        rules.route(&endpoint(url)).to_string()
    }

    #[test]
    fn proxy_urls_parse_like_curl() {
        let p = Proxy::parse("http://alice:p%40ss@proxy.corp:3128/ignored", "--proxy").unwrap();
        assert_eq!(p.kind, ProxyKind::Http);
        assert_eq!((p.host.as_str(), p.port), ("proxy.corp", 3128));
        assert_eq!(p.credentials, Some(("alice".into(), "p@ss".into())));

        let p = Proxy::parse("proxy.corp:8080", "--proxy").unwrap();
        assert_eq!((p.kind, p.port), (ProxyKind::Http, 8080));
        assert_eq!(Proxy::parse("http://proxy", "x").unwrap().port, 80);
        let p = Proxy::parse("socks5h://[::1]", "x").unwrap();
        assert_eq!(
            (p.kind, p.bare_host(), p.port),
            (ProxyKind::Socks5h, "::1", 1080)
        );
        assert_eq!(
            Proxy::parse("SOCKS5://h:1", "x").unwrap().kind,
            ProxyKind::Socks5
        );
    }

    #[test]
    fn unusable_proxy_urls_are_usage_errors_that_hide_passwords() {
        for (raw, problem) in [
            ("ftp://bob:hunter2@proxy:21", "unsupported scheme \"ftp\""),
            ("https://bob:hunter2@proxy", "not supported"),
            ("socks4://bob:hunter2@proxy", "unsupported scheme"),
            ("http://bob:hunter2@", "proxy URL"),
            ("socks5://bob@proxy", "1 to 255 bytes"),
        ] {
            let err = Proxy::parse(raw, "HTTPS_PROXY").unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, Error::Usage(_)), "{raw}");
            assert!(text.contains(problem), "{raw}: {text}");
            assert!(text.contains("HTTPS_PROXY"), "{text}");
            assert!(!text.contains("hunter2"), "{text}");
        }
    }

    #[test]
    fn messages_are_told_from_proxy_urls() {
        for message in ["{\"op\":1}", "[1,2]", "[]", "hello world", "\"hi\""] {
            assert!(looks_like_a_message(message), "{message}");
        }
        for proxy in [
            "proxy:3128",
            "http://proxy.corp:3128",
            "[::1]:3128",
            "socks5h://[::1]",
            "[fe80::1]:8080",
            "u:p@proxy",
        ] {
            assert!(!looks_like_a_message(proxy), "{proxy}");
        }
    }

    #[test]
    fn credentials_never_show() {
        let p = Proxy::parse("socks5h://user:secret@127.0.0.1:1080", "--proxy").unwrap();
        assert_eq!(p.to_string(), "socks5h://<redacted>@127.0.0.1:1080");
        assert!(!format!("{p:?}").contains("secret"));
        let p = Proxy::parse("http://127.0.0.1:3128", "--proxy").unwrap();
        assert_eq!(p.to_string(), "http://127.0.0.1:3128");
        assert_eq!(redact_userinfo("a:b@c:1"), "<redacted>@c:1");
        assert_eq!(redact_userinfo("x://a:b@c/d@e"), "x://<redacted>@c/d@e");
        assert_eq!(redact_userinfo("x://c/d@e"), "x://c/d@e");
    }

    #[test]
    fn the_scheme_picks_the_variable_and_all_proxy_is_the_fallback() {
        let r = rules(
            None,
            false,
            &[
                ("HTTP_PROXY", "http://plain:1"),
                ("HTTPS_PROXY", "http://secure:2"),
            ],
        )
        .unwrap();
        assert_eq!(
            route(&r, "ws://example.com/"),
            "through proxy http://plain:1 (from HTTP_PROXY)"
        );
        assert_eq!(
            route(&r, "wss://example.com/"),
            "through proxy http://secure:2 (from HTTPS_PROXY)"
        );

        let r = rules(
            None,
            false,
            &[
                ("ALL_PROXY", "socks5h://all:3"),
                ("https_proxy", "http://secure:2"),
            ],
        )
        .unwrap();
        assert_eq!(
            route(&r, "ws://example.com/"),
            "through proxy socks5h://all:3 (from ALL_PROXY)"
        );
        assert_eq!(
            route(&r, "wss://example.com/"),
            "through proxy http://secure:2 (from https_proxy)"
        );

        let r = rules(None, false, &[]).unwrap();
        assert_eq!(route(&r, "wss://example.com/"), "directly (no proxy set)");
    }

    #[test]
    fn lowercase_variables_win_and_empty_ones_are_unset() {
        let r = rules(
            None,
            false,
            &[
                ("https_proxy", "http://lower:1"),
                ("HTTPS_PROXY", "http://upper:2"),
                ("http_proxy", " "),
                ("HTTP_PROXY", "http://upper:3"),
            ],
        )
        .unwrap();
        assert!(route(&r, "wss://x/").contains("lower:1"));
        assert!(route(&r, "ws://x/").contains("upper:3"));
    }

    #[test]
    fn no_proxy_applies_to_the_environment_and_to_the_flag() {
        let vars = [
            ("ALL_PROXY", "http://p:1"),
            ("no_proxy", "internal,10.0.0.0/8"),
        ];
        let r = rules(None, false, &vars).unwrap();
        assert_eq!(
            route(&r, "ws://api.internal/"),
            "directly (NO_PROXY matches the host)"
        );
        assert!(route(&r, "ws://10.1.1.1/").starts_with("directly"));
        assert!(route(&r, "ws://example.com/").contains("http://p:1"));

        let r = rules(Some("socks5://flag:9"), false, &vars).unwrap();
        assert!(route(&r, "ws://api.internal/").starts_with("directly"));
        assert_eq!(
            route(&r, "wss://example.com/"),
            "through proxy socks5://flag:9 (from --proxy)"
        );
    }

    #[test]
    fn the_no_proxy_flag_ignores_the_environment_even_when_it_is_broken() {
        let r = rules(
            None,
            true,
            &[("ALL_PROXY", "http://p:1"), ("HTTPS_PROXY", "ftp://broken")],
        )
        .unwrap();
        assert_eq!(route(&r, "wss://example.com/"), "directly (--no-proxy)");
    }

    #[test]
    fn a_broken_variable_is_a_usage_error_naming_it() {
        let err = rules(None, false, &[("https_proxy", "gopher://x")]).unwrap_err();
        assert!(err.to_string().starts_with("https_proxy "), "{err}");
        assert!(rules(Some("ftp://x"), false, &[]).is_err());
    }
}
