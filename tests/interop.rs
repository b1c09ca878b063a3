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
