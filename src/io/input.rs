//! Reading stdin records on a thread of their own and queueing each as one
//! message. Blocking reads stay off the runtime, and a full queue simply
//! blocks this thread: that is the backpressure on stdin. The queue is full
//! when it holds enough messages or enough bytes (the supervisor's send
//! credit), so memory stays flat however large the records are.

use std::io::Read;

use bytes::{Bytes, BytesMut};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::config::InputConfig;
use crate::error::Error;
use crate::session::Payload;
use crate::supervisor::BlockingSender;
pub use crate::supervisor::NotQueued;

/// How stdin ended: the number of records read, or why reading stopped.
pub type InputEnd = Result<u64, Error>;

/// Starts the reader. At the end of input it asks the supervisor to drain,
/// and reports how input ended on the returned channel.
pub fn spawn(
    config: InputConfig,
    reader: impl Read + Send + 'static,
    sender: BlockingSender,
) -> (oneshot::Receiver<InputEnd>, NotQueued) {
    let (done_tx, done_rx) = oneshot::channel();
    let not_queued = NotQueued::default();
    let counter = not_queued.clone();
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let end = pump(config, reader, &sender, &counter);
            if end.is_ok() || matches!(end, Err(Error::Input(_))) {
                let _ = sender.drain();
            }
            let _ = done_tx.send(end);
        })
        .expect("spawning the stdin thread");
    (done_rx, not_queued)
}

/// Bytes asked of each read, at most and at least. Records are split off the
/// buffer they were read into and share it, so a line costs no allocation of
/// its own. The room read into is zeroed first: a producer that writes a line
/// at a time gets small reads, so that stays cheap.
const READ_SIZE: usize = 64 * 1024;
const MIN_READ_SIZE: usize = 4 * 1024;
/// A fresh buffer holds this much, so many small records share it.
const BUFFER_SIZE: usize = 128 * 1024;
/// A record at least this long gets an allocation of its own, of about its
/// size, rather than pinning a shared buffer for as long as it is queued or
/// in the replay window. One still incomplete at this length is read on into
/// a Vec sized after the previous long record, so a stream of large records
/// costs no growing and no copying.
const OWN_ALLOCATION: usize = 64 * 1024;
/// Records queued with one command, at most: a channel send per line was a
/// quarter of a round trip's CPU time.
const BATCH: usize = 64;

/// Records read and not yet handed to the supervisor. They go before any read
/// or wait that may block, so nothing read sits here while stdin is idle.
struct Batch<'a> {
    records: Vec<Payload>,
    /// Their bytes, which the send credit is charged for once they are sent.
    bytes: usize,
    sender: &'a BlockingSender,
    /// Counts the records from when they are read until they are handed over.
    not_queued: &'a NotQueued,
}

impl Batch<'_> {
    fn push(&mut self, payload: Payload) {
        self.bytes += payload.len();
        self.records.push(payload);
        self.not_queued.read(1);
    }

    /// False when the session is over: nobody is left to send to, and the
    /// records stay counted as not queued.
    fn send(&mut self) -> bool {
        let n = self.records.len();
        if n == 0 {
            return true;
        }
        self.bytes = 0;
        self.sender
            .send_batch(std::mem::take(&mut self.records), self.not_queued)
            .is_ok()
    }
}

