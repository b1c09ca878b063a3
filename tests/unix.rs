//! Unix-domain sockets: tether against Python `websockets`' `unix_serve`, against
//! `tether serve unix:PATH`, and against TLS on a socket; the ways a socket path fails;
//! `tether serve`'s handling of the socket file. Every socket lives in a temp dir.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::python::{ECHO, PythonServer};
use crate::support::{FAST_BACKOFF, Tether};

/// For the server processes a test starts; only a failure waits this long.
const WAIT: Duration = Duration::from_secs(20);

/// Sends the request's path and Host first, then echoes.
const PATH_AND_HOST: &str = r#"
async def handler(ws):
    await ws.send(f"{ws.request.path} {ws.request.headers['Host']}")
    async for message in ws:
        await ws.send(message)
"#;

fn socket_in(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("app.sock")
}

/// `ws+unix://SOCKET:PATH`.
fn unix_url(socket: &Path, path: &str) -> String {
    format!("ws+unix://{}:{path}", socket.display())
}

#[test]
fn pipe_mode_reaches_python_on_a_socket_with_the_request_path_and_host() {
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(&dir);
    let _server = PythonServer::start_unix(PATH_AND_HOST, &socket);
    Tether::new()
        .arg(unix_url(&socket, "/chat?room=1"))
        .stdin("hello ✓\n")
        .run()
        .code(0)
        .stdout_is("/chat?room=1 localhost\nhello ✓\n");
    // curl's form: the URL gives the Host and the path, the flag the socket.
    Tether::new()
        .args(["ws://api.local/v1/feed", "--unix-socket"])
        .arg(&socket)
        .stdin("again\n")
        .run()
        .code(0)
        .stdout_is("/v1/feed api.local\nagain\n");
    // No request path: `/`.
    Tether::new()
        .arg(format!("ws+unix://{}", socket.display()))
        .run()
        .code(0)
        .stdout_is("/ localhost\n");
}

#[test]
fn json_events_over_a_socket_name_it_in_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(&dir);
    let _server = PythonServer::start_unix(ECHO, &socket);
    let url = unix_url(&socket, "/events");
    let run = Tether::new()
        .args([&url, "--json"])
        .stdin("one\ntwo\n")
        .run();
    run.code(0);
    let events = run.json_events();
    let kinds: Vec<_> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "connecting",
            "handshake",
            "connected",
            "message",
            "message",
            "closed"
        ],
        "{events:?}"
    );
    assert_eq!(events[1]["url"], url.as_str());
    assert_eq!(events[1]["request"]["target"], "/events");
    assert_eq!(events[2]["url"], url.as_str());
    assert_eq!(events[3]["data"], "one");
    assert_eq!(events[4]["data"], "two");
    assert_eq!(events[5]["code"], 1000);
}

#[test]
fn heartbeats_hold_both_ways_over_a_socket() {
    // websockets pings every 0.1 s and closes with 1011 when a Pong is 0.3 s late;
    // tether pings every 100 ms and gives up on a Pong 300 ms late.
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(&dir);
    let _server = PythonServer::start_unix(
        r#"
import asyncio
SERVE_KWARGS = {"ping_interval": 0.1, "ping_timeout": 0.3}
async def handler(ws):
    await asyncio.sleep(1.5)
    await ws.close(1000, "kept alive")
"#,
        &socket,
    );
    Tether::new()
        .args([&unix_url(&socket, "/"), "--keep-open", "--no-reconnect"])
        .args(["--ping-interval", "100ms", "--ping-timeout", "300ms"])
        .run()
        .code(0)
        .stderr_has("server closed (1000: kept alive)")
        .stderr_lacks("heartbeat");
}

#[test]
fn a_server_restarting_on_the_same_socket_is_reconnected() {
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(&dir);
    let mut server = PythonServer::start_unix(ECHO, &socket);
    let url = unix_url(&socket, "/");
    // Without a replay window: whether "one" was confirmed before the kill
    // (and so is not sent again) is a matter of timing.
    let mut running = Tether::new()
        .args([&url, "--replay-window", "0"])
        .args(FAST_BACKOFF)
        .spawn();
    running.stderr_line("connected to");
    running.send("one\n");
    assert_eq!(running.line(), "one");
    // Killed, the server leaves its socket file behind: "connection refused"
    // until the new one replaces it.
    server.restart();
    assert_eq!(
        running.stderr_nth("connected to", 2),
        format!("tether: connected to {url}")
    );
    running.send("two\n");
    assert_eq!(running.line(), "two");
    let (code, rest) = running.wait();
    assert_eq!(code, Some(0));
    assert!(rest.is_empty(), "{rest:?}");
}

/// `tether serve unix:PATH`, waited for until it listens.
fn tether_serve(socket: &Path) -> crate::support::cmd::Running {
    let mut serve = Tether::new()
        .arg("serve")
        .arg(format!("unix:{}", socket.display()))
        .deadline(WAIT)
        .spawn();
    assert_eq!(
        serve.stderr_line("listening on"),
        format!(
            "tether: echo server listening on ws+unix://{}",
            socket.display()
        )
    );
    serve
}

