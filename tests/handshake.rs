//! `-v` shows the handshake as `curl -v` does, and `--json` has it as `handshake` events:
//! against Python `websockets` (accepting, and refusing with 401) and through tinyproxy,
//! with every secret on the command line grepped for in both streams.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::support::cmd::Run;
use crate::support::proxies::Tinyproxy;
use crate::support::python::{ECHO, PythonServer};
use crate::support::{FAST_BACKOFF, Server, Tether};

/// The handshake lines of a run's stderr (`> GET / HTTP/1.1`, `< Upgrade: websocket`),
/// without time, level and colour, with the values that change from run to run checked
/// and replaced: `Sec-WebSocket-Key` (16 random bytes in base64) by `KEY`, the server's
/// `Sec-WebSocket-Accept` by `ACCEPT` once it is proven to answer that key, `Date` (an
/// HTTP date) by `DATE`, Python's `Server` and tinyproxy's `Proxy-agent` by their names,
/// and `addr` by `ADDR`.
fn handshake_lines(stderr: &str, addr: &str) -> Vec<String> {
    let colour = regex::Regex::new("\x1b\\[[0-9;]*m").unwrap();
    let line = regex::Regex::new(r"^\S+ +DEBUG +([<>] .*)$").unwrap();
    let python = regex::Regex::new(r"^Python/3\.\d+ websockets/\d+(\.\d+)*$").unwrap();
    let tinyproxy = regex::Regex::new(r"^tinyproxy/\d+(\.\d+)*$").unwrap();
    let mut key = None;
    stderr
        .lines()
        .filter_map(|l| Some(line.captures(&colour.replace_all(l, ""))?[1].to_owned()))
        .map(|l| {
            let l = l.replace(addr, "ADDR");
            let Some((name, value)) = l.split_once(": ") else {
                return l;
            };
            match name {
                "> Sec-WebSocket-Key" => {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(value)
                        .unwrap_or_else(|e| panic!("{l:?}: {e}"));
                    assert_eq!(bytes.len(), 16, "{l:?}");
                    key = Some(value.to_owned());
                    format!("{name}: KEY")
                }
                "< Sec-WebSocket-Accept" | "< sec-websocket-accept" => {
                    let key = key.as_deref().expect("a key before its answer");
                    assert_eq!(value, derive_accept_key(key.as_bytes()), "{l:?}");
                    format!("{name}: ACCEPT")
                }
                "< Date" => {
                    httpdate::parse_http_date(value).unwrap_or_else(|e| panic!("{l:?}: {e}"));
                    format!("{name}: DATE")
                }
                "< Server" if python.is_match(value) => format!("{name}: PYTHON"),
                "< Proxy-agent" if tinyproxy.is_match(value) => format!("{name}: TINYPROXY"),
                _ => l,
            }
        })
        .collect()
}

/// What tether asks for on a plain connection, before any header of the user's.
const UPGRADE: [&str; 7] = [
    "> GET / HTTP/1.1",
    "> Host: ADDR",
    "> Connection: Upgrade",
    "> Upgrade: websocket",
    "> Sec-WebSocket-Version: 13",
    "> Sec-WebSocket-Key: KEY",
    "> sec-websocket-extensions: permessage-deflate; client_no_context_takeover; client_max_window_bits",
];

/// What Python `websockets` answers (it takes the compression offer).
const PYTHON_101: [&str; 7] = [
    "< HTTP/1.1 101 Switching Protocols",
    "< Date: DATE",
    "< Upgrade: websocket",
    "< Connection: Upgrade",
    "< Sec-WebSocket-Accept: ACCEPT",
    "< Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; server_max_window_bits=12; client_max_window_bits=12",
    "< Server: PYTHON",
];

fn concat(parts: &[&[&str]]) -> Vec<String> {
    parts.concat().into_iter().map(str::to_owned).collect()
}

/// Neither stream holds any of `secrets`.
fn lacks(run: &Run, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !run.stderr.contains(secret) && !run.stdout_str().contains(secret),
            "{secret:?} shown: {}",
            run.describe()
        );
    }
}

fn basic(user: &str, pass: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
}

