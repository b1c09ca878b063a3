//! The interactive session through a real pseudo-terminal: the real binary,
//! real keys, real servers. Every wait is for something the terminal shows
//! or the server records, with a deadline.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::support::Server;
use crate::support::cmd::{BIN, clear_env};
use crate::support::pty::Pty;
use crate::support::server::{ConnLog, binary};
use tokio_tungstenite::tungstenite::Message;

/// For what the server records; only a failure waits this long.
const WAIT: Duration = Duration::from_secs(20);
const ENTER: &str = "\r";
const CTRL_C: &str = "\x03";
const CTRL_D: &str = "\x04";
const UP: &str = "\x1b[A";

/// tether on a terminal, connected to `url`, at an empty prompt.
///
/// Keys typed between two lines, while the editor is not reading, meet a
/// cooked terminal (where Ctrl-C and Ctrl-D mean something else), so tests
/// wait for the next prompt before typing a control key.
fn open(url: &str, state: &tempfile::TempDir, extra: &[&str]) -> Pty {
    let mut args = vec![url, "--color", "never"];
    args.extend_from_slice(extra);
    let mut pty = Pty::tether(args, state.path());
    pty.expect(&format!("* connected to {url}"));
    pty.expect("connected > ");
    pty
}

fn texts(server: &Server, conn: usize) -> Vec<String> {
    server.connections()[conn].texts()
}

/// Waits until connection `conn` has received `n` messages.
fn received(server: &Server, conn: usize, n: usize) -> ConnLog {
    server.wait_until(WAIT, |c| c.get(conn).is_some_and(|c| c.messages.len() >= n))[conn].clone()
}

#[test]
fn a_typed_line_is_sent_and_its_echo_shown() {
    let server = Server::echo();
    let state = tempfile::tempdir().unwrap();
    let mut pty = open(&server.url("/"), &state, &[]);
    pty.line("hello");
    pty.expect("< hello\r\n");
    pty.line("//starts with a slash");
    pty.expect("< /starts with a slash\r\n");
    assert_eq!(
        received(&server, 0, 2).texts(),
        ["hello", "/starts with a slash"]
    );

    // Ctrl-D closes with 1000 and exits 0.
    pty.expect("connected > ");
    pty.send(CTRL_D);
    assert_eq!(pty.exit_code(), 0, "{}", pty.all_output());
    let conns = server.wait_until(WAIT, |c| c.first().is_some_and(|c| c.close.is_some()));
    assert_eq!(conns[0].close, Some((1000, String::new())));
}

#[test]
fn a_message_arriving_mid_line_leaves_the_half_typed_line_intact() {
    let (server, push) = Server::echo_with_push();
    let state = tempfile::tempdir().unwrap();
    let mut pty = open(&server.url("/"), &state, &[]);
    pty.send("half a li");
    pty.expect("half a li");

    push.text("pushed while you typed");
    pty.expect("< pushed while you typed\r\n");
    // The prompt and the half line are drawn again below the message.
    pty.expect_regex(r"connected > (\x1b\[[0-9;?]*[A-Za-z])*half a li");

    pty.send("ne");
    pty.send(ENTER);
    pty.expect("< half a line\r\n");
    assert_eq!(received(&server, 0, 1).texts(), ["half a line"]);
}

#[test]
fn ping_prints_the_round_trip() {
    let server = Server::echo();
    let state = tempfile::tempdir().unwrap();
    let mut pty = open(&server.url("/"), &state, &[]);
    pty.line("/ping");
    pty.expect_regex(r"\* pong: rtt \d+\.\d ms\r\n");
    pty.line("/ping with a payload");
    pty.expect_regex(r"\* pong: rtt \d+\.\d ms\r\n");
    // Pings are not messages.
    assert!(texts(&server, 0).is_empty());
}

