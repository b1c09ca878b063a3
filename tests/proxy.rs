//! Proxies: HTTP CONNECT through tinyproxy, SOCKS5 through microsocks, the
//! proxy environment variables, and what each refusal looks like. The
//! proxies are the real Debian packages, started per test on 127.0.0.1.

use crate::support::proxies::{Microsocks, SocksRecorder, SocksTarget, Tinyproxy};
use crate::support::tls::TestPki;
use crate::support::{FAST_BACKOFF, Server, Tether, free_port};

/// Fast, bounded retries for the tests that need a second attempt (with [`FAST_BACKOFF`]).
const RETRY_ONCE: [&str; 2] = ["--max-reconnects", "1"];

/// Retries that must not happen: a fatal failure ignores them (with [`FAST_BACKOFF`]).
const RETRIES_ALLOWED: [&str; 2] = ["--max-reconnects", "3"];

/// A TLS echo server, its CA file, and the temp dir holding it.
struct TlsEcho {
    server: Server,
    ca: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl TlsEcho {
    fn start() -> TlsEcho {
        let pki = TestPki::generate();
        let dir = tempfile::tempdir().unwrap();
        let files = pki.write_to(dir.path());
        let server = Server::start_tls(pki.server_acceptor(), |mut conn| async move {
            conn.echo().await
        });
        TlsEcho {
            server,
            ca: files.ca,
            _dir: dir,
        }
    }

    fn port(&self) -> u16 {
        self.server.addr().port()
    }

    /// By address: the test certificate covers 127.0.0.1 too, and an
    /// address needs no resolving at the proxy.
    fn url(&self) -> String {
        format!("wss://127.0.0.1:{}/", self.port())
    }
}

#[test]
fn ws_through_tinyproxy_echoes() {
    let server = Server::echo();
    let proxy = Tinyproxy::start(&[server.addr().port()]);
    Tether::new()
        .args(["--proxy", &proxy.url(), &server.url("/")])
        .args(["-n", "2"])
        .stdin("one\ntwo\n")
        .run()
        .code(0)
        .stdout_is("one\ntwo\n");
    assert_eq!(proxy.connects(), [server.addr().to_string()]);
}

#[test]
fn wss_through_tinyproxy_is_tls_end_to_end_with_the_server() {
    let tls = TlsEcho::start();
    let proxy = Tinyproxy::start(&[tls.port()]);
    // The name, not an address, goes to the proxy: certificate checks
    // happen here, against the name in the URL.
    let url = format!("wss://localhost:{}/", tls.port());
    Tether::new()
        .args(["-x", &proxy.url(), &url, "--cacert"])
        .arg(&tls.ca)
        .args(["-n", "1"])
        .stdin("sealed\n")
        .run()
        .code(0)
        .stdout_is("sealed\n");
    assert_eq!(proxy.connects(), [format!("localhost:{}", tls.port())]);

    // Without the CA the server's certificate is refused: the proxy did not
    // terminate TLS, the server did.
    Tether::new()
        .args(["-x", &proxy.url(), &url])
        .stdin("sealed\n")
        .run()
        .code(4)
        .stderr_has("certificate verify failed");
}

#[test]
fn tinyproxy_credentials_are_sent_and_bad_ones_are_fatal() {
    let server = Server::echo();
    let proxy = Tinyproxy::with_auth(&[server.addr().port()], "alice", "s3cret");
    Tether::new()
        .args(["-x", &proxy.url_with("alice", "s3cret"), &server.url("/")])
        .args(["-n", "1"])
        .stdin("let me in\n")
        .run()
        .code(0)
        .stdout_is("let me in\n");

    let shown = format!("proxy http://<redacted>@127.0.0.1:{}", proxy.port());
    // tinyproxy answers wrong credentials with 401, missing ones with 407.
    Tether::new()
        .args(["-x", &proxy.url_with("alice", "wr0ng"), &server.url("/")])
        .args(RETRIES_ALLOWED)
        .args(FAST_BACKOFF)
        .stdin("x\n")
        .run()
        .code(11)
        .stderr_has(&shown)
        .stderr_has("HTTP 401")
        .stderr_has("the credentials were not accepted")
        .stderr_has("hint: check the proxy credentials")
        .stderr_lacks("wr0ng")
        .stderr_lacks("reconnecting");
    Tether::new()
        .args(["-x", &proxy.url(), &server.url("/")])
        .args(RETRIES_ALLOWED)
        .args(FAST_BACKOFF)
        .stdin("x\n")
        .run()
        .code(11)
        .stderr_has(&format!("proxy http://127.0.0.1:{}", proxy.port()))
        .stderr_has("HTTP 407 Proxy Authentication Required")
        .stderr_has("no credentials were given")
        .stderr_lacks("reconnecting");
    // One tunnel each: the refusals were not retried.
    assert_eq!(proxy.connects().len(), 3, "{}", proxy.log());
    assert_eq!(server.connections().len(), 1);
}

#[test]
fn a_destination_the_proxy_forbids_is_fatal() {
    let server = Server::echo();
    let other_port = server.addr().port().wrapping_add(1).max(1);
    let proxy = Tinyproxy::start(&[other_port]);
    Tether::new()
        .args(["-x", &proxy.url(), &server.url("/")])
        .args(RETRIES_ALLOWED)
        .args(FAST_BACKOFF)
        .stdin("x\n")
        .run()
        .code(11)
        .stderr_has(&format!(
            "proxy http://127.0.0.1:{}: refused the tunnel to {}: HTTP 403",
            proxy.port(),
            server.addr()
        ))
        .stderr_lacks("reconnecting");
    assert_eq!(proxy.connects().len(), 1);
    assert!(server.connections().is_empty());
}

#[test]
fn a_proxy_that_cannot_reach_the_server_is_retried() {
    let closed = free_port();
    let proxy = Tinyproxy::start(&[closed]);
    let run = Tether::new()
        .args(["-x", &proxy.url(), &format!("ws://127.0.0.1:{closed}/")])
        .args(RETRY_ONCE)
        .args(FAST_BACKOFF)
        .stdin("x\n")
        .run();
    // tinyproxy says "500 Unable to connect"; a 502 or 503 reads the same.
    run.code(3)
        .stderr_has(&format!("proxy http://127.0.0.1:{}", proxy.port()))
        .stderr_has(&format!(
            "could not open a tunnel to 127.0.0.1:{closed}: HTTP 500"
        ))
        .stderr_has("reconnecting");
    assert_eq!(proxy.connects().len(), 2, "{}", proxy.log());
}

#[test]
fn an_unreachable_proxy_is_a_connect_failure_that_names_it() {
    let server = Server::echo();
    let closed = free_port();
    Tether::new()
        .args([
            "-x",
            &format!("http://bob:hunter2@127.0.0.1:{closed}"),
            &server.url("/"),
        ])
        .stdin("x\n")
        .run()
        .code(3)
        .stderr_has(&format!(
            "proxy http://<redacted>@127.0.0.1:{closed}: cannot connect to the proxy"
        ))
        .stderr_has("Connection refused")
        .stderr_lacks("hunter2");
    assert!(server.connections().is_empty());
}

#[test]
fn a_proxy_that_never_answers_counts_against_the_connect_timeout() {
    let server = Server::echo();
    // Accepts the connection, reads the CONNECT, and says nothing.
    let silent = Server::raw(|mut stream| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 1024];
        while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
    });
    let proxy = format!("http://{}", silent.addr());
    Tether::new()
        .args(["-x", &proxy, &server.url("/"), "--connect-timeout", "300ms"])
        .stdin("x\n")
        .run()
        .code(3)
        .stderr_has(&format!(
            "could not connect to {} through proxy {proxy}: no connection within 300ms",
            server.url("/")
        ));
    assert!(server.connections().is_empty());
}

