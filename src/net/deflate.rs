//! permessage-deflate (RFC 7692) beneath stock tokio-tungstenite, which has
//! no extensions: [`Inflating`] is the stream under it.
//!
//! During the upgrade it reads the server's answer itself and hands
//! tungstenite exactly the head, so a compressed frame that arrives in the
//! same read as the 101 is never seen raw. It then decides from the head's
//! `Sec-WebSocket-Extensions` what was agreed ([`negotiate`]). Without an
//! agreement it passes every byte through (one branch on the hot path).
//! With one, it parses the server's frames: control frames and uncompressed
//! messages pass through as they came; a message with RSV1 set is inflated
//! as it arrives (one raw-deflate context per connection, reset per message
//! when the server takes no context over) and handed on as plain frames of at
//! most 64 KiB, so tungstenite keeps checking UTF-8, fragmentation, close
//! codes and `--max-message-size` on the inflated stream. Inflation is
//! bounded by what tungstenite reads, and it stops once a message passes the
//! limit: a decompression bomb is an ordinary "message too big" with flat
//! memory. RSV1 where it does not belong (a control or continuation frame, or
//! without an agreement) reaches tungstenite as sent, which refuses it as a
//! protocol violation.
//!
//! What tether writes is compressed only with `--compress` ([`Deflater`],
//! one per connection, used by the supervisor as it hands a message to
//! tungstenite); otherwise it goes uncompressed (allowed: a message without
//! RSV1 is uncompressed).

use std::fmt;
use std::io::{self, Cursor};
use std::pin::Pin;
use std::task::{Context, Poll};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, ReadBuf};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame as WsFrame, FrameHeader};

/// What tether offers: it sends uncompressed, so the client side's
/// parameters only tell the server that tether keeps no state for it.
pub const OFFER: &str = "permessage-deflate; client_no_context_takeover; client_max_window_bits";
/// What tether offers with `--compress`: it keeps its compressor's context
/// unless the server answers `client_no_context_takeover`, and may be told a
/// smaller window (`client_max_window_bits=N`).
pub const OFFER_COMPRESSING: &str = "permessage-deflate; client_max_window_bits";

/// The most tungstenite accepts as a head (its own limit is 64 KiB); past
/// it, the bytes go through as they came and tungstenite refuses them.
const HEAD_MAX: usize = 64 * 1024;
/// An inflated message goes to tungstenite in frames of at most this much.
const CHUNK: usize = 64 * 1024;
/// Inflation pauses once this much waits for tungstenite to read.
const OUT_HIGH: usize = 128 * 1024;
/// How much is read from the socket at a time once frames are parsed.
const READ: usize = 64 * 1024;
/// RFC 7692 §7.2.2: the end of each compressed message, taken off by the sender.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The agreed permessage-deflate parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    pub server_max_window_bits: Option<u8>,
    pub client_max_window_bits: Option<u8>,
}

impl fmt::Display for Params {
    /// As a `Sec-WebSocket-Extensions` value: `permessage-deflate; …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("permessage-deflate")?;
        if self.server_no_context_takeover {
            f.write_str("; server_no_context_takeover")?;
        }
        if self.client_no_context_takeover {
            f.write_str("; client_no_context_takeover")?;
        }
        if let Some(bits) = self.server_max_window_bits {
            write!(f, "; server_max_window_bits={bits}")?;
        }
        if let Some(bits) = self.client_max_window_bits {
            write!(f, "; client_max_window_bits={bits}")?;
        }
        Ok(())
    }
}

/// What the server's `Sec-WebSocket-Extensions` values agree to, given
/// whether tether offered [`OFFER`]. `Err` says why the answer fails the
/// handshake (RFC 6455 §4.1, RFC 7692 §5 and §7.1).
pub fn negotiate(offered: bool, values: &[&[u8]]) -> Result<Option<Params>, String> {
    let mut agreed: Option<Params> = None;
    for value in values {
        let text = std::str::from_utf8(value)
            .map_err(|_| "its Sec-WebSocket-Extensions header is not ASCII text".to_owned())?;
        for extension in text.split(',') {
            let extension = extension.trim();
            if extension.is_empty() {
                continue;
            }
            let mut parts = extension.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            if !name.eq_ignore_ascii_case("permessage-deflate") || !offered {
                return Err(format!(
                    "the server's answer turns on a WebSocket extension tether did not offer \
                     (Sec-WebSocket-Extensions: {})",
                    text.trim()
                ));
            }
            if agreed.is_some() {
                return Err(format!(
                    "the server's answer turns on permessage-deflate more than once \
                     (Sec-WebSocket-Extensions: {})",
                    text.trim()
                ));
            }
            agreed = Some(parameters(parts).map_err(|why| {
                format!(
                    "the server's permessage-deflate answer is not acceptable: {why} \
                     (Sec-WebSocket-Extensions: {})",
                    text.trim()
                )
            })?);
        }
    }
    Ok(agreed)
}

