//! What the REPL shows: received messages, status and notes as marked lines
//! above the prompt (`<` from the server, `*` from tether, `>` about a sent
//! line, `!` warnings and errors), `/help` and `/status`, and the prompt.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use crate::config::{BinaryFormat, OutputConfig};
use crate::render::sgr::{BOLD, CYAN, DIM, GREEN, RED, RESET, YELLOW};
use crate::render::{
    HEXDUMP_LIMIT, Renderer, base64_into, escape_controls, format_rtt, hex, hexdump, timestamp,
};
use crate::report::json::{self, JsonEvent};
use crate::report::status_line;
use crate::session::{Event, Payload};

/// The connection as the interactive prompt shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Connecting,
    Connected,
    /// Waiting this long before the next attempt.
    Retry(Duration),
    Closing,
    Closed,
}

/// Width of the prompt's state label. Every state is padded (or cut) to it:
/// the line editor measures the prompt once per line, so a prompt that
/// changes while a line is being typed must keep its width.
pub const PROMPT_LABEL_WIDTH: usize = 10;

/// The interactive session's output: every line it prints above the prompt,
/// and the prompt itself. Each piece ends with a newline; what came from the
/// server is escaped, whatever `--color` says.
#[derive(Debug, Clone, Copy)]
pub struct View {
    config: OutputConfig,
    renderer: Renderer,
}

impl View {
    pub fn new(config: OutputConfig) -> View {
        View {
            config,
            renderer: Renderer::new(config),
        }
    }

    /// `--json`: received messages and events are shown as their JSON lines.
    pub fn json(&self) -> bool {
        self.config.json
    }

    fn paint(&self, colour: &str, text: &str) -> String {
        if self.config.color {
            format!("{colour}{text}{RESET}")
        } else {
            text.to_owned()
        }
    }

    /// `marker text`, continuation lines indented under the text, with the
    /// time first when `--timestamps` asks for it.
    fn marked(&self, marker: &str, colour: &str, body: &str) -> String {
        let time = self.config.timestamps.then(SystemTime::now);
        self.marked_at(time, marker, colour, body)
    }

    /// [`View::marked`] at a given time. Continuation lines are indented
    /// under the text, past the time too: only a line that starts something
    /// new starts with a time or a marker.
    fn marked_at(
        &self,
        time: Option<SystemTime>,
        marker: &str,
        colour: &str,
        body: &str,
    ) -> String {
        let mut out = String::new();
        let mut width = 0;
        if let Some(time) = time {
            let stamp = timestamp(time);
            width += stamp.chars().count() + 1;
            out.push_str(&self.paint(DIM, &stamp));
            out.push(' ');
        }
        out.push_str(&self.paint(colour, marker));
        out.push(' ');
        width += marker.chars().count() + 1;
        let indent = " ".repeat(width);
        for (i, line) in body.split('\n').enumerate() {
            if i > 0 {
                out.push('\n');
                out.push_str(&indent);
            }
            out.push_str(line);
        }
        out.push('\n');
        out
    }

    /// A received message: `< text`, or a binary header and its dump.
    pub fn message(&self, payload: &Payload) -> String {
        if self.config.json {
            let mut out = Vec::new();
            json::message(&mut out, payload);
            // `json::Escaping` escapes every control (C0, DEL, C1) and the
            // bidi controls: nothing is left to escape, and the line stays JSON.
            return String::from_utf8_lossy(&out).into_owned();
        }
        let body = match payload {
            Payload::Text(text) => self
                .renderer
                .pretty(text, true)
                .unwrap_or_else(|| escape_controls(text).into_owned()),
            Payload::Binary(data) => match self.config.binary_format {
                BinaryFormat::Hex => format!("[binary] {}", hex(data)),
                BinaryFormat::Base64 => {
                    let mut out = b"[binary] ".to_vec();
                    base64_into(&mut out, data);
                    String::from_utf8_lossy(&out).into_owned()
                }
                BinaryFormat::HexDump | BinaryFormat::Raw => {
                    let plural = if data.len() == 1 { "" } else { "s" };
                    if data.is_empty() {
                        "[binary, empty]".to_owned()
                    } else {
                        format!(
                            "[binary, {} byte{plural}]\n{}",
                            data.len(),
                            hexdump(data, HEXDUMP_LIMIT)
                        )
                    }
                }
            },
        };
        self.marked("<", GREEN, &body)
    }

    /// A status event as a line above the prompt, or `None` when it is not
    /// worth showing (the same choices as [`crate::report::status_line`]).
    pub fn status(&self, event: &Event) -> Option<String> {
        if self.config.json {
            let mut out = Vec::new();
            json::event(&mut out, JsonEvent::of(event)?);
            return Some(String::from_utf8_lossy(&out).into_owned());
        }
        let line = status_line(event, self.config.verbosity, self.config.ping_pong)?;
        Some(match event {
            Event::Warning(_) => self.warning(line.trim_start_matches("warning: ")),
            Event::Disconnected { .. } | Event::Reconnecting { .. } => {
                self.marked("*", YELLOW, &escape_controls(&line))
            }
            Event::Closed {
                code, by_server, ..
            } if *by_server && code.is_some_and(|c| c != 1000) => {
                self.marked("*", RED, &escape_controls(&line))
            }
            _ => self.note(&line),
        })
    }