/// The `handshake` events of a `--json` run, `Sec-WebSocket-Key`, `-Accept` and `Date`
/// replaced as in [`handshake_lines`] (by then known to be right).
fn handshake_events(run: &Run, addr: &str) -> Vec<Value> {
    let mut events: Vec<Value> = run
        .json_events()
        .into_iter()
        .filter(|e| e["event"] == "handshake")
        .collect();
    for event in &mut events {
        event.as_object_mut().unwrap().remove("time");
        for side in ["request", "response"] {
            let headers = event.get_mut(side).and_then(|s| s.get_mut("headers"));
            let Some(headers) = headers.and_then(Value::as_array_mut) else {
                continue;
            };
            for pair in headers {
                let name = pair[0].as_str().unwrap().to_owned();
                let value = pair[1].as_str().unwrap().replace(addr, "ADDR");
                pair[1] = Value::from(match name.as_str() {
                    "Sec-WebSocket-Key" => "KEY".to_owned(),
                    "Sec-WebSocket-Accept" => "ACCEPT".to_owned(),
                    "Date" => "DATE".to_owned(),
                    "Server" if value.starts_with("Python/") => "PYTHON".to_owned(),
                    _ => value,
                });
            }
        }
    }
    events
}

#[test]
fn minus_v_shows_the_handshake_with_python_websockets_and_no_secret() {
    let server = PythonServer::start(ECHO);
    let addr = format!("127.0.0.1:{}", server.port());
    let url = format!("ws://alice:s3cret-pass@{addr}/feed?token=s3cret-token&room=1");
    let secrets = [
        "s3cret",
        &basic("alice", "s3cret-pass"),
        &basic("alice", "s3cret-pass")[..12],
    ];
    let args = [
        "-H",
        "Cookie: id=s3cret-cookie",
        "-H",
        "X-Team: blue",
        "--ping-interval",
        "0",
    ];
    let expected = concat(&[
        &["> GET /feed?token=<redacted>&room=1 HTTP/1.1"],
        &UPGRADE[1..],
        // In the order tungstenite writes them (it takes its own out of the map first).
        &[
            "> authorization: <redacted>",
            "> x-team: blue",
            "> cookie: <redacted>",
        ],
        &PYTHON_101,
    ]);
    for verbose in ["-v", "-vv"] {
        let run = Tether::new()
            .arg(&url)
            .args(args)
            .arg(verbose)
            .stdin("hi\n")
            .run();
        run.code(0).stdout_is("hi\n");
        assert_eq!(
            handshake_lines(&run.stderr, &addr),
            expected,
            "{verbose}: {}",
            run.describe()
        );
        lacks(&run, &secrets);
    }
    // -H Authorization is redacted as the userinfo's is.
    let run = Tether::new()
        .arg(server.url("/"))
        .args(["-v", "-H", "Authorization: Bearer s3cret"])
        .stdin("hi\n")
        .run();
    run.code(0);
    assert_eq!(
        handshake_lines(&run.stderr, &addr),
        concat(&[&UPGRADE, &["> authorization: <redacted>"], &PYTHON_101]),
        "{}",
        run.describe()
    );
    lacks(&run, &["s3cret"]);

    // Without -v, none.
    let run = Tether::new().arg(&url).stdin("hi\n").run();
    run.code(0);
    assert_eq!(handshake_lines(&run.stderr, &addr), Vec::<String>::new());

    // --json: the same, as a `handshake` event before `connected`, also without -v.
    let run = Tether::new()
        .arg(&url)
        .args(args)
        .arg("--json")
        .stdin("hi\n")
        .run();
    run.code(0);
    lacks(&run, &secrets);
    let kinds: Vec<_> = run
        .json_events()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        ["connecting", "handshake", "connected", "message", "closed"]
    );
    assert_eq!(
        handshake_events(&run, &addr),
        [json!({
            "event": "handshake",
            "peer": "server",
            "url": format!("ws://{addr}/feed?token=<redacted>&room=1"),
            "request": {
                "method": "GET",
                "target": "/feed?token=<redacted>&room=1",
                "headers": [
                    ["Host", "ADDR"],
                    ["Connection", "Upgrade"],
                    ["Upgrade", "websocket"],
                    ["Sec-WebSocket-Version", "13"],
                    ["Sec-WebSocket-Key", "KEY"],
                    [
                        "sec-websocket-extensions",
                        "permessage-deflate; client_no_context_takeover; client_max_window_bits"
                    ],
                    ["authorization", "<redacted>"],
                    ["x-team", "blue"],
                    ["cookie", "<redacted>"],
                ],
            },
            "response": {
                "status": 101,
                "reason": "Switching Protocols",
                "headers": [
                    ["Date", "DATE"],
                    ["Upgrade", "websocket"],
                    ["Connection", "Upgrade"],
                    ["Sec-WebSocket-Accept", "ACCEPT"],
                    [
                        "Sec-WebSocket-Extensions",
                        "permessage-deflate; client_no_context_takeover; \
                         server_max_window_bits=12; client_max_window_bits=12"
                    ],
                    ["Server", "PYTHON"],
                ],
            },
        })],
        "{}",
        run.describe()
    );
}

/// Refuses every upgrade with 401, a challenge and a cookie.
const REFUSING: &str = r#"
import http