fn parameters<'a>(parts: impl Iterator<Item = &'a str>) -> Result<Params, String> {
    let mut params = Params::default();
    let mut seen: Vec<String> = Vec::new();
    for part in parts {
        let (name, value) = match part.split_once('=') {
            Some((name, value)) => {
                let value = value.trim();
                let value = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value);
                (name.trim(), Some(value))
            }
            None => (part, None),
        };
        let name = name.to_ascii_lowercase();
        if seen.contains(&name) {
            return Err(format!("{name} is given twice"));
        }
        seen.push(name.clone());
        let flag = || match value {
            None => Ok(true),
            Some(_) => Err(format!("{name} takes no value")),
        };
        let bits = || -> Result<u8, String> {
            let value = value.ok_or_else(|| format!("{name} needs a value (8 to 15)"))?;
            match value.parse::<u8>() {
                Ok(bits @ 8..=15) if !value.starts_with('0') => Ok(bits),
                _ => Err(format!("{name}={value} is not a window size (8 to 15)")),
            }
        };
        match name.as_str() {
            "server_no_context_takeover" => params.server_no_context_takeover = flag()?,
            "client_no_context_takeover" => params.client_no_context_takeover = flag()?,
            "server_max_window_bits" => params.server_max_window_bits = Some(bits()?),
            "client_max_window_bits" => params.client_max_window_bits = Some(bits()?),
            "" => return Err("it has an empty parameter".into()),
            other => return Err(format!("tether did not offer the parameter {other}")),
        }
    }
    Ok(params)
}

/// How tether sends on a connection with `params` agreed, when it was asked
/// to compress: `Err` says why it sends uncompressed after all.
pub fn send_window(params: &Params) -> Result<u8, &'static str> {
    match params.client_max_window_bits {
        // zlib has no raw deflate with a 256-byte window (it would use 512,
        // which the server need not inflate); RFC 7692 lets any message go
        // uncompressed (RSV1 unset).
        Some(8) => Err(
            "the server asks for client_max_window_bits=8, which zlib cannot compress \
             to, so tether sends uncompressed",
        ),
        Some(bits) => Ok(bits),
        None => Ok(15),
    }
}

/// The compressor of one connection (`--compress`): each data message
/// becomes one frame with RSV1 set, its payload deflated with a sync flush
/// and the `00 00 ff ff` tail taken off (RFC 7692 §7.2.1). The context
/// carries over from message to message unless the server asked for
/// `client_no_context_takeover`.
pub struct Deflater {
    compress: Compress,
    reset: bool,
}

impl Deflater {
    /// For a connection that agreed to `params`; `None` when tether cannot
    /// compress to what was agreed ([`send_window`]).
    pub fn new(params: &Params) -> Option<Deflater> {
        let bits = send_window(params).ok()?;
        Some(Deflater {
            compress: Compress::new_with_window_bits(Compression::default(), false, bits),
            reset: params.client_no_context_takeover,
        })
    }

    /// `message` as it goes on the wire: a data message compressed into a
    /// frame with RSV1 set, anything else as it is.
    pub fn frame(&mut self, message: WsMessage) -> io::Result<WsMessage> {
        let (opcode, payload) = match &message {
            WsMessage::Text(text) => (Data::Text, self.deflate(text.as_bytes())?),
            WsMessage::Binary(data) => (Data::Binary, self.deflate(data)?),
            _ => return Ok(message),
        };
        let mut frame = WsFrame::message(payload, OpCode::Data(opcode), true);
        frame.header_mut().rsv1 = true;
        Ok(WsMessage::Frame(frame))
    }

