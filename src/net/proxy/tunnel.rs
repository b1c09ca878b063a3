//! Opening a byte stream to the server through a proxy: an HTTP `CONNECT`
//! tunnel, or SOCKS5 (through tokio-socks).
//!
//! What comes back is the plain TCP stream to the proxy, now relaying to the
//! server, so TLS and the WebSocket handshake run over it exactly as over a
//! direct connection: `wss://` stays encrypted end to end, and the proxy sees
//! only the host and port.
//!
//! Failures name the proxy (credentials redacted) and are sorted by whether
//! another attempt can help: a proxy that cannot reach the server (HTTP 5xx,
//! SOCKS "host unreachable") is retried, one that says no (407, 403, SOCKS
//! authentication or rules) is not.

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_socks::tcp::Socks5Stream;

use super::{Proxy, ProxyKind};
use crate::error::{Error, ProxyFailure, Result};
use crate::net::endpoint::Endpoint;
use crate::net::eyeballs::Resolver;
use crate::net::handshake::{self, Exchange, Log, Peer};

/// A proxy's answer to `CONNECT` longer than this is not worth reading.
const MAX_ANSWER: usize = 16 * 1024;

/// A stream to `endpoint`'s host and port through `proxy`; an HTTP proxy's
/// `CONNECT` exchange goes into `log`. `resolver` finds the proxy's own
/// addresses (`--resolve` pins its host name, `-4`/`-6` apply), and with
/// `socks5://` the server's too.
pub async fn open(
    proxy: &Proxy,
    endpoint: &Endpoint,
    resolver: &Resolver,
    log: &mut Log,
) -> Result<TcpStream> {
    let host = endpoint.bare_host();
    let port = endpoint.port;
    match proxy.kind {
        ProxyKind::Http => {
            let tcp = reach(proxy, resolver).await?;
            http_connect(proxy, tcp, endpoint, log).await
        }
        ProxyKind::Socks5h => socks5(proxy, reach(proxy, resolver).await?, (host, port)).await,
        ProxyKind::Socks5 => {
            // Resolved here; each address is tried in turn, as a direct
            // connection would, since the proxy gets only one per request.
            let addrs = resolver
                .addresses(host, port)
                .await
                .map_err(|detail| Error::Connect {
                    target: endpoint.to_string(),
                    detail,
                })?;
            let mut last = None;
            for addr in addrs {
                match socks5(proxy, reach(proxy, resolver).await?, addr).await {
                    Ok(stream) => return Ok(stream),
                    // The proxy could not reach this address; maybe the next.
                    Err(
                        err @ Error::Proxy {
                            failure: ProxyFailure::Upstream,
                            ..
                        },
                    ) => last = Some(err),
                    Err(err) => return Err(err),
                }
            }
            Err(last.unwrap_or_else(|| Error::Connect {
                target: endpoint.to_string(),
                detail: format!("{host} resolved to no address"),
            }))
        }
    }
}

fn failure(proxy: &Proxy, failure: ProxyFailure, detail: String) -> Error {
    Error::Proxy {
        proxy: proxy.to_string(),
        failure,
        detail,
    }
}

/// A TCP connection to the proxy itself, its addresses raced.
async fn reach(proxy: &Proxy, resolver: &Resolver) -> Result<TcpStream> {
    resolver
        .connect(proxy.bare_host(), proxy.port)
        .await
        .map_err(|detail| {
            let detail = if detail.starts_with("cannot resolve") {
                detail
            } else {
                format!("cannot connect to the proxy: {detail}")
            };
            failure(proxy, ProxyFailure::Unreachable, detail)
        })
}

/// `host:port`, with brackets around IPv6 addresses.
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