#[test]
fn show_ping_pong_marks_the_servers_pings_and_unasked_pongs() {
    // Each line typed is answered with a Ping, then an unasked Pong, then its echo.
    let server = Server::start(|mut conn| async move {
        while let Some(message) = conn.recv().await {
            conn.send(Message::Ping("are you there?\x1b[2J".into()))
                .await;
            conn.send(Message::Pong(vec![0xff].into())).await;
            conn.send(message).await;
        }
    });
    let state = tempfile::tempdir().unwrap();
    let mut pty = open(&server.url("/"), &state, &["-P", "--ping-interval", "0"]);
    pty.line("hello");
    pty.expect("* ping from the server: \"are you there?\\u{1b}[2J\"\r\n");
    pty.expect("* unsolicited pong from the server: ff\r\n");
    pty.expect("< hello\r\n");
    assert!(
        !pty.all_output().contains("\x1b[2J"),
        "{}",
        pty.all_output()
    );

    // Without -P, only the echo.
    let mut plain = open(&server.url("/"), &state, &["--ping-interval", "0"]);
    plain.line("again");
    plain.expect("< again\r\n");
    plain.expect("connected > ");
    plain.send(CTRL_D);
    assert_eq!(plain.exit_code(), 0);
    assert!(
        !plain.all_output().contains("ping from"),
        "{}",
        plain.all_output()
    );
}

#[test]
fn close_with_a_code_and_reason_reaches_the_server() {
    let server = Server::echo();
    let state = tempfile::tempdir().unwrap();
    let mut pty = open(&server.url("/"), &state, &[]);
    pty.line("/close 4000 bye");
    let conns = server.wait_until(WAIT, |c| c.first().is_some_and(|c| c.close.is_some()));
    assert_eq!(conns[0].close, Some((4000, "bye".to_string())));
    pty.expect("* closed (4000: bye)");
    assert_eq!(pty.exit_code(), 0);
}

#[test]
fn hex_sends_those_bytes_and_a_bad_argument_sends_nothing() {
    let server = Server::echo();
    let state = tempfile::tempdir().unwrap();
    let mut pty = open(&server.url("/"), &state, &[]);
    pty.line("/hex 0g");
    pty.expect("! 'g' is not a hex digit; usage: /hex HEX\r\n");
    pty.line("/close 99");
    pty.expect("usage: /close [CODE [REASON]]\r\n");
    pty.line("/hex 00ff");
    pty.expect("< [binary, 2 bytes]\r\n  00000000  00 ff");
    assert_eq!(received(&server, 0, 1).messages, [binary(&[0x00, 0xff])]);
    assert_eq!(
        server.connections()[0].close,
        None,
        "/close 99 closed nothing"
    );
}

#[test]
fn escape_sequences_and_control_bytes_from_the_server_are_shown_escaped() {
    let (server, push) = Server::echo_with_push();
    let state = tempfile::tempdir().unwrap();
    let mut pty = open(&server.url("/"), &state, &[]);
    push.text("\x1b[2Jwiped?\x07\x1b]0;pwned\x07\x08\r\u{9b}1m");
    pty.expect("< \\e[2Jwiped?\\x07\\e]0;pwned\\x07\\x08\\r\\x9b1m\r\n");
    let output = pty.all_output();
    for raw in ["\x1b[2J", "\x1b]0;", "\x07", "\u{9b}"] {
        assert!(
            !output.contains(raw),
            "{raw:?} reached the terminal: {output:?}"
        );
    }
}

#[test]
fn history_survives_a_restart_and_is_private() {
    let server = Server::echo();
    let state = tempfile::tempdir().unwrap();
    let mut first = open(&server.url("/"), &state, &[]);
    first.line("remember me");
    first.expect("< remember me\r\n");
    first.expect("connected > ");
    first.send(CTRL_D);
    assert_eq!(first.exit_code(), 0);

    let file = state.path().join("tether/history");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", file.display());

    let mut second = open(&server.url("/"), &state, &[]);
    second.send(UP);
    second.expect("remember me");
    second.send(ENTER);
    second.expect("< remember me\r\n");
    assert_eq!(received(&server, 1, 1).texts(), ["remember me"]);
}

