//! A server that misbehaves on purpose: a raw TCP listener on 127.0.0.1 that answers every
//! connection with a script of bytes, so tests can hand tether exactly the broken handshake
//! or frame they are about. Built on [`Server::raw`], so it stops when dropped.
//!
//! ```ignore
//! let server = Hostile::start(vec![Step::Accept, Step::Send(frame(0x81, b"\xff")), Step::Drain]);
//! ```

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::server::Server;

/// One thing the server does, in order, on every connection.
#[derive(Debug, Clone)]
pub enum Step {
    /// Read the client's HTTP request, up to its blank line.
    ReadRequest,
    /// Read the request and answer with a correct `101 Switching Protocols`.
    Accept,
    /// As [`Step::Accept`], with these extra header lines (each ending in `\r\n`) in the 101.
    AcceptWith(String),
    /// As [`Step::AcceptWith`], and these bytes right after the head, in the same write.
    AcceptThen(String, Vec<u8>),
    /// Write these bytes.
    Send(Vec<u8>),
    /// Write these bytes one at a time, `interval` apart, until done or the client leaves.
    Trickle(Vec<u8>, Duration),
    /// Write `chunk` again and again, until `limit` bytes are written or the client stops
    /// taking them (it hung up, or left them unread for `stall`).
    Flood {
        chunk: Vec<u8>,
        limit: u64,
        stall: Duration,
    },
    /// Read (and keep) whatever the client sends until it hangs up, or `Drain`'s deadline.
    Drain,
}

/// How long [`Step::Drain`] waits for the client to hang up before giving up: only a
/// client that never closes reaches it, and the server must stop by itself.
const DRAIN_DEADLINE: Duration = Duration::from_secs(60);

/// What one connection saw.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// The client's HTTP request.
    pub request: String,
    /// What the client sent after its request.
    pub after: Vec<u8>,
    /// Bytes the server managed to write.
    pub written: u64,
    /// The client hung up (EOF or reset) while the script ran.
    pub hung_up: bool,
    /// The script ran to its end.
    pub done: bool,
}

#[derive(Default)]
struct Record {
    conns: Mutex<Vec<Seen>>,
    changed: Condvar,
}

impl Record {
    fn update(&self, index: usize, f: impl FnOnce(&mut Seen)) {
        f(&mut self.conns.lock().unwrap()[index]);
        self.changed.notify_all();
    }
}

pub struct Hostile {
    server: Server,
    record: Arc<Record>,
}

impl Hostile {
    /// Runs `script` on every connection.
    pub fn start(script: Vec<Step>) -> Hostile {
        let record = Arc::new(Record::default());
        let script = Arc::new(script);
        let rec = Arc::clone(&record);
        let server = Server::raw(move |stream| {
            let record = Arc::clone(&rec);
            let script = Arc::clone(&script);
            async move { run_script(stream, &script, &record).await }
        });
        Hostile { server, record }
    }

    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    pub fn connections(&self) -> Vec<Seen> {
        self.record.conns.lock().unwrap().clone()
    }

    /// Waits until `pred` holds for the connections so far; fails the test if it does not
    /// within `timeout`.
    pub fn wait_until(&self, timeout: Duration, pred: impl Fn(&[Seen]) -> bool) -> Vec<Seen> {
        let conns = self.record.conns.lock().unwrap();
        let (conns, result) = self
            .record
            .changed
            .wait_timeout_while(conns, timeout, |c| !pred(c))
            .unwrap();
        assert!(
            !result.timed_out(),
            "the hostile server never saw what the test waited for within {timeout:?}; it saw: {:#?}",
            *conns
        );
        conns.clone()
    }
}

async fn run_script(mut stream: TcpStream, script: &[Step], record: &Record) {
    let index = {
        let mut conns = record.conns.lock().unwrap();
        conns.push(Seen::default());
        record.changed.notify_all();
        conns.len() - 1
    };
    let _ = stream.set_nodelay(true);
    for step in script {
        let ok = match step {
            Step::ReadRequest => read_request(&mut stream, index, record).await.is_some(),
            Step::Accept | Step::AcceptWith(_) | Step::AcceptThen(..) => {
                match read_request(&mut stream, index, record).await {
                    Some(key) => {
                        let (extra, then) = match step {
                            Step::AcceptWith(extra) => (extra.as_str(), &[][..]),
                            Step::AcceptThen(extra, then) => (extra.as_str(), &then[..]),
                            _ => ("", &[][..]),
                        };
                        let answer = format!(
                            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                         Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n{extra}\r\n",
                            derive_accept_key(key.as_bytes())
                        );
                        let mut bytes = answer.into_bytes();
                        bytes.extend_from_slice(then);
                        write(&mut stream, &bytes, index, record).await
                    }
                    None => false,
                }
            }
            Step::Send(bytes) => write(&mut stream, bytes, index, record).await,
            Step::Trickle(bytes, interval) => {
                let mut ok = true;
                for byte in bytes {
                    if !write(&mut stream, &[*byte], index, record).await {
                        ok = false;
                        break;
                    }
                    tokio::time::sleep(*interval).await;
                }
                ok
            }
            Step::Flood {
                chunk,
                limit,
                stall,
            } => flood(&mut stream, chunk, *limit, *stall, index, record).await,
            Step::Drain => {
                drain(&mut stream, index, record).await;
                true
            }
        };
        if !ok {
            record.update(index, |s| s.hung_up = true);
            return;
        }
    }
    record.update(index, |s| s.done = true);
}