    /// Something tether says, e.g. `* connected to ...`.
    pub fn note(&self, text: &str) -> String {
        self.marked("*", CYAN, &escape_controls(text))
    }

    /// What happened to a line the user sent, e.g. that it waits in the queue.
    pub fn outgoing(&self, text: &str) -> String {
        self.marked(">", DIM, &escape_controls(text))
    }

    pub fn warning(&self, text: &str) -> String {
        self.marked("!", YELLOW, &format!("warning: {}", escape_controls(text)))
    }

    pub fn error(&self, text: &str) -> String {
        self.marked("!", RED, &escape_controls(text))
    }

    /// The prompt without colour: what the line editor measures.
    pub fn prompt_plain(link: Link) -> String {
        format!("{}> ", prompt_label(link))
    }

    /// The prompt as shown: the same width as [`View::prompt_plain`].
    pub fn prompt(&self, link: Link) -> String {
        let label = prompt_label(link);
        if !self.config.color {
            return format!("{label}> ");
        }
        let colour = match link {
            Link::Connected => GREEN,
            Link::Connecting | Link::Retry(_) => YELLOW,
            Link::Closing | Link::Closed => RED,
        };
        let name = label.trim_end();
        let pad = &label[name.len()..];
        format!("{colour}{name}{RESET}{pad}{BOLD}>{RESET} ")
    }

    /// `/help`: the commands and keys.
    pub fn help(&self, commands: &[(&str, &str, &str)]) -> String {
        let mut out = String::from("commands:\n");
        let rows = commands
            .iter()
            .map(|(name, args, what)| (format!("{name} {args}"), *what))
            .chain([("//TEXT".to_owned(), "send TEXT with its leading /")])
            .collect::<Vec<_>>();
        let width = rows.iter().map(|(usage, _)| usage.len()).max().unwrap_or(0);
        for (usage, what) in rows {
            let _ = writeln!(out, "  {usage:<width$}  {what}");
        }
        out.push_str(
            "keys: Tab completes a command, Up/Down and Ctrl-R search the history,\n\
             Ctrl-C clears the line, Ctrl-D closes (1000) and exits",
        );
        self.marked("*", CYAN, &out)
    }

    /// `/status`: a snapshot of the session.
    pub fn status_report(&self, status: &crate::session::Status) -> String {
        let mut out = String::new();
        let state = match (status.state, status.uptime) {
            (crate::session::State::Connected, Some(up)) => format!(
                "connected for {}",
                humantime::format_duration(Duration::from_secs(up.as_secs()))
            ),
            (state, _) => state.as_str().to_owned(),
        };
        let _ = writeln!(out, "state:       {state}");
        let _ = writeln!(out, "url:         {}", status.url);
        if let Some(protocol) = &status.subprotocol {
            let _ = writeln!(out, "subprotocol: {}", escape_controls(protocol));
        }
        if let Some(compression) = &status.compression {
            let sending = if status.compressing {
                "tether compresses what it sends"
            } else {
                "tether sends uncompressed"
            };
            let _ = writeln!(out, "compression: {compression} ({sending})");
        }
        let _ = writeln!(out, "reconnects:  {}", status.reconnects);
        let rtt = &status.rtt;
        match (rtt.last, rtt.min, rtt.avg(), rtt.max) {
            (Some(last), Some(min), Some(avg), Some(max)) => {
                let _ = writeln!(
                    out,
                    "rtt:         last {}, min {}, avg {}, max {} ({} pong{})",
                    format_rtt(last),
                    format_rtt(min),
                    format_rtt(avg),
                    format_rtt(max),
                    rtt.count,
                    if rtt.count == 1 { "" } else { "s" }
                );
            }
            _ => out.push_str("rtt:         no pong yet\n"),
        }
        let _ = writeln!(out, "queued:      {}", status.queued);
        let _ = write!(
            out,
            "messages:    {} sent, {} received",
            status.sent, status.received
        );
        self.marked("*", CYAN, &out)
    }
}