    /// One message's payload, deflated, its tail off.
    fn deflate(&mut self, data: &[u8]) -> io::Result<Vec<u8>> {
        // Room for the worst case (incompressible data grows by about 5 bytes
        // per 64 KiB stored block, plus the flush), so a large message is not
        // copied into a doubled buffer: pages that stay unwritten cost no memory.
        let mut out = Vec::with_capacity(data.len() + data.len() / 1024 + 64);
        let start = self.compress.total_in();
        loop {
            let used = (self.compress.total_in() - start) as usize;
            if out.capacity() - out.len() < 64 {
                out.reserve((data.len() - used) / 2 + 4096);
            }
            self.compress
                .compress_vec(&data[used..], &mut out, FlushCompress::Sync)
                .map_err(|err| io::Error::other(format!("compressing a message failed: {err}")))?;
            // zlib's rule: a flush is complete once it leaves output room.
            if (self.compress.total_in() - start) as usize == data.len()
                && out.len() < out.capacity()
            {
                break;
            }
        }
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        if out.is_empty() {
            // zlib flushes nothing for nothing new; the receiver adds the tail,
            // so an empty stored block needs its header byte (RFC 7692 §7.2.3.6).
            out.push(0x00);
        }
        if self.reset {
            self.compress.reset();
        }
        Ok(out)
    }
}

/// Why the inflated stream broke: the server's compressed data does not
/// inflate. It reaches the supervisor inside tungstenite's I/O error.
#[derive(Debug)]
pub struct InflateError(pub String);

impl fmt::Display for InflateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InflateError {}

enum Mode {
    /// Reading the server's answer to the upgrade.
    Head { offered: bool },
    /// Everything as it came.
    Pass,
    /// Frames parsed, compressed messages inflated.
    Frames(Box<Inflater>),
}

/// The stream under tungstenite (see the module's comment).
pub struct Inflating<S> {
    inner: S,
    mode: Mode,
    max_message_size: usize,
    /// Read from `inner`, not yet processed (from `input_at`).
    input: Vec<u8>,
    input_at: usize,
    /// Ready for tungstenite (from `output_at`).
    output: Vec<u8>,
    output_at: usize,
    agreement: Result<Option<Params>, String>,
}

