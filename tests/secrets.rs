//! Secrets stay out of sight: credential parameters in a URL's query are redacted wherever
//! the URL is printed (but dialled as given), and headers can come from a file, so a token
//! need not be on the command line where `ps` shows it.

use std::time::Duration;

use crate::support::{Server, Tether, free_port};

/// A URL's query with two credentials (one in another case) and a harmless parameter.
const QUERY: &str = "?token=s3cret-1&room=1&X-Amz-Signature=s3cret-2";
const QUERY_SHOWN: &str = "?token=<redacted>&room=1&X-Amz-Signature=<redacted>";

#[test]
fn credentials_in_the_query_are_redacted_in_connected_lines_and_logs() {
    let server = Server::echo();
    let run = Tether::new()
        .arg(server.url(&format!("/feed{QUERY}")))
        .arg("-v")
        .stdin("hi\n")
        .run();
    run.code(0).stdout_is("hi\n").stderr_lacks("s3cret");
    let shown = server.url(&format!("/feed{QUERY_SHOWN}"));
    run.stderr_has(&format!("tether: connected to {shown}\n"))
        .stderr_has(&format!("connecting to {shown} directly"));
    // The server got the real query.
    let conns = server.wait_until(Duration::from_secs(10), |c| !c.is_empty());
    assert_eq!(conns[0].path, format!("/feed{QUERY}"));
}

#[test]
fn credentials_in_the_query_are_redacted_in_json_events() {
    let server = Server::echo();
    let run = Tether::new()
        .arg(server.url(&format!("/feed{QUERY}")))
        .arg("--json")
        .stdin("hi\n")
        .run();
    run.code(0).stderr_lacks("s3cret");
    assert!(!run.stdout_str().contains("s3cret"), "{}", run.describe());
    let events = run.json_events();
    let connected = events.iter().find(|e| e["event"] == "connected").unwrap();
    assert_eq!(connected["url"], server.url(&format!("/feed{QUERY_SHOWN}")));
}

#[test]
fn credentials_in_the_query_are_redacted_in_errors() {
    let port = free_port();
    let run = Tether::new()
        .arg(format!("ws://127.0.0.1:{port}/x?access_token=s3cret&v=2"))
        .arg("--json")
        .run();
    run.code(3).stderr_lacks("s3cret");
    assert!(!run.stdout_str().contains("s3cret"), "{}", run.describe());
    run.stderr_has(&format!(
        "tether: error: could not connect to ws://127.0.0.1:{port}/x?access_token=<redacted>&v=2: "
    ));
    // A URL too broken to dial is quoted without its secrets too.
    Tether::new()
        .arg("ws:///x?api_key=s3cret")
        .run()
        .code(2)
        .stderr_lacks("s3cret")
        .stderr_has("ws:///x?api_key=<redacted>");
}

#[test]
fn credentials_in_a_redirect_location_are_redacted() {
    let server = Server::http(
        "302 Found",
        "Location: /elsewhere?api_key=s3cret&region=eu\r\n",
        "",
    );
    let run = Tether::new().arg(server.url("/")).run();
    run.code(5).stderr_lacks("s3cret");
    assert_eq!(
        run.stderr,
        format!(
            "tether: error: handshake rejected by {}: HTTP 302 Found, redirecting to {}\n\
             tether: hint: add -L/--location to follow redirects\n",
            server.url("/"),
            server.url("/elsewhere?api_key=<redacted>&region=eu")
        ),
        "{}",
        run.describe()
    );
}

/// A header file for `-H @FILE`, removed when the test ends, and its argument.
fn header_file(text: &[u8]) -> (tempfile::NamedTempFile, String) {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut file, text).unwrap();
    let arg = format!("@{}", file.path().display());
    (file, arg)
}

#[test]
fn headers_come_from_a_file_with_h_at() {
    let (_file, arg) =
        header_file(b"# staging credentials\n\nAuthorization: Bearer s3cret\r\n  X-Team: blue\n");
    let server = Server::echo();
    let run = Tether::new()
        .arg(server.url("/"))
        .args(["-H", &arg, "-H", "X-Extra: 1", "-v"])
        .stdin("hi\n")
        .run();
    run.code(0).stdout_is("hi\n").stderr_lacks("s3cret");
    let conns = server.wait_until(Duration::from_secs(10), |c| !c.is_empty());
    assert_eq!(conns[0].header("authorization"), Some("Bearer s3cret"));
    assert_eq!(conns[0].header("x-team"), Some("blue"));
    assert_eq!(conns[0].header("x-extra"), Some("1"));
}

#[test]
fn a_header_file_that_cannot_be_used_is_a_usage_error() {
    let server = Server::echo();
    let usage = |arg: &str, expected: String| {
        let run = Tether::new().arg(server.url("/")).args(["-H", arg]).run();
        run.code(2).stdout_is("");
        assert_eq!(run.stderr, expected, "{}", run.describe());
    };
    let (_big, big) = header_file(&vec![b'#'; 64 * 1024 + 1]);
    usage(
        &big,
        format!(
            "tether: error: -H {big}: the file is larger than 64 KiB, the most a header file may hold\n"
        ),
    );
    usage(
        "@/nonexistent/headers",
        "tether: error: -H @/nonexistent/headers: cannot read it: No such file or directory (os error 2)\n"
            .into(),
    );
    usage(
        "@-",
        "tether: error: -H @-: headers cannot come from stdin, which carries the messages; \
         write them to a file and pass -H @FILE\n"
            .into(),
    );
    // A bad line is named, and what may be a token is not shown.
    let (_bad, bad) = header_file(b"X-Ok: 1\nBearer s3cret\n");
    usage(
        &bad,
        format!(
            "tether: error: -H {bad}:2: \"Bearer ...\" has no colon: a header is 'Name: value'\n"
        ),
    );
    assert!(server.connections().is_empty());
}