#[test]
fn ws_and_wss_through_microsocks() {
    let server = Server::echo();
    let tls = TlsEcho::start();
    let proxy = Microsocks::start();
    for scheme in ["socks5", "socks5h"] {
        Tether::new()
            .args(["-x", &proxy.url(scheme), &server.url("/")])
            .args(["-n", "1"])
            .stdin(format!("{scheme} plain\n"))
            .run()
            .code(0)
            .stdout_is(&format!("{scheme} plain\n"));
        Tether::new()
            .args(["-x", &proxy.url(scheme), &tls.url(), "--cacert"])
            .arg(&tls.ca)
            .args(["-n", "1"])
            .stdin(format!("{scheme} sealed\n"))
            .run()
            .code(0)
            .stdout_is(&format!("{scheme} sealed\n"));
    }
    assert_eq!(server.connections().len(), 2);
    assert_eq!(tls.server.connections().len(), 2);
}

#[test]
fn a_proxy_url_of_the_wrong_kind_is_fatal() {
    let server = Server::echo();
    let socks = Microsocks::start();
    Tether::new()
        .args(["-x", &format!("http://127.0.0.1:{}", socks.port())])
        .arg(server.url("/"))
        .args(RETRIES_ALLOWED)
        .args(FAST_BACKOFF)
        .stdin("x\n")
        .run()
        .code(11)
        .stderr_has("its answer to CONNECT is not HTTP")
        .stderr_has("hint: check that the proxy URL's scheme")
        .stderr_lacks("reconnecting");
    // A WebSocket server is no SOCKS proxy: it hangs up.
    Tether::new()
        .args(["-x", &format!("socks5h://{}", server.addr())])
        .arg(server.url("/"))
        .args(RETRIES_ALLOWED)
        .args(FAST_BACKOFF)
        .stdin("x\n")
        .run()
        .code(11)
        .stderr_has("without answering the SOCKS5 handshake")
        .stderr_lacks("reconnecting");
}