#[test]
fn a_world_writable_history_directory_is_narrowed_to_0700() {
    let server = Server::echo();
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().join("tether");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut pty = open(&server.url("/"), &state, &[]);
    pty.line("kept private");
    pty.expect("< kept private\r\n");
    pty.expect("connected > ");
    pty.send(CTRL_D);
    assert_eq!(pty.exit_code(), 0, "{}", pty.all_output());
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("history")), 0o600);
    assert!(
        !pty.all_output().contains("warning"),
        "{}",
        pty.all_output()
    );
}

#[test]
fn a_history_directory_of_another_user_is_not_used() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: giving a directory to another user needs root");
        return;
    }
    let server = Server::echo();
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().join("tether");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    let mut pty = Pty::tether([server.url("/").as_str(), "--color", "never"], state.path());
    pty.expect(&format!(
        "! warning: history will not be saved: {d}/history: the directory {d} belongs to another user (uid 65534), not to uid 0\r\n",
        d = dir.display()
    ));
    pty.expect("connected > ");
    pty.line("not kept");
    pty.expect("< not kept\r\n");
    pty.expect("connected > ");
    pty.send(CTRL_D);
    assert_eq!(pty.exit_code(), 0, "{}", pty.all_output());
    // Left as it was, and nothing written into it.
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o777);
    assert!(!dir.join("history").exists());
}

#[test]
fn a_line_typed_while_the_server_is_down_is_delivered_after_the_reconnect() {
    let state = tempfile::tempdir().unwrap();
    let (addr, mut pty) = queued_while_down(&state, "300ms");
    let server = Server::echo_at(addr);
    pty.expect(&format!("* connected to ws://{addr}/"));
    pty.expect("> sent 1 queued message\r\n");
    pty.expect("< while down\r\n");
    pty.expect("connected > ");
    assert_eq!(received(&server, 0, 1).texts(), ["while down"]);
}

#[test]
fn ctrl_c_clears_the_line_and_a_second_while_closing_forces_the_exit() {
    // Holds the connection without ever reading: our Close gets no answer.
    let server = Server::start(|conn| async move {
        let _held = conn;
        std::future::pending::<()>().await;
    });
    let state = tempfile::tempdir().unwrap();
    let mut pty = open(&server.url("/"), &state, &[]);
    pty.send("never sent");
    pty.expect("never sent");
    pty.send(CTRL_C);
    // Keys typed before the next prompt would meet a cooked terminal.
    pty.expect("connected > ");
    pty.send(CTRL_D);
    pty.expect("* closing with 1000; Ctrl-C leaves without waiting\r\n");
    pty.send(CTRL_C);
    // A clean close would wait for the server and exit 0.
    assert_eq!(pty.exit_code(), 130, "{}", pty.all_output());
}

#[test]
fn tab_completes_commands_and_status_reports_the_session() {
    let server = Server::echo();
    let state = tempfile::tempdir().unwrap();
    let mut pty = open(&server.url("/"), &state, &[]);
    pty.line("one");
    pty.expect("< one\r\n");
    pty.send("/sta\t");
    pty.expect("/status");
    pty.send(ENTER);
    pty.expect("* state:       connected for ");
    pty.expect(&format!("  url:         {}\r\n", server.url("/")));
    pty.expect("  reconnects:  0\r\n");
    pty.expect("  queued:      0\r\n");
    pty.expect("  messages:    1 sent, 1 received\r\n");
    pty.line("/help");
    pty.expect("/close [CODE [REASON]]");
    pty.line("/nope");
    pty.expect("! unknown command /nope;");
    assert_eq!(texts(&server, 0), ["one"]);
    assert!(
        !server.connections()[0]
            .messages
            .iter()
            .any(|m| matches!(m, Message::Binary(_))),
        "nothing but the text went out"
    );
}

