//! Dialing: TLS (in process and behind a real nginx), handshake rejections,
//! redirects, unreachable servers and bad URLs, each with its documented
//! exit code and message.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::support::proxies::Nginx;
use crate::support::tls::{TestPki, TestPkiFiles};
use crate::support::{Server, Tether, free_port};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http;

fn tls_echo(pki: &TestPki) -> Server {
    Server::start_tls(pki.server_acceptor(), |mut conn| async move {
        conn.echo().await
    })
}

#[test]
fn wss_with_the_test_ca_succeeds() {
    let pki = TestPki::generate();
    let dir = tempfile::tempdir().unwrap();
    let files = pki.write_to(dir.path());
    let server = tls_echo(&pki);
    Tether::new()
        .args([&server.wss_url("/"), "--cacert"])
        .arg(&files.ca)
        .stdin("over tls\n")
        .run()
        .code(0)
        .stdout_is("over tls\n")
        .stderr_lacks("warning");
}

#[test]
fn wss_to_an_untrusted_server_is_a_tls_failure() {
    let pki = TestPki::generate();
    let server = tls_echo(&pki);
    Tether::new()
        .arg(server.wss_url("/"))
        .stdin("x\n")
        .run()
        .code(4)
        .stderr_has("TLS failure")
        .stderr_has("certificate verify failed")
        .stderr_has("--cacert");
}

#[test]
fn insecure_skips_verification_and_says_so() {
    let pki = TestPki::generate();
    let server = tls_echo(&pki);
    Tether::new()
        .args([&server.wss_url("/"), "-k"])
        .stdin("trust me\n")
        .run()
        .code(0)
        .stdout_is("trust me\n")
        .stderr_has("warning: -k/--insecure");
}

#[test]
fn wss_through_nginx_needs_the_test_ca() {
    let pki = TestPki::generate();
    let dir = tempfile::tempdir().unwrap();
    let files = pki.write_to(dir.path());
    let upstream = Server::echo();
    let nginx = Nginx::tls(&files, upstream.addr().port()).start();
    Tether::new()
        .args([&nginx.wss_url("/"), "--cacert"])
        .arg(&files.ca)
        .args(["-n", "1"])
        .stdin("through nginx\n")
        .run()
        .code(0)
        .stdout_is("through nginx\n");
    Tether::new()
        .arg(nginx.wss_url("/"))
        .stdin("x\n")
        .run()
        .code(4)
        .stderr_has("certificate verify failed");
    assert_eq!(upstream.connections().len(), 1);
}

#[test]
fn a_client_certificate_is_presented_when_asked() {
    let pki = TestPki::generate();
    let dir = tempfile::tempdir().unwrap();
    let files = pki.write_to(dir.path());
    let upstream = Server::echo();
    let nginx = Nginx::tls(&files, upstream.addr().port())
        .verify_clients()
        .start();
    echoes_with_the_client_certificate(&nginx.wss_url("/"), &files);
    let conns = upstream.connections();
    let subject = conns[0].header("x-client-subject").unwrap_or_default();
    assert!(subject.contains("CN=tether test client"), "{subject:?}");

    Tether::new()
        .arg(nginx.wss_url("/"))
        .arg("--cacert")
        .arg(&files.ca)
        .stdin("me\n")
        .run()
        .code(5)
        .stderr_has("HTTP 400")
        .stderr_has("No required SSL certificate was sent");
    assert_eq!(upstream.connections().len(), 1);
}

#[test]
fn a_bad_cacert_file_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-cert.pem");
    std::fs::write(&path, "hello").unwrap();
    Tether::new()
        .args(["wss://localhost:1/", "--cacert"])
        .arg(&path)
        .run()
        .code(2)
        .stderr_has("no PEM certificate");
}