fn pump(
    config: InputConfig,
    mut reader: impl Read,
    sender: &BlockingSender,
    not_queued: &NotQueued,
) -> InputEnd {
    if config.byte_stream {
        return pump_stream(reader, sender, not_queued, config.source);
    }
    let source = config.source;
    let mut buf = BytesMut::with_capacity(BUFFER_SIZE);
    // `buf[..searched]` holds no separator.
    let mut searched = 0;
    let mut records = 0u64;
    let mut eof = false;
    let mut read_size = MIN_READ_SIZE;
    let mut long_hint = 0;
    let mut batch = Batch {
        records: Vec::new(),
        bytes: 0,
        sender,
        not_queued,
    };
    loop {
        let record = match memchr::memchr(config.separator, &buf[searched..]) {
            Some(i) => {
                let mut record = buf.split_to(searched + i + 1);
                record.truncate(searched + i);
                searched = 0;
                seal(record)
            }
            None if eof && buf.is_empty() => {
                batch.send();
                return Ok(records);
            }
            None if eof => {
                searched = 0;
                seal(buf.split())
            }
            None if buf.len() >= OWN_ALLOCATION => {
                // Read no further while the budget is spent, so a large record
                // is not read while the last one is still queued.
                if !batch.send() {
                    return Ok(records);
                }
                sender.wait_for_room();
                searched = 0;
                let (record, end) = read_long(&mut reader, &mut buf, &config, &mut long_hint)?;
                eof = end;
                record
            }
            None => {
                if !batch.send() {
                    return Ok(records);
                }
                sender.wait_for_room();
                searched = buf.len();
                let n = fill(&mut reader, &mut buf, read_size, source)?;
                eof = n == 0;
                read_size = (2 * n).clamp(MIN_READ_SIZE, READ_SIZE);
                continue;
            }
        };
        records += 1;
        let record = if config.clean_lines {
            match clean_line(record) {
                Some(line) => line,
                None => continue,
            }
        } else {
            record
        };
        let payload = if config.binary {
            Payload::Binary(record)
        } else {
            match Utf8Bytes::try_from(record.clone()) {
                Ok(text) => Payload::Text(text),
                Err(_) => {
                    batch.send();
                    return Err(invalid_utf8(records, &config, &record));
                }
            }
        };
        if !sender.has_room(batch.bytes) {
            // The supervisor gives credit back only for what it has.
            if !batch.send() {
                return Ok(records);
            }
            sender.wait_for_room();
        }
        batch.push(payload);
        if batch.records.len() >= BATCH && !batch.send() {
            // The session is over; the records read along with these count
            // as not queued too.
            not_queued.read(unsent_records(config, &buf, eof));
            return Ok(records);
        }
    }
}

/// `-b`: what each read returns is one binary message, sent at once, so
/// bytes go out as they arrive and a message is at most [`READ_SIZE`].
/// Reads share a buffer as records do, and wait for the send credit as
/// lines do. Returns the number of messages.
fn pump_stream(
    mut reader: impl Read,
    sender: &BlockingSender,
    not_queued: &NotQueued,
    source: &str,
) -> InputEnd {
    let mut buf = BytesMut::with_capacity(BUFFER_SIZE);
    let mut read_size = MIN_READ_SIZE;
    let mut messages = 0u64;
    loop {
        sender.wait_for_room();
        let n = fill(&mut reader, &mut buf, read_size, source)?;
        if n == 0 {
            return Ok(messages);
        }
        // A slow producer's small reads cost small zeroed room.
        read_size = (2 * n).clamp(MIN_READ_SIZE, READ_SIZE);
        messages += 1;
        let mut batch = Batch {
            records: Vec::with_capacity(1),
            bytes: 0,
            sender,
            not_queued,
        };
        batch.push(Payload::Binary(buf.split().freeze()));
        if !batch.send() {
            return Ok(messages);
        }
    }
}

/// A text line without the `\r` of a CRLF ending; `None` when nothing is
/// left to send. (A lone `\r` at the very end of input counts as one too.)
fn clean_line(mut line: Bytes) -> Option<Bytes> {
    if line.last() == Some(&b'\r') {
        line.truncate(line.len() - 1);
    }
    (!line.is_empty()).then_some(line)
}

/// The messages the records left in `buf` would have been: the complete
/// ones, and at `eof` an unterminated last one, empty lines not counted
/// where they are not sent.
fn unsent_records(config: InputConfig, buf: &[u8], eof: bool) -> usize {
    let mut parts = buf.split(|&b| b == config.separator).peekable();
    let mut n = 0;
    while let Some(part) = parts.next() {
        let complete = parts.peek().is_some();
        if !complete && (!eof || part.is_empty()) {
            break;
        }
        let empty = part.is_empty() || part == b"\r";
        if !(config.clean_lines && empty) {
            n += 1;
        }
    }
    n
}

/// The record as a `Bytes`: a slice of the shared buffer, or a copy when
/// it is long.
fn seal(record: BytesMut) -> Bytes {
    if record.len() >= OWN_ALLOCATION {
        Bytes::copy_from_slice(&record)
    } else {
        record.freeze()
    }
}