async fn http_connect(
    proxy: &Proxy,
    mut tcp: TcpStream,
    endpoint: &Endpoint,
    log: &mut Log,
) -> Result<TcpStream> {
    let authority = authority(endpoint.bare_host(), endpoint.port);
    let mut request = format!(
        "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: tether/{}\r\n",
        env!("CARGO_PKG_VERSION")
    );
    if let Some((user, pass)) = &proxy.credentials {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        request.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    request.push_str("\r\n");
    if let Some(head) = handshake::Request::parse(request.as_bytes(), &[]) {
        handshake::trace(&head.lines());
        log.push(Exchange {
            peer: Peer::Proxy,
            url: endpoint.to_string(),
            request: head,
            response: None,
        });
    }
    let dropped = |err: std::io::Error| {
        failure(
            proxy,
            ProxyFailure::Unreachable,
            format!("the connection failed during CONNECT: {err}"),
        )
    };
    tcp.write_all(request.as_bytes()).await.map_err(dropped)?;

    let mut answer = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = tcp.read(&mut chunk).await.map_err(dropped)?;
        if n == 0 {
            return Err(failure(
                proxy,
                ProxyFailure::Protocol,
                "it closed the connection without answering CONNECT".into(),
            ));
        }
        answer.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        let head_len = match response.parse(&answer) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if answer.len() < MAX_ANSWER => continue,
            Ok(httparse::Status::Partial) => {
                return Err(failure(
                    proxy,
                    ProxyFailure::Protocol,
                    "its answer to CONNECT is too long".into(),
                ));
            }
            Err(err) => {
                return Err(failure(
                    proxy,
                    ProxyFailure::Protocol,
                    format!("its answer to CONNECT is not HTTP ({err})"),
                ));
            }
        };
        if let Some(exchange) = log.last_mut().filter(|e| e.peer == Peer::Proxy) {
            exchange.response = handshake::Response::parse(&answer);
            if let Some(head) = &exchange.response {
                handshake::trace(&head.lines());
            }
        }
        let code = response.code.unwrap_or_default();
        if (200..300).contains(&code) {
            // The server has not been sent anything yet, so it cannot have
            // answered: anything here came from the proxy, and would corrupt
            // the stream.
            if answer.len() > head_len {
                return Err(failure(
                    proxy,
                    ProxyFailure::Protocol,
                    "it sent data after accepting CONNECT, before the server could speak".into(),
                ));
            }
            return Ok(tcp);
        }
        let status = format!("HTTP {code} {}", response.reason.unwrap_or("").trim());
        let status = status.trim_end();
        return Err(match code {
            // tinyproxy answers wrong credentials with 401, missing ones with 407.
            401 | 407 => failure(
                proxy,
                ProxyFailure::Auth,
                format!(
                    "refused the tunnel to {authority}: {status} ({})",
                    if proxy.credentials.is_some() {
                        "the credentials were not accepted"
                    } else {
                        "no credentials were given"
                    }
                ),
            ),
            429 | 500..=599 => failure(
                proxy,
                ProxyFailure::Upstream,
                format!("could not open a tunnel to {authority}: {status}"),
            ),
            _ => failure(
                proxy,
                ProxyFailure::Refused,
                format!("refused the tunnel to {authority}: {status}"),
            ),
        });
    }
}

async fn socks5<'t>(
    proxy: &Proxy,
    tcp: TcpStream,
    target: impl tokio_socks::IntoTargetAddr<'t> + Copy + std::fmt::Debug,
) -> Result<TcpStream> {
    let shown = match target.into_target_addr() {
        Ok(tokio_socks::TargetAddr::Ip(addr)) => addr.to_string(),
        Ok(tokio_socks::TargetAddr::Domain(host, port)) => authority(&host, port),
        Err(err) => {
            return Err(failure(
                proxy,
                ProxyFailure::Refused,
                format!("cannot ask it for {target:?}: {err}"),
            ));
        }
    };
    let result = match &proxy.credentials {
        Some((user, pass)) => {
            Socks5Stream::connect_with_password_and_socket(tcp, target, user, pass).await
        }
        None => Socks5Stream::connect_with_socket(tcp, target).await,
    };
    result
        .map(Socks5Stream::into_inner)
        .map_err(|err| socks_failure(proxy, &shown, err))
}

fn socks_failure(proxy: &Proxy, target: &str, err: tokio_socks::Error) -> Error {
    use tokio_socks::Error as E;
    let (kind, detail) = match err {
        E::NoAcceptableAuthMethods if proxy.credentials.is_none() => (
            ProxyFailure::Auth,
            "it requires a user name and password (socks5://USER:PASS@HOST:PORT)".to_owned(),
        ),
        E::NoAcceptableAuthMethods | E::UnknownAuthMethod => (
            ProxyFailure::Auth,
            "it accepts none of the offered authentication methods".to_owned(),
        ),
        E::PasswordAuthFailure(_) | E::AuthorizationRequired => (
            ProxyFailure::Auth,
            "it did not accept the user name and password".to_owned(),
        ),
        E::ConnectionNotAllowedByRuleset => (
            ProxyFailure::Refused,
            format!("refused the connection to {target}: not allowed by its rules"),
        ),
        E::AddressTypeNotSupported if proxy.kind == ProxyKind::Socks5h => (
            ProxyFailure::Refused,
            format!(
                "refused the connection to {target}: it does not resolve host names (use socks5:// to resolve them here)"
            ),
        ),
        E::CommandNotSupported | E::AddressTypeNotSupported => (
            ProxyFailure::Refused,
            format!("refused the connection to {target}: {}", lowercase(&err)),
        ),
        E::GeneralSocksServerFailure
        | E::NetworkUnreachable
        | E::HostUnreachable
        | E::ConnectionRefused
        | E::TtlExpired => (
            ProxyFailure::Upstream,
            format!("could not reach {target}: {}", lowercase(&err)),
        ),
        // As with CONNECT: hanging up instead of answering is what a server
        // that does not speak SOCKS does.
        E::Io(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => (
            ProxyFailure::Protocol,
            "it closed the connection without answering the SOCKS5 handshake".to_owned(),
        ),
        E::Io(err) => (
            ProxyFailure::Unreachable,
            format!("the connection failed during the SOCKS5 handshake: {err}"),
        ),
        other => (
            ProxyFailure::Protocol,
            format!("its answer is not SOCKS5 ({})", lowercase(&other)),
        ),
    };
    failure(proxy, kind, detail)
}

/// tokio-socks' messages are capitalized titles ("Host unreachable").
fn lowercase(err: &tokio_socks::Error) -> String {
    let text = err.to_string();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}