impl<S> Inflating<S> {
    /// `offered`: whether the request offers [`OFFER`].
    pub fn new(inner: S, offered: bool, max_message_size: usize) -> Inflating<S> {
        Inflating {
            inner,
            mode: Mode::Head { offered },
            max_message_size,
            input: Vec::new(),
            input_at: 0,
            output: Vec::new(),
            output_at: 0,
            agreement: Ok(None),
        }
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// What the server's 101 agreed to, once tungstenite has read it.
    pub fn agreement(&self) -> Result<Option<Params>, String> {
        self.agreement.clone()
    }

    /// The head is complete at `end`: decide what follows it.
    fn head_read(&mut self, offered: bool, end: usize) {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut response = httparse::Response::new(&mut headers);
        let switching = matches!(
            response.parse(&self.input),
            Ok(httparse::Status::Complete(_))
        ) && response.code == Some(101);
        if switching {
            let values: Vec<&[u8]> = response
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-extensions"))
                .map(|h| h.value)
                .collect();
            self.agreement = negotiate(offered, &values);
        }
        // The head goes to tungstenite; the rest waits.
        let rest = self.input.split_off(end);
        self.output = std::mem::replace(&mut self.input, rest);
        self.output_at = 0;
        self.input_at = 0;
        self.mode = match &self.agreement {
            Ok(Some(params)) if switching => Mode::Frames(Box::new(Inflater::new(
                params.clone(),
                self.max_message_size,
            ))),
            _ => {
                // Not compressed: what follows the head goes through as it came.
                let rest = std::mem::take(&mut self.input);
                self.output.extend_from_slice(&rest);
                Mode::Pass
            }
        };
    }
}

/// Reads what `inner` has into `input`'s end: `Ok(0)` at its end.
fn fill<S: AsyncRead + Unpin>(
    inner: &mut S,
    input: &mut Vec<u8>,
    cx: &mut Context<'_>,
    room: usize,
) -> Poll<io::Result<usize>> {
    let len = input.len();
    input.resize(len + room, 0);
    let mut buf = ReadBuf::new(&mut input[len..]);
    let poll = Pin::new(inner).poll_read(cx, &mut buf);
    let filled = buf.filled().len();
    input.truncate(len + filled);
    match poll {
        Poll::Ready(Ok(())) => Poll::Ready(Ok(filled)),
        Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
        Poll::Pending => Poll::Pending,
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Inflating<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.output_at < this.output.len() {
                let n = buf.remaining().min(this.output.len() - this.output_at);
                buf.put_slice(&this.output[this.output_at..this.output_at + n]);
                this.output_at += n;
                if this.output_at == this.output.len() {
                    this.output.clear();
                    this.output_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            match &mut this.mode {
                Mode::Pass => return Pin::new(&mut this.inner).poll_read(cx, buf),
                Mode::Head { offered } => {
                    let offered = *offered;
                    let read = match fill(&mut this.inner, &mut this.input, cx, 4096) {
                        Poll::Ready(Ok(n)) => n,
                        Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                        Poll::Pending => return Poll::Pending,
                    };
                    let mut headers = [httparse::EMPTY_HEADER; 128];
                    let mut response = httparse::Response::new(&mut headers);
                    match response.parse(&this.input) {
                        Ok(httparse::Status::Complete(end)) => this.head_read(offered, end),
                        Ok(httparse::Status::Partial)
                            if read > 0 && this.input.len() <= HEAD_MAX => {}
                        // Not HTTP, too long, or cut short: tungstenite says so.
                        _ => {
                            this.output = std::mem::take(&mut this.input);
                            this.output_at = 0;
                            this.mode = Mode::Pass;
                            if this.output.is_empty() {
                                return Poll::Ready(Ok(()));
                            }
                        }
                    }
                }
                Mode::Frames(inflater) => {
                    let used = inflater.process(&this.input[this.input_at..], &mut this.output);
                    this.input_at += used;
                    if this.input_at == this.input.len() {
                        this.input.clear();
                        this.input_at = 0;
                    }
                    if !this.output.is_empty() {
                        continue;
                    }
                    if let Some(why) = &inflater.failed {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            InflateError(why.clone()),
                        )));
                    }
                    if this.input_at > 0 {
                        this.input.drain(..this.input_at);
                        this.input_at = 0;
                    }
                    match fill(&mut this.inner, &mut this.input, cx, READ) {
                        Poll::Ready(Ok(0)) => return Poll::Ready(Ok(())),
                        Poll::Ready(Ok(_)) => {}
                        Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                        Poll::Pending => return Poll::Pending,
                    }
                }
            }
        }
    }
}

write_through!(Inflating);

/// Where the parser is within the server's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    /// At a frame's header.
    Header,
    /// Within a payload passed through as it came.
    Raw(u64),
    /// Within a compressed payload; `fin`: the message's last frame.
    Compressed { remaining: u64, fin: bool },
    /// The message's compressed payload is all in; its tail goes in.
    Tail(usize),
    /// The header did not parse: the rest goes through and tungstenite
    /// says what is wrong with it.
    Broken,
}

/// The compressed message being inflated.
struct Message {
    opcode: Data,
    /// Whether its first frame went to tungstenite.
    started: bool,
    /// Inflated so far.
    size: usize,
}

/// The frame parser and the inflater of one negotiated connection.
struct Inflater {
    params: Params,
    max_message_size: usize,
    inflate: Decompress,
    frame: Frame,
    message: Option<Message>,
    /// An uncompressed fragmented message is under way (its continuations
    /// pass through).
    plain: bool,
    /// The inflated bytes not yet framed: `chunk[..filled]`. Always
    /// [`CHUNK`] long, so it is zeroed once, not before every inflate call.
    chunk: Vec<u8>,
    filled: usize,
    /// The last inflate call filled `chunk`: more may be waiting in it.
    more: bool,
    failed: Option<String>,
}

impl Inflater {
    fn new(params: Params, max_message_size: usize) -> Inflater {
        Inflater {
            params,
            max_message_size,
            // A raw inflater with the largest window reads any smaller one,
            // so server_max_window_bits needs nothing here.
            inflate: Decompress::new(false),
            frame: Frame::Header,
            message: None,
            plain: false,
            chunk: vec![0; CHUNK],
            filled: 0,
            more: false,
            failed: None,
        }
    }