/// Reads the rest of the long record that `buf` begins (and holds no
/// separator of) into a Vec of its own. What follows the record goes back
/// into `buf`. Returns the record, and whether input ended.
fn read_long(
    reader: &mut impl Read,
    buf: &mut BytesMut,
    config: &InputConfig,
    hint: &mut usize,
) -> Result<(Bytes, bool), Error> {
    let separator = config.separator;
    // Exactly the last long record's size (with its separator): if this one
    // has the same size, the last read ends at the separator.
    let mut long = Vec::with_capacity((*hint).max(buf.len() + READ_SIZE));
    long.extend_from_slice(buf);
    buf.clear();
    let mut size = READ_SIZE;
    loop {
        let len = long.len();
        if long.capacity() == len {
            // Longer than the last one: grow by half, not double.
            long.reserve_exact(size.max(len / 2));
        }
        long.resize(long.capacity().min(len + size), 0);
        let n = read_into(reader, &mut long[len..], config.source);
        long.truncate(len + *n.as_ref().unwrap_or(&0));
        let n = n?;
        size = (2 * n).clamp(MIN_READ_SIZE, READ_SIZE);
        let end = match memchr::memchr(separator, &long[len..]) {
            Some(i) => len + i,
            None if n == 0 => long.len(),
            None => continue,
        };
        if end < long.len() {
            buf.extend_from_slice(&long[end + 1..]);
        }
        long.truncate(end);
        *hint = end + 1;
        if long.capacity() - long.len() > READ_SIZE + long.len() / 8 {
            long.shrink_to_fit();
        }
        return Ok((Bytes::from(long), n == 0));
    }
}

/// Reads up to `size` bytes once into `buf`'s spare room (making some when it
/// runs low).
fn fill(
    reader: &mut impl Read,
    buf: &mut BytesMut,
    size: usize,
    source: &str,
) -> Result<usize, Error> {
    if buf.capacity() - buf.len() < READ_SIZE / 4 {
        // A new buffer takes over the partial record; the old one is freed
        // once the records split off it are sent.
        buf.reserve(BUFFER_SIZE);
    }
    let len = buf.len();
    buf.resize(buf.capacity().min(len + size), 0);
    let n = read_into(reader, &mut buf[len..], source);
    buf.truncate(len + *n.as_ref().unwrap_or(&0));
    n
}

fn read_into(reader: &mut impl Read, out: &mut [u8], source: &str) -> Result<usize, Error> {
    loop {
        match reader.read(out) {
            Ok(n) => return Ok(n),
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(Error::Input(format!("cannot read {source}: {err}"))),
        }
    }
}

