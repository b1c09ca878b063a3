//! `--compress` against a real permessage-deflate implementation: Python `websockets`,
//! whose server inflates what tether sends with the parameters it agreed to. The server
//! records each message it decoded and whether its frame had RSV1 set, so the tests check
//! exactly what arrived and how it was sent.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::python::PythonServer;
use crate::support::{FAST_BACKOFF, Tether, random_bytes};

/// One message as the server decoded it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Got {
    /// The connection (1, 2, ...).
    conn: u64,
    /// Whether its first frame had RSV1 set (`None`: no permessage-deflate agreed).
    rsv1: Option<bool>,
    binary: bool,
    data: Vec<u8>,
}

/// A server that records what it decodes into `log`, one JSON line a message, with
/// `extensions` (Python: the list for `serve`'s `extensions`, or `None` for its default
/// compression) and `compression` (`"deflate"` or `None`). With `abort_first`, the first
/// connection answers no Ping (so tether has nothing confirmed) and is cut (TCP reset) once
/// its first message is in.
fn recording(log: &Path, extensions: &str, compression: &str, abort_first: bool) -> PythonServer {
    let abort = if abort_first { "True" } else { "False" };
    PythonServer::start(&format!(
        r#"
import json
from websockets.extensions import permessage_deflate as pmd
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Opcode

_decode = pmd.PerMessageDeflate.decode
def decode(self, frame, *, max_size=None):
    if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
        self.__dict__.setdefault("rsv1s", []).append(frame.rsv1)
    return _decode(self, frame, max_size=max_size)
pmd.PerMessageDeflate.decode = decode

kwargs = {{"max_size": None, "compression": {compression}}}
if {extensions} is not None:
    kwargs["extensions"] = {extensions}
SERVE_KWARGS = kwargs
CONNS = [0]

async def handler(ws):
    CONNS[0] += 1
    conn = CONNS[0]
    deflate = [e for e in ws.protocol.extensions if isinstance(e, pmd.PerMessageDeflate)]
    if {abort} and conn == 1:
        send_frame = ws.protocol.send_frame
        ws.protocol.send_frame = lambda f: None if f.opcode is Opcode.PONG else send_frame(f)
    with open({log:?}, "a") as log:
        async for message in ws:
            rsv1 = deflate[0].rsv1s.pop(0) if deflate else None
            binary = isinstance(message, bytes)
            data = message.hex() if binary else message.encode().hex()
            log.write(json.dumps({{"conn": conn, "rsv1": rsv1, "binary": binary, "data": data}}) + "\n")
            log.flush()
            if {abort} and conn == 1:
                ws.transport.abort()
                return
"#,
        log = log.display().to_string(),
    ))
}

/// The messages in `log` once there are `count` (the server writes them as its handler
/// gets them, which may be after tether has closed).
fn recorded(log: &Path, count: usize) -> Vec<Got> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() >= count || Instant::now() > deadline {
            return lines
                .iter()
                .map(|line| {
                    let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
                    let hex = v["data"].as_str().unwrap();
                    Got {
                        conn: v["conn"].as_u64().unwrap(),
                        rsv1: v["rsv1"].as_bool(),
                        binary: v["binary"].as_bool().unwrap(),
                        data: (0..hex.len())
                            .step_by(2)
                            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                            .collect(),
                    }
                })
                .collect();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a first connection should have recorded for text `lines`, sent as `rsv1`.
fn texts(lines: &[String], rsv1: Option<bool>) -> Vec<Got> {
    lines
        .iter()
        .map(|line| Got {
            conn: 1,
            rsv1,
            binary: false,
            data: line.clone().into_bytes(),
        })
        .collect()
}

/// Lines of JSON like a feed's: alike, so each compresses against the ones before.
fn feed(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            format!(
                r#"{{"seq":{i},"symbol":"ABC{}","price":{}.{:02},"side":"{}"}}"#,
                i % 50,
                100 + i * 7919 % 10007 / 100,
                i % 100,
                if i % 3 == 0 { "sell" } else { "buy" }
            )
        })
        .collect()
}

