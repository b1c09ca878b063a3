//! Interop with Node `ws` (what browsers' peers, wscat and most Node servers run), installed
//! into `.peers/node` on first use: permessage-deflate from a real compressor that nobody
//! here wrote, and what tether writes as ws reads it off the wire.
//!
//! Every scenario takes `extra`, further tether arguments, so the same scenario runs again
//! with other flags (for example `--compress`, once tether compresses what it sends) in one
//! line. The server counts the frames each way on the raw socket (`wire` in
//! support/node.rs), so a test sees which messages were compressed, not only that they
//! arrived.

use base64::Engine;
use serde_json::Value;

use crate::support::Tether;
use crate::support::cmd::Run;
use crate::support::node::{NodePeer, NodeServer};

/// ws compresses every message, however small (its default threshold is 1 KiB).
const DEFLATE: &str = "{ perMessageDeflate: { threshold: 0 } }";
/// What ws agrees to when tether offers `client_no_context_takeover; client_max_window_bits`
/// and the server sets nothing.
const AGREED: &str = "permessage-deflate; client_no_context_takeover";

const WORDS: [&str; 16] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett",
    "kilo", "lima", "mike", "november", "oscar", "papa",
];
const SYMBOLS: [&str; 5] = ["ABC", "XYZW", "QQ", "MSFT", "N"];

/// The same generator in JavaScript, for the server: `words(seed, count)`, `feed(i)`.
fn generator_js() -> String {
    format!(
        r#"
const WORDS = {words};
const SYMBOLS = {symbols};
function lcg(x) {{ return (Math.imul(x, 1103515245) + 12345) >>> 0; }}
function words(seed, count) {{
  let x = seed >>> 0;
  const out = [];
  for (let k = 0; k < count; k++) {{ x = lcg(x); out.push(WORDS[(x >>> 16) % WORDS.length]); }}
  return out.join(' ');
}}
function feed(i) {{
  return `{{"seq":${{i}},"sym":"${{SYMBOLS[i % 5]}}","bid":${{10000 + (i * 37) % 1000}},"ask":${{10010 + (i * 37) % 1000}},"venue":"XNAS","flags":["regular","lit"],"note":"${{words(Math.imul(i, 2654435761), 8)}}"}}`;
}}
"#,
        words = serde_json::to_string(&WORDS).unwrap(),
        symbols = serde_json::to_string(&SYMBOLS).unwrap(),
    )
}

fn lcg(x: u32) -> u32 {
    x.wrapping_mul(1_103_515_245).wrapping_add(12_345)
}

/// `count` words picked from `WORDS` by a generator seeded with `seed`, space-separated:
/// text that compresses well and repeats at every distance.
fn words(seed: u32, count: usize) -> String {
    let mut x = seed;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        x = lcg(x);
        out.push(WORDS[(x >> 16) as usize % WORDS.len()]);
    }
    out.join(" ")
}