fn invalid_utf8(record: u64, config: &InputConfig, bytes: &[u8]) -> Error {
    let source = config.source;
    let what = if config.separator == b'\n' {
        "line"
    } else {
        "record"
    };
    let at = std::str::from_utf8(bytes).map_or_else(|err| err.valid_up_to(), |_| bytes.len());
    let byte = bytes.get(at).copied().unwrap_or(0);
    Error::Input(format!(
        "{source} {what} {record} is not valid UTF-8 (byte 0x{byte:02x} at offset {at}); \
         it was not sent, nor was anything after it. Use --binary to send bytes as they are"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Command;

    /// The records a command queues, in order.
    fn records(command: Command) -> Vec<Payload> {
        match command {
            Command::Send(payload) => vec![payload],
            Command::SendMany(payloads) => payloads,
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Lines as pipe mode reads them by default, with `--verbatim`, and
    /// with `--binary`.
    const TEXT: InputConfig = InputConfig {
        binary: false,
        separator: b'\n',
        clean_lines: true,
        byte_stream: false,
        source: "stdin",
    };
    const VERBATIM: InputConfig = InputConfig {
        clean_lines: false,
        ..TEXT
    };
    const BINARY: InputConfig = InputConfig {
        binary: true,
        clean_lines: false,
        ..TEXT
    };

    fn read_all(input: &'static [u8], config: InputConfig) -> (Vec<Payload>, InputEnd) {
        let (tx, mut rx, _) = BlockingSender::for_tests(100, 1 << 20);
        let end = pump(config, input, &tx, &NotQueued::default());
        drop(tx);
        let mut payloads = Vec::new();
        while let Ok(cmd) = rx.try_recv() {
            payloads.extend(records(cmd));
        }
        (payloads, end)
    }

    fn texts(payloads: &[Payload]) -> Vec<String> {
        payloads
            .iter()
            .map(|p| match p {
                Payload::Text(t) => t.to_string(),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn each_line_is_one_message_and_a_last_unterminated_line_counts() {
        let (commands, end) = read_all(b"one\n\ntwo\r\nthree", VERBATIM);
        assert_eq!(texts(&commands), ["one", "", "two\r", "three"]);
        assert_eq!(end.unwrap(), 4);
    }

    #[test]
    fn text_lines_lose_the_cr_of_crlf_and_empty_lines_are_not_sent() {
        let (commands, end) = read_all(b"one\r\n\r\n\ntwo\r\r\n \r\nthree\r", TEXT);
        assert_eq!(texts(&commands), ["one", "two\r", " ", "three"]);
        // Line numbers (in diagnostics) count the lines not sent.
        assert_eq!(end.unwrap(), 6);
        let (commands, _) = read_all(b"ok\r\n\r\nbad \xff\r\n", TEXT);
        assert_eq!(texts(&commands), ["ok"]);
        let (_, end) = read_all(b"ok\r\n\r\nbad \xff\r\n", TEXT);
        assert!(end.unwrap_err().to_string().contains("line 3"));
    }

    #[test]
    fn binary_and_nul_records_are_sent_exactly() {
        let (payloads, _) = read_all(b"a\r\n\n\r\n", BINARY);
        let bytes: Vec<&[u8]> = payloads
            .iter()
            .map(|p| match p {
                Payload::Binary(b) => b.as_ref(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(bytes, [&b"a\r"[..], b"", b"\r"]);
        let nul = InputConfig {
            separator: 0,
            clean_lines: false,
            ..TEXT
        };
        let (payloads, _) = read_all(b"a\r\0\0\r\n\0", nul);
        assert_eq!(texts(&payloads), ["a\r", "", "\r\n"]);
    }

    #[test]
    fn records_left_unsent_are_counted_as_they_would_have_been_sent() {
        let buf = b"a\r\n\r\n\nb\nc";
        assert_eq!(unsent_records(TEXT, buf, false), 2);
        assert_eq!(unsent_records(TEXT, buf, true), 3);
        assert_eq!(unsent_records(VERBATIM, buf, false), 4);
        assert_eq!(unsent_records(VERBATIM, buf, true), 5);
        assert_eq!(unsent_records(VERBATIM, b"a\n", true), 1);
        assert_eq!(unsent_records(VERBATIM, b"", true), 0);
    }

    #[test]
    fn a_burst_of_lines_is_queued_in_few_commands_in_order() {
        let input: String = (0..200).map(|i| format!("{i}\n")).collect();
        let input: &'static [u8] = Box::leak(input.into_bytes().into_boxed_slice());
        let (tx, mut rx, _) = BlockingSender::for_tests(1000, 1 << 20);
        let config = TEXT;
        assert_eq!(
            pump(config, input, &tx, &NotQueued::default()).unwrap(),
            200
        );
        drop(tx);
        let mut commands = 0;
        let mut payloads = Vec::new();
        while let Ok(cmd) = rx.try_recv() {
            commands += 1;
            payloads.extend(records(cmd));
        }
        let expected: Vec<String> = (0..200).map(|i| i.to_string()).collect();
        assert_eq!(texts(&payloads), expected);
        assert!(commands <= 200 / BATCH + 1, "{commands} commands");
    }

    #[test]
    fn invalid_utf8_names_the_line_and_stops() {
        let (commands, end) = read_all(b"fine\nbad \xff here\nnever\n", TEXT);
        assert_eq!(texts(&commands), ["fine"]);
        let msg = end.unwrap_err().to_string();
        assert!(
            msg.contains("line 2") && msg.contains("0xff") && msg.contains("--binary"),
            "{msg}"
        );
    }

    #[test]
    fn reading_waits_while_the_send_credit_is_spent() {
        let (tx, mut rx, credit) = BlockingSender::for_tests(100, 10);
        let config = BINARY;
        let pump = std::thread::spawn(move || {
            pump(
                config,
                &b"1234567\n1234567\n1234567\n1234567\n"[..],
                &tx,
                &NotQueued::default(),
            )
        });
        // Each record takes 7 bytes; the third waits until the budget of 10
        // is no longer spent, and nothing but this loop gives bytes back.
        let mut received = 0;
        while received < 4 {
            let command = rx.blocking_recv().expect("a record");
            assert!(credit.used() <= 14, "{} bytes taken", credit.used());
            for payload in records(command) {
                credit.give(payload.len());
                received += 1;
            }
        }
        assert_eq!(pump.join().unwrap().unwrap(), 4);
        assert_eq!(credit.used(), 0);
    }

    /// Hands out its data a few bytes at a time, as a slow pipe would.
    struct Trickle(std::collections::VecDeque<u8>, usize);

    impl Read for Trickle {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.1.min(out.len()).min(self.0.len());
            for (slot, byte) in out.iter_mut().zip(self.0.drain(..n)) {
                *slot = byte;
            }
            Ok(n)
        }
    }

    #[test]
    fn records_split_across_reads_or_longer_than_the_buffer_arrive_whole() {
        let long: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut input = b"one\ntwo".to_vec();
        input.extend_from_slice(b"\n");
        input.extend_from_slice(&long);
        input.push(b'\n');
        input.extend_from_slice(&long[..70_000]);
        input.push(b'\n');
        input.extend_from_slice(&long);
        input.extend_from_slice(&long);
        input.extend_from_slice(b"\nlast");
        for step in [7, 1000, 100_000] {
            let (tx, mut rx, _) = BlockingSender::for_tests(100, usize::MAX);
            let config = BINARY;
            let reader = Trickle(input.iter().copied().collect(), step);
            let end = pump(config, reader, &tx, &NotQueued::default());
            assert_eq!(end.unwrap(), 6);
            let mut got = Vec::new();
            while let Ok(command) = rx.try_recv() {
                for payload in records(command) {
                    let Payload::Binary(b) = payload else {
                        panic!("expected binary")
                    };
                    got.push(b);
                }
            }
            assert_eq!(got.len(), 6, "step {step}");
            assert_eq!(got[0].as_ref(), b"one");
            assert_eq!(got[1].as_ref(), b"two");
            assert!(got[2].as_ref() == long.as_slice(), "step {step}");
            assert!(got[3].as_ref() == &long[..70_000], "step {step}");
            assert!(got[4].len() == 2 * long.len(), "step {step}");
            assert_eq!(got[5].as_ref(), b"last");
        }
    }

    #[test]
    fn a_byte_stream_sends_each_read_as_it_comes_and_at_most_64_kib() {
        let all: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for step in [1, 5000, 200_000] {
            // Nothing takes the messages until the end: they must fit the channel.
            let input = if step == 1 { &all[..1000] } else { &all[..] };
            let (tx, mut rx, _) = BlockingSender::for_tests(1000, usize::MAX);
            let config = InputConfig {
                byte_stream: true,
                ..BINARY
            };
            let reader = Trickle(input.iter().copied().collect(), step);
            let messages = pump(config, reader, &tx, &NotQueued::default()).unwrap();
            let mut got = Vec::new();
            let mut sizes = Vec::new();
            while let Ok(command) = rx.try_recv() {
                for payload in records(command) {
                    let Payload::Binary(b) = payload else {
                        panic!("expected binary")
                    };
                    sizes.push(b.len());
                    got.extend_from_slice(&b);
                }
            }
            assert!(got == input, "step {step}: the bytes differ");
            assert_eq!(sizes.len() as u64, messages);
            // Newlines, NULs and \r are bytes like any other.
            assert!(sizes.iter().all(|&n| n > 0 && n <= READ_SIZE && n <= step));
            if step == 1 {
                assert_eq!(messages, 1000, "one message a read");
            }
        }
    }

    #[test]
    fn binary_mode_keeps_bytes_as_they_are() {
        let (payloads, _) = read_all(b"\xff\x00\n", BINARY);
        assert!(matches!(&payloads[0], Payload::Binary(b) if b.as_ref() == b"\xff\x00"));
    }
}
