//! Opening one WebSocket connection: DNS and TCP (raced in `eyeballs`,
//! directly or through a proxy) or a Unix-domain socket (`net/unix.rs`), TLS
//! and the HTTP upgrade on the winner, following redirects with `-L`, all
//! under one `--connect-timeout`, with every failure classified into a typed
//! [`Error`] so the supervisor can decide whether to retry.

use std::time::Duration;

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::{ProtocolError, SubProtocolError, UrlError};
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::config::DialConfig;
use crate::error::{Error, Result};
use crate::headers::is_secret_header;
use crate::net::deflate::{self, Inflating, Params};
use crate::net::endpoint::Endpoint;
use crate::net::handshake::{self, Exchange, Log, Peer, Recorded};
use crate::net::last_words::LastWords;
use crate::net::meter::{Metered, WriteProgress};
use crate::net::proxy::{self, Route};
use crate::net::redirect;
use crate::net::unix::{self, Transport};

type Header = (HeaderName, HeaderValue);

pub type Socket =
    WebSocketStream<Inflating<Recorded<MaybeTlsStream<LastWords<Metered<Transport>>>>>>;

/// A fresh connection and what the handshake settled.
pub struct Connection {
    pub socket: Socket,
    /// How the peer drains what is written to the socket.
    pub progress: WriteProgress,
    pub subprotocol: Option<String>,
    /// The permessage-deflate parameters agreed, if any.
    pub compression: Option<Params>,
    /// The URL connected to: the configured one, or where redirects led.
    pub url: String,
    /// Things the user should hear about (no subprotocol was picked, a
    /// redirect left TLS).
    pub warnings: Vec<String>,
}

/// Dials the configured server. Built once per session: TLS settings are
/// checked up front, so a bad `--cacert` is reported before any connection.
pub struct Dialer {
    config: DialConfig,
    tls: Option<tokio_native_tls::TlsConnector>,
}

/// What one request led to.
enum Step {
    Connected(Box<Socket>, WriteProgress, Option<String>, Option<Params>),
    Redirect { status: u16, location: String },
}

impl Dialer {
    pub fn new(config: DialConfig) -> Result<Dialer> {
        // With -L a ws:// URL may lead to wss://.
        let tls = if config.endpoint.tls || config.follow_redirects.is_some() {
            Some(build_tls(&config)?)
        } else {
            None
        };
        Ok(Dialer { config, tls })
    }

    pub fn target(&self) -> String {
        self.config.endpoint.to_string()
    }

    /// Dials, and says what each HTTP exchange on the way said (also when
    /// it failed or timed out, up to where it got).
    /// `fresh`: this attempt's `--header-cmd` headers.
    pub async fn dial(&self, fresh: &[Header]) -> (Result<Connection>, Log) {
        let mut log = Log::new();
        let result = self.dial_logged(fresh, &mut log).await;
        (result, log)
    }

    async fn dial_logged(&self, fresh: &[Header], log: &mut Log) -> Result<Connection> {
        let timeout = self.config.connect_timeout;
        match tokio::time::timeout(timeout, self.dial_unbounded(fresh, log)).await {
            Ok(result) => result,
            Err(_) => Err(Error::ConnectTimeout {
                target: match self.config.proxy.route(&self.config.endpoint) {
                    Route::Proxy(proxy) if self.config.endpoint.unix.is_none() => {
                        format!("{} through proxy {proxy}", self.target())
                    }
                    _ => self.target(),
                },
                timeout,
            }),
        }
    }

    async fn dial_unbounded(&self, fresh: &[Header], log: &mut Log) -> Result<Connection> {
        let offered = !self.config.subprotocols.is_empty();
        match self.dial_once(offered, fresh, log).await {
            // tungstenite refuses a 101 that picks none of the offered
            // subprotocols; the spec wants a warning, so dial again without.
            Err(Error::HandshakeInvalid { detail, .. }) if detail == NO_SUBPROTOCOL => {
                let mut conn = self.dial_once(false, fresh, log).await?;
                conn.warnings.push(format!(
                    "the server accepted none of the offered subprotocols ({}); connected without one",
                    self.config.subprotocols.join(", ")
                ));
                Ok(conn)
            }
            other => other,
        }
    }