/// Line `i` of a market-data feed, as JSON: each differs, all look alike.
fn feed(i: u32) -> String {
    format!(
        r#"{{"seq":{i},"sym":"{}","bid":{},"ask":{},"venue":"XNAS","flags":["regular","lit"],"note":"{}"}}"#,
        SYMBOLS[i as usize % 5],
        10_000 + (i * 37) % 1000,
        10_010 + (i * 37) % 1000,
        words(i.wrapping_mul(2_654_435_761), 8)
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A Node `ws` server with `options` whose every connection runs `body` (JavaScript with
/// `ws` and the generator in scope) and, when it closes, reports the extensions agreed (ws
/// gives their names: `permessage-deflate` or empty) and the frames each way (`read`: tether's, `written`: the server's).
fn node(options: &str, body: &str) -> NodeServer {
    NodeServer::start(&format!(
        "{gen}\nvar OPTIONS = {options};\nfunction handler(ws) {{\n  const counts = wire(ws);\n  \
         ws.on('close', () => report({{ agreed: ws.extensions, ...counts }}));\n{body}\n}}\n",
        gen = generator_js()
    ))
}

/// tether in pipe mode against `server`, which sends on its own and then closes.
fn receive(server: &NodeServer, extra: &[&str]) -> Run {
    Tether::new()
        .args([server.url("/").as_str(), "--keep-open"])
        .args(extra)
        .run()
}

/// What the `connected` event of a `--json` run says was agreed.
fn agreed(run: &Run) -> Value {
    let events = run.json_events();
    let connected = events.iter().find(|e| e["event"] == "connected").unwrap();
    connected["compression"].clone()
}

/// The `message` events of a `--json` run, as `(type, data)`.
fn messages(run: &Run) -> Vec<(String, String)> {
    run.json_events()
        .iter()
        .filter(|e| e["event"] == "message")
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["data"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn text(s: &str) -> (String, String) {
    ("text".to_owned(), s.to_owned())
}

fn binary(bytes: &[u8]) -> (String, String) {
    (
        "binary".to_owned(),
        base64::engine::general_purpose::STANDARD.encode(bytes),
    )
}

/// ws sends feed lines 0..count under `options` and closes; tether must print each exactly,
/// in pipe mode and as `--json` messages, and report `agreement`. Returns the server's
/// report of the pipe-mode run.
fn feed_arrives_exactly(
    options: &str,
    count: u32,
    agreement: Option<&str>,
    extra: &[&str],
) -> Value {
    let server = node(
        options,
        &format!("for (let i = 0; i < {count}; i++) ws.send(feed(i));\nws.close(1000);"),
    );
    let lines: Vec<String> = (0..count).map(feed).collect();
    let expected: String = lines.iter().map(|l| format!("{l}\n")).collect();
    receive(&server, extra).code(0).stdout_is(&expected);
    let report = server.report(1);
    let run = receive(&server, &[extra, &["--json"][..]].concat());
    run.code(0);
    let agreement = agreement.map_or(Value::Null, Value::from);
    assert_eq!(agreed(&run), agreement, "{}", run.describe());
    assert_eq!(
        messages(&run),
        lines.iter().map(|l| text(l)).collect::<Vec<_>>()
    );
    report
}

#[test]
fn node_ws_is_installed_at_version_8() {
    assert!(
        NodePeer::ws_version().starts_with("8."),
        "{}",
        NodePeer::ws_version()
    );
}

#[test]
fn a_long_compressed_feed_with_context_takeover_arrives_exactly() {
    // 2,000 lines, each compressed with the context the ones before left.
    let report = feed_arrives_exactly(DEFLATE, 2000, Some(AGREED), &[]);
    assert_eq!(report["agreed"], "permessage-deflate");
    assert_eq!(report["written"]["frames"], 2000);
    assert_eq!(report["written"]["compressed"], 2000, "{report}");
    // The context carried over: the feed crossed the wire at a fraction of its size.
    let plain: usize = (0..2000).map(|i| feed(i).len()).sum();
    let wire = report["written"]["bytes"].as_u64().unwrap() as usize;
    assert!(wire * 4 < plain, "{wire} bytes on the wire for {plain}");
}

#[test]
fn server_no_context_takeover_from_ws_is_honoured() {
    let report = feed_arrives_exactly(
        "{ perMessageDeflate: { threshold: 0, serverNoContextTakeover: true } }",
        2000,
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        &[],
    );
    assert_eq!(report["written"]["compressed"], 2000, "{report}");
}

#[test]
fn every_server_max_window_bits_from_8_to_15_is_honoured() {
    // ws agrees to 8, but zlib has no 256-byte raw window and deflates with 512 bytes
    // (its matches reach at most 250 bytes back, so an 8-bit inflater still reads them).
    let big = words(99, 60_000);
    let feed: Vec<String> = (0..200).map(feed).collect();
    for bits in 8..=15 {
        let server = node(
            &format!("{{ perMessageDeflate: {{ threshold: 0, serverMaxWindowBits: {bits} }} }}"),
            "for (let i = 0; i < 200; i++) ws.send(feed(i));\nws.send(words(99, 60000));\n\
             ws.close(1000);",
        );
        let run = receive(&server, &["--json"]);
        run.code(0);
        assert_eq!(
            agreed(&run),
            format!("{AGREED}; server_max_window_bits={bits}"),
            "{}",
            run.describe()
        );
        let mut expected: Vec<_> = feed.iter().map(|l| text(l)).collect();
        expected.push(text(&big));
        assert!(
            messages(&run) == expected,
            "window bits {bits}: messages differ"
        );
        assert_eq!(server.report(1)["written"]["compressed"], 201);
    }
}

#[test]
fn fragmented_compressed_messages_from_ws_are_inflated_whole() {
    // ws compresses each fragment in turn; only a message's first frame carries RSV1.
    let server = node(
        DEFLATE,
        r#"
ws.send('x'.repeat(100000), { fin: false });
ws.send(words(1, 20000), { fin: false });
ws.send('end', { fin: true });
ws.send(Buffer.alloc(50000, 1), { binary: true, fin: false });
ws.send(Buffer.from(words(2, 1000)), { binary: true, fin: true });
ws.send(feed(0));
ws.close(1000);
"#,
    );
    let expected = format!(
        "{}{}end\n{}{}\n{}\n",
        "x".repeat(100_000),
        words(1, 20_000),
        "01".repeat(50_000),
        hex(words(2, 1000).as_bytes()),
        feed(0)
    );
    receive(&server, &["--binary-format", "hex"])
        .code(0)
        .stdout_is(&expected);
    let report = server.report(1);
    assert_eq!(report["written"]["frames"], 6, "{report}");
    assert_eq!(report["written"]["compressed"], 3, "{report}");
}

#[test]
fn uncompressed_messages_and_control_frames_between_compressed_ones_keep_the_context() {
    // Per message, ws may leave compression off (`compress: false`): the context carries on
    // over those. A Ping and an unasked Pong go between a compressed message's fragments.
    // The client_max_window_bits it answers concerns what tether would compress.
    let server = node(
        "{ perMessageDeflate: { threshold: 0, clientMaxWindowBits: 10, \
         clientNoContextTakeover: true } }",
        r#"
for (let i = 0; i < 400; i++) ws.send(feed(i), { compress: i % 3 === 0 });
ws.send(feed(400), { fin: false });
ws.ping('p1');
ws.send(feed(401), { fin: false });
ws.pong('unasked');
ws.send(feed(402), { fin: true });
ws.send(feed(403));
ws.close(1000);
"#,
    );
    let run = receive(&server, &["--json"]);
    run.code(0);
    assert_eq!(
        agreed(&run),
        format!("{AGREED}; client_max_window_bits=10"),
        "{}",
        run.describe()
    );
    let mut expected: Vec<_> = (0..400).map(|i| text(&feed(i))).collect();
    expected.push(text(&format!("{}{}{}", feed(400), feed(401), feed(402))));
    expected.push(text(&feed(403)));
    assert!(messages(&run) == expected, "messages differ");
    let report = server.report(1);
    assert_eq!(report["written"]["frames"], 404, "{report}");
    assert_eq!(report["written"]["compressed"], 134 + 2, "{report}");
    // The Ping, the Pong and the Close.
    assert_eq!(report["written"]["control"], 3, "{report}");
}

#[test]
fn compressed_text_and_binary_from_ws_keep_their_types() {
    let server = node(
        DEFLATE,
        r#"
for (let i = 0; i < 300; i++) {
  if (i % 2) ws.send(Buffer.from(feed(i)).map((b) => b ^ 0x5a), { binary: true });
  else ws.send(feed(i));
}
ws.close(1000);
"#,
    );
    let expected: Vec<_> = (0..300)
        .map(|i| {
            if i % 2 == 1 {
                let bytes: Vec<u8> = feed(i).bytes().map(|b| b ^ 0x5a).collect();
                binary(&bytes)
            } else {
                text(&feed(i))
            }
        })
        .collect();
    let run = receive(&server, &["--json"]);
    run.code(0);
    assert!(messages(&run) == expected, "messages differ");
    assert_eq!(server.report(1)["written"]["compressed"], 300);
}

#[test]
fn multi_megabyte_compressed_messages_from_ws_arrive_exactly() {
    // About 9 MB of text and 3 MiB of binary, each one message.
    let server = node(
        DEFLATE,
        "ws.send(words(3, 1500000));\n\
         ws.send(Buffer.alloc(3 << 20, 0x41), { binary: true });\nws.close(1000);",
    );
    let big = words(3, 1_500_000);
    let expected = format!("{big}\n{}\n", "A".repeat(3 << 20));
    receive(&server, &["--binary-format", "raw"])
        .code(0)
        .stdout_is(&expected);
    let report = server.report(1);
    assert_eq!(report["written"]["compressed"], 2, "{report}");
    let wire = report["written"]["bytes"].as_u64().unwrap() as usize;
    assert!(wire * 3 < big.len(), "{wire} bytes on the wire");
}

#[test]
fn empty_compressed_messages_from_ws_arrive_empty() {
    let server = node(
        DEFLATE,
        r#"
ws.send('');
ws.send(Buffer.alloc(0), { binary: true });
ws.send('after');
ws.send('', { fin: false });
ws.send('', { fin: true });
ws.send(feed(1));
ws.close(1000);
"#,
    );
    let run = receive(&server, &["--json"]);
    run.code(0);
    assert_eq!(
        messages(&run),
        [
            text(""),
            binary(b""),
            text("after"),
            text(""),
            text(&feed(1))
        ]
    );
    let report = server.report(1);
    assert_eq!(report["written"]["frames"], 6, "{report}");
    assert_eq!(report["written"]["compressed"], 5, "{report}");
    receive(&server, &[])
        .code(0)
        .stdout_is(&format!("\n\nafter\n\n{}\n", feed(1)));
}

#[test]
fn a_ws_server_without_compression_agrees_to_none() {
    // ws servers do not compress unless told to (perMessageDeflate defaults to false).
    let report = feed_arrives_exactly("{}", 300, None, &[]);
    assert_eq!(report["agreed"], "");
    assert_eq!(report["written"]["compressed"], 0);
}

#[test]
fn compression_off_offers_nothing_to_ws() {
    let server = node(DEFLATE, "ws.send(feed(7));\nws.close(1000);");
    let run = receive(&server, &["--json", "--compression", "off"]);
    run.code(0);
    assert_eq!(agreed(&run), Value::Null);
    assert_eq!(messages(&run), [text(&feed(7))]);
    let report = server.report(1);
    assert_eq!(report["agreed"], "");
    assert_eq!(report["written"]["compressed"], 0, "{report}");
}

#[test]
fn max_message_size_stops_a_compressed_message_from_ws() {
    // About 4 MB of text that crosses the wire in a few hundred KiB.
    let server = node(DEFLATE, "ws.send(words(4, 700000));\nws.close(1000);");
    let run = receive(&server, &["--max-message-size", "1MiB"]);
    run.code(10).stdout_is("");
    // Inflation stops just past the limit, so the size is what was inflated by then:
    // "at least", since the rest was never inflated.
    let line = run.error_line();
    let size: u64 = line
        .strip_prefix("tether: error: the server sent a message of at least ")
        .and_then(|rest| {
            rest.strip_suffix(" bytes, over --max-message-size (1048576 bytes); tether refused it")
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!((1_048_577..=2 << 20).contains(&size), "{line}");
}

/// tether sends `count` feed lines to a ws echo server (which compresses its echoes) with
/// `extra` arguments; every echo comes back exactly. Returns the server's report.
fn sent_to_ws(count: u32, extra: &[&str]) -> Value {
    sent_to_ws_with(DEFLATE, count, extra).0
}

/// [`sent_to_ws`] against a ws server with `options`, also returning tether's run.
fn sent_to_ws_with(options: &str, count: u32, extra: &[&str]) -> (Value, Run) {
    let server = node(
        options,
        "ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));",
    );
    let input: String = (0..count).map(|i| format!("{}\n", feed(i))).collect();
    let run = Tether::new()
        .arg(server.url("/"))
        .args(extra)
        .stdin(&input)
        .run();
    run.code(0).stdout_is(&input);
    let report = server.report(1);
    assert_eq!(report["read"]["frames"], count, "{report}");
    assert_eq!(report["written"]["compressed"], count, "{report}");
    (report, run)
}

/// What `-v` says was agreed and how tether sends: the rest of its `compression agreed:` line.
fn agreement_line(run: &Run) -> &str {
    run.stderr
        .lines()
        .find_map(|line| {
            line.split_once("compression agreed: ")
                .map(|(_, rest)| rest)
        })
        .unwrap_or_else(|| panic!("no agreement on stderr:\n{}", run.describe()))
}

#[test]
fn what_tether_sends_arrives_at_ws_uncompressed() {
    let report = sent_to_ws(1000, &[]);
    assert_eq!(report["agreed"], "permessage-deflate");
    assert_eq!(report["read"]["compressed"], 0, "{report}");
    let plain: u64 = (0..1000).map(|i| feed(i).len() as u64).sum();
    assert!(
        report["read"]["bytes"].as_u64().unwrap() > plain,
        "{report}"
    );
}

/// The feed lines 0..count, as many bytes as tether hands ws uncompressed.
fn plain_size(count: u32) -> u64 {
    (0..count).map(|i| feed(i).len() as u64).sum()
}

#[test]
fn with_compress_what_tether_sends_arrives_at_ws_compressed_with_its_context_kept() {
    let report = sent_to_ws(1000, &["--compress"]);
    assert_eq!(report["agreed"], "permessage-deflate");
    assert_eq!(report["read"]["compressed"], 1000, "{report}");
    // ws inflated each with the context the ones before left: a fraction of the size.
    let wire = report["read"]["bytes"].as_u64().unwrap();
    assert!(wire * 3 < plain_size(1000), "{report}");
}

#[test]
fn with_compress_a_ws_server_that_takes_no_client_context_reads_every_message() {
    // ws resets its inflater after each message: a compressor that kept its context
    // would send back-references ws cannot resolve, and ws would fail the connection.
    let (report, run) = sent_to_ws_with(
        "{ perMessageDeflate: { threshold: 0, clientNoContextTakeover: true } }",
        1000,
        &["--compress", "-v"],
    );
    assert_eq!(
        agreement_line(&run),
        "permessage-deflate; client_no_context_takeover (tether compresses what it sends)"
    );
    assert_eq!(report["read"]["compressed"], 1000, "{report}");
}

#[test]
fn with_compress_every_client_max_window_bits_ws_asks_for_is_honoured() {
    for bits in 9..=15 {
        let (report, run) = sent_to_ws_with(
            &format!("{{ perMessageDeflate: {{ threshold: 0, clientMaxWindowBits: {bits} }} }}"),
            300,
            &["--compress", "-v"],
        );
        assert_eq!(
            agreement_line(&run),
            format!(
                "permessage-deflate; client_max_window_bits={bits} (tether compresses what it sends)"
            )
        );
        assert_eq!(report["read"]["compressed"], 300, "bits {bits}: {report}");
    }
    // zlib has no raw deflater with a 256-byte window: tether sends uncompressed.
    let (report, run) = sent_to_ws_with(
        "{ perMessageDeflate: { threshold: 0, clientMaxWindowBits: 8 } }",
        300,
        &["--compress", "-v"],
    );
    assert_eq!(
        agreement_line(&run),
        "permessage-deflate; client_max_window_bits=8 (the server asks for \
         client_max_window_bits=8, which zlib cannot compress to, so tether sends uncompressed)"
    );
    assert_eq!(report["read"]["compressed"], 0, "{report}");
}

#[test]
fn an_aborting_ws_server_whose_pongs_follow_its_application_loses_nothing() {
    // The application handles each message a moment after ws read it (as one that writes
    // to a database would), in order. With autoPong false ws hands it the Pings too, and it
    // answers one after handling all before it: a Pong is proof of delivery. (With ws's
    // default, the Pong leaves at once, and what waits is lost when the connection dies:
    // change `autoPong` to true and this test fails.) Every 2,000th message over all
    // connections aborts the TCP connection instead of being handled.
    let server = NodeServer::start(
        r#"
var OPTIONS = { autoPong: false };
let count = 0;
function handler(ws) {
  let queue = Promise.resolve();
  const later = (work) => {
    queue = queue.then(() => new Promise((done) => setImmediate(done))).then(() => {
      if (ws.readyState === WebSocket.OPEN) work();
    });
  };
  ws.on('ping', (data) => later(() => ws.pong(data)));
  ws.on('message', (data) => later(() => {
    count += 1;
    if (count % 2000 === 0) ws.terminate();
    else report(Number(data.toString()));
  }));
}
"#,
    );
    let input: String = (1..=20_000).map(|i| format!("{i}\n")).collect();
    let run = Tether::new()
        .arg(server.url("/"))
        .args(["--backoff-initial", "10ms", "--backoff-max", "50ms"])
        .stdin(&input)
        .deadline(std::time::Duration::from_secs(120))
        .run();
    run.code(0);
    let mut seen = std::collections::BTreeSet::new();
    for id in server.reports() {
        seen.insert(id.as_u64().unwrap());
    }
    let missing: Vec<u64> = (1..=20_000).filter(|i| !seen.contains(i)).collect();
    assert!(
        missing.is_empty(),
        "{} of 20000 never reached the application, the first {:?}\n{}",
        missing.len(),
        &missing[..missing.len().min(10)],
        run.describe()
    );
    let reconnects = run.stderr.matches("reconnecting in").count();
    assert!(reconnects >= 9, "{}", run.describe());
}