/// Text of `len` hex digits that repeats itself once, `len / 2` bytes back: far enough that
/// a compressor using a bigger window than the server agreed to refers past its window,
/// and the server cannot inflate it.
fn repeating(len: usize, seed: u64) -> String {
    let half: String = random_bytes(len / 4, seed)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{half}{half}")
}

fn joined(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// The `connected` event's `compression` and `compressing`.
fn connected(run: &crate::support::cmd::Run) -> (serde_json::Value, serde_json::Value) {
    let events = run.json_events();
    let event = events.iter().find(|e| e["event"] == "connected").unwrap();
    (event["compression"].clone(), event["compressing"].clone())
}

#[test]
fn a_long_run_goes_compressed_with_the_context_kept() {
    // websockets' default asks for a 4 KiB window (client_max_window_bits=12); with the
    // factory's defaults, the full 32 KiB.
    let lines = feed(3000);
    for (extensions, agreed) in [
        (
            "None",
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
        ),
        ("[ServerPerMessageDeflateFactory()]", "permessage-deflate"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let server = recording(&log, extensions, "\"deflate\"", false);
        let run = Tether::new()
            .args([&server.url("/"), "--compress", "--json"])
            .stdin(joined(&lines))
            .run();
        run.code(0);
        assert_eq!(
            connected(&run),
            (agreed.into(), true.into()),
            "{}",
            run.describe()
        );
        assert_eq!(recorded(&log, lines.len()), texts(&lines, Some(true)));
    }
}

#[test]
fn client_no_context_takeover_resets_the_compressor_for_each_message() {
    // The server's inflater starts afresh for each message: a compressor that kept its
    // context would refer back into the message before, which the server cannot inflate
    // (it fails the connection with 1007).
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let server = recording(
        &log,
        "[ServerPerMessageDeflateFactory(client_no_context_takeover=True)]",
        "None",
        false,
    );
    let lines: Vec<String> = feed(200).into_iter().flat_map(|l| [l.clone(), l]).collect();
    let run = Tether::new()
        .args([&server.url("/"), "--compress", "-v"])
        .stdin(joined(&lines))
        .run();
    run.code(0).stderr_has(
        "compression agreed: permessage-deflate; client_no_context_takeover \
         (tether compresses what it sends)\n",
    );
    assert_eq!(recorded(&log, lines.len()), texts(&lines, Some(true)));
}

#[test]
fn the_window_the_server_asks_for_is_the_one_compressed_to() {
    // Each message repeats 8 KiB of hex 8 KiB back (and a longer one 20 KiB back): past
    // every window below 32 KiB, so only a compressor that honours the window is inflated.
    let lines: Vec<String> = (0..6)
        .map(|i| repeating(if i % 2 == 0 { 16_384 } else { 40_000 }, i))
        .collect();
    for bits in 9..=15 {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let server = recording(
            &log,
            &format!("[ServerPerMessageDeflateFactory(client_max_window_bits={bits})]"),
            "None",
            false,
        );
        let run = Tether::new()
            .args([&server.url("/"), "--compress", "--json"])
            .stdin(joined(&lines))
            .run();
        run.code(0);
        assert_eq!(
            connected(&run),
            (
                format!("permessage-deflate; client_max_window_bits={bits}").into(),
                true.into()
            ),
            "{}",
            run.describe()
        );
        assert_eq!(
            recorded(&log, lines.len()),
            texts(&lines, Some(true)),
            "client_max_window_bits={bits}"
        );
    }
}

#[test]
fn a_window_of_8_goes_uncompressed_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let server = recording(
        &log,
        "[ServerPerMessageDeflateFactory(client_max_window_bits=8)]",
        "None",
        false,
    );
    let lines = feed(100);
    let run = Tether::new()
        .args([&server.url("/"), "--compress", "-v"])
        .stdin(joined(&lines))
        .run();
    run.code(0).stderr_has(
        "compression agreed: permessage-deflate; client_max_window_bits=8 (the server asks for \
         client_max_window_bits=8, which zlib cannot compress to, so tether sends uncompressed)\n",
    );
    assert_eq!(recorded(&log, lines.len()), texts(&lines, Some(false)));
    let run = Tether::new()
        .args([&server.url("/"), "--compress", "--json"])
        .stdin("hi\n")
        .run();
    run.code(0);
    assert_eq!(
        connected(&run),
        (
            "permessage-deflate; client_max_window_bits=8".into(),
            false.into()
        )
    );
}

#[test]
fn a_server_that_declines_gets_everything_uncompressed() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let server = recording(&log, "None", "None", false);
    let lines = feed(100);
    let run = Tether::new()
        .args([&server.url("/"), "--compress", "--json"])
        .stdin(joined(&lines))
        .run();
    run.code(0);
    assert_eq!(connected(&run), (serde_json::Value::Null, false.into()));
    assert_eq!(recorded(&log, lines.len()), texts(&lines, None));
}