#[test]
fn tether_serve_on_a_socket_echoes_runs_smoke_tests_and_removes_the_file_when_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(&dir);
    let mut serve = tether_serve(&socket);
    let url = unix_url(&socket, "/x");
    Tether::new()
        .arg(&url)
        .stdin("a\nb\n")
        .run()
        .code(0)
        .stdout_is("a\nb\n");
    Tether::new()
        .args([&url, "--send", "ping", "--expect", "ping"])
        .run()
        .code(0)
        .stderr_has("smoke test passed: 2 steps");
    serve.signal("TERM");
    let (code, _) = serve.wait();
    assert_eq!(code, Some(130));
    assert!(!socket.exists(), "the socket file is left behind");
}

#[test]
fn tether_serve_replaces_a_stale_socket_but_not_a_live_one_or_another_file() {
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(&dir);
    // A server that is gone leaves its socket file.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let mut serve = tether_serve(&socket);
    let shown = socket.display();

    let second = Tether::new()
        .arg("serve")
        .arg(format!("unix:{shown}"))
        .run();
    second.code(2);
    assert_eq!(
        second.stderr,
        format!(
            "tether: error: cannot listen on unix:{shown}: a server is already listening on it\n"
        )
    );
    // The live server was left alone.
    Tether::new()
        .arg(unix_url(&socket, "/"))
        .stdin("still there\n")
        .run()
        .code(0)
        .stdout_is("still there\n");

    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "keep me").unwrap();
    let run = Tether::new()
        .arg("serve")
        .arg(format!("unix:{}", file.display()))
        .run();
    run.code(2);
    assert_eq!(
        run.stderr,
        format!(
            "tether: error: cannot listen on unix:{}: the file exists and is not a socket (not removing it)\n",
            file.display()
        )
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
    serve.signal("TERM");
    assert_eq!(serve.wait().0, Some(130));
}

#[test]
fn a_missing_socket_a_dead_one_and_a_file_are_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.sock");
    let dead = dir.path().join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    for (path, detail) in [
        (&missing, format!("{} does not exist", missing.display())),
        (
            &dead,
            format!(
                "nobody is listening on {} (connection refused)",
                dead.display()
            ),
        ),
        (
            &file,
            format!("{} is not a socket (a regular file)", file.display()),
        ),
        (
            &sub,
            format!("{} is not a socket (a directory)", sub.display()),
        ),
    ] {
        let url = unix_url(path, "/");
        let run = Tether::new().args([&url, "--no-reconnect"]).run();
        run.code(3);
        assert_eq!(
            run.stderr,
            format!(
                "tether: error: could not connect to {url}: {detail}\n\
                 tether: hint: check the socket's path, and that the server is running\n"
            )
        );
    }
}

#[test]
fn a_socket_that_appears_later_is_retried_until_it_does() {
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(&dir);
    let url = unix_url(&socket, "/");
    let mut running = Tether::new()
        .args([&url, "--max-reconnects", "1000"])
        .args(FAST_BACKOFF)
        .spawn();
    running.stderr_line("does not exist");
    running.stderr_line("reconnecting in");
    let _serve = tether_serve(&socket);
    running.stderr_line("connected to");
    running.send("late\n");
    assert_eq!(running.line(), "late");
    assert_eq!(running.wait().0, Some(0));

    // Given up on, it is the connect failure's exit code.
    let run = Tether::new()
        .args([&unix_url(&dir.path().join("never.sock"), "/")])
        .args(["--max-reconnects", "2", "--json"])
        .args(FAST_BACKOFF)
        .run();
    run.code(3);
    let attempts: Vec<_> = run
        .json_events()
        .iter()
        .filter(|e| e["event"] == "connecting")
        .map(|e| e["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 2, 3]);
}

#[test]
fn tls_runs_over_a_socket_with_wss_unix() {
    use crate::support::tls::TestPki;
    use futures_util::{SinkExt, StreamExt};

    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(&dir);
    let pki = TestPki::generate();
    let files = pki.write_to(dir.path());
    let acceptor = pki.server_acceptor();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime.block_on(async { tokio::net::UnixListener::bind(&socket).unwrap() });
    runtime.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let tls = acceptor.accept(stream).await.unwrap();
                let mut ws = tokio_tungstenite::accept_async(tls).await.unwrap();
                while let Some(Ok(message)) = ws.next().await {
                    if message.is_text() || message.is_binary() {
                        let _ = ws.send(message).await;
                    }
                }
            });
        }
    });
    let url = format!("wss+unix://{}:/secure", socket.display());
    Tether::new()
        .arg(&url)
        .arg("--cacert")
        .arg(&files.ca)
        .stdin("private\n")
        .run()
        .code(0)
        .stdout_is("private\n")
        .stderr_has(&format!("connected to {url}"));
    // Verified as over TCP: without the CA it is a TLS failure.
    Tether::new()
        .args([&url, "--no-reconnect"])
        .run()
        .code(4)
        .stderr_has("certificate verify failed");
}

#[test]
fn a_proxy_with_a_socket_is_a_usage_error() {
    let run = Tether::new()
        .args([
            "ws+unix:///run/app.sock",
            "--proxy",
            "http://127.0.0.1:3128",
        ])
        .run();
    run.code(2);
    assert_eq!(
        run.error_line(),
        "tether: error: --proxy cannot be used with a Unix socket (ws+unix://, --unix-socket)"
    );
    // The environment's proxies are for TCP: ignored, with no note.
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(&dir);
    let _server = PythonServer::start_unix(ECHO, &socket);
    Tether::new()
        .arg(unix_url(&socket, "/"))
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("ALL_PROXY", "socks5://127.0.0.1:9")
        .stdin("direct\n")
        .run()
        .code(0)
        .stdout_is("direct\n");
}