#[test]
fn microsocks_with_username_and_password() {
    let server = Server::echo();
    let proxy = Microsocks::with_auth("carol", "pa55");
    Tether::new()
        .args([
            "-x",
            &proxy.url_with("socks5h", "carol", "pa55"),
            &server.url("/"),
        ])
        .args(["-n", "1"])
        .stdin("authenticated\n")
        .run()
        .code(0)
        .stdout_is("authenticated\n");

    Tether::new()
        .args([
            "-x",
            &proxy.url_with("socks5", "carol", "n0pe"),
            &server.url("/"),
        ])
        .args(RETRIES_ALLOWED)
        .args(FAST_BACKOFF)
        .stdin("x\n")
        .run()
        .code(11)
        .stderr_has(&format!(
            "proxy socks5://<redacted>@127.0.0.1:{}",
            proxy.port()
        ))
        .stderr_has("did not accept the user name and password")
        .stderr_lacks("n0pe")
        .stderr_lacks("reconnecting");
    Tether::new()
        .args(["-x", &proxy.url("socks5h"), &server.url("/")])
        .args(RETRIES_ALLOWED)
        .args(FAST_BACKOFF)
        .stdin("x\n")
        .run()
        .code(11)
        .stderr_has("requires a user name and password")
        .stderr_lacks("reconnecting");
    assert_eq!(server.connections().len(), 1);
}

#[test]
fn socks5h_sends_the_host_name_and_socks5_an_address() {
    let server = Server::echo();
    let port = server.addr().port();
    let url = format!("ws://localhost:{port}/");
    let recorder = SocksRecorder::start();
    Tether::new()
        .args(["-x", &recorder.url("socks5h"), &url])
        .args(["-n", "1"])
        .stdin("by name\n")
        .run()
        .code(0)
        .stdout_is("by name\n");
    assert_eq!(
        recorder.requests(),
        [SocksTarget::Domain("localhost".into(), port)]
    );

    let recorder = SocksRecorder::start();
    Tether::new()
        .args(["-x", &recorder.url("socks5"), &url])
        .args(["-n", "1"])
        .stdin("by address\n")
        .run()
        .code(0)
        .stdout_is("by address\n");
    // Resolved here: only addresses reach the proxy (::1 first, perhaps,
    // where localhost has both; the server listens on 127.0.0.1).
    let requests = recorder.requests();
    assert!(
        requests.iter().all(|r| matches!(r, SocksTarget::Ip(_))),
        "{requests:?}"
    );
    assert!(
        requests.contains(&SocksTarget::Ip(server.addr())),
        "{requests:?}"
    );
}

#[test]
fn the_environment_picks_the_proxy_by_scheme() {
    let server = Server::echo();
    let tls = TlsEcho::start();
    let for_ws = SocksRecorder::start();
    let for_wss = SocksRecorder::start();
    let ws = || {
        Tether::new()
            .arg(server.url("/"))
            .args(["-n", "1"])
            .stdin("hi\n")
            .env("HTTPS_PROXY", for_wss.url("socks5h"))
    };
    let wss = || {
        Tether::new()
            .args([&tls.url(), "--cacert"])
            .arg(&tls.ca)
            .args(["-n", "1"])
            .stdin("hi\n")
            .env("HTTP_PROXY", for_ws.url("socks5h"))
    };

    ws().env("HTTP_PROXY", for_ws.url("socks5h"))
        .run()
        .code(0)
        .stdout_is("hi\n");
    wss()
        .env("HTTPS_PROXY", for_wss.url("socks5h"))
        .run()
        .code(0)
        .stdout_is("hi\n");
    assert_eq!(for_ws.requests(), [SocksTarget::Ip(server.addr())]);
    assert_eq!(for_wss.requests(), [SocksTarget::Ip(tls.server.addr())]);

    // Lowercase works, and wins over uppercase; ALL_PROXY is the fallback.
    ws().env("http_proxy", for_ws.url("socks5h"))
        .env("HTTP_PROXY", "http://127.0.0.1:1")
        .run()
        .code(0);
    wss().env("all_proxy", for_wss.url("socks5")).run().code(0);
    ws().env("ALL_PROXY", for_ws.url("socks5")).run().code(0);
    assert_eq!(for_ws.requests().len(), 3);
    assert_eq!(for_wss.requests().len(), 2);
}