    /// One connection, following redirects when -L asks for it.
    async fn dial_once(
        &self,
        offer_subprotocols: bool,
        fresh: &[Header],
        log: &mut Log,
    ) -> Result<Connection> {
        let original = &self.config.endpoint;
        let mut endpoint = original.clone();
        let mut followed = 0;
        loop {
            let (status, location) = match self
                .request(&endpoint, offer_subprotocols, fresh, log)
                .await?
            {
                Step::Connected(socket, progress, subprotocol, compression) => {
                    // Judged by where the chain ends: the user asked for TLS.
                    let warnings = if original.tls && !endpoint.tls {
                        vec![format!(
                            "the redirect from {original} to {endpoint} leaves TLS: this session is not encrypted"
                        )]
                    } else {
                        Vec::new()
                    };
                    return Ok(Connection {
                        socket: *socket,
                        progress,
                        subprotocol,
                        compression,
                        url: endpoint.to_string(),
                        warnings,
                    });
                }
                Step::Redirect { status, location } => (status, location),
            };
            let max = self.config.follow_redirects.unwrap_or_default();
            if followed >= max {
                return Err(Error::Redirect {
                    target: original.to_string(),
                    detail: format!(
                        "it redirects more than {max} time{} (--max-redirects)",
                        if max == 1 { "" } else { "s" }
                    ),
                });
            }
            let next =
                redirect::resolve(&endpoint, &location).map_err(|detail| Error::Redirect {
                    target: endpoint.to_string(),
                    detail,
                })?;
            tracing::debug!("{endpoint}: HTTP {status}, redirected to {next}");
            followed += 1;
            endpoint = next;
        }
    }