def process_request(connection, request):
    response = connection.respond(http.HTTPStatus.UNAUTHORIZED, "who are you?\n")
    response.headers["WWW-Authenticate"] = 'Bearer realm="tether"'
    response.headers["Set-Cookie"] = "session=s3cret-session"
    return response

async def handler(ws):
    pass

SERVE_KWARGS = {"process_request": process_request}
"#;

#[test]
fn a_rejected_handshake_shows_its_status_and_headers() {
    let server = PythonServer::start(REFUSING);
    let addr = format!("127.0.0.1:{}", server.port());
    let refusal = [
        "< HTTP/1.1 401 Unauthorized",
        "< Date: DATE",
        "< Connection: close",
        "< Content-Length: 13",
        "< Content-Type: text/plain; charset=utf-8",
        "< WWW-Authenticate: Bearer realm=\"tether\"",
        "< Set-Cookie: <redacted>",
        "< Server: PYTHON",
    ];
    let run = Tether::new()
        .arg(server.url("/"))
        .args(["-v", "-H", "Authorization: Bearer s3cret-token"])
        .run();
    run.code(5);
    assert_eq!(
        handshake_lines(&run.stderr, &addr),
        concat(&[&UPGRADE, &["> authorization: <redacted>"], &refusal]),
        "{}",
        run.describe()
    );
    lacks(&run, &["s3cret"]);

    let run = Tether::new().arg(server.url("/")).arg("--json").run();
    run.code(5);
    lacks(&run, &["s3cret"]);
    let events = run.json_events();
    let kinds: Vec<_> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["connecting", "handshake", "error"]);
    let handshake = &handshake_events(&run, &addr)[0];
    assert_eq!(
        handshake["response"],
        json!({
            "status": 401,
            "reason": "Unauthorized",
            "headers": [
                ["Date", "DATE"],
                ["Connection", "close"],
                ["Content-Length", "13"],
                ["Content-Type", "text/plain; charset=utf-8"],
                ["WWW-Authenticate", "Bearer realm=\"tether\""],
                ["Set-Cookie", "<redacted>"],
                ["Server", "PYTHON"],
            ],
        }),
        "{}",
        run.describe()
    );
}

#[test]
fn through_tinyproxy_minus_v_shows_the_connect_exchange_first() {
    let server = PythonServer::start(ECHO);
    let addr = format!("127.0.0.1:{}", server.port());
    let proxy = Tinyproxy::with_auth(&[server.port()], "puser", "s3cret-proxy");
    let secrets = ["s3cret", &basic("puser", "s3cret-proxy")];
    let connect = [
        "> CONNECT ADDR HTTP/1.1",
        "> Host: ADDR",
        &format!("> User-Agent: tether/{}", env!("CARGO_PKG_VERSION")),
        "> Proxy-Authorization: <redacted>",
    ];
    let run = Tether::new()
        .args(["-x", &proxy.url_with("puser", "s3cret-proxy"), "-v"])
        .arg(server.url("/"))
        .stdin("hi\n")
        .run();
    run.code(0).stdout_is("hi\n");
    assert_eq!(
        handshake_lines(&run.stderr, &addr),
        concat(&[
            &connect,
            &[
                "< HTTP/1.0 200 Connection established",
                "< Proxy-agent: TINYPROXY"
            ],
            &UPGRADE,
            &PYTHON_101,
        ]),
        "{}",
        run.describe()
    );
    lacks(&run, &secrets);

    let run = Tether::new()
        .args(["-x", &proxy.url_with("puser", "s3cret-proxy"), "--json"])
        .arg(server.url("/"))
        .stdin("hi\n")
        .run();
    run.code(0);
    lacks(&run, &secrets);
    let handshakes = handshake_events(&run, &addr);
    let peers: Vec<_> = handshakes.iter().map(|e| e["peer"].clone()).collect();
    assert_eq!(peers, ["proxy", "server"], "{}", run.describe());
    assert_eq!(
        handshakes[0]["request"],
        json!({
            "method": "CONNECT",
            "target": addr,
            "headers": [
                ["Host", "ADDR"],
                ["User-Agent", format!("tether/{}", env!("CARGO_PKG_VERSION"))],
                ["Proxy-Authorization", "<redacted>"],
            ],
        })
    );
    assert_eq!(handshakes[0]["response"]["status"], 200);

    // The proxy's refusal shows as the server's would, and nothing follows it.
    let run = Tether::new()
        .args(["-x", &proxy.url_with("puser", "s3cret-wrong"), "-v"])
        .arg(server.url("/"))
        .run();
    run.code(11);
    lacks(&run, &["s3cret", &basic("puser", "s3cret-wrong")]);
    let lines = handshake_lines(&run.stderr, &addr);
    assert_eq!(lines[..4], connect, "{}", run.describe());
    assert_eq!(
        lines[4],
        "< HTTP/1.0 401 Unauthorized",
        "{}",
        run.describe()
    );
    assert!(
        lines[5..].iter().all(|l| l.starts_with("< ")),
        "{}",
        run.describe()
    );
}