    /// Turns what `input` holds into frames for tungstenite on `output`,
    /// until `output` holds [`OUT_HIGH`] or `input` runs out; says how much
    /// of `input` it used.
    fn process(&mut self, input: &[u8], output: &mut Vec<u8>) -> usize {
        let mut used = 0;
        while output.len() < OUT_HIGH && self.failed.is_none() {
            let rest = &input[used..];
            match self.frame {
                Frame::Header => {
                    let mut cursor = Cursor::new(rest);
                    match FrameHeader::parse(&mut cursor) {
                        Ok(Some((header, length))) => {
                            let end = cursor.position() as usize;
                            self.start(&header, length, &rest[..end], output);
                            used += end;
                        }
                        Ok(None) => break,
                        Err(_) => self.frame = Frame::Broken,
                    }
                }
                Frame::Raw(remaining) => {
                    let n = (remaining.min(rest.len() as u64) as usize).min(OUT_HIGH);
                    if n == 0 && remaining > 0 {
                        break;
                    }
                    output.extend_from_slice(&rest[..n]);
                    used += n;
                    self.frame = match remaining - n as u64 {
                        0 => Frame::Header,
                        left => Frame::Raw(left),
                    };
                }
                Frame::Broken => {
                    output.extend_from_slice(rest);
                    used += rest.len();
                    break;
                }
                Frame::Compressed { remaining, fin } => {
                    let n = remaining.min(rest.len() as u64) as usize;
                    if n == 0 && remaining > 0 {
                        break;
                    }
                    let consumed = self.inflate(&rest[..n], output);
                    used += consumed;
                    let left = remaining - consumed as u64;
                    if left > 0 || self.more {
                        self.frame = Frame::Compressed {
                            remaining: left,
                            fin,
                        };
                        if consumed < n || self.more {
                            // Paused on output (or over the limit).
                            continue;
                        }
                        break;
                    }
                    self.frame = if fin { Frame::Tail(0) } else { Frame::Header };
                }
                Frame::Tail(at) => {
                    let consumed = self.inflate(&TAIL[at..], output);
                    let at = at + consumed;
                    self.frame = Frame::Tail(at);
                    if at < TAIL.len() || self.more {
                        continue;
                    }
                    self.finish(output);
                    self.frame = Frame::Header;
                }
            }
        }
        used
    }

    /// A frame's header: decides what its payload is.
    fn start(&mut self, header: &FrameHeader, length: u64, raw: &[u8], output: &mut Vec<u8>) {
        let clean = !header.rsv2 && !header.rsv3 && header.mask.is_none();
        let fits = length <= self.max_message_size as u64;
        let compressed = match header.opcode {
            OpCode::Data(data @ (Data::Text | Data::Binary))
                if header.rsv1 && clean && fits && self.message.is_none() && !self.plain =>
            {
                self.message = Some(Message {
                    opcode: data,
                    started: false,
                    size: 0,
                });
                true
            }
            OpCode::Data(Data::Continue) => self.message.is_some() && !header.rsv1 && clean && fits,
            _ => false,
        };
        if compressed {
            self.frame = Frame::Compressed {
                remaining: length,
                fin: header.is_final,
            };
            return;
        }
        if let OpCode::Data(data) = header.opcode {
            // A new message while a compressed one is under way: the part
            // inflated so far goes first, so tungstenite sees the mix-up.
            if self.message.is_some() {
                self.emit(false, output);
            }
            match data {
                Data::Text | Data::Binary => self.plain = !header.is_final,
                Data::Continue if header.is_final => self.plain = false,
                _ => {}
            }
        }
        output.extend_from_slice(raw);
        self.frame = if length == 0 {
            Frame::Header
        } else {
            Frame::Raw(length)
        };
    }