#[test]
fn credentials_in_the_query_are_redacted_in_the_connected_line_and_status() {
    let server = Server::echo();
    let state = tempfile::tempdir().unwrap();
    let url = server.url("/feed?access_token=s3cret&room=1");
    let shown = server.url("/feed?access_token=<redacted>&room=1");
    let mut pty = Pty::tether([url.as_str(), "--color", "never"], state.path());
    pty.expect(&format!("* connected to {shown}\r\n"));
    pty.expect("connected > ");
    pty.line("/status");
    pty.expect(&format!("  url:         {shown}\r\n"));
    pty.expect("connected > ");
    pty.send(CTRL_D);
    assert_eq!(pty.exit_code(), 0, "{}", pty.all_output());
    assert!(!pty.all_output().contains("s3cret"), "{}", pty.all_output());
    let conns = server.wait_until(WAIT, |c| !c.is_empty());
    assert_eq!(conns[0].path, "/feed?access_token=s3cret&room=1");
}

#[test]
fn a_server_that_closes_ends_the_session_and_gives_the_terminal_back() {
    let (server, push) = Server::echo_with_push();
    let state = tempfile::tempdir().unwrap();
    let mut pty = open(&server.url("/"), &state, &[]);
    pty.send("typing, ");
    pty.expect("typing, ");
    push.close(1000, "done");
    pty.expect("* server closed (1000: done)\r\n");
    assert_eq!(pty.exit_code(), 0, "{}", pty.all_output());
    // rustyline left raw mode and turned bracketed paste off again.
    let output = pty.all_output();
    let after = &output[output.rfind("server closed").unwrap()..];
    assert!(after.contains("\x1b[?2004l"), "{after:?}");
    assert_eq!(server.connections()[0].close, Some((1000, "done".into())));
}

#[test]
fn a_history_that_cannot_be_written_is_a_warning_not_a_failure() {
    let server = Server::echo();
    let state = tempfile::tempdir().unwrap();
    // A file where the tether directory should be.
    std::fs::write(state.path().join("tether"), "not a directory").unwrap();
    let mut pty = Pty::tether([server.url("/").as_str(), "--color", "never"], state.path());
    pty.expect(&format!(
        "! warning: history will not be saved: {}/tether/history: ",
        state.path().display()
    ));
    pty.expect("connected > ");
    pty.line("still works");
    pty.expect("< still works\r\n");
    pty.expect("connected > ");
    pty.send(CTRL_D);
    assert_eq!(pty.exit_code(), 0);
}

/// Closing the terminal window (or an ssh drop) hangs the terminal up: the
/// kernel sends SIGHUP, reads see EOF and writes fail. tether used to die
/// without a Close frame; it closes as for SIGTERM, and does not get stuck
/// on the terminal that is gone.
#[test]
fn a_hung_up_terminal_closes_cleanly_and_exits_130() {
    let (server, push) = Server::echo_with_push();
    let state = tempfile::tempdir().unwrap();
    let mut pty = open(&server.url("/"), &state, &[]);
    pty.send("half a line");
    pty.expect("half a line");
    // The server's handler listens by now (it may close before the push
    // after the hang-up).
    push.text("before the hang-up");
    pty.hang_up();
    // Messages keep arriving for a terminal nobody reads.
    push.text_if_listening("for nobody");
    assert_eq!(pty.exit_code(), 130, "{}", pty.all_output());
    let conns = server.wait_until(WAIT, |c| c.first().is_some_and(|c| c.close.is_some()));
    assert_eq!(conns[0].close, Some((1000, "interrupted".to_string())));
    assert!(conns[0].texts().is_empty(), "the half line was not sent");
}

