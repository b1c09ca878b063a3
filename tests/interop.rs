//! Interop with a WebSocket implementation nobody here wrote: the Python
//! `websockets` package, installed into `.peers/venv` on first use.

use crate::support::Tether;
use crate::support::python::{self, PythonServer};

#[test]
fn python_websockets_echoes_text_and_binary() {
    let server = PythonServer::start(python::ECHO);
    let input: String = (0..500).map(|i| format!("message {i} ✓\n")).collect();
    Tether::new()
        .arg(server.url("/"))
        .stdin(&input)
        .run()
        .code(0)
        .stdout_is(&input);
    Tether::new()
        .args([&server.url("/"), "--binary", "--binary-format", "hex"])
        .stdin(b"\x00\x01\xfe\xff\n")
        .run()
        .code(0)
        .stdout_is("0001feff\n");
}

#[test]
fn a_chosen_close_code_from_python_is_reported_with_its_exit_code() {
    let server = PythonServer::start(&python::close_with(4001, "policy says no"));
    Tether::new()
        .arg(server.url("/"))
        .stdin("hello\n")
        .run()
        .code(9)
        .stdout_is("hello\n")
        .stderr_has("server closed the connection with code 4001 (\"policy says no\")");
}

#[test]
fn a_normal_close_from_python_ends_the_session_cleanly() {
    let server = PythonServer::start(&python::close_with(1000, "bye"));
    Tether::new()
        .args([&server.url("/"), "--keep-open"])
        .stdin("hello\n")
        .run()
        .code(0)
        .stdout_is("hello\n")
        .stderr_has("server closed (1000: bye)");
}

#[test]
fn pings_from_python_are_answered_so_its_keepalive_holds() {
    // websockets closes with 1011 when a ping goes unanswered for 0.3 s; it
    // pings every 0.1 s and ends the session normally after 1.5 s.
    let server = PythonServer::start(
        r#"
import asyncio
SERVE_KWARGS = {"ping_interval": 0.1, "ping_timeout": 0.3}
async def handler(ws):
    await asyncio.sleep(1.5)
    await ws.close(1000, "kept alive")
"#,
    );
    Tether::new()
        .args([&server.url("/"), "--keep-open"])
        .run()
        .code(0)
        .stderr_has("server closed (1000: kept alive)");
}

// ---------------------------------------------------------------------------------------
// permessage-deflate: websockets compresses by default

/// Lines of JSON that compress well, as a feed's do, `size` bytes or so each.
fn json_feed(count: usize, size: usize) -> String {
    (0..count)
        .map(|i| {
            let items: Vec<String> = (0..size / 40)
                .map(|j| format!(r#"{{"id":{i},"seq":{j},"symbol":"ABC","p":{}}}"#, j % 97))
                .collect();
            format!("[{}]\n", items.join(","))
        })
        .collect()
}

/// What the `connected` event of a `--json` run says was agreed.
fn agreed(run: &crate::support::cmd::Run) -> serde_json::Value {
    let events = run.json_events();
    let connected = events.iter().find(|e| e["event"] == "connected").unwrap();
    connected["compression"].clone()
}

/// Echoes, with `factory` (Python) as the only extension the server accepts.
fn deflate_echo(factory: &str) -> PythonServer {
    PythonServer::start(&format!(
        r#"
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
SERVE_KWARGS = {{"compression": None, "extensions": [{factory}]}}
async def handler(ws):
    async for message in ws:
        await ws.send(message)
"#
    ))
}

#[test]
fn compressed_json_from_python_arrives_whole_both_ways() {
    // 300 messages of about 40 KiB, each inflated with the context the ones before left.
    let server = PythonServer::start(python::ECHO);
    let feed = json_feed(300, 40_000);
    Tether::new()
        .arg(server.url("/"))
        .stdin(&feed)
        .run()
        .code(0)
        .stdout_is(&feed);
    let run = Tether::new()
        .args([&server.url("/"), "--json"])
        .stdin("hi\n")
        .run();
    run.code(0);
    let params = "permessage-deflate; client_no_context_takeover; server_max_window_bits=12; \
                  client_max_window_bits=12";
    assert_eq!(agreed(&run), params);
    Tether::new()
        .args([&server.url("/"), "-v"])
        .stdin("hi\n")
        .run()
        .code(0)
        .stderr_has(&format!(
            "compression agreed: {params} (tether sends uncompressed)\n"
        ));
}

#[test]
fn server_no_context_takeover_and_window_sizes_are_honoured() {
    // websockets takes 9 to 15 (zlib cannot make a window of 8).
    let feed = json_feed(200, 20_000);
    for (factory, expected) in [
        (
            "ServerPerMessageDeflateFactory(server_no_context_takeover=True, server_max_window_bits=9)",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=9",
        ),
        (
            "ServerPerMessageDeflateFactory(server_max_window_bits=15)",
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=15",
        ),
    ] {
        let server = deflate_echo(factory);
        let run = Tether::new()
            .args([&server.url("/"), "--json"])
            .stdin("hi\n")
            .run();
        run.code(0);
        assert_eq!(agreed(&run), expected, "{}", run.describe());
        Tether::new()
            .arg(server.url("/"))
            .stdin(&feed)
            .run()
            .code(0)
            .stdout_is(&feed);
    }
}

#[test]
fn a_fragmented_compressed_message_from_python_is_inflated_whole() {
    // websockets compresses each fragment in turn; only the first carries RSV1.
    let server = PythonServer::start(
        r#"
async def handler(ws):
    await ws.recv()
    await ws.send(["x" * 100000, "y" * 100000, "z" * 70000])
    await ws.send([b"\x00\x01" * 40000, b"\x02" * 3])
    await ws.close()
"#,
    );
    let expected = format!(
        "{}{}{}\n{}020202\n",
        "x".repeat(100_000),
        "y".repeat(100_000),
        "z".repeat(70_000),
        "0001".repeat(40_000)
    );
    Tether::new()
        .args([&server.url("/"), "--binary-format", "hex", "--keep-open"])
        .stdin("go\n")
        .run()
        .code(0)
        .stdout_is(&expected);
}

#[test]
fn a_server_that_declines_compression_still_works() {
    let server = PythonServer::start(&format!(
        "SERVE_KWARGS = {{\"compression\": None}}\n{}",
        python::ECHO
    ));
    let feed = json_feed(20, 10_000);
    let run = Tether::new()
        .args([&server.url("/"), "--json"])
        .stdin("hi\n")
        .run();
    run.code(0);
    assert_eq!(agreed(&run), serde_json::Value::Null);
    Tether::new()
        .arg(server.url("/"))
        .stdin(&feed)
        .run()
        .code(0)
        .stdout_is(&feed);
}

#[test]
fn compression_off_offers_nothing_to_python() {
    let server = PythonServer::start(python::ECHO);
    let run = Tether::new()
        .args([&server.url("/"), "--json", "--compression", "off"])
        .stdin("hi\n")
        .run();
    run.code(0);
    assert_eq!(agreed(&run), serde_json::Value::Null);
}