/// Reads the request head; returns its `Sec-WebSocket-Key` (empty if it has none), or
/// `None` if the client hung up first.
async fn read_request(stream: &mut TcpStream, index: usize, record: &Record) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte, so nothing after the blank line is consumed here.
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
        if head.len() > 64 * 1024 {
            return None;
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let key = text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("sec-websocket-key"))
        .map(|(_, value)| value.trim().to_owned())
        .unwrap_or_default();
    record.update(index, |s| s.request = text);
    Some(key)
}

async fn write(stream: &mut TcpStream, bytes: &[u8], index: usize, record: &Record) -> bool {
    if stream.write_all(bytes).await.is_err() {
        return false;
    }
    record.update(index, |s| s.written += bytes.len() as u64);
    true
}

async fn flood(
    stream: &mut TcpStream,
    chunk: &[u8],
    limit: u64,
    stall: Duration,
    index: usize,
    record: &Record,
) -> bool {
    let mut written = 0u64;
    while written < limit {
        match tokio::time::timeout(stall, stream.write_all(chunk)).await {
            Ok(Ok(())) => written += chunk.len() as u64,
            // Hung up, or stopped reading.
            Ok(Err(_)) | Err(_) => {
                record.update(index, |s| s.written += written);
                return false;
            }
        }
    }
    record.update(index, |s| s.written += written);
    true
}

async fn drain(stream: &mut TcpStream, index: usize, record: &Record) {
    let deadline = Instant::now() + DRAIN_DEADLINE;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                let got = buf[..n].to_vec();
                record.update(index, |s| s.after.extend_from_slice(&got));
            }
            Ok(_) => {
                record.update(index, |s| s.hung_up = true);
                return;
            }
            Err(_) => return,
        }
    }
}

/// A server frame: `first` is the first byte (FIN, RSV1-3, opcode), e.g. `0x81` for a final
/// text frame; the payload is sent unmasked, as servers must.
pub fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    out.extend(length(payload.len() as u64, false));
    out.extend_from_slice(payload);
    out
}

/// The same frame, masked with `key` (which servers must not do).
pub fn masked_frame(first: u8, key: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    out.extend(length(payload.len() as u64, true));
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// Only a frame's header, announcing `len` payload bytes that are to follow.
pub fn frame_header(first: u8, len: u64) -> Vec<u8> {
    let mut out = vec![first];
    out.extend(length(len, false));
    out
}

/// A Close frame's payload: the code, then the reason.
pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut out = code.to_be_bytes().to_vec();
    out.extend_from_slice(reason);
    out
}

fn length(len: u64, masked: bool) -> Vec<u8> {
    let mask_bit = if masked { 0x80 } else { 0 };
    if len < 126 {
        vec![mask_bit | len as u8]
    } else if len <= u64::from(u16::MAX) {
        let mut out = vec![mask_bit | 126];
        out.extend((len as u16).to_be_bytes());
        out
    } else {
        let mut out = vec![mask_bit | 127];
        out.extend(len.to_be_bytes());
        out
    }
}

/// The client's frames in `bytes` (as [`Seen::after`] holds them): (opcode, unmasked payload).
pub fn client_frames(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    let mut at = 0;
    while at + 2 <= bytes.len() {
        let opcode = bytes[at] & 0x0f;
        let masked = bytes[at + 1] & 0x80 != 0;
        let mut len = u64::from(bytes[at + 1] & 0x7f);
        at += 2;
        let extra = match len {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        if at + extra > bytes.len() {
            break;
        }
        if extra > 0 {
            len = bytes[at..at + extra]
                .iter()
                .fold(0u64, |acc, b| acc << 8 | u64::from(*b));
            at += extra;
        }
        let key = if masked {
            if at + 4 > bytes.len() {
                break;
            }
            let key = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
            at += 4;
            Some(key)
        } else {
            None
        };
        let Ok(len) = usize::try_from(len) else { break };
        if at + len > bytes.len() {
            break;
        }
        let payload = bytes[at..at + len]
            .iter()
            .enumerate()
            .map(|(i, b)| key.map_or(*b, |k| b ^ k[i % 4]))
            .collect();
        frames.push((opcode, payload));
        at += len;
    }
    frames
}

/// The code of the client's Close frame in `bytes`, if it sent one with a code.
pub fn client_close_code(bytes: &[u8]) -> Option<u16> {
    client_frames(bytes)
        .into_iter()
        .find(|(opcode, _)| *opcode == 0x8)
        .and_then(|(_, p)| (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]])))
}