/// The state label, padded or cut to [`PROMPT_LABEL_WIDTH`].
fn prompt_label(link: Link) -> String {
    let label = match link {
        Link::Connecting => "connecting".to_owned(),
        Link::Connected => "connected".to_owned(),
        Link::Retry(left) => {
            // Rounded up: "retry 0s" would claim the attempt is under way.
            let secs = left.as_millis().div_ceil(1000).max(1);
            if secs < 100 {
                format!("retry {secs}s")
            } else {
                format!("retry {}m", secs.div_ceil(60))
            }
        }
        Link::Closing => "closing".to_owned(),
        Link::Closed => "closed".to_owned(),
    };
    let label: String = label.chars().take(PROMPT_LABEL_WIDTH).collect();
    format!("{label:<PROMPT_LABEL_WIDTH$}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Verbosity;

    fn terminal(color: bool) -> View {
        View::new(OutputConfig {
            binary_format: BinaryFormat::HexDump,
            timestamps: false,
            json: false,
            pretty: false,
            color,
            terminal: true,
            separator: Some(b'\n'),
            verbosity: Verbosity::Normal,
            ping_pong: false,
        })
    }

    #[test]
    fn repl_messages_are_marked_escaped_and_indented() {
        let r = terminal(false);
        assert_eq!(r.message(&Payload::text("hi")), "< hi\n");
        assert_eq!(
            r.message(&Payload::text("\x1b[2Jtwo\nlines\x07")),
            "< \\e[2Jtwo\n  lines\\x07\n"
        );
        let binary = r.message(&Payload::Binary(bytes::Bytes::from_static(b"\x00\xff")));
        assert_eq!(
            binary,
            "< [binary, 2 bytes]\n  00000000  00 ff                                             |..|\n"
        );
    }

    #[test]
    fn with_timestamps_continuation_lines_are_indented_under_the_text() {
        let time = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let pad = " ".repeat(27);
        for color in [false, true] {
            let view = terminal(color);
            let shown = view.marked_at(Some(time), "<", GREEN, "one\ntwo");
            let expected = format!("2023-11-14T22:13:20.123Z < one\n{pad}two\n");
            assert_eq!(strip_sgr(&shown), expected, "colour {color}");
        }
        assert_eq!(
            terminal(true).marked_at(Some(time), "<", GREEN, "x"),
            "\x1b[2m2023-11-14T22:13:20.123Z\x1b[0m \x1b[32m<\x1b[0m x\n"
        );
    }

    #[test]
    fn json_lines_are_shown_as_they_are() {
        // On a terminal the REPL shows the JSON line, not escaped a second time.
        let json = View::new(OutputConfig {
            json: true,
            ..terminal(false).config
        });
        let shown = json.message(&Payload::text("\u{9b}2J"));
        assert!(shown.contains(r#""data":"\u009b2J""#), "{shown}");
        assert_eq!(json.status(&Event::Drained), None);
        let closed = json
            .status(&Event::Closed {
                code: Some(1000),
                reason: String::new(),
                by_server: false,
            })
            .unwrap();
        assert!(
            closed.ends_with(
                "\"event\":\"closed\",\"code\":1000,\"reason\":\"\",\"by_server\":false}\n"
            ),
            "{closed}"
        );
    }

    #[test]
    fn repl_colour_only_when_asked() {
        let plain = terminal(false).message(&Payload::text("x"));
        assert!(!plain.contains('\x1b'), "{plain:?}");
        let coloured = terminal(true).message(&Payload::text("x"));
        assert_eq!(coloured, "\x1b[32m<\x1b[0m x\n");
        // The server's escapes are escaped even when ours are used.
        let hostile = terminal(true).message(&Payload::text("\x1b[31m"));
        assert_eq!(hostile, "\x1b[32m<\x1b[0m \\e[31m\n");
    }

    #[test]
    fn every_prompt_has_the_same_width() {
        let states = [
            Link::Connecting,
            Link::Connected,
            Link::Retry(Duration::from_millis(1)),
            Link::Retry(Duration::from_millis(2500)),
            Link::Retry(Duration::from_secs(99)),
            Link::Retry(Duration::from_secs(599)),
            Link::Retry(Duration::from_secs(10_000_000)),
            Link::Closing,
            Link::Closed,
        ];
        let width = PROMPT_LABEL_WIDTH + 2;
        for link in states {
            let plain = View::prompt_plain(link);
            assert_eq!(plain.chars().count(), width, "{plain:?}");
            assert_eq!(terminal(false).prompt(link), plain);
            let coloured = terminal(true).prompt(link);
            assert!(coloured.contains('\x1b'), "{coloured:?}");
            assert_eq!(strip_sgr(&coloured), plain, "{coloured:?}");
        }
        assert_eq!(View::prompt_plain(Link::Connected), "connected > ");
        assert_eq!(
            View::prompt_plain(Link::Retry(Duration::from_millis(2500))),
            "retry 3s  > "
        );
        assert_eq!(
            View::prompt_plain(Link::Retry(Duration::from_secs(599))),
            "retry 10m > "
        );
    }

    fn strip_sgr(text: &str) -> String {
        let re = regex::Regex::new("\x1b\\[[0-9;]*m").unwrap();
        re.replace_all(text, "").into_owned()
    }
}