#[test]
fn no_proxy_excludes_hosts() {
    let server = Server::echo();
    let recorder = SocksRecorder::start();
    let run = |no_proxy: &str, extra: &[&str]| {
        Tether::new()
            .arg(server.url("/"))
            .args(extra)
            .args(["-n", "1"])
            .stdin("hi\n")
            .env("ALL_PROXY", recorder.url("socks5h"))
            .env("NO_PROXY", no_proxy)
            .run()
            .code(0)
            .stdout_is("hi\n");
    };
    run("127.0.0.1", &[]);
    run("example.com, 127.0.0.0/8", &[]);
    run("*", &[]);
    // NO_PROXY applies to --proxy too, as in curl.
    run("127.0.0.1", &["--proxy", &recorder.url("socks5")]);
    assert_eq!(recorder.requests(), []);
    assert_eq!(server.connections().len(), 4);

    // A list that does not name the host leaves the proxy in use.
    run("example.com,.internal,127.0.0.2", &[]);
    assert_eq!(recorder.requests(), [SocksTarget::Ip(server.addr())]);
}

#[test]
fn the_no_proxy_flag_ignores_the_environment() {
    let server = Server::echo();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let with_env = || {
        Tether::new()
            .arg(server.url("/"))
            .args(["-n", "1"])
            .stdin("direct\n")
            .env("HTTP_PROXY", &dead)
            .env("ALL_PROXY", &dead)
            // Broken, but never read with --no-proxy.
            .env("HTTPS_PROXY", "gopher://nowhere")
    };
    with_env()
        .arg("--no-proxy")
        .run()
        .code(0)
        .stdout_is("direct\n");
    // The control: without the flag the environment is used (and is broken).
    with_env()
        .run()
        .code(2)
        .stderr_has("HTTPS_PROXY \"gopher://nowhere\"");
    Tether::new()
        .arg(server.url("/"))
        .stdin("x\n")
        .env("HTTP_PROXY", &dead)
        .run()
        .code(3)
        .stderr_has(&format!("proxy {dead}"));
}

#[test]
fn verbose_shows_the_proxy_in_use_without_credentials() {
    let server = Server::echo();
    let proxy = Microsocks::with_auth("dave", "t0ps3cret");
    let run = Tether::new()
        .args(["-v", "-x", &proxy.url_with("socks5h", "dave", "t0ps3cret")])
        .arg(server.url("/"))
        .args(["-n", "1"])
        .stdin("hi\n")
        .run();
    run.code(0)
        .stderr_has(&format!(
            "through proxy socks5h://<redacted>@127.0.0.1:{} (from --proxy)",
            proxy.port()
        ))
        .stderr_lacks("t0ps3cret")
        .stderr_lacks("dave");

    let run = Tether::new()
        .args(["-v", &server.url("/")])
        .env("ALL_PROXY", "http://127.0.0.1:9")
        .env("NO_PROXY", "127.0.0.1")
        .args(["-n", "1"])
        .stdin("hi\n")
        .run();
    run.code(0)
        .stderr_has("directly (NO_PROXY matches the host)");
}

#[test]
fn a_message_given_to_x_as_wscat_takes_it_gets_a_hint_to_send() {
    // wscat's -x is --execute; tether's is --proxy. This was an "invalid port
    // number" proxy error.
    let server = Server::echo();
    for message in [r#"{"op":1}"#, "[1,2]", "hello there"] {
        let run = Tether::new().args([&server.url("/"), "-x", message]).run();
        run.code(2).stdout_is("");
        assert_eq!(
            run.stderr,
            format!(
                "tether: error: --proxy {message:?} is not a proxy URL (-x is --proxy in tether)\n\
                 tether: hint: to send a message once connected, use --send MSG (what wscat's -x/--execute does)\n"
            ),
            "{}",
            run.describe()
        );
    }
    assert!(server.connections().is_empty());
}

#[test]
fn unusable_proxy_settings_are_usage_errors() {
    for (flag, problem) in [
        ("ftp://u:pw@proxy:21", "unsupported scheme \"ftp\""),
        ("https://proxy:443", "not supported"),
        ("socks5://onlyuser@proxy", "1 to 255 bytes"),
        ("http://proxy:99999", "invalid port"),
    ] {
        Tether::new()
            .args(["ws://127.0.0.1:1/", "--proxy", flag])
            .run()
            .code(2)
            .stderr_has("--proxy")
            .stderr_has(problem)
            .stderr_lacks(":pw@");
    }
    Tether::new()
        .args(["ws://127.0.0.1:1/", "--proxy", "http://p:1", "--no-proxy"])
        .run()
        .code(2)
        .stderr_has("cannot be used with");
}