/// `--cacert /dev/zero` used to read until memory ran out. Every file tether
/// reads has a limit that fits its purpose, and an endless or oversize file
/// is a usage error at once (the run's deadline catches a reader that keeps
/// going).
#[test]
fn files_over_their_limit_are_usage_errors_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let big = |name: &str, size: usize| {
        let path = dir.path().join(name);
        std::fs::write(&path, vec![b'#'; size]).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let mib = 1 << 20;
    let ca_over = big("bundle.pem", 4 * mib + 1);
    let cert_over = big("client.pem", mib + 1);
    let script_over = big("smoke.txt", 4 * mib + 1);
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["--cacert", "/dev/zero"],
            "--cacert /dev/zero: over the 4 MiB limit for --cacert".into(),
        ),
        (
            vec!["--cacert", &ca_over],
            format!("--cacert {ca_over}: over the 4 MiB limit for --cacert"),
        ),
        (
            vec!["--cert", "/dev/zero", "--key", "/dev/null"],
            "--cert /dev/zero: over the 1 MiB limit for --cert".into(),
        ),
        (
            vec!["--cert", &cert_over, "--key", "/dev/null"],
            format!("--cert {cert_over}: over the 1 MiB limit for --cert"),
        ),
        (
            vec!["--cert", "/dev/null", "--key", "/dev/zero"],
            "--key /dev/zero: over the 1 MiB limit for --key".into(),
        ),
        (
            vec!["--script", "/dev/zero"],
            "--script /dev/zero: over the 4 MiB limit for --script".into(),
        ),
        (
            vec!["--script", &script_over],
            format!("--script {script_over}: over the 4 MiB limit for --script"),
        ),
    ];
    for (args, message) in cases {
        let run = Tether::new()
            .arg("wss://localhost:1/")
            .args(args)
            .deadline(std::time::Duration::from_secs(10))
            .run();
        run.code(2);
        assert_eq!(
            run.stderr,
            format!("tether: error: {message}; is it the right file?\n")
        );
    }
    // `--script -` reads stdin under the same limit.
    let run = Tether::new()
        .args(["wss://localhost:1/", "--script", "-"])
        .stdin(vec![b'#'; 4 * mib + 1])
        .deadline(std::time::Duration::from_secs(10))
        .run();
    run.code(2);
    assert_eq!(
        run.stderr,
        "tether: error: --script -: over the 4 MiB limit for --script; is it the right file?\n"
    );
}

#[test]
fn a_404_is_a_rejected_handshake_with_its_status() {
    let server = Server::http("404 Not Found", "", "no such socket here");
    Tether::new()
        .arg(server.url("/nope"))
        .run()
        .code(5)
        .stderr_has("HTTP 404 Not Found")
        .stderr_has("no such socket here");
}

#[test]
fn a_long_rejection_body_is_cut_short() {
    let server = Server::http("500 Internal Server Error", "", include_str!("connect.rs"));
    let run = Tether::new().arg(server.url("/")).run();
    run.code(5).stderr_has("HTTP 500");
    let error = run.stderr.lines().find(|l| l.contains("HTTP 500")).unwrap();
    assert!(error.len() < 400, "{error}");
}

#[test]
fn a_refused_port_fails_fast_with_the_connect_code() {
    let port = free_port();
    Tether::new()
        .arg(format!("ws://127.0.0.1:{port}/"))
        .run()
        .code(3)
        .stderr_has("Connection refused")
        .stderr_lacks("reconnecting");
}

#[test]
fn bad_urls_and_schemes_are_usage_errors_that_name_the_problem() {
    for (url, problem) in [
        ("ftp://example.com/", "unsupported scheme \"ftp\""),
        ("ws://", "invalid URL"),
        ("ws://exa mple.com/", "invalid URL"),
    ] {
        Tether::new().arg(url).run().code(2).stderr_has(problem);
    }
}

#[test]
fn a_host_and_port_without_a_scheme_gets_the_ws_url_to_try() {
    // `localhost:9001` once read as the unsupported scheme "localhost".
    for url in [
        "localhost:9001",
        "127.0.0.1:9001",
        "example.com:80/chat?x=1",
        "example.com",
    ] {
        let run = Tether::new().arg(url).run();
        run.code(2).stdout_is("");
        assert_eq!(
            run.stderr,
            format!(
                "tether: error: invalid URL \"{url}\": it has no scheme; try ws://{url} or wss://{url}\n"
            ),
            "{}",
            run.describe()
        );
    }
}