    /// Inflates from `data` into `chunk`, framing each full chunk; stops
    /// when `output` is full or the message is past the limit. Says how much
    /// of `data` it used.
    fn inflate(&mut self, data: &[u8], output: &mut Vec<u8>) -> usize {
        let mut used = 0;
        loop {
            if self.filled == CHUNK {
                self.emit(false, output);
            }
            let over = self
                .message
                .as_ref()
                .is_some_and(|m| m.size > self.max_message_size);
            if over {
                // tungstenite has refused the message by now (it got more
                // than the limit); inflating more would only burn CPU.
                self.emit(false, output);
                self.failed = Some(format!(
                    "a compressed message inflates to more than --max-message-size ({} bytes)",
                    self.max_message_size
                ));
                self.more = false;
                return used;
            }
            if output.len() >= OUT_HIGH || (used == data.len() && !self.more) {
                return used;
            }
            let (before_in, before_out) = (self.inflate.total_in(), self.inflate.total_out());
            let start = self.filled;
            let result = self.inflate.decompress(
                &data[used..],
                &mut self.chunk[start..],
                FlushDecompress::None,
            );
            let produced = (self.inflate.total_out() - before_out) as usize;
            let consumed = (self.inflate.total_in() - before_in) as usize;
            self.filled = start + produced;
            used += consumed;
            if let Some(message) = &mut self.message {
                message.size += produced;
            }
            let ended = match result {
                Err(err) => {
                    self.fail(&err.to_string());
                    return used;
                }
                // A final block ends the context: what follows starts afresh.
                Ok(Status::StreamEnd) => {
                    self.inflate.reset(false);
                    true
                }
                Ok(_) => false,
            };
            self.more = self.filled == CHUNK;
            if consumed == 0 && produced == 0 && !self.more && !ended {
                if used < data.len() {
                    self.fail("the inflater is stuck");
                }
                return used;
            }
        }
    }

    fn fail(&mut self, why: &str) {
        self.failed = Some(format!(
            "the server sent a compressed message that does not inflate ({why})"
        ));
        self.more = false;
    }

    /// The inflated bytes so far as one frame.
    fn emit(&mut self, last: bool, output: &mut Vec<u8>) {
        let Some(message) = &mut self.message else {
            return;
        };
        let header = FrameHeader {
            is_final: last,
            opcode: OpCode::Data(if message.started {
                Data::Continue
            } else {
                message.opcode
            }),
            ..FrameHeader::default()
        };
        message.started = true;
        // Writing to a Vec cannot fail.
        let _ = header.format(self.filled as u64, output);
        output.extend_from_slice(&self.chunk[..self.filled]);
        self.filled = 0;
    }