    /// Connects to `endpoint` and asks for the upgrade.
    async fn request(
        &self,
        endpoint: &Endpoint,
        offer_subprotocols: bool,
        fresh: &[Header],
        log: &mut Log,
    ) -> Result<Step> {
        let transport = match &endpoint.unix {
            Some(socket) => {
                tracing::debug!("connecting to {endpoint}");
                Transport::Unix(unix::connect(socket, &endpoint.to_string()).await?)
            }
            None => {
                let route = self.config.proxy.route(endpoint);
                tracing::debug!("connecting to {endpoint} {route}");
                Transport::from(match route {
                    Route::Direct(_) => self.connect_tcp(endpoint).await?,
                    Route::Proxy(proxy) => {
                        proxy::open(proxy, endpoint, &self.config.resolver, log).await?
                    }
                })
            }
        };
        let tcp = Metered::new(transport);
        let progress = tcp.progress();
        let tcp = LastWords::new(tcp, progress.clone());
        let stream = if endpoint.tls {
            let connector = self.tls.as_ref().ok_or_else(|| {
                Error::Runtime(format!("no TLS settings for {endpoint} (a bug in tether)"))
            })?;
            let tls = connector
                .connect(endpoint.bare_host(), tcp)
                .await
                .map_err(|err| {
                    let text = err.to_string();
                    let given = self.config.tls.identity.is_some();
                    match client_certificate_refusal(&text, given, false) {
                        Some(detail) => Error::ClientCertificate {
                            target: endpoint.to_string(),
                            detail,
                            given,
                        },
                        None => Error::Tls {
                            target: endpoint.to_string(),
                            detail: describe_tls_error(&err),
                        },
                    }
                })?;
            MaybeTlsStream::NativeTls(tls)
        } else {
            MaybeTlsStream::Plain(tcp)
        };

        let mut request =
            endpoint.url.as_str().into_client_request().map_err(|err| {
                Error::Usage(format!("cannot make a request for {endpoint}: {err}"))
            })?;
        let trusted = redirect::same_origin(&self.config.endpoint, endpoint);
        let headers = request.headers_mut();
        // A header --header-cmd printed replaces the -H ones of its name.
        // Its values are all secrets: they follow redirects only as
        // Authorization does, and are redacted whatever their name.
        let replaced = |name: &HeaderName| fresh.iter().any(|(n, _)| n == name);
        for (name, value) in &self.config.headers {
            if (trusted || !is_secret_header(name.as_str())) && !replaced(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        if trusted {
            for (name, value) in fresh {
                headers.append(name.clone(), value.clone());
            }
        }
        let secret_names: Vec<&str> = fresh.iter().map(|(n, _)| n.as_str()).collect();
        if offer_subprotocols {
            let list = self.config.subprotocols.join(", ");
            // Validated as tokens in config, so always a valid header value.
            if let Ok(value) = HeaderValue::from_str(&list) {
                headers.insert("sec-websocket-protocol", value);
            }
        }
        let offer = self.config.compression;
        if offer {
            headers.insert(
                "sec-websocket-extensions",
                HeaderValue::from_static(if self.config.compress {
                    deflate::OFFER_COMPRESSING
                } else {
                    deflate::OFFER
                }),
            );
        }

        if let Some(head) = request_head(&request, &secret_names) {
            handshake::trace(&head.lines());
            log.push(Exchange {
                peer: Peer::Server,
                url: endpoint.to_string(),
                request: head,
                response: None,
            });
        }
        let (stream, answer) = Recorded::new(stream);
        let stream = Inflating::new(stream, offer, self.config.max_message_size);
        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(self.config.max_message_size))
            .max_frame_size(Some(self.config.max_message_size));
        let result =
            tokio_tungstenite::client_async_with_config(request, stream, Some(ws_config)).await;
        if let Some(exchange) = log.last_mut().filter(|e| e.peer == Peer::Server) {
            let answer = answer.lock().map(|a| a.clone()).unwrap_or_default();
            exchange.response = handshake::Response::parse(&answer);
            if let Some(head) = &exchange.response {
                handshake::trace(&head.lines());
            }
        }
        match result {
            Ok((mut socket, response)) => {
                socket.get_mut().get_mut().stop();
                // RFC 6455 §4.1, RFC 7692 §5: an extension or a parameter the
                // client did not offer fails the connection.
                let compression =
                    socket
                        .get_ref()
                        .agreement()
                        .map_err(|detail| Error::HandshakeInvalid {
                            target: endpoint.to_string(),
                            detail,
                        })?;
                if let Some(params) = &compression {
                    let sending = match deflate::send_window(params) {
                        _ if !self.config.compress => "tether sends uncompressed",
                        Ok(_) => "tether compresses what it sends",
                        Err(why) => why,
                    };
                    tracing::debug!("{endpoint}: compression agreed: {params} ({sending})");
                }
                let subprotocol = response
                    .headers()
                    .get("sec-websocket-protocol")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                Ok(Step::Connected(
                    Box::new(socket),
                    progress,
                    subprotocol,
                    compression,
                ))
            }
            Err(tungstenite::Error::Http(response)) => match location(&response) {
                Some(location) if self.config.follow_redirects.is_some() => Ok(Step::Redirect {
                    status: response.status().as_u16(),
                    location: location.to_owned(),
                }),
                _ => Err(rejected(endpoint, &response)),
            },
            Err(err) => Err(classify_handshake_error(
                endpoint,
                err,
                self.config.tls.identity.is_some(),
            )),
        }
    }

    /// The TCP connection to the server: its addresses raced (`eyeballs`).
    async fn connect_tcp(&self, endpoint: &Endpoint) -> Result<TcpStream> {
        self.config
            .resolver
            .connect(endpoint.bare_host(), endpoint.port)
            .await
            .map_err(|detail| Error::Connect {
                target: endpoint.to_string(),
                detail,
            })
    }
}

/// The request as tungstenite will write it: its own serialisation, of a
/// copy (a request is not `Clone`).
fn request_head(
    request: &tungstenite::handshake::client::Request,
    secret: &[&str],
) -> Option<handshake::Request> {
    let mut copy = tungstenite::handshake::client::Request::new(());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    let (bytes, _key) = tungstenite::handshake::client::generate_request(copy).ok()?;
    handshake::Request::parse(&bytes, secret)
}

/// `identity`: whether `--cert/--key` were given.
fn classify_handshake_error(endpoint: &Endpoint, err: tungstenite::Error, identity: bool) -> Error {
    let target = endpoint.to_string();
    match err {
        tungstenite::Error::Http(response) => rejected(endpoint, &response),
        tungstenite::Error::Protocol(ProtocolError::SecWebSocketSubProtocolError(
            SubProtocolError::NoSubProtocol,
        )) => Error::HandshakeInvalid {
            target,
            detail: NO_SUBPROTOCOL.into(),
        },
        tungstenite::Error::Protocol(ProtocolError::HttparseError(err)) => {
            Error::HandshakeInvalid {
                target,
                detail: format!("the server's answer is not HTTP ({err})"),
            }
        }
        tungstenite::Error::Protocol(ProtocolError::SecWebSocketAcceptKeyMismatch) => {
            Error::HandshakeInvalid {
                target,
                detail:
                    "the server's Sec-WebSocket-Accept header does not match the key tether sent"
                        .into(),
            }
        }
        tungstenite::Error::AttackAttempt => Error::HandshakeInvalid {
            target,
            detail: "the server's answer to the upgrade is over 64 KiB, or came in too many \
                     tiny pieces (refused as a denial-of-service attempt)"
                .into(),
        },
        // TLS 1.3: the server checks our certificate after we finished the
        // handshake, so its alert is what the upgrade reads first.
        tungstenite::Error::Io(err) => {
            match client_certificate_refusal(&err.to_string(), identity, endpoint.tls) {
                Some(detail) => Error::ClientCertificate {
                    target,
                    detail,
                    given: identity,
                },
                None => Error::Connect {
                    target,
                    detail: format!("connection failed during the handshake: {err}"),
                },
            }
        }
        tungstenite::Error::Url(UrlError::UnableToConnect(detail)) => {
            Error::Connect { target, detail }
        }
        tungstenite::Error::Url(err) => Error::Usage(format!("bad URL {target}: {err}")),
        tungstenite::Error::Tls(err) => Error::Tls {
            target,
            detail: err.to_string(),
        },
        // A server going down mid-handshake is as transient as a refused
        // connection.
        tungstenite::Error::ConnectionClosed
        | tungstenite::Error::AlreadyClosed
        | tungstenite::Error::Protocol(ProtocolError::HandshakeIncomplete) => Error::Connect {
            target,
            detail: "the server closed the connection before answering the upgrade".into(),
        },
        other => Error::HandshakeInvalid {
            target,
            detail: other.to_string(),
        },
    }
}

/// The `Location` of a redirect response.
fn location(response: &Response<Option<Vec<u8>>>) -> Option<&str> {
    if !redirect::is_redirect(response.status().as_u16()) {
        return None;
    }
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty())
}

