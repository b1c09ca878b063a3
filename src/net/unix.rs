//! Unix-domain sockets: the `ws+unix://` URL form, the connection to a
//! socket file with failures a person can act on, and [`Transport`], the
//! stream under TLS and the upgrade, TCP or Unix. Everything above the
//! transport (the handshake, the supervisor, heartbeats, reconnects) is the
//! same for both.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::error::{Error, Result};
use crate::net::endpoint::redact_url;

/// The Host a `ws+unix://` URL without one sends, as Node's `ws` does.
pub const DEFAULT_HOST: &str = "localhost";

/// `ws+unix://[HOST]/SOCKET[:/REQUEST-PATH]` (Node `ws`, wscat): the path
/// part holds the socket's path, then a colon and the request path (which
/// may carry a query). Without the colon the request path is `/`. Returns
/// the `ws(s)://HOST/REQUEST-PATH` URL to dial and the socket's path, or
/// `None` when `input` is not such a URL.
pub fn split_url(input: &str) -> Option<Result<(String, PathBuf)>> {
    let (scheme, rest) = input.split_once("://")?;
    let ws = match scheme.to_ascii_lowercase().as_str() {
        "ws+unix" => "ws",
        "wss+unix" => "wss",
        _ => return None,
    };
    let shown = redact_url(input);
    let (host, path) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, ""),
    };
    let path = path.split('#').next().unwrap_or_default();
    let (socket, request) = path.split_once(':').unwrap_or((path, "/"));
    if socket.is_empty() {
        return Some(Err(Error::Usage(format!(
            "invalid URL {shown:?}: it names no socket; write it as \
             {scheme}:///PATH/TO/SOCKET:/REQUEST-PATH"
        ))));
    }
    let socket = percent_encoding::percent_decode_str(socket)
        .decode_utf8_lossy()
        .into_owned();
    let host = if host.is_empty() { DEFAULT_HOST } else { host };
    let slash = if request.starts_with('/') { "" } else { "/" };
    Some(Ok((
        format!("{ws}://{host}{slash}{request}"),
        socket.into(),
    )))
}

/// How an endpoint on a Unix socket is shown: `ws+unix://SOCKET:PATH`,
/// the request path's credentials redacted. `path_and_query` is the dialled
/// URL from its path on.
pub fn shown(tls: bool, socket: &Path, path_and_query: &str) -> String {
    let scheme = if tls { "wss+unix" } else { "ws+unix" };
    format!(
        "{scheme}://{}:{}",
        socket.display(),
        redact_url(path_and_query)
    )
}

/// Connects to the socket at `path`. The three ways this commonly fails
/// look alike to `connect(2)` (a regular file, too, is "connection
/// refused"), so the file is looked at to say which one it is. All are
/// [`Error::Connect`]: a server that is starting may create the socket, or
/// start listening on it, at any moment, so they are retried.
pub async fn connect(path: &Path, target: &str) -> Result<UnixStream> {
    match UnixStream::connect(path).await {
        Ok(stream) => Ok(stream),
        Err(err) => Err(Error::Connect {
            target: target.to_owned(),
            detail: describe_failure(path, &err),
        }),
    }
}

/// Why connecting to `path` failed, as a person would look for it.
pub fn describe_failure(path: &Path, err: &io::Error) -> String {
    let shown = path.display();
    let kind = match std::fs::metadata(path) {
        Err(stat) if stat.kind() == io::ErrorKind::NotFound => {
            return format!("{shown} does not exist");
        }
        Err(_) => None,
        Ok(meta) => {
            let kind = meta.file_type();
            if kind.is_socket() {
                None
            } else if kind.is_dir() {
                Some("a directory")
            } else if kind.is_file() {
                Some("a regular file")
            } else {
                Some("not a socket file")
            }
        }
    };
    match (kind, err.kind()) {
        (Some(kind), _) => format!("{shown} is not a socket ({kind})"),
        (None, io::ErrorKind::ConnectionRefused) => {
            format!("nobody is listening on {shown} (connection refused)")
        }
        (None, io::ErrorKind::PermissionDenied) => {
            format!("{shown}: permission denied")
        }
        (None, _) => format!("{shown}: {err}"),
    }
}

/// The byte stream a WebSocket runs on.
#[derive(Debug)]
pub enum Transport {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl From<TcpStream> for Transport {
    fn from(stream: TcpStream) -> Transport {
        Transport::Tcp(stream)
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Transport::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Tcp(s) => s.is_write_vectored(),
            Transport::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_flush(cx),
            Transport::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> (String, String) {
        let (dial, socket) = split_url(url).expect("a unix URL").expect("valid");
        (dial, socket.display().to_string())
    }

    #[test]
    fn the_socket_path_and_the_request_path_are_split_at_the_first_colon() {
        assert_eq!(
            split("ws+unix:///run/app.sock:/v1/events?x=1"),
            (
                "ws://localhost/v1/events?x=1".into(),
                "/run/app.sock".into()
            )
        );
        assert_eq!(
            split("ws+unix:///run/app.sock"),
            ("ws://localhost/".into(), "/run/app.sock".into())
        );
        assert_eq!(
            split("WSS+UNIX://api.local/tmp/my%20dir/s:chat#frag"),
            ("wss://api.local/chat".into(), "/tmp/my dir/s".into())
        );
        assert!(split_url("ws://h/").is_none());
        assert!(split_url("ws+unix://").unwrap().is_err());
        assert!(split_url("ws+unix://host").unwrap().is_err());
    }

    #[test]
    fn the_three_failures_read_differently() {
        let dir = tempfile::tempdir().unwrap();
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let missing = dir.path().join("none.sock");
        assert_eq!(
            describe_failure(&missing, &io::Error::from(io::ErrorKind::NotFound)),
            format!("{} does not exist", missing.display())
        );
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert_eq!(
            describe_failure(&file, &refused),
            format!("{} is not a socket (a regular file)", file.display())
        );
        let stale = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        assert_eq!(
            describe_failure(&stale, &refused),
            format!(
                "nobody is listening on {} (connection refused)",
                stale.display()
            )
        );
    }
}
