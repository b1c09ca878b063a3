//! Hostile servers: peers that break HTTP or the WebSocket protocol on purpose. Each one
//! must get one clear line on stderr, the exit code the README documents, no panic, a
//! reconnect only where the reconnect table says so, and memory that stays bounded.

use std::time::Duration;

use crate::support::cmd::Run;
use crate::support::hostile::{
    Hostile, Step, client_close_code, close_payload, frame, frame_header, masked_frame,
};
use crate::support::{FAST_BACKOFF, Tether};

/// First bytes of frames: FIN plus the opcode.
const TEXT: u8 = 0x81;
const BINARY: u8 = 0x82;
const CONTINUATION: u8 = 0x00;
const CLOSE: u8 = 0x88;
const PING: u8 = 0x89;
const RSV1: u8 = 0x40;
const NOT_FIN: u8 = 0x7f;

/// The common checks: the exit code, one `error:` line naming the problem, no panic.
#[track_caller]
fn fails_with(run: &Run, code: i32, problem: &str) {
    run.code(code).stderr_lacks("panicked");
    let errors = run.error_lines();
    assert_eq!(errors.len(), 1, "one error line\n{}", run.describe());
    assert!(
        errors[0].contains(problem),
        "the error line does not say {problem:?}\n{}",
        run.describe()
    );
}

/// A broken server is not retried: one connection, no "reconnecting" line, even though
/// tether reconnects without limit after a connection that worked.
fn not_retried(server: &Hostile, run: &Run) {
    run.stderr_lacks("reconnecting");
    let conns = server.wait_until(Duration::from_secs(10), |c| !c.is_empty());
    assert_eq!(conns.len(), 1, "{}", run.describe());
}

/// tether failed the connection with a Close frame carrying `code`, as RFC 6455 asks.
fn closed_with(server: &Hostile, code: u16) {
    let conns = server.wait_until(Duration::from_secs(10), |c| {
        c.first().is_some_and(|c| c.hung_up)
    });
    assert_eq!(client_close_code(&conns[0].after), Some(code), "{conns:?}");
}

/// Answers the upgrade properly, sends `bytes`, then reads until tether hangs up.
fn after_handshake(bytes: Vec<u8>) -> Hostile {
    Hostile::start(vec![Step::Accept, Step::Send(bytes), Step::Drain])
}

/// tether against `server`, reconnecting after a working connection (the default).
fn tether(server: &Hostile) -> Tether {
    Tether::new().arg(server.url("/")).args(FAST_BACKOFF)
}

// ---------------------------------------------------------------------------------------
// The handshake
// ---------------------------------------------------------------------------------------

#[test]
fn an_http_server_that_is_not_a_websocket_server_is_rejected() {
    let server = Hostile::start(vec![
        Step::ReadRequest,
        Step::Send(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 22\r\n\
              Connection: close\r\n\r\n<html>a web page</html>"
                .to_vec(),
        ),
    ]);
    let run = tether(&server).args(["--max-reconnects", "3"]).run();
    fails_with(&run, 5, "HTTP 200 OK");
    run.stderr_has("not with a WebSocket upgrade");
    not_retried(&server, &run);
}

#[test]
fn garbage_instead_of_http_is_rejected_at_once() {
    // The server keeps the connection open: tether must not wait for --connect-timeout.
    let answers: [&[u8]; 2] = [
        b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n",
        &[0x16, 0x03, 0x01, 0x00, 0xff, 0x00, 0x80, 0xfe, b'\r', b'\n'],
    ];
    for answer in answers {
        let server = Hostile::start(vec![
            Step::ReadRequest,
            Step::Send(answer.to_vec()),
            Step::Drain,
        ]);
        let run = tether(&server)
            .args(["--connect-timeout", "1h", "--max-reconnects", "3"])
            .run();
        fails_with(&run, 5, "the server's answer is not HTTP");
        not_retried(&server, &run);
    }
}

#[test]
fn a_101_with_the_wrong_accept_key_is_rejected() {
    let server = Hostile::start(vec![
        Step::ReadRequest,
        Step::Send(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
                .to_vec(),
        ),
        Step::Drain,
    ]);
    let run = tether(&server).args(["--max-reconnects", "3"]).run();
    fails_with(
        &run,
        5,
        "Sec-WebSocket-Accept header does not match the key tether sent",
    );
    not_retried(&server, &run);
}