    /// The message is all inflated.
    fn finish(&mut self, output: &mut Vec<u8>) {
        self.emit(true, output);
        self.message = None;
        if self.params.server_no_context_takeover {
            self.inflate.reset(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agree(offered: bool, value: &str) -> Result<Option<Params>, String> {
        negotiate(offered, &[value.as_bytes()])
    }

    #[test]
    fn answers_are_checked_against_the_offer() {
        assert_eq!(
            agree(true, "permessage-deflate"),
            Ok(Some(Params::default()))
        );
        let params = agree(
            true,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=9; client_max_window_bits=\"15\"",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            params.to_string(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=9; client_max_window_bits=15"
        );
        assert_eq!(negotiate(true, &[]), Ok(None));
        for (value, why) in [
            (
                "permessage-deflate; server_max_window_bits",
                "server_max_window_bits needs a value (8 to 15)",
            ),
            (
                "permessage-deflate; server_max_window_bits=16",
                "server_max_window_bits=16 is not a window size (8 to 15)",
            ),
            (
                "permessage-deflate; server_max_window_bits=09",
                "server_max_window_bits=09 is not a window size (8 to 15)",
            ),
            (
                "permessage-deflate; server_no_context_takeover=1",
                "server_no_context_takeover takes no value",
            ),
            (
                "permessage-deflate; x_foo",
                "tether did not offer the parameter x_foo",
            ),
            (
                "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
                "server_no_context_takeover is given twice",
            ),
        ] {
            let err = agree(true, value).unwrap_err();
            assert_eq!(
                err,
                format!(
                    "the server's permessage-deflate answer is not acceptable: {why} \
                     (Sec-WebSocket-Extensions: {value})"
                )
            );
        }
        assert_eq!(
            agree(false, "permessage-deflate").unwrap_err(),
            "the server's answer turns on a WebSocket extension tether did not offer \
             (Sec-WebSocket-Extensions: permessage-deflate)"
        );
        assert!(agree(true, "x-webkit-deflate-frame").is_err());
        assert!(agree(true, "permessage-deflate, permessage-deflate").is_err());
    }

    /// `payload` deflated as a sender would put it in a message (the tail off).
    fn deflated(payload: &[u8], compress: &mut flate2::Compress) -> Vec<u8> {
        let mut out = Vec::with_capacity(payload.len() + 64);
        compress
            .compress_vec(payload, &mut out, flate2::FlushCompress::Sync)
            .unwrap();
        assert!(out.ends_with(&TAIL));
        out.truncate(out.len() - 4);
        out
    }

    fn frame(opcode: Data, fin: bool, rsv1: bool, payload: &[u8]) -> Vec<u8> {
        let header = FrameHeader {
            is_final: fin,
            rsv1,
            opcode: OpCode::Data(opcode),
            ..FrameHeader::default()
        };
        let mut out = Vec::new();
        header.format(payload.len() as u64, &mut out).unwrap();
        out.extend_from_slice(payload);
        out
    }

    /// The frames tungstenite would see: (opcode, fin, payload).
    fn frames(mut bytes: &[u8]) -> Vec<(OpCode, bool, Vec<u8>)> {
        let mut frames = Vec::new();
        while !bytes.is_empty() {
            let mut cursor = Cursor::new(bytes);
            let (header, length) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
            let start = cursor.position() as usize;
            let end = start + length as usize;
            frames.push((header.opcode, header.is_final, bytes[start..end].to_vec()));
            bytes = &bytes[end..];
        }
        frames
    }

    /// Runs `input` through an inflater a few bytes at a time.
    fn run(inflater: &mut Inflater, input: &[u8], step: usize) -> Vec<u8> {
        let mut output = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        for piece in input.chunks(step) {
            pending.extend_from_slice(piece);
            loop {
                let mut out = Vec::new();
                let used = inflater.process(&pending, &mut out);
                pending.drain(..used);
                if out.is_empty() {
                    break;
                }
                output.extend_from_slice(&out);
            }
        }
        assert!(pending.is_empty());
        output
    }

    #[test]
    fn compressed_messages_become_plain_frames_across_continuations() {
        let mut compress = flate2::Compress::new(flate2::Compression::default(), false);
        // Varied enough that only the window makes the second copy small.
        let text: Vec<u8> = (0..1500u32)
            .flat_map(|i| format!("{{\"n\":{i},\"v\":{}}}", i * 7919 % 10007).into_bytes())
            .collect();
        let big = b"{\"price\": 1, \"symbol\": \"ABC\"} ".repeat(5000);
        let whole = deflated(&text, &mut compress);
        let (a, b) = whole.split_at(whole.len() / 2);
        let mut input = frame(Data::Text, false, true, a);
        input.extend(frame(Data::Continue, true, false, b));
        // Context taken over: the second message refers to the first.
        let again = deflated(&text, &mut compress);
        assert!(again.len() < whole.len() / 4);
        input.extend(frame(Data::Binary, true, true, &again));
        input.extend(frame(Data::Text, true, false, b"plain"));
        input.extend(frame(
            Data::Text,
            true,
            true,
            &deflated(&big, &mut compress),
        ));
        for step in [1, 7, 4096, input.len()] {
            let mut inflater = Inflater::new(Params::default(), 1 << 20);
            let out = frames(&run(&mut inflater, &input, step));
            let mut messages: Vec<(OpCode, Vec<u8>)> = Vec::new();
            for (opcode, fin, payload) in out {
                assert!(payload.len() <= CHUNK);
                match opcode {
                    OpCode::Data(Data::Continue) => messages.last_mut().unwrap().1.extend(payload),
                    _ => messages.push((opcode, payload)),
                }
                let _ = fin;
            }
            assert_eq!(
                messages,
                [
                    (OpCode::Data(Data::Text), text.clone()),
                    (OpCode::Data(Data::Binary), text.clone()),
                    (OpCode::Data(Data::Text), b"plain".to_vec()),
                    (OpCode::Data(Data::Text), big.clone()),
                ],
                "step {step}"
            );
        }
    }

    #[test]
    fn what_the_deflater_sends_inflates_back_with_the_agreed_context() {
        let text = b"{\"price\": 1, \"symbol\": \"ABC\"} ".repeat(300);
        let sent = [
            WsMessage::text(String::from_utf8(text.clone()).unwrap()),
            WsMessage::text(String::from_utf8(text.clone()).unwrap()),
            WsMessage::binary(vec![0u8, 1, 2, 255]),
            WsMessage::text(""),
            WsMessage::binary(Vec::new()),
        ];
        let mut sizes = Vec::new();
        for (reset, bits) in [(false, None), (true, None), (false, Some(9))] {
            let params = Params {
                client_no_context_takeover: reset,
                client_max_window_bits: bits,
                ..Params::default()
            };
            let mut deflater = Deflater::new(&params).unwrap();
            let mut wire = Vec::new();
            let mut lengths = Vec::new();
            for message in &sent {
                let WsMessage::Frame(out) = deflater.frame(message.clone()).unwrap() else {
                    panic!("not compressed");
                };
                let header = out.header();
                assert!(header.rsv1 && header.is_final && !header.rsv2 && !header.rsv3);
                lengths.push(out.payload().len());
                let OpCode::Data(opcode) = header.opcode else {
                    panic!("not data");
                };
                wire.extend(frame(opcode, true, true, out.payload()));
            }
            // The receiving side's view of the same agreement.
            let theirs = Params {
                server_no_context_takeover: reset,
                server_max_window_bits: bits,
                ..Params::default()
            };
            let mut inflater = Inflater::new(theirs, 1 << 20);
            let got: Vec<(OpCode, Vec<u8>)> = frames(&run(&mut inflater, &wire, 5))
                .into_iter()
                .map(|(opcode, _, payload)| (opcode, payload))
                .collect();
            assert_eq!(
                got,
                [
                    (OpCode::Data(Data::Text), text.clone()),
                    (OpCode::Data(Data::Text), text.clone()),
                    (OpCode::Data(Data::Binary), vec![0, 1, 2, 255]),
                    (OpCode::Data(Data::Text), vec![]),
                    (OpCode::Data(Data::Binary), vec![]),
                ]
            );
            sizes.push(lengths);
        }
        // With the context kept, the repeat is smaller than the first;
        // reset, it is as big.
        assert!(sizes[0][1] < sizes[0][0] * 2 / 3, "{sizes:?}");
        assert_eq!(sizes[1][1], sizes[1][0], "{sizes:?}");
        // Control frames go as they are.
        let mut deflater = Deflater::new(&Params::default()).unwrap();
        let ping = WsMessage::Ping(vec![1u8].into());
        assert_eq!(deflater.frame(ping.clone()).unwrap(), ping);
        // A window of 256 bytes: nothing to compress with.
        let eight = Params {
            client_max_window_bits: Some(8),
            ..Params::default()
        };
        assert!(Deflater::new(&eight).is_none());
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let mut compress = flate2::Compress::new(flate2::Compression::best(), false);
        let zeros = vec![0u8; 1 << 20];
        let mut payload = Vec::new();
        for _ in 0..64 {
            compress
                .compress_vec(&zeros, &mut payload, flate2::FlushCompress::None)
                .unwrap();
            payload.reserve(1 << 16);
        }
        let input = frame(Data::Binary, true, true, &payload);
        let mut inflater = Inflater::new(Params::default(), 1 << 20);
        let mut inflated = 0;
        let mut at = 0;
        loop {
            let mut out = Vec::new();
            at += inflater.process(&input[at..], &mut out);
            inflated += out.len();
            if out.is_empty() {
                break;
            }
        }
        assert!(inflater.failed.is_some());
        assert!(inflated < (1 << 20) + 2 * CHUNK + 64, "{inflated}");
    }

    async fn read_all(mut stream: Inflating<&[u8]>) -> (Vec<u8>, Result<Option<Params>, String>) {
        use tokio::io::AsyncReadExt;
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.unwrap();
        (out, stream.agreement())
    }

    #[tokio::test]
    async fn the_head_goes_through_and_a_frame_in_the_same_read_is_inflated() {
        let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                     Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n";
        // RFC 7692 §7.2.3.1: "Hello", compressed.
        let hello = frame(
            Data::Text,
            true,
            true,
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
        );
        let wire = [&head[..], &hello].concat();
        let (out, agreed) = read_all(Inflating::new(&wire[..], true, 1 << 20)).await;
        assert_eq!(
            out,
            [&head[..], &frame(Data::Text, true, false, b"Hello")].concat()
        );
        let params = agreed.unwrap().unwrap();
        assert!(params.server_no_context_takeover);

        // Not offered: the answer is refused, and nothing is touched.
        let (out, agreed) = read_all(Inflating::new(&wire[..], false, 1 << 20)).await;
        assert_eq!(out, wire);
        assert!(agreed.is_err());

        // No agreement: every byte as it came (tungstenite refuses the RSV1).
        let plain = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
        let wire = [&plain[..], &hello].concat();
        let (out, agreed) = read_all(Inflating::new(&wire[..], true, 1 << 20)).await;
        assert_eq!(out, wire);
        assert_eq!(agreed, Ok(None));
    }
}
