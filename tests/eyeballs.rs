//! Racing a host's addresses (RFC 8305), `--resolve` and `-4`/`-6`, against
//! real listeners: a blackhole is a loopback listener whose accept queue is
//! full, which drops SYNs (the kernel does so even with SYN cookies on: they
//! stand in for a full SYN queue, not a full accept queue).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use crate::support::proxies::{Microsocks, Tinyproxy};
use crate::support::tls::TestPki;
use crate::support::{Server, Tether, free_port};

/// A listener on `addr` that never answers a SYN: its backlog of 0 is
/// filled by one connection nobody accepts, so the next SYNs are dropped.
struct Blackhole {
    _listener: TcpListener,
    _filler: TcpStream,
}

impl Blackhole {
    fn at(addr: SocketAddr) -> Blackhole {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        let listener = runtime.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(addr).expect("binding the blackhole");
            socket.listen(0).unwrap().into_std().unwrap()
        });
        let filler = TcpStream::connect(addr).expect("filling the blackhole's accept queue");
        Blackhole {
            _listener: listener,
            _filler: filler,
        }
    }
}

/// `-v`'s lines about the race, without their timestamps.
fn attempt_lines(stderr: &str) -> Vec<String> {
    let line = regex::Regex::new(r"^\S+ +DEBUG +((TCP attempt|\S+ resolved to) .*)$").unwrap();
    stderr
        .lines()
        .filter_map(|l| Some(line.captures(l)?[1].to_owned()))
        .collect()
}

#[test]
fn a_blackholed_first_address_loses_the_race_to_a_live_second() {
    let server = Server::echo();
    let port = server.addr().port();
    // The same port on another loopback address, where SYNs go unanswered.
    let _blackhole = Blackhole::at(SocketAddr::from(([127, 0, 0, 2], port)));
    let run = Tether::new()
        .arg(format!("ws://race.test:{port}/"))
        .args([
            "--resolve",
            &format!("race.test:{port}:127.0.0.2,127.0.0.1"),
        ])
        .args(["--connect-timeout", "10s", "-v"])
        .stdin("hi\n")
        .deadline(Duration::from_secs(20))
        .run();
    run.code(0).stdout_is("hi\n");
    // Tried one after the other, the blackhole would take the whole 10 s.
    assert!(run.elapsed < Duration::from_secs(3), "{:?}", run.elapsed);
    assert_eq!(
        attempt_lines(&run.stderr),
        [
            "race.test resolved to 127.0.0.2, 127.0.0.1 (--resolve)".to_owned(),
            format!("TCP attempt 1 of 2: 127.0.0.2:{port}"),
            format!("TCP attempt 2 of 2: 127.0.0.1:{port} (attempt 1 unanswered after 250ms)"),
            format!("TCP attempt 2 won: 127.0.0.1:{port}"),
            format!("TCP attempt 1 dropped: 127.0.0.2:{port}"),
        ],
        "{}",
        run.describe()
    );
    // The name, not the address, is what the server hears.
    let conns = server.connections();
    assert_eq!(
        conns[0].header("host"),
        Some(format!("race.test:{port}").as_str())
    );
}

#[test]
fn when_every_address_fails_the_error_names_each() {
    let port = free_port();
    let run = Tether::new()
        .arg(format!("ws://down.test:{port}/"))
        .args([
            "--resolve",
            &format!("down.test:{port}:127.0.0.2,127.0.0.1"),
        ])
        .arg("-v")
        .run();
    run.code(3);
    let refused = "Connection refused (os error 111)";
    assert_eq!(
        run.error_line(),
        format!(
            "tether: error: could not connect to ws://down.test:{port}/: \
             127.0.0.2:{port}: {refused}; 127.0.0.1:{port}: {refused}"
        ),
        "{}",
        run.describe()
    );
    assert_eq!(
        attempt_lines(&run.stderr),
        [
            "down.test resolved to 127.0.0.2, 127.0.0.1 (--resolve)".to_owned(),
            format!("TCP attempt 1 of 2: 127.0.0.2:{port}"),
            format!("TCP attempt 1 failed: 127.0.0.2:{port}: {refused}"),
            format!("TCP attempt 2 of 2: 127.0.0.1:{port} (attempt 1 failed)"),
            format!("TCP attempt 2 failed: 127.0.0.1:{port}: {refused}"),
        ],
        "{}",
        run.describe()
    );
}