#[test]
fn a_url_without_a_host_is_a_usage_error() {
    // The url crate reads ws:///path as host "path", which then failed to resolve (exit 3).
    for (url, scheme) in [
        ("ws:///path", "ws"),
        ("wss:///path", "wss"),
        ("ws:/path", "ws"),
    ] {
        let run = Tether::new().arg(url).run();
        run.code(2).stdout_is("");
        assert_eq!(
            run.stderr,
            format!(
                "tether: error: invalid URL \"{url}\": it has no host; write it as {scheme}://HOST[:PORT]/PATH\n"
            ),
            "{}",
            run.describe()
        );
    }
}

#[test]
fn http_urls_are_accepted_as_aliases_with_a_note() {
    let server = Server::echo();
    Tether::new()
        .arg(server.url("/").replace("ws://", "http://"))
        .stdin("aliased\n")
        .run()
        .code(0)
        .stdout_is("aliased\n")
        .stderr_has("treating http:// as ws://");
}

#[test]
fn bad_flags_are_usage_errors() {
    Tether::new()
        .args(["ws://x/", "--ping-interval", "often"])
        .run()
        .code(2)
        .stderr_has("--ping-interval");
    Tether::new()
        .args(["ws://x/", "-H", "NoColon"])
        .run()
        .code(2)
        .stderr_has("Name: value");
    Tether::new()
        .args(["ws://x/", "--no-such-flag"])
        .run()
        .code(2);
    Tether::new().run().code(2);
}

#[test]
fn offering_an_extension_with_h_is_a_usage_error() {
    // tether offers permessage-deflate itself and must know what it offered to read the
    // answer: a second offer of its own would make the session undecodable.
    let server = Server::echo();
    let run = Tether::new()
        .arg(server.url("/"))
        .args(["-H", "Sec-WebSocket-Extensions: permessage-deflate"])
        .run();
    run.code(2).stdout_is("");
    assert_eq!(
        run.stderr,
        "tether: error: -H: Sec-WebSocket-Extensions cannot be set: tether negotiates extensions \
         itself (it offers permessage-deflate unless --compression off, and compresses what it \
         sends with --compress), so drop this header\n",
        "{}",
        run.describe()
    );
    assert!(server.connections().is_empty());
}

#[test]
fn a_subprotocol_is_offered_and_the_choice_reported() {
    let server = Server::start(|mut conn| async move { conn.echo().await });
    // tungstenite's server accepts without choosing: tether warns and goes on.
    let run = Tether::new()
        .args([&server.url("/"), "-s", "chat.v2"])
        .stdin("hi\n")
        .run();
    run.code(0)
        .stdout_is("hi\n")
        .stderr_has("none of the offered subprotocols");
}

#[test]
fn a_redirect_is_a_rejection_that_suggests_location() {
    let server = Server::http(
        "301 Moved Permanently",
        "Location: http://127.0.0.1:1/moved\r\n",
        "",
    );
    Tether::new()
        .arg(server.url("/old"))
        .run()
        .code(5)
        .stderr_has("HTTP 301 Moved Permanently, redirecting to ws://127.0.0.1:1/moved")
        .stderr_has("hint: add -L/--location");
    Tether::new()
        .args(["ws://127.0.0.1:1/", "--max-redirects", "2"])
        .run()
        .code(2)
        .stderr_has("--location");
}

/// Who asked for what: (path, Authorization header).
type Requests = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A WebSocket echo server that redirects `/old` to `/new` on itself, and
/// `/away` to `away`, recording each request.
#[allow(clippy::result_large_err)] // tungstenite's callback type, not ours
fn redirecting_echo(away: String, seen: Requests) -> Server {
    Server::raw(move |stream| {
        let (away, seen) = (away.clone(), Arc::clone(&seen));
        async move {
            let route = |request: &Request, response: Response| {
                let path = request.uri().path().to_owned();
                let auth = request
                    .headers()
                    .get("authorization")
                    .map(|v| v.to_str().unwrap_or_default().to_owned());
                seen.lock().unwrap().push((path.clone(), auth));
                let location = match path.as_str() {
                    "/old" => "/new".to_owned(),
                    "/away" => away,
                    _ => return Ok(response),
                };
                let redirect: ErrorResponse = http::Response::builder()
                    .status(307)
                    .header("Location", location)
                    .body(None)
                    .unwrap();
                Err(redirect)
            };
            if let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, route).await {
                while let Some(Ok(message)) = ws.next().await {
                    if message.is_text() && ws.send(message).await.is_err() {
                        break;
                    }
                }
            }
        }
    })
}

