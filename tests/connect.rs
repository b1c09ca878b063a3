//! Dialing: TLS, handshake rejections, unreachable servers and bad URLs,
//! each with its documented exit code and message.

mod support;

use support::tls::TestPki;
use support::{Server, Tether};

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
fn a_client_certificate_is_presented_when_asked() {
    let pki = TestPki::generate();
    let dir = tempfile::tempdir().unwrap();
    let files = pki.write_to(dir.path());
    let server = tls_echo(&pki);
    Tether::new()
        .arg(server.wss_url("/"))
        .arg("--cacert")
        .arg(&files.ca)
        .arg("--cert")
        .arg(&files.client_cert)
        .arg("--key")
        .arg(&files.client_key)
        .stdin("me\n")
        .run()
        .code(0)
        .stdout_is("me\n");
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
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
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
        ("localhost:8080", "ws://"),
        ("ws://", "invalid URL"),
        ("ws://exa mple.com/", "invalid URL"),
    ] {
        Tether::new().arg(url).run().code(2).stderr_has(problem);
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