#[test]
fn minus_4_and_minus_6_keep_one_family() {
    let server = Server::echo();
    let port = server.addr().port();
    let pin = format!("both.test:{port}:[::1],127.0.0.1");
    let run = Tether::new()
        .arg(format!("ws://both.test:{port}/"))
        .args(["--resolve", &pin, "-4", "-v"])
        .stdin("hi\n")
        .run();
    run.code(0).stdout_is("hi\n");
    assert_eq!(
        attempt_lines(&run.stderr),
        [
            "both.test resolved to 127.0.0.1 (--resolve)".to_owned(),
            format!("TCP attempt 1 of 1: 127.0.0.1:{port}"),
            format!("TCP attempt 1 won: 127.0.0.1:{port}"),
        ],
        "{}",
        run.describe()
    );

    let run = Tether::new()
        .arg(format!("ws://v4.test:{port}/"))
        .args(["--resolve", &format!("v4.test:{port}:127.0.0.1"), "-6"])
        .run();
    run.code(3);
    assert_eq!(
        run.error_line(),
        format!(
            "tether: error: could not connect to ws://v4.test:{port}/: \
             v4.test has no IPv6 address (-6): it resolved to 127.0.0.1 (--resolve)"
        ),
    );
    let run = Tether::new()
        .arg(format!("ws://127.0.0.1:{port}/"))
        .arg("--ipv6")
        .run();
    run.code(3);
    assert_eq!(
        run.error_line(),
        format!(
            "tether: error: could not connect to ws://127.0.0.1:{port}/: \
             127.0.0.1 is not an IPv6 address (-6)"
        ),
    );
    Tether::new()
        .args([&format!("ws://127.0.0.1:{port}/"), "-4", "-6"])
        .run()
        .code(2)
        .stderr_has("'--ipv4' cannot be used with '--ipv6'");
}

#[test]
fn a_malformed_resolve_is_a_usage_error() {
    let run = Tether::new()
        .args(["ws://a.test/", "--resolve", "a.test:80:[::1"])
        .run();
    run.code(2);
    assert_eq!(
        run.error_line(),
        "tether: error: --resolve \"[::1\" in \"a.test:80:[::1\" is not an IP address"
    );
}

#[test]
fn a_redirect_to_a_pinned_name_uses_the_pin() {
    let server = Server::echo();
    let port = server.addr().port();
    let location: &'static str =
        Box::leak(format!("Location: ws://moved.test:{port}/\r\n").into_boxed_str());
    let redirector = Server::http("307 Temporary Redirect", location, "");
    Tether::new()
        .arg(redirector.url("/"))
        .args(["-L", "--resolve", &format!("moved.test:{port}:127.0.0.1")])
        .stdin("hi\n")
        .run()
        .code(0)
        .stdout_is("hi\n");
    assert_eq!(
        server.connections()[0].header("host"),
        Some(format!("moved.test:{port}").as_str())
    );
}

#[test]
fn through_an_http_proxy_the_pin_is_for_the_proxy_name() {
    let server = Server::echo();
    let proxy = Tinyproxy::start(&[server.addr().port()]);
    let run = Tether::new()
        .arg(server.url("/"))
        .args(["-x", &format!("http://proxy.test:{}", proxy.port())])
        .args([
            "--resolve",
            &format!("proxy.test:{}:127.0.0.1", proxy.port()),
        ])
        .stdin("hi\n")
        .run();
    run.code(0).stdout_is("hi\n");
}

#[test]
fn through_socks5_the_server_name_is_pinned_here() {
    let server = Server::echo();
    let port = server.addr().port();
    let socks = Microsocks::start();
    let run = Tether::new()
        .arg(format!("ws://socks.test:{port}/"))
        .args(["-x", &format!("socks5://127.0.0.1:{}", socks.port())])
        .args(["--resolve", &format!("socks.test:{port}:127.0.0.1")])
        .stdin("hi\n")
        .run();
    run.code(0).stdout_is("hi\n");
}

#[test]
fn tls_runs_on_the_winner_and_checks_the_name_not_the_address() {
    let pki = TestPki::generate();
    let dir = tempfile::tempdir().unwrap();
    let files = pki.write_to(dir.path());
    let server = Server::start_tls(pki.server_acceptor(), |mut conn| async move {
        conn.echo().await
    });
    let port = server.addr().port();
    let _blackhole = Blackhole::at(SocketAddr::from(([127, 0, 0, 2], port)));
    // The certificate is for localhost and 127.0.0.1.
    let run = Tether::new()
        .arg(format!("wss://localhost:{port}/"))
        .args([
            "--resolve",
            &format!("localhost:{port}:127.0.0.2,127.0.0.1"),
        ])
        .arg("--cacert")
        .arg(&files.ca)
        .args(["--connect-timeout", "10s"])
        .stdin("hi\n")
        .deadline(Duration::from_secs(20))
        .run();
    run.code(0).stdout_is("hi\n");
    assert!(run.elapsed < Duration::from_secs(3), "{:?}", run.elapsed);
    // Pinned to an address the certificate names, another name still fails.
    let run = Tether::new()
        .arg(format!("wss://elsewhere.test:{port}/"))
        .args(["--resolve", &format!("elsewhere.test:{port}:127.0.0.1")])
        .arg("--cacert")
        .arg(&files.ca)
        .stdin("hi\n")
        .run();
    run.code(4);
    assert!(
        run.error_line().starts_with(&format!(
            "tether: error: TLS failure with wss://elsewhere.test:{port}/: certificate verify failed"
        )),
        "{}",
        run.describe()
    );
}