#[test]
fn location_follows_redirects_and_credentials_stay_with_the_server_named() {
    let elsewhere = Server::echo();
    let seen = Requests::default();
    let server = redirecting_echo(elsewhere.url("/landed"), Arc::clone(&seen));

    Tether::new()
        .args(["-L", "--user", "ann:pw", &server.url("/old")])
        .args(["-n", "1"])
        .stdin("moved\n")
        .run()
        .code(0)
        .stdout_is("moved\n")
        .stderr_has(&format!("connected to {}", server.url("/new")));
    let basic = Some("Basic YW5uOnB3".to_owned());
    assert_eq!(
        *seen.lock().unwrap(),
        [("/old".into(), basic.clone()), ("/new".into(), basic)]
    );

    // To another server: the same request, minus the credentials.
    Tether::new()
        .args(["--location", &server.url("/away")])
        .args(["-H", "Authorization: Bearer t0ken", "-H", "X-Trace: 7"])
        .args(["-n", "1"])
        .stdin("away\n")
        .run()
        .code(0)
        .stdout_is("away\n")
        .stderr_has(&format!("connected to {}", elsewhere.url("/landed")));
    let conns = elsewhere.connections();
    assert_eq!(conns[0].path, "/landed");
    assert_eq!(conns[0].header("x-trace"), Some("7"));
    assert_eq!(conns[0].header("authorization"), None);
    assert_eq!(seen.lock().unwrap()[2].1.as_deref(), Some("Bearer t0ken"));

    // Every header --header-cmd prints is a secret, whatever its name: none
    // goes to another server.
    Tether::new()
        .args(["--location", &server.url("/away")])
        .args(["--header-cmd", "echo X-Api-Key: k3y", "-H", "X-Trace: 8"])
        .args(["-n", "1"])
        .stdin("away\n")
        .run()
        .code(0)
        .stdout_is("away\n");
    let conns = elsewhere.connections();
    assert_eq!(conns[1].header("x-trace"), Some("8"));
    assert_eq!(conns[1].header("x-api-key"), None);
}

#[test]
fn redirect_loops_stop_at_max_redirects() {
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&requests);
    let server = Server::raw(move |mut stream| {
        let counter = Arc::clone(&counter);
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut buf = vec![0u8; 4096];
            let _ = stream.read(&mut buf).await;
            counter.fetch_add(1, Ordering::SeqCst);
            let answer = "HTTP/1.1 302 Found\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n";
            let _ = stream.write_all(answer.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    });
    Tether::new()
        .args(["-L", "--max-redirects", "3", &server.url("/")])
        .args(["--max-reconnects", "2", "--backoff-initial", "10ms"])
        .run()
        .code(5)
        .stderr_has("it redirects more than 3 times (--max-redirects)")
        .stderr_lacks("reconnecting");
    assert_eq!(requests.load(Ordering::SeqCst), 4);
}

#[test]
fn a_redirect_from_wss_to_ws_is_followed_with_a_warning() {
    let pki = TestPki::generate();
    let dir = tempfile::tempdir().unwrap();
    let files = pki.write_to(dir.path());
    let upstream = Server::echo();
    let plain = Server::echo();
    let nginx = Nginx::tls(&files, upstream.addr().port())
        .location("/down", &format!("return 302 {};", plain.url("/plain")))
        .start();
    Tether::new()
        .args(["-L", &nginx.wss_url("/down"), "--cacert"])
        .arg(&files.ca)
        .args(["-H", "Cookie: session=s3cret"])
        .args(["-n", "1"])
        .stdin("downgraded\n")
        .run()
        .code(0)
        .stdout_is("downgraded\n")
        .stderr_has(&format!(
            "warning: the redirect from {} to {} leaves TLS: this session is not encrypted",
            nginx.wss_url("/down"),
            plain.url("/plain")
        ));
    let conns = plain.connections();
    assert_eq!(conns[0].header("cookie"), None);
    assert!(upstream.connections().is_empty());
}