#[test]
fn sighup_with_the_terminal_still_there_closes_cleanly_and_exits_130() {
    let server = Server::echo();
    let state = tempfile::tempdir().unwrap();
    let mut pty = open(&server.url("/"), &state, &[]);
    pty.signal(nix::sys::signal::Signal::SIGHUP);
    pty.expect("* closing with 1000 (interrupted); Ctrl-C leaves without waiting\r\n");
    assert_eq!(pty.exit_code(), 130, "{}", pty.all_output());
    let conns = server.wait_until(WAIT, |c| c.first().is_some_and(|c| c.close.is_some()));
    assert_eq!(conns[0].close, Some((1000, "interrupted".to_string())));
}

/// Under `nohup` (SIGHUP ignored) no signal comes, but the editor finds the
/// terminal hung up and the session closes the same way.
#[test]
fn a_hung_up_terminal_closes_cleanly_even_with_sighup_ignored() {
    let server = Server::echo();
    let state = tempfile::tempdir().unwrap();
    let url = server.url("/");
    let mut command = std::process::Command::new("setsid");
    command
        .args(["--ctty", "sh", "-c", "trap '' HUP; exec \"$0\" \"$@\""])
        .arg(BIN)
        .args([url.as_str(), "--color", "never"])
        .env("TERM", "xterm")
        .env("XDG_STATE_HOME", state.path());
    clear_env(&mut command);
    let mut pty = Pty::spawn(command);
    pty.expect("connected > ");
    pty.hang_up();
    assert_eq!(pty.exit_code(), 130, "{}", pty.all_output());
    let conns = server.wait_until(WAIT, |c| c.first().is_some_and(|c| c.close.is_some()));
    assert_eq!(conns[0].close, Some((1000, "interrupted".to_string())));
}

/// The lines the history file holds, without its format's header.
fn history_lines(state: &tempfile::TempDir) -> Vec<String> {
    let file = state.path().join("tether/history");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    text.lines()
        .filter(|l| *l != "#V2")
        .map(str::to_owned)
        .collect()
}

/// Lines that arrive in one read (typed fast, pasted without bracketed
/// paste, sent by tmux or expect) all go out, in order, and all reach the
/// history. rustyline reads the terminal 1024 bytes at a time, and used to
/// drop whatever followed the first Enter when its `readline` returned.
fn a_burst_of_lines(enter: &str) {
    let server = Server::echo();
    let state = tempfile::tempdir().unwrap();
    let mut pty = open(&server.url("/"), &state, &[]);
    pty.send(format!("one{enter}two{enter}three{enter}"));
    pty.expect("< one\r\n");
    // Typed afterwards, it comes after them: once the server has it, the
    // record says what became of the burst.
    pty.expect("connected > ");
    pty.line("four");
    let conns = server.wait_until(WAIT, |c| {
        c.first()
            .is_some_and(|c| c.texts().last().is_some_and(|t| t == "four"))
    });
    assert_eq!(conns[0].texts(), ["one", "two", "three", "four"]);
    assert_eq!(history_lines(&state), ["one", "two", "three", "four"]);
    pty.expect("< four\r\n");

    pty.expect("connected > ");
    pty.send(CTRL_D);
    assert_eq!(pty.exit_code(), 0, "{}", pty.all_output());
    assert_eq!(texts(&server, 0), ["one", "two", "three", "four"]);
    // Every echo was shown (the server got them in order, checked above).
    let shown = pty.all_output();
    for line in ["< one\r\n", "< two\r\n", "< three\r\n", "< four\r\n"] {
        assert!(shown.contains(line), "{line:?} never shown:\n{shown}");
    }
}

#[test]
fn lines_written_in_one_burst_with_carriage_returns_are_all_sent() {
    a_burst_of_lines("\r");
}

#[test]
fn lines_written_in_one_burst_with_line_feeds_are_all_sent() {
    a_burst_of_lines("\n");
}