#[test]
fn an_endless_handshake_answer_is_refused_at_64_kib() {
    let server = Hostile::start(vec![
        Step::ReadRequest,
        Step::Send(b"HTTP/1.1 101 Switching Protocols\r\nX-Padding: ".to_vec()),
        Step::Flood {
            chunk: vec![b'a'; 16 * 1024],
            limit: 1 << 30,
            stall: Duration::from_secs(5),
        },
    ]);
    let run = tether(&server)
        .args(["--connect-timeout", "1h", "--max-reconnects", "3"])
        .run();
    fails_with(&run, 5, "the server's answer to the upgrade is over 64 KiB");
    not_retried(&server, &run);
    let conns = server.wait_until(Duration::from_secs(10), |c| {
        c.first().is_some_and(|c| c.hung_up)
    });
    assert!(conns[0].written < 64 << 20, "{conns:?}");
}

#[test]
fn a_handshake_trickled_a_byte_a_second_meets_the_connect_timeout() {
    let server = Hostile::start(vec![
        Step::ReadRequest,
        Step::Trickle(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n".to_vec(),
            Duration::from_secs(1),
        ),
    ]);
    let run = tether(&server).args(["--connect-timeout", "2s"]).run();
    fails_with(&run, 3, "no connection within 2s (--connect-timeout)");
    // tether hung up: the trickle ended long before its 54 bytes.
    let conns = server.wait_until(Duration::from_secs(10), |c| c.iter().all(|s| s.hung_up));
    assert_eq!(conns.len(), 1);
    assert!(conns[0].written < 54, "{conns:?}");
}

#[test]
fn a_trickled_handshake_is_retried_when_reconnects_are_allowed() {
    // A connect timeout is transient: with --max-reconnects it is tried again.
    let server = Hostile::start(vec![
        Step::ReadRequest,
        Step::Trickle(b"HTTP/1.1 101 Switching".to_vec(), Duration::from_secs(1)),
    ]);
    let run = tether(&server)
        .args(["--connect-timeout", "1s", "--max-reconnects", "1"])
        .run();
    fails_with(&run, 3, "gave up after 2 attempts");
    run.stderr_has("reconnecting");
    server.wait_until(Duration::from_secs(10), |c| c.len() == 2);
}

#[test]
fn an_extension_that_was_not_offered_fails_the_handshake() {
    // RFC 6455 §4.1: a 101 that turns on an extension the client did not ask for fails the
    // connection: the frames that follow could not be read.
    let server = Hostile::start(vec![
        Step::AcceptWith(
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=15\r\n".into(),
        ),
        Step::Send(frame(TEXT | RSV1, b"compressed")),
        Step::Drain,
    ]);
    let run = tether(&server)
        .args(["--max-reconnects", "3", "--compression", "off"])
        .run();
    run.code(5).stdout_is("");
    assert_eq!(
        run.stderr,
        format!(
            "tether: error: the WebSocket handshake with {} failed: the server's answer turns on \
             a WebSocket extension tether did not offer (Sec-WebSocket-Extensions: \
             permessage-deflate; client_max_window_bits=15)\n\
             tether: hint: the server did not speak WebSocket at that URL; check the URL\n",
            server.url("/")
        ),
        "{}",
        run.describe()
    );
    not_retried(&server, &run);
    assert!(
        !server.connections()[0]
            .request
            .to_ascii_lowercase()
            .contains("sec-websocket-extensions"),
        "--compression off offers nothing"
    );
}

// ---------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------

#[test]
fn a_masked_frame_from_the_server_is_a_protocol_violation() {
    let server = after_handshake(masked_frame(TEXT, [1, 2, 3, 4], b"hello"));
    let run = tether(&server).run();
    fails_with(&run, 10, "masked");
    run.stdout_is("");
    not_retried(&server, &run);
    closed_with(&server, 1002);
}

#[test]
fn reserved_bits_are_a_protocol_violation() {
    let server = after_handshake(frame(TEXT | RSV1, b"compressed?"));
    let run = tether(&server).run();
    fails_with(&run, 10, "Reserved bits");
    run.stdout_is("");
    not_retried(&server, &run);
    closed_with(&server, 1002);
}