/// A TLS 1.3 server (openssl; native-tls cannot ask for client certificates)
/// that requires a client certificate from the test CA, then echoes over
/// WebSocket. Returns its port and how many handshakes it has seen.
fn mutual_tls_echo(pki: &TestPki) -> (u16, Arc<AtomicUsize>) {
    let mut acceptor = pki.mutual_tls_acceptor();
    acceptor
        .set_min_proto_version(Some(openssl::ssl::SslVersion::TLS1_3))
        .unwrap();
    let acceptor = Arc::new(acceptor.build());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let attempts = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&attempts);
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { return };
            seen.fetch_add(1, Ordering::SeqCst);
            let acceptor = Arc::clone(&acceptor);
            std::thread::spawn(move || {
                let _ = tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)));
                let tls = match acceptor.accept(tcp) {
                    Ok(tls) => tls,
                    Err(openssl::ssl::HandshakeError::Failure(mut refused)) => {
                        // Read until the client hangs up, as a server that
                        // lingers does: closing with its upgrade request
                        // unread would reset the connection, and the reset
                        // could overtake the alert.
                        let _ = std::io::copy(refused.get_mut(), &mut std::io::sink());
                        return;
                    }
                    Err(_) => return,
                };
                let Ok(mut ws) = tokio_tungstenite::tungstenite::accept(tls) else {
                    return;
                };
                while let Ok(message) = ws.read() {
                    if message.is_text() || message.is_binary() {
                        let _ = ws.send(message);
                    }
                }
            });
        }
    });
    (port, attempts)
}

/// TLS 1.3 lets the client finish its handshake before the server checks
/// the client's certificate, so the refusal (alert 116, "certificate
/// required") arrives on the first read, in the middle of the upgrade. It
/// used to be reported as "closed before answering the upgrade" (exit 3,
/// retried).
#[test]
fn a_server_that_requires_a_client_certificate_is_a_tls_failure_with_a_hint() {
    let pki = TestPki::generate();
    let dir = tempfile::tempdir().unwrap();
    let files = pki.write_to(dir.path());
    let (port, attempts) = mutual_tls_echo(&pki);
    let url = format!("wss://localhost:{port}/");

    let run = Tether::new()
        .arg(&url)
        .arg("--cacert")
        .arg(&files.ca)
        // Retries allowed, to show that none is made.
        .args(["--max-reconnects", "3", "--backoff-initial", "10ms"])
        .run();
    run.code(4);
    assert_eq!(
        run.stderr,
        format!(
            "tether: error: TLS failure with {url}: the server requires a client certificate \
             (TLS alert \"certificate required\")\n\
             tether: hint: pass the client certificate and its key with --cert FILE --key FILE\n"
        )
    );
    // Not retried.
    assert_eq!(attempts.load(Ordering::SeqCst), 1);

    // A client certificate from another CA is refused, with its own hint.
    let stranger = TestPki::generate();
    let other = tempfile::tempdir().unwrap();
    let other = stranger.write_to(other.path());
    let run = Tether::new()
        .arg(&url)
        .arg("--cacert")
        .arg(&files.ca)
        .arg("--cert")
        .arg(&other.client_cert)
        .arg("--key")
        .arg(&other.client_key)
        .run();
    run.code(4);
    assert_eq!(
        run.stderr,
        format!(
            "tether: error: TLS failure with {url}: the server refused the client certificate \
             (TLS alert \"unknown CA\")\n\
             tether: hint: check that --cert holds a certificate the server trusts (issued by its \
             client CA) and --key its key\n"
        )
    );
    assert_eq!(attempts.load(Ordering::SeqCst), 2);

    echoes_with_the_client_certificate(&url, &files);
}

/// With the test CA's client certificate and key, `url` echoes one line.
#[track_caller]
fn echoes_with_the_client_certificate(url: &str, files: &TestPkiFiles) {
    Tether::new()
        .arg(url)
        .arg("--cacert")
        .arg(&files.ca)
        .arg("--cert")
        .arg(&files.client_cert)
        .arg("--key")
        .arg(&files.client_key)
        .args(["-n", "1"])
        .stdin("me\n")
        .run()
        .code(0)
        .stdout_is("me\n");
}