#[test]
fn a_line_and_half_a_line_in_one_burst_keep_the_half_for_the_next_prompt() {
    let server = Server::echo();
    let state = tempfile::tempdir().unwrap();
    let mut pty = open(&server.url("/"), &state, &[]);
    pty.send("one\rtw");
    pty.expect("< one\r\n");
    // The half line is on the next prompt, where typing goes on.
    pty.expect_regex(r"connected > (\x1b\[[0-9;?]*[A-Za-z])*tw");
    assert_eq!(received(&server, 0, 1).texts(), ["one"]);
    pty.send("o\r");
    pty.expect("< two\r\n");
    assert_eq!(received(&server, 0, 2).texts(), ["one", "two"]);
    assert_eq!(history_lines(&state), ["one", "two"]);
}

/// More than rustyline's 1024-byte read in one burst: the lines past the
/// first read come after those of the first, none lost on the seam.
#[test]
fn a_burst_longer_than_one_read_arrives_whole_and_in_order() {
    let server = Server::echo();
    let state = tempfile::tempdir().unwrap();
    let mut pty = open(&server.url("/"), &state, &[]);
    let lines: Vec<String> = (0..150).map(|n| format!("line {n:03}")).collect();
    let burst: String = lines.iter().map(|l| format!("{l}\r")).collect();
    assert!(burst.len() > 1024);
    pty.send(burst);
    pty.expect("< line 149\r\n");
    assert_eq!(received(&server, 0, 150).texts(), lines);
    assert_eq!(history_lines(&state), lines);
}

/// A bracketed paste stays one line, its line breaks in it, even with
/// more lines after it in the same burst.
#[test]
fn a_bracketed_paste_is_one_message_and_the_lines_after_it_follow() {
    let server = Server::echo();
    let state = tempfile::tempdir().unwrap();
    let mut pty = open(&server.url("/"), &state, &[]);
    pty.send("\x1b[200~first\rsecond\x1b[201~\rafter\r");
    pty.expect("< after\r\n");
    assert_eq!(received(&server, 0, 2).texts(), ["first\nsecond", "after"]);
}

/// A session whose server went down, and a line typed since: it waits in the queue.
/// `backoff` is the wait before each reconnect attempt.
fn queued_while_down(state: &tempfile::TempDir, backoff: &str) -> (std::net::SocketAddr, Pty) {
    let server = Server::echo();
    let addr = server.addr();
    let mut pty = open(
        &server.url("/"),
        state,
        &[
            "--backoff-initial",
            backoff,
            "--backoff-max",
            backoff,
            // Only the queue is under test: no re-sending of "before".
            "--replay-window",
            "0",
        ],
    );
    pty.line("before");
    pty.expect("< before\r\n");
    drop(server);
    pty.expect("* disconnected: ");
    pty.line("while down");
    pty.expect("> queued: not connected; it goes out after the reconnect (1 waiting)\r\n");
    (addr, pty)
}

#[test]
fn ctrl_d_while_disconnected_waits_for_the_reconnect_to_deliver_the_queued_lines() {
    let state = tempfile::tempdir().unwrap();
    let (addr, mut pty) = queued_while_down(&state, "300ms");
    pty.send(CTRL_D);
    pty.expect(
        "* closing with 1000 once the reconnect delivers 1 queued message; \
         Ctrl-C leaves without waiting\r\n",
    );
    let server = Server::echo_at(addr);
    assert_eq!(pty.exit_code(), 0, "{}", pty.all_output());
    let conns = server.wait_until(Duration::from_secs(5), |c| {
        c.first().is_some_and(|c| c.close.is_some())
    });
    assert_eq!(conns[0].texts(), ["while down"]);
    assert_eq!(conns[0].close, Some((1000, String::new())));
}

#[test]
fn ctrl_c_while_waiting_to_deliver_queued_lines_leaves_at_once_and_says_what_was_not_sent() {
    let state = tempfile::tempdir().unwrap();
    // No attempt before the Ctrl-C: the freed port may be another test's by then.
    let (_addr, mut pty) = queued_while_down(&state, "30s");
    pty.send(CTRL_D);
    pty.expect("once the reconnect delivers 1 queued message");
    pty.send(CTRL_C);
    assert_eq!(pty.exit_code(), 130, "{}", pty.all_output());
    assert!(
        pty.all_output()
            .contains("1 message was never confirmed by the server (1 queued, never written)"),
        "{}",
        pty.all_output()
    );
}