#[test]
fn every_connection_has_its_handshake_event_reconnects_too() {
    let dials = Arc::new(AtomicUsize::new(0));
    let server = Server::start(move |mut conn| {
        let first = dials.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            if !first {
                conn.echo().await;
            }
        }
    });
    let run = Tether::new()
        .arg(server.url("/"))
        .args(FAST_BACKOFF)
        .args(["--json", "--max-reconnects", "3", "--ping-interval", "0"])
        .stdin("hi\n")
        .run();
    run.code(0);
    let dialled: Vec<_> = run
        .json_events()
        .iter()
        .filter_map(|e| match e["event"].as_str()? {
            kind @ ("connecting" | "connected") => Some(kind.to_owned()),
            "handshake" => Some(format!("handshake {}", e["response"]["status"])),
            _ => None,
        })
        .collect();
    assert_eq!(
        dialled,
        [
            "connecting",
            "handshake 101",
            "connected",
            "connecting",
            "handshake 101",
            "connected"
        ],
        "{}",
        run.describe()
    );
}

#[test]
fn with_minus_l_every_hop_shows_its_exchange() {
    let server = PythonServer::start(ECHO);
    let addr = format!("127.0.0.1:{}", server.port());
    let location: &'static str = Box::leak(format!("Location: ws://{addr}/\r\n").into_boxed_str());
    let redirector = Server::http("307 Temporary Redirect", location, "");
    let run = Tether::new()
        .args(["-L", "-v"])
        .arg(redirector.url("/old"))
        .stdin("hi\n")
        .run();
    run.code(0).stdout_is("hi\n");
    let lines: Vec<String> = handshake_lines(&run.stderr, &addr)
        .into_iter()
        .map(|l| l.replace(&redirector.addr().to_string(), "REDIRECTOR"))
        .collect();
    assert_eq!(
        lines,
        concat(&[
            &["> GET /old HTTP/1.1", "> Host: REDIRECTOR"],
            &UPGRADE[2..],
            &[
                "< HTTP/1.1 307 Temporary Redirect",
                "< Location: ws://ADDR/",
                "< Content-Length: 0",
                "< Connection: close",
            ],
            &UPGRADE,
            &PYTHON_101,
        ]),
        "{}",
        run.describe()
    );
}

#[test]
fn over_tls_the_handshake_shows_as_it_was_before_encryption() {
    let pki = crate::support::tls::TestPki::generate();
    let dir = tempfile::tempdir().unwrap();
    let files = pki.write_to(dir.path());
    let server = Server::start_tls(pki.server_acceptor(), |mut conn| async move {
        conn.echo().await
    });
    let addr = server.addr().to_string();
    let run = Tether::new()
        .arg(format!("wss://{addr}/"))
        .arg("--cacert")
        .arg(&files.ca)
        .arg("-v")
        .stdin("hi\n")
        .run();
    run.code(0).stdout_is("hi\n");
    // tokio-tungstenite's server writes its headers in lower case.
    assert_eq!(
        handshake_lines(&run.stderr, &addr),
        concat(&[
            &UPGRADE,
            &[
                "< HTTP/1.1 101 Switching Protocols",
                "< connection: Upgrade",
                "< upgrade: websocket",
                "< sec-websocket-accept: ACCEPT",
            ],
        ]),
        "{}",
        run.describe()
    );
}

#[test]
fn an_answer_that_is_not_http_leaves_the_response_null() {
    let server = Server::raw(|mut stream| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = vec![0u8; 4096];
        let _ = stream.read(&mut buf).await;
        let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.2\r\n\r\n").await;
        let _ = stream.shutdown().await;
    });
    let addr = server.addr().to_string();
    let run = Tether::new()
        .arg(server.url("/"))
        .args(["--json", "-v"])
        .run();
    run.code(5);
    // The request was sent; nothing of the answer is shown as if it were HTTP.
    assert_eq!(
        handshake_lines(&run.stderr, &addr),
        UPGRADE,
        "{}",
        run.describe()
    );
    let events = handshake_events(&run, &addr);
    assert_eq!(events.len(), 1, "{}", run.describe());
    assert_eq!(events[0]["request"]["method"], "GET");
    assert_eq!(events[0]["response"], Value::Null, "{}", run.describe());
}