const NO_SUBPROTOCOL: &str = "the server picked none of the offered subprotocols";

/// How much of a rejection's body is worth showing.
const BODY_PREVIEW: usize = 200;

fn rejected(endpoint: &Endpoint, response: &Response<Option<Vec<u8>>>) -> Error {
    let status = response.status();
    let body = response
        .body()
        .as_deref()
        .map(|b| {
            let cut = &b[..b.len().min(BODY_PREVIEW)];
            String::from_utf8_lossy(cut).trim().to_owned()
        })
        .unwrap_or_default();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let location = location(response).map(|raw| match redirect::resolve(endpoint, raw) {
        Ok(next) => next.to_string(),
        Err(_) => format!("{:?}", crate::net::endpoint::redact_url(raw)),
    });
    Error::Handshake {
        target: endpoint.to_string(),
        status: status.as_u16(),
        status_line: format!(
            "{} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )
        .trim_end()
        .to_owned(),
        body,
        retry_after,
        location,
    }
}

/// `Retry-After` is either delta-seconds or an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

fn build_tls(config: &DialConfig) -> Result<tokio_native_tls::TlsConnector> {
    let tls = &config.tls;
    let mut builder = native_tls::TlsConnector::builder();
    if tls.insecure {
        builder
            .danger_accept_invalid_certs(true)
            .danger_accept_invalid_hostnames(true);
    }
    for pem in &tls.ca_pems {
        let cert = native_tls::Certificate::from_pem(pem)
            .map_err(|err| Error::Usage(format!("--cacert: not a valid PEM certificate: {err}")))?;
        builder.add_root_certificate(cert);
    }
    if let Some((cert, key)) = &tls.identity {
        let identity = native_tls::Identity::from_pkcs8(cert, key).map_err(|err| {
            Error::Usage(format!(
                "--cert/--key: not a usable PEM certificate and private key: {err}"
            ))
        })?;
        builder.identity(identity);
    }
    let connector = builder
        .build()
        .map_err(|err| Error::Usage(format!("cannot set up TLS: {err}")))?;
    Ok(connector.into())
}

/// Whether an OpenSSL error is the server refusing our client certificate
/// (or its absence), and if so, what to say. `after_handshake`: read once
/// the TLS handshake was done, where a "handshake failure" alert can only be
/// about the certificate the client sent last (TLS 1.3); during the
/// handshake it may be about ciphers or versions, so it is left alone.
fn client_certificate_refusal(text: &str, given: bool, after_handshake: bool) -> Option<String> {
    let alert = if text.contains("alert certificate required") || text.contains("alert number 116")
    {
        "certificate required"
    } else if text.contains("alert bad certificate") || text.contains("alert number 42") {
        "bad certificate"
    } else if text.contains("alert unknown ca") || text.contains("alert number 48") {
        "unknown CA"
    } else if after_handshake
        && (text.contains("alert handshake failure") || text.contains("alert number 40"))
    {
        "handshake failure"
    } else {
        return None;
    };
    // "unknown CA" before any client certificate went out is about the
    // server's own certificate chain as the server sees it: not ours to say.
    if alert == "unknown CA" && !given {
        return None;
    }
    Some(if given {
        format!("the server refused the client certificate (TLS alert \"{alert}\")")
    } else {
        format!("the server requires a client certificate (TLS alert \"{alert}\")")
    })
}

/// OpenSSL's messages carry source paths; keep the reason a person can act on.
fn describe_tls_error(err: &native_tls::Error) -> String {
    let text = err.to_string();
    if !text.contains("certificate verify failed") {
        return text;
    }
    let reason = text
        .rsplit_once('(')
        .map(|(_, rest)| rest.trim_end_matches(')').trim())
        .filter(|r| !r.is_empty() && !r.contains(".c:"));
    match reason {
        Some(reason) => format!("certificate verify failed: {reason}"),
        None => "certificate verify failed".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_about_the_client_certificate_are_recognised() {
        let tls13 = "error:0A00045C:SSL routines:ssl3_read_bytes:tlsv13 alert certificate \
                     required:../ssl/record/rec_layer_s3.c:1601:SSL alert number 116";
        assert_eq!(
            client_certificate_refusal(tls13, false, true).as_deref(),
            Some("the server requires a client certificate (TLS alert \"certificate required\")")
        );
        let bad = "error:0A000412:SSL routines:ssl3_read_bytes:sslv3 alert bad certificate";
        assert_eq!(
            client_certificate_refusal(bad, true, true).as_deref(),
            Some("the server refused the client certificate (TLS alert \"bad certificate\")")
        );
        let failure = "error:0A000410:SSL routines:ssl3_read_bytes:sslv3 alert handshake failure";
        assert!(client_certificate_refusal(failure, false, true).is_some());
        // During the handshake it may be about ciphers or versions.
        assert_eq!(client_certificate_refusal(failure, false, false), None);
        assert_eq!(
            client_certificate_refusal("Connection reset by peer (os error 104)", false, true),
            None
        );
    }

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