#[test]
fn large_and_empty_messages_text_and_binary_arrive_exact() {
    // A 3 MB text line and a 2 MB binary one, empty ones of each (--verbatim keeps an
    // empty line as a message), and small ones between.
    let big_text = repeating(3 << 20, 11);
    let mut big_binary = random_bytes(1 << 20, 12);
    big_binary.extend(big_binary.clone());
    big_binary.retain(|&b| b != b'\n');
    for binary in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let server = recording(&log, "None", "\"deflate\"", false);
        let messages: Vec<Vec<u8>> = if binary {
            vec![
                b"a".to_vec(),
                vec![],
                big_binary.clone(),
                vec![],
                b"b".to_vec(),
            ]
        } else {
            let big = big_text.clone().into_bytes();
            vec![b"a".to_vec(), vec![], big, vec![], "ü".as_bytes().to_vec()]
        };
        let input: Vec<u8> = messages
            .iter()
            .flat_map(|m| m.iter().copied().chain([b'\n']))
            .collect();
        let mut args = vec![server.url("/"), "--compress".into(), "--verbatim".into()];
        if binary {
            args.push("--binary".into());
        }
        Tether::new().args(args).stdin(input).run().code(0);
        let expected: Vec<Got> = messages
            .into_iter()
            .map(|data| Got {
                conn: 1,
                rsv1: Some(true),
                binary,
                data,
            })
            .collect();
        let got = recorded(&log, expected.len());
        assert_eq!(got.len(), expected.len(), "binary: {binary}");
        for (got, expected) in got.iter().zip(&expected) {
            assert!(
                got == expected,
                "binary: {binary}: {} bytes",
                expected.data.len()
            );
        }
    }
}

#[test]
fn a_replay_after_a_reconnect_is_compressed_afresh() {
    // The first connection confirms nothing and is cut once its first message is in:
    // everything is sent again on the second, compressed in the second's context (with the
    // first's, the server could not inflate it).
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let server = recording(&log, "None", "\"deflate\"", true);
    let lines: Vec<String> = feed(1000)
        .into_iter()
        .map(|l| format!("{l}{}", " ".repeat(1000)))
        .collect();
    let run = Tether::new()
        .args([&server.url("/"), "--compress"])
        .args(FAST_BACKOFF)
        .stdin(joined(&lines))
        .run();
    run.code(0).stderr_has("re-sending ");
    let got = recorded(&log, 1);
    let first: Vec<&Got> = got.iter().filter(|g| g.conn == 1).collect();
    assert_eq!(first.len(), 1, "{}", run.describe());
    // Everything arrives on the second connection, in order.
    let second = recorded(&log, 1 + lines.len());
    let second: Vec<Got> = second.into_iter().filter(|g| g.conn == 2).collect();
    assert_eq!(second.len(), lines.len());
    let expected: Vec<Got> = texts(&lines, Some(true))
        .into_iter()
        .map(|g| Got { conn: 2, ..g })
        .collect();
    assert!(
        second == expected,
        "the second connection's messages differ"
    );
}