#[test]
fn invalid_utf8_in_a_text_frame_is_a_protocol_violation() {
    let server = after_handshake(frame(TEXT, b"caf\xc3"));
    let run = tether(&server).run();
    fails_with(&run, 10, "not valid UTF-8");
    run.stdout_is("");
    not_retried(&server, &run);
    closed_with(&server, 1007);
}

#[test]
fn a_control_frame_over_125_bytes_is_a_protocol_violation() {
    let server = after_handshake(frame(PING, &[b'p'; 126]));
    let run = tether(&server).run();
    fails_with(&run, 10, "Control frame too big");
    not_retried(&server, &run);
    closed_with(&server, 1002);
}

#[test]
fn a_fragmented_control_frame_is_a_protocol_violation() {
    let server = after_handshake(frame(PING & NOT_FIN, b"half a ping"));
    let run = tether(&server).run();
    fails_with(&run, 10, "Fragmented control frame");
    not_retried(&server, &run);
    closed_with(&server, 1002);
}

#[test]
fn a_close_frame_with_an_invalid_code_is_a_protocol_violation() {
    // 1005, 1006 and 1015 stand for "no code", "dropped" and "TLS failed": they must never
    // be sent. The others are outside the ranges a Close may use.
    for code in [999, 1005, 1006, 1015, 2000, 5000] {
        let server = after_handshake(frame(CLOSE, &close_payload(code, b"")));
        let run = tether(&server).run();
        fails_with(&run, 10, "reserved or invalid close code");
        not_retried(&server, &run);
        closed_with(&server, 1002);
    }
}

#[test]
fn a_close_frame_with_a_one_byte_payload_is_a_protocol_violation() {
    let server = after_handshake(frame(CLOSE, &[0x03]));
    let run = tether(&server).run();
    fails_with(&run, 10, "Invalid close sequence");
    not_retried(&server, &run);
    closed_with(&server, 1002);
}

#[test]
fn a_close_reason_that_is_not_utf8_is_a_protocol_violation() {
    let server = after_handshake(frame(CLOSE, &close_payload(1000, b"bye \xff")));
    let run = tether(&server).run();
    fails_with(&run, 10, "Close reason is not valid UTF-8");
    not_retried(&server, &run);
    closed_with(&server, 1007);
}

// ---------------------------------------------------------------------------------------
// The terminal: what the server says reaches stderr and --json escaped
// ---------------------------------------------------------------------------------------

/// What a hostile server sends to drive a terminal: set its title (OSC 0), write the
/// clipboard (OSC 52), clear the screen with a one-byte CSI (U+009B), reverse the text that
/// follows (U+202E).
const INJECTION: &str = "\x1b]0;pwned\x07\x1b]52;c;cm0gLXJmIH4=\x07\u{9b}2J\u{202e}";

/// [`INJECTION`] as stderr shows it: every control visible, nothing left to act on.
const INJECTION_SHOWN: &str = r"\e]0;pwned\x07\e]52;c;cm0gLXJmIH4=\x07\x9b2J\u{202e}";

/// The same, as a Rust-style quoted string (errors quote a close reason this way).
const INJECTION_QUOTED: &str =
    r#""\u{1b}]0;pwned\u{7}\u{1b}]52;c;cm0gLXJmIH4=\u{7}\u{9b}2J\u{202e}""#;

fn nothing_raw(text: &str, run: &Run) {
    let raw = text.chars().find(|&c| {
        (c.is_control() && c != '\n')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
    });
    assert_eq!(
        raw,
        None,
        "a raw control reached the output\n{}",
        run.describe()
    );
}

#[test]
fn a_close_reason_reaches_stderr_escaped_in_a_pipe() {
    // A normal close is reported with its reason as the server sent it.
    let server = after_handshake(frame(CLOSE, &close_payload(1000, INJECTION.as_bytes())));
    let run = tether(&server).run();
    run.code(0).stdout_is("");
    nothing_raw(&run.stderr, &run);
    assert_eq!(
        run.stderr,
        format!(
            "tether: connected to {url}\n\
             tether: server closed (1000: {INJECTION_SHOWN})\n",
            url = server.url("/")
        ),
        "{}",
        run.describe()
    );
    // Any other code ends the session as an error that quotes the reason.
    let server = after_handshake(frame(CLOSE, &close_payload(4000, INJECTION.as_bytes())));
    let run = tether(&server).run();
    run.code(9).stdout_is("");
    nothing_raw(&run.stderr, &run);
    assert_eq!(
        run.stderr,
        format!(
            "tether: connected to {url}\n\
             tether: disconnected: server closed the connection with code 4000 ({INJECTION_QUOTED})\n\
             tether: error: server closed the connection with code 4000 ({INJECTION_QUOTED})\n",
            url = server.url("/")
        ),
        "{}",
        run.describe()
    );
}