#[test]
fn timestamps_indent_a_multi_line_message_under_its_text() {
    let (server, push) = Server::echo_with_push();
    let state = tempfile::tempdir().unwrap();
    let mut pty = open(&server.url("/"), &state, &["--timestamps"]);
    push.text("first\nsecond");
    // The time, the marker, then the further line under the text: 27 columns in.
    let time = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z";
    pty.expect_regex(&format!(r"{time} < first\r\n {{27}}second\r\n"));
    pty.expect("connected > ");
    pty.send(CTRL_D);
    assert_eq!(pty.exit_code(), 0, "{}", pty.all_output());
}

#[test]
fn the_repl_works_over_a_unix_socket() {
    use crate::support::python::{ECHO, PythonServer};
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("repl.sock");
    let _server = PythonServer::start_unix(ECHO, &socket);
    let state = tempfile::tempdir().unwrap();
    // Shown as written: the request path after the colon.
    let url = format!("ws+unix://{}:/", socket.display());
    let mut pty = open(&url, &state, &[]);
    pty.line("over the socket");
    pty.expect("< over the socket\r\n");
    pty.expect("connected > ");
    pty.send(CTRL_D);
    assert_eq!(pty.exit_code(), 0, "{}", pty.all_output());
}

#[test]
fn status_says_which_compression_was_agreed() {
    let server = crate::support::python::PythonServer::start(crate::support::python::ECHO);
    let state = tempfile::tempdir().unwrap();
    let mut pty = open(&server.url("/"), &state, &[]);
    pty.line("/status");
    pty.expect(&format!("  url:         {}\r\n", server.url("/")));
    pty.expect(
        "  compression: permessage-deflate; client_no_context_takeover; \
         server_max_window_bits=12; client_max_window_bits=12 (tether sends uncompressed)\r\n",
    );
    pty.expect("  reconnects:  0\r\n");
    pty.send(CTRL_D);
    assert_eq!(pty.exit_code(), 0, "{}", pty.all_output());
}

#[test]
fn a_reply_is_shown_and_sent_back() {
    let server = Server::echo();
    let state = tempfile::tempdir().unwrap();
    let mut pty = open(
        &server.url("/"),
        &state,
        &["--reply", r"^PING (\d+)$", "PONG {{1}}"],
    );
    pty.line("PING 42");
    pty.expect("< PING 42\r\n");
    pty.expect("* replied to PING 42 with PONG 42\r\n");
    pty.expect("< PONG 42\r\n");
    assert_eq!(received(&server, 0, 2).texts(), ["PING 42", "PONG 42"]);
}

#[test]
fn status_counts_the_app_heartbeat_round_trips() {
    // The echo server sends the app ping back: it is its own pong. With no
    // protocol heartbeat, only those round trips can be in the statistics.
    let server = Server::echo();
    let state = tempfile::tempdir().unwrap();
    let mut pty = open(
        &server.url("/"),
        &state,
        &[
            "--ping-interval",
            "0",
            "--app-ping",
            "app-ping",
            "--app-pong",
            "^app-ping$",
            "--app-ping-interval",
            "200ms",
        ],
    );
    pty.expect("< app-ping\r\n");
    pty.line("/status");
    pty.expect_regex(
        r"  rtt:         last [0-9]+\.[0-9] ms, min [0-9]+\.[0-9] ms, avg [0-9]+\.[0-9] ms, max [0-9]+\.[0-9] ms \([1-9][0-9]* pongs?\)\r\n",
    );
    pty.send(CTRL_D);
    assert_eq!(pty.exit_code(), 0, "{}", pty.all_output());
}
