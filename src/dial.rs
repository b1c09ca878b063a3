//! Opening one WebSocket connection: DNS, TCP, TLS and the HTTP upgrade,
//! under one `--connect-timeout`, with every failure classified into a typed
//! [`Error`] so the supervisor can decide whether to retry.

use std::time::Duration;

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::{ProtocolError, SubProtocolError, UrlError};
use tokio_tungstenite::tungstenite::http::{HeaderValue, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::config::DialConfig;
use crate::error::{Error, Result};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A fresh connection and what the handshake settled.
pub struct Connection {
    pub socket: Socket,
    pub subprotocol: Option<String>,
    /// Something the user should hear about (e.g. no subprotocol was picked).
    pub warning: Option<String>,
}

/// Dials the configured server. Built once per session: TLS settings are
/// checked up front, so a bad `--cacert` is reported before any connection.
pub struct Dialer {
    config: DialConfig,
    tls: Option<tokio_native_tls::TlsConnector>,
}

impl Dialer {
    pub fn new(config: DialConfig) -> Result<Dialer> {
        let tls = if config.endpoint.tls {
            Some(build_tls(&config)?)
        } else {
            None
        };
        Ok(Dialer { config, tls })
    }

    pub fn target(&self) -> String {
        self.config.endpoint.to_string()
    }

    pub async fn dial(&self) -> Result<Connection> {
        let timeout = self.config.connect_timeout;
        match tokio::time::timeout(timeout, self.dial_unbounded()).await {
            Ok(result) => result,
            Err(_) => Err(Error::ConnectTimeout {
                target: self.target(),
                timeout,
            }),
        }
    }

    async fn dial_unbounded(&self) -> Result<Connection> {
        let offered = !self.config.subprotocols.is_empty();
        match self.dial_once(offered).await {
            // tungstenite refuses a 101 that picks none of the offered
            // subprotocols; the spec wants a warning, so dial again without.
            Err(Error::HandshakeInvalid { detail, .. }) if detail == NO_SUBPROTOCOL => {
                let mut conn = self.dial_once(false).await?;
                conn.warning = Some(format!(
                    "the server accepted none of the offered subprotocols ({}); connected without one",
                    self.config.subprotocols.join(", ")
                ));
                Ok(conn)
            }
            other => other,
        }
    }

    async fn dial_once(&self, offer_subprotocols: bool) -> Result<Connection> {
        let ep = &self.config.endpoint;
        let tcp = self.connect_tcp().await?;
        let stream = match &self.tls {
            Some(connector) => {
                let tls = connector
                    .connect(ep.bare_host(), tcp)
                    .await
                    .map_err(|err| Error::Tls {
                        target: self.target(),
                        detail: describe_tls_error(&err),
                    })?;
                MaybeTlsStream::NativeTls(tls)
            }
            None => MaybeTlsStream::Plain(tcp),
        };

        let mut request = ep
            .url
            .as_str()
            .into_client_request()
            .map_err(|err| Error::Usage(format!("cannot make a request for {ep}: {err}")))?;
        let headers = request.headers_mut();
        for (name, value) in &self.config.headers {
            headers.append(name.clone(), value.clone());
        }
        if offer_subprotocols {
            let list = self.config.subprotocols.join(", ");
            // Validated as tokens in config, so always a valid header value.
            if let Ok(value) = HeaderValue::from_str(&list) {
                headers.insert("sec-websocket-protocol", value);
            }
        }

        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(self.config.max_message_size))
            .max_frame_size(Some(self.config.max_message_size));
        let (socket, response) =
            tokio_tungstenite::client_async_with_config(request, stream, Some(ws_config))
                .await
                .map_err(|err| self.classify_handshake_error(err))?;
        let subprotocol = response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(Connection {
            socket,
            subprotocol,
            warning: None,
        })
    }

    async fn connect_tcp(&self) -> Result<TcpStream> {
        let ep = &self.config.endpoint;
        let addrs: Vec<_> = tokio::net::lookup_host((ep.bare_host(), ep.port))
            .await
            .map_err(|err| Error::Connect {
                target: self.target(),
                detail: format!("cannot resolve {}: {err}", ep.bare_host()),
            })?
            .collect();
        let mut last_err = None;
        for addr in &addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    // Small messages are the common case; don't let Nagle delay them.
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Err(err) => last_err = Some(format!("{addr}: {err}")),
            }
        }
        Err(Error::Connect {
            target: self.target(),
            detail: last_err.unwrap_or_else(|| format!("{} resolved to no address", ep.host)),
        })
    }

    fn classify_handshake_error(&self, err: tungstenite::Error) -> Error {
        let target = self.target();
        match err {
            tungstenite::Error::Http(response) => rejected(target, &response),
            tungstenite::Error::Protocol(ProtocolError::SecWebSocketSubProtocolError(
                SubProtocolError::NoSubProtocol,
            )) => Error::HandshakeInvalid {
                target,
                detail: NO_SUBPROTOCOL.into(),
            },
            tungstenite::Error::Io(err) => Error::Connect {
                target,
                detail: format!("connection failed during the handshake: {err}"),
            },
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
}

const NO_SUBPROTOCOL: &str = "the server picked none of the offered subprotocols";

/// How much of a rejection's body is worth showing.
const BODY_PREVIEW: usize = 200;

fn rejected(target: String, response: &Response<Option<Vec<u8>>>) -> Error {
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
    Error::Handshake {
        target,
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
    fn retry_after_accepts_seconds_and_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