#[test]
fn a_close_reason_reaches_stderr_escaped_in_a_smoke_test() {
    let server = after_handshake(frame(CLOSE, &close_payload(1000, INJECTION.as_bytes())));
    let run = tether(&server)
        .args(["--expect", "never", "--timeout", "20s"])
        .run();
    run.code(7).stdout_is("");
    nothing_raw(&run.stderr, &run);
    // The only part that varies is how long the expectation waited.
    let waited = regex::Regex::new(r"after waiting [0-9.]+ m?s").unwrap();
    assert_eq!(
        waited.replace_all(&run.stderr, "after waiting T"),
        format!(
            "tether: connected to {url}\n\
             tether: server closed (1000: {INJECTION_SHOWN})\n\
             tether: error: expectation not met: --expect never: the server closed the connection \
             (code 1000 {INJECTION_QUOTED}), after waiting T\n\
             \x20 no messages were received\n",
            url = server.url("/")
        ),
        "{}",
        run.describe()
    );
}

#[test]
fn a_rejection_body_reaches_stderr_escaped() {
    let body = format!("denied{INJECTION}");
    let server = Hostile::start(vec![
        Step::ReadRequest,
        Step::Send(
            format!(
                "HTTP/1.1 403 Forbidden\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        ),
    ]);
    let run = tether(&server).run();
    fails_with(&run, 5, "HTTP 403 Forbidden");
    nothing_raw(&run.stderr, &run);
    run.stderr_has(&format!(
        "(body: \"denied{}\")",
        &INJECTION_QUOTED[1..INJECTION_QUOTED.len() - 1]
    ));
}

#[test]
fn json_output_escapes_c1_bidi_and_line_separators() {
    // Valid JSON either way; escaped, a --json line on a terminal cannot drive it, and
    // U+2028/U+2029 cannot split it for JavaScript.
    let text = "a\u{9b}b\u{202e}c\u{2028}d\u{2029}e\u{2066}f\u{85}g\x7f";
    let mut script = frame(TEXT, text.as_bytes());
    script.extend(frame(CLOSE, &close_payload(1000, INJECTION.as_bytes())));
    let server = after_handshake(script);
    let run = tether(&server).arg("--json").run();
    run.code(0);
    nothing_raw(&run.stdout_str(), &run);
    let lines = run.stdout_lines();
    let message = lines
        .iter()
        .find(|l| l.contains(r#""event":"message""#))
        .unwrap();
    assert!(
        message.ends_with(
            r#","event":"message","type":"text","data":"a\u009bb\u202ec\u2028d\u2029e\u2066f\u0085g\u007f"}"#
        ),
        "{}",
        run.describe()
    );
    let closed = lines
        .iter()
        .find(|l| l.contains(r#""event":"closed""#))
        .unwrap();
    assert!(
        closed.ends_with(
            r#","event":"closed","code":1000,"reason":"\u001b]0;pwned\u0007\u001b]52;c;cm0gLXJmIH4=\u0007\u009b2J\u202e","by_server":true}"#
        ),
        "{}",
        run.describe()
    );
    let events = run.json_events();
    let data = events.iter().find(|e| e["event"] == "message").unwrap()["data"].clone();
    assert_eq!(data, text);
    let reason = events.iter().find(|e| e["event"] == "closed").unwrap()["reason"].clone();
    assert_eq!(reason, INJECTION);
}

// ---------------------------------------------------------------------------------------
// Size and memory
// ---------------------------------------------------------------------------------------

#[test]
fn a_message_over_max_message_size_is_refused() {
    let server = after_handshake(frame(BINARY, &[7u8; 2048]));
    let run = tether(&server)
        .args(["--max-message-size", "1KiB", "--binary-format", "hex"])
        .run();
    fails_with(
        &run,
        10,
        "the server sent a message of at least 2048 bytes, over --max-message-size (1024 bytes)",
    );
    run.stderr_has("raise --max-message-size");
    not_retried(&server, &run);
    closed_with(&server, 1009);
}

/// What tether may read, and hold, of a message it must refuse: far below what the
/// server pushes (gigabytes), and far above the 1 MiB limit plus socket buffers.
const BOUND: u64 = 64 << 20;

/// The server wrote less than [`BOUND`], so tether read less than that (the socket
/// buffers hold the rest), and its memory peak stayed below it too.
fn bounded(server: &Hostile, run: &Run, peak_kib: u64) {
    let conns = server.wait_until(Duration::from_secs(10), |c| {
        c.first().is_some_and(|c| c.hung_up)
    });
    assert!(
        conns[0].written < BOUND,
        "the server wrote {} bytes before tether refused the message",
        conns[0].written
    );
    assert!(
        peak_kib * 1024 < BOUND,
        "peak RSS {peak_kib} KiB\n{}",
        run.describe()
    );
}

#[test]
fn a_huge_frame_is_refused_from_its_header_without_buffering_it() {
    // The header announces 4 GiB, and the server streams as much of it as tether reads.
    let server = Hostile::start(vec![
        Step::Accept,
        Step::Send(frame_header(BINARY, 4 << 30)),
        Step::Flood {
            chunk: vec![0u8; 64 * 1024],
            limit: 4 << 30,
            stall: Duration::from_secs(5),
        },
    ]);
    let (run, peak_kib) = tether(&server)
        .args(["--max-message-size", "1MiB"])
        .run_peak_rss();
    fails_with(
        &run,
        10,
        "a message of at least 4294967296 bytes, over --max-message-size (1048576 bytes)",
    );
    not_retried(&server, &run);
    bounded(&server, &run, peak_kib);
}

#[test]
fn an_endless_fragmented_message_is_refused_at_the_limit() {
    // Fragments of 60 KiB, none too big on its own, that never end: the limit is on the
    // message, so tether refuses it once the fragments add up to more than 1 MiB.
    let server = Hostile::start(vec![
        Step::Accept,
        Step::Send(frame(BINARY & NOT_FIN, &[1u8; 60 * 1024])),
        Step::Flood {
            chunk: frame(CONTINUATION, &[2u8; 60 * 1024]),
            limit: 4 << 30,
            stall: Duration::from_secs(5),
        },
    ]);
    let (run, peak_kib) = tether(&server)
        .args(["--max-message-size", "1MiB"])
        .run_peak_rss();
    fails_with(&run, 10, "over --max-message-size (1048576 bytes)");
    not_retried(&server, &run);
    bounded(&server, &run, peak_kib);
}

#[test]
fn a_ping_flood_from_a_server_that_never_reads_keeps_memory_bounded() {
    // Pings as fast as tether takes them, and nothing read: every Ping owes a Pong that
    // cannot be written. tether stops reading until it can answer, so the Pongs do not
    // pile up, and the heartbeat finds the connection dead.
    let chunk = frame(PING, &[b'p'; 125]).repeat(512);
    let server = Hostile::start(vec![
        Step::Accept,
        Step::Flood {
            chunk,
            limit: 4 << 30,
            stall: Duration::from_secs(20),
        },
    ]);
    let (run, peak_kib) = tether(&server)
        .args(["--keep-open", "--no-reconnect"])
        .args(["--ping-interval", "3s", "--ping-timeout", "2s"])
        .run_peak_rss();
    fails_with(&run, 8, "heartbeat timeout: no pong within 2s");
    bounded(&server, &run, peak_kib);
    // Reading stopped once the socket buffers were full of unwritten Pongs.
    let written = server.connections()[0].written;
    assert!(written < 16 << 20, "tether read {written} bytes of Pings");
}

// ---------------------------------------------------------------------------------------
// permessage-deflate (RFC 7692)

const DEFLATE: &str = "Sec-WebSocket-Extensions: permessage-deflate\r\n";

/// `payload` deflated as a message carries it: raw deflate, the final `00 00 ff ff` off.
fn deflated(payload: &[u8]) -> Vec<u8> {
    let mut compress = flate2::Compress::new(flate2::Compression::best(), false);
    let mut out = Vec::with_capacity(payload.len() / 100 + 1024);
    let mut at = 0;
    loop {
        let before = compress.total_in();
        compress
            .compress_vec(&payload[at..], &mut out, flate2::FlushCompress::Sync)
            .unwrap();
        at += (compress.total_in() - before) as usize;
        if at == payload.len() && out.ends_with(&[0, 0, 0xff, 0xff]) {
            break;
        }
        out.reserve(out.capacity());
    }
    out.truncate(out.len() - 4);
    out
}

#[test]
fn a_compressed_frame_in_the_same_read_as_the_101_is_inflated() {
    // RFC 7692 §7.2.3.1's "Hello", sent in the very write that carries the 101.
    let hello = frame(TEXT | RSV1, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    let mut then = hello.clone();
    then.extend(frame(CLOSE, &1000u16.to_be_bytes()));
    let server = Hostile::start(vec![Step::AcceptThen(DEFLATE.into(), then), Step::Drain]);
    let run = tether(&server).run();
    run.code(0).stdout_is("Hello\n");
    let request = &server.connections()[0].request;
    assert!(
        request.contains(
            "sec-websocket-extensions: permessage-deflate; client_no_context_takeover; \
             client_max_window_bits\r\n"
        ),
        "{request}"
    );
}

#[test]
fn rsv1_on_a_control_or_continuation_frame_is_a_protocol_violation() {
    for bytes in [
        frame(PING | RSV1, b""),
        [
            frame(TEXT & NOT_FIN | RSV1, &deflated(b"abc")),
            frame(CONTINUATION | 0x80 | RSV1, &deflated(b"def")),
        ]
        .concat(),
    ] {
        let server = Hostile::start(vec![
            Step::AcceptWith(DEFLATE.into()),
            Step::Send(bytes),
            Step::Drain,
        ]);
        let run = tether(&server).run();
        fails_with(&run, 10, "Reserved bits are non-zero");
        closed_with(&server, 1002);
        not_retried(&server, &run);
    }
}

#[test]
fn a_malformed_deflate_answer_fails_the_handshake() {
    let server = Hostile::start(vec![
        Step::AcceptWith(
            "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=16\r\n".into(),
        ),
        Step::Drain,
    ]);
    let run = tether(&server).run();
    fails_with(
        &run,
        5,
        "the server's permessage-deflate answer is not acceptable: server_max_window_bits=16 \
         is not a window size (8 to 15) (Sec-WebSocket-Extensions: permessage-deflate; \
         server_max_window_bits=16)",
    );
    run.stderr_has("tether: hint: --compression off connects without offering compression\n");
    not_retried(&server, &run);
}

#[test]
fn a_decompression_bomb_is_refused_at_the_limit_with_flat_memory() {
    // 256 KiB on the wire that would inflate to 256 MiB.
    let bomb = deflated(&vec![0u8; 256 << 20]);
    assert!(bomb.len() < 300 << 10, "{}", bomb.len());
    let server = Hostile::start(vec![
        Step::AcceptWith(DEFLATE.into()),
        Step::Send(frame(BINARY | RSV1, &bomb)),
        Step::Drain,
    ]);
    let (run, peak_kib) = tether(&server)
        .args(["--max-message-size", "1MiB"])
        .run_peak_rss();
    fails_with(&run, 10, "over --max-message-size (1048576 bytes)");
    closed_with(&server, 1009);
    not_retried(&server, &run);
    assert!(
        peak_kib < 32 << 10,
        "peak RSS {peak_kib} KiB\n{}",
        run.describe()
    );
}

#[test]
fn compressed_data_that_does_not_inflate_is_a_protocol_violation() {
    // Block type 3 is reserved in DEFLATE (RFC 1951 §3.2.3).
    let server = Hostile::start(vec![
        Step::AcceptWith(DEFLATE.into()),
        Step::Send(frame(TEXT | RSV1, &[0xff, 0xff, 0xff])),
        Step::Drain,
    ]);
    let run = tether(&server).run();
    fails_with(
        &run,
        10,
        "the server sent a compressed message that does not inflate",
    );
    closed_with(&server, 1007);
    not_retried(&server, &run);
}
