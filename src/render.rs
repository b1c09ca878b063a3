//! Turning events into bytes for people and for machines. All formatting of
//! messages, status lines and `--json` events lives here, so every frontend
//! prints the same way.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, SystemTime};

use base64::Engine;
use bytes::Bytes;

use crate::config::{BinaryFormat, OutputConfig, Verbosity};
use crate::error::Error;
use crate::session::{Event, Payload, RttStats};

/// Bytes of binary shown in a terminal hex dump before the rest is elided.
pub const HEXDUMP_LIMIT: usize = 4096;
/// Characters of the matched message in a `--json` step event; the full
/// message is in its `message` event.
pub const MATCHED_MAX: usize = 1024;

#[derive(Debug, Clone, Copy)]
pub struct Renderer {
    config: OutputConfig,
}

impl Renderer {
    pub fn new(config: OutputConfig) -> Renderer {
        Renderer { config }
    }

    pub fn json(&self) -> bool {
        self.config.json
    }

    /// Appends a received message as one output record (with separator).
    pub fn message(&self, out: &mut Vec<u8>, payload: &Payload) {
        if self.config.json {
            return self.json_event(out, &Event::Message(payload.clone()));
        }
        // Exact for an empty buffer: a large message then gets a chunk of its
        // own size, not twice that.
        out.reserve(payload.len() + 1);
        if self.config.timestamps {
            out.extend_from_slice(timestamp(SystemTime::now()).as_bytes());
            out.push(b' ');
        }
        match payload {
            Payload::Text(text) => self.text(out, text),
            Payload::Binary(data) => self.binary(out, data),
        }
        out.push(self.config.separator);
    }

    /// The message's own bytes when its output record is exactly those bytes
    /// plus the separator (raw binary, or plain text in a pipe), so a large
    /// one can go to stdout as it is, without a copy.
    pub fn verbatim(&self, payload: &Payload) -> Option<Bytes> {
        let c = &self.config;
        if c.json || c.timestamps {
            return None;
        }
        match payload {
            Payload::Binary(data) if c.binary_format == BinaryFormat::Raw => Some(data.clone()),
            Payload::Text(text) if !c.terminal && !c.pretty => Some(Bytes::from(text.clone())),
            _ => None,
        }
    }

    pub fn separator(&self) -> u8 {
        self.config.separator
    }

    /// A large binary message's output record (as [`Renderer::message`]
    /// renders it) in pieces of about `piece` bytes, so printing it never
    /// holds its whole base64 or hex form: that would be up to twice the
    /// message again. `None` for what renders in one go.
    pub fn message_pieces<'p>(
        &self,
        payload: &'p Payload,
        piece: usize,
    ) -> Option<impl Iterator<Item = Vec<u8>> + 'p> {
        let Payload::Binary(data) = payload else {
            return None;
        };
        let format = self.config.binary_format;
        let json = self.config.json;
        if !json && !matches!(format, BinaryFormat::Base64 | BinaryFormat::Hex) {
            return None;
        }
        let base64 = json || format == BinaryFormat::Base64;
        // Base64 of whole 3-byte groups joins up with no padding in between.
        let step = if base64 { piece / 4 * 3 } else { piece / 2 }.max(3);
        let mut head = Vec::new();
        if json {
            // `message` with an empty `data`, cut open where the data goes.
            self.json_event(&mut head, &Event::Message(Payload::Binary(Bytes::new())));
            let tail = head.len() - b"\"}\n".len();
            head.truncate(tail);
        } else if self.config.timestamps {
            head.extend_from_slice(timestamp(SystemTime::now()).as_bytes());
            head.push(b' ');
        }
        let tail = if json {
            b"\"}\n".to_vec()
        } else {
            vec![self.config.separator]
        };
        let body = data.chunks(step).map(move |chunk| {
            let mut out = Vec::with_capacity(piece + 4);
            if base64 {
                base64_into(&mut out, chunk);
            } else {
                hex_into(&mut out, chunk);
            }
            out
        });
        Some(
            std::iter::once(head)
                .chain(body)
                .chain(std::iter::once(tail)),
        )
    }

    fn text(&self, out: &mut Vec<u8>, text: &str) {
        self.text_plain(out, &self.pretty(text))
    }

    /// The text pretty-printed when `--pretty` asks and it is JSON.
    fn pretty<'t>(&self, text: &'t str) -> std::borrow::Cow<'t, str> {
        if self.config.pretty
            && let Ok(value) = serde_json::from_str::<serde_json::Value>(text)
            && let Ok(pretty) = serde_json::to_string_pretty(&value)
        {
            return std::borrow::Cow::Owned(pretty);
        }
        std::borrow::Cow::Borrowed(text)
    }

    fn text_plain(&self, out: &mut Vec<u8>, text: &str) {
        if self.config.terminal {
            out.extend_from_slice(escape_controls(text).as_bytes());
        } else {
            out.extend_from_slice(text.as_bytes());
        }
    }

    fn binary(&self, out: &mut Vec<u8>, data: &[u8]) {
        match self.config.binary_format {
            BinaryFormat::HexDump => out.extend_from_slice(hexdump(data, HEXDUMP_LIMIT).as_bytes()),
            BinaryFormat::Hex => out.extend_from_slice(hex(data).as_bytes()),
            BinaryFormat::Base64 => base64_into(out, data),
            BinaryFormat::Raw => out.extend_from_slice(data),
        }
    }

    /// A status line for stderr, or `None` when it is not worth showing at
    /// this verbosity.
    pub fn status(&self, event: &Event) -> Option<String> {
        let quiet = self.config.verbosity == Verbosity::Quiet;
        let line = match event {
            Event::Message(_) | Event::Delivered { .. } | Event::Drained => return None,
            Event::Connecting { attempt } if *attempt > 1 || quiet => return None,
            Event::Connecting { .. } => return None,
            Event::Connected {
                url, subprotocol, ..
            } => match subprotocol {
                Some(p) => format!("connected to {url} (subprotocol: {p})"),
                None => format!("connected to {url}"),
            },
            Event::Pong { rtt, heartbeat } => {
                if *heartbeat && self.config.verbosity < Verbosity::Debug {
                    return None;
                }
                format!("pong: rtt {}", format_rtt(*rtt))
            }
            Event::Disconnected { reason, .. } => format!("disconnected: {reason}"),
            Event::Reconnecting {
                attempt,
                delay,
                reason,
            } if reason.is_empty() => format!(
                "reconnecting in {} (attempt {attempt})",
                format_delay(*delay)
            ),
            Event::Reconnecting {
                attempt,
                delay,
                reason,
            } => format!(
                "{reason}; reconnecting in {} (attempt {attempt})",
                format_delay(*delay)
            ),
            Event::Closed {
                code,
                reason,
                by_server,
            } => {
                let who = if *by_server {
                    "server closed"
                } else {
                    "closed"
                };
                match (code, reason.is_empty()) {
                    (Some(code), true) => format!("{who} ({code})"),
                    (Some(code), false) => format!("{who} ({code}: {reason})"),
                    (None, true) => who.to_string(),
                    (None, false) => format!("{who}: {reason}"),
                }
            }
            Event::Warning(text) => format!("warning: {text}"),
        };
        // Warnings show even with -q; the rest of the chatter does not.
        if quiet && !matches!(event, Event::Warning(_)) {
            return None;
        }
        Some(line)
    }

    /// Appends one `--json` line for an event.
    pub fn json_event(&self, out: &mut Vec<u8>, event: &Event) {
        let time = timestamp(SystemTime::now());
        let _ = write!(out, "{{\"time\":\"{time}\",\"event\":");
        match event {
            Event::Message(Payload::Text(text)) => {
                out.extend_from_slice(b"\"message\",\"type\":\"text\",\"data\":");
                json_string_into(out, text);
            }
            Event::Message(Payload::Binary(data)) => {
                out.extend_from_slice(b"\"message\",\"type\":\"binary\",\"data\":\"");
                base64_into(out, data);
                out.push(b'"');
            }
            Event::Connecting { attempt } => {
                let _ = write!(out, "\"connecting\",\"attempt\":{attempt}");
            }
            Event::Connected {
                url,
                subprotocol,
                attempt,
            } => {
                let _ = write!(
                    out,
                    "\"connected\",\"url\":{},\"subprotocol\":{},\"attempt\":{attempt}",
                    json_string(url),
                    subprotocol.as_deref().map_or("null".into(), json_string)
                );
            }
            Event::Delivered { count } => {
                let _ = write!(out, "\"delivered\",\"count\":{count}");
            }
            Event::Drained => out.extend_from_slice(b"\"drained\""),
            Event::Pong { rtt, heartbeat } => {
                let _ = write!(
                    out,
                    "\"pong\",\"rtt_ms\":{:.3},\"heartbeat\":{heartbeat}",
                    rtt.as_secs_f64() * 1e3
                );
            }
            Event::Disconnected {
                reason,
                code,
                will_retry,
            } => {
                let _ = write!(
                    out,
                    "\"disconnected\",\"reason\":{},\"code\":{},\"will_retry\":{will_retry}",
                    json_string(reason),
                    code.map_or("null".into(), |c| c.to_string())
                );
            }
            Event::Reconnecting {
                attempt,
                delay,
                reason,
            } => {
                let _ = write!(
                    out,
                    "\"reconnecting\",\"attempt\":{attempt},\"delay_ms\":{},\"reason\":{}",
                    delay.as_millis(),
                    json_string(reason)
                );
            }
            Event::Closed {
                code,
                reason,
                by_server,
            } => {
                let _ = write!(
                    out,
                    "\"closed\",\"code\":{},\"reason\":{},\"by_server\":{by_server}",
                    code.map_or("null".into(), |c| c.to_string()),
                    json_string(reason)
                );
            }
            Event::Warning(text) => {
                let _ = write!(out, "\"warning\",\"message\":{}", json_string(text));
            }
        }
        out.extend_from_slice(b"}\n");
    }

    /// The final `error` event for `--json`. `left` is what an interrupted
    /// session left behind, when the error itself does not carry it.
    pub fn json_error(&self, out: &mut Vec<u8>, err: &Error, left: Option<crate::session::Unsent>) {
        let unsent = match err {
            Error::GaveUp { unsent, .. } | Error::Undelivered(unsent) => unsent.total(),
            _ => left.map_or(0, |unsent| unsent.total()),
        };
        let _ = writeln!(
            out,
            "{{\"time\":\"{}\",\"event\":\"error\",\"kind\":\"{}\",\"message\":{},\"exit_code\":{},\"unsent\":{unsent}}}",
            timestamp(SystemTime::now()),
            err.kind(),
            json_string(&err.to_string()),
            err.exit_code() as u8,
        );
    }
}

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

/// SGR colours, used only when colour is on.
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const RED: &str = "\x1b[31m";
const CYAN: &str = "\x1b[36m";
const DIM: &str = "\x1b[2m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// The interactive session's output: every line it prints above the prompt,
/// and the prompt itself. Each piece ends with a newline; what came from the
/// server is escaped, whatever `--color` says.
impl Renderer {
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
        let mut out = String::new();
        if self.config.timestamps {
            out.push_str(&self.paint(DIM, &timestamp(SystemTime::now())));
            out.push(' ');
        }
        out.push_str(&self.paint(colour, marker));
        out.push(' ');
        let indent = " ".repeat(marker.chars().count() + 1);
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
    pub fn repl_message(&self, payload: &Payload) -> String {
        if self.config.json {
            let mut out = Vec::new();
            self.json_event(&mut out, &Event::Message(payload.clone()));
            // `json_string_into` escapes every control (C0, DEL, C1) and the
            // bidi controls: nothing is left to escape, and the line stays JSON.
            return String::from_utf8_lossy(&out).into_owned();
        }
        let body = match payload {
            Payload::Text(text) => escape_controls(&self.pretty(text)).into_owned(),
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
    /// worth showing (the same choices as [`Renderer::status`]).
    pub fn repl_status(&self, event: &Event) -> Option<String> {
        if self.config.json {
            if matches!(event, Event::Delivered { .. } | Event::Drained) {
                return None;
            }
            let mut out = Vec::new();
            self.json_event(&mut out, event);
            return Some(String::from_utf8_lossy(&out).into_owned());
        }
        let line = self.status(event)?;
        Some(match event {
            Event::Warning(_) => self.repl_warning(line.trim_start_matches("warning: ")),
            Event::Disconnected { .. } | Event::Reconnecting { .. } => {
                self.marked("*", YELLOW, &escape_controls(&line))
            }
            Event::Closed {
                code, by_server, ..
            } if *by_server && code.is_some_and(|c| c != 1000) => {
                self.marked("*", RED, &escape_controls(&line))
            }
            _ => self.repl_note(&line),
        })
    }

    /// Something tether says, e.g. `* connected to ...`.
    pub fn repl_note(&self, text: &str) -> String {
        self.marked("*", CYAN, &escape_controls(text))
    }

    /// What happened to a line the user sent, e.g. that it waits in the queue.
    pub fn repl_outgoing(&self, text: &str) -> String {
        self.marked(">", DIM, &escape_controls(text))
    }

    pub fn repl_warning(&self, text: &str) -> String {
        self.marked("!", YELLOW, &format!("warning: {}", escape_controls(text)))
    }

    pub fn repl_error(&self, text: &str) -> String {
        self.marked("!", RED, &escape_controls(text))
    }

    /// The prompt without colour: what the line editor measures.
    pub fn prompt_plain(link: Link) -> String {
        format!("{}> ", prompt_label(link))
    }

    /// The prompt as shown: the same width as [`Renderer::prompt_plain`].
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
    pub fn repl_help(&self, commands: &[(&str, &str, &str)]) -> String {
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
    pub fn repl_status_report(&self, status: &crate::session::Status) -> String {
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

/// One finished (or failed) step of a smoke test, as `--json` and `-v` show it.
#[derive(Debug, Clone, Copy)]
pub struct StepReport<'a> {
    /// 1-based position in the run.
    pub number: usize,
    pub total: usize,
    /// The script line, when the step came from a script.
    pub line: Option<usize>,
    /// The scenario-file keyword (`send`, `expect`, ...).
    pub action: &'static str,
    /// The step as the user wrote it.
    pub step: &'a str,
    pub passed: bool,
    pub duration: Duration,
    /// `expect`: the message that matched, in the form it was matched.
    pub matched: Option<&'a str>,
    /// `ping`: the round trip.
    pub rtt: Option<Duration>,
    /// `close` and `expect-close`: the server's close code.
    pub code: Option<u16>,
    /// Why the step failed.
    pub reason: Option<&'a str>,
}

/// The last `--json` event of a smoke test.
#[derive(Debug, Clone, Copy)]
pub struct SmokeSummary<'a> {
    pub passed: bool,
    pub exit_code: u8,
    /// The error's kind ([`Error::kind`]) and first line, on failure.
    pub error: Option<(&'static str, &'a str)>,
    pub steps: usize,
    pub steps_passed: usize,
    /// The 1-based step that failed, if a step did.
    pub failed_step: Option<usize>,
    /// From process start to the verdict.
    pub duration: Duration,
    /// From process start to the first connection.
    pub connect: Option<Duration>,
    pub sent: u64,
    pub received: u64,
    pub rtt: RttStats,
}

impl Renderer {
    /// Appends the `--json` event for a smoke-test step.
    pub fn json_step(&self, out: &mut Vec<u8>, step: &StepReport<'_>) {
        let _ = writeln!(
            out,
            "{{\"time\":\"{}\",\"event\":\"step\",\"step\":{},\"of\":{},\"line\":{},\"action\":\"{}\",\"text\":{},\"status\":\"{}\",\"duration_ms\":{},\"matched\":{},\"rtt_ms\":{},\"code\":{},\"reason\":{}}}",
            timestamp(SystemTime::now()),
            step.number,
            step.total,
            json_opt(step.line),
            step.action,
            json_string(step.step),
            if step.passed { "passed" } else { "failed" },
            millis(step.duration),
            step.matched
                .map_or("null".into(), |m| json_string(prefix(m, MATCHED_MAX))),
            step.rtt.map_or("null".into(), millis),
            json_opt(step.code),
            step.reason.map_or("null".into(), json_string),
        );
    }

    /// Appends the final `--json` summary of a smoke test.
    pub fn json_summary(&self, out: &mut Vec<u8>, summary: &SmokeSummary<'_>) {
        let rtt = &summary.rtt;
        let (kind, message) = match summary.error {
            Some((kind, message)) => (json_string(kind), json_string(message)),
            None => ("null".into(), "null".into()),
        };
        let _ = writeln!(
            out,
            "{{\"time\":\"{}\",\"event\":\"summary\",\"result\":\"{}\",\"exit_code\":{},\"error\":{kind},\"reason\":{message},\"steps\":{},\"steps_passed\":{},\"failed_step\":{},\"duration_ms\":{},\"connect_ms\":{},\"sent\":{},\"received\":{},\"rtt_ms\":{{\"count\":{},\"last\":{},\"min\":{},\"avg\":{},\"max\":{}}}}}",
            timestamp(SystemTime::now()),
            if summary.passed { "pass" } else { "fail" },
            summary.exit_code,
            summary.steps,
            summary.steps_passed,
            json_opt(summary.failed_step),
            millis(summary.duration),
            summary.connect.map_or("null".into(), millis),
            summary.sent,
            summary.received,
            rtt.count,
            rtt.last.map_or("null".into(), millis),
            rtt.min.map_or("null".into(), millis),
            rtt.avg().map_or("null".into(), millis),
            rtt.max.map_or("null".into(), millis),
        );
    }
}

/// A smoke-test step as a `-v` status line.
pub fn step_line(step: &StepReport<'_>) -> String {
    let mut line = format!(
        "step {}/{} {} ({}): {}",
        step.number,
        step.total,
        if step.passed { "passed" } else { "failed" },
        format_delay(step.duration),
        step.step
    );
    if let Some(rtt) = step.rtt {
        let _ = write!(line, "; rtt {}", format_rtt(rtt));
    }
    if let Some(matched) = step.matched {
        let _ = write!(line, "; matched {}", excerpt(matched, 80));
    }
    line
}

/// The form of a message that smoke-test expectations match: text as it
/// came, binary as hex or base64 (`binary` is `Hex` or `Base64`).
pub fn match_form(payload: &Payload, binary: BinaryFormat) -> std::borrow::Cow<'_, str> {
    match payload {
        Payload::Text(text) => std::borrow::Cow::Borrowed(text.as_str()),
        Payload::Binary(data) if binary == BinaryFormat::Base64 => {
            std::borrow::Cow::Owned(base64::engine::general_purpose::STANDARD.encode(data))
        }
        Payload::Binary(data) => std::borrow::Cow::Owned(hex(data)),
    }
}

/// The tail of a smoke-test diagnostic: how many messages came and the last
/// few, each on one line, escaped and cut short. `recent` holds
/// (number, binary, matched form), oldest first.
pub fn received_tail<'a>(
    total: u64,
    recent: impl ExactSizeIterator<Item = (u64, bool, &'a str)>,
) -> String {
    let shown = recent.len();
    let mut out = match (total, shown as u64) {
        (0, _) => return "\n  no messages were received".into(),
        (1, _) => "\n  1 message was received:".to_string(),
        (n, k) if k < n => format!("\n  {n} messages were received; the last {k}:"),
        (n, _) => format!("\n  {n} messages were received:"),
    };
    for (number, binary, form) in recent {
        let kind = if binary { "[binary] " } else { "" };
        let _ = write!(out, "\n    #{number}: {kind}{}", excerpt(form, 120));
    }
    out
}

/// One line of text for a diagnostic: controls escaped, newlines and tabs
/// too, cut after `max` characters with a note of the full length.
pub fn excerpt(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (chars, c) in text.chars().enumerate() {
        if chars == max {
            let _ = write!(out, "... ({} bytes in all)", text.len());
            return out;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => {
                let mut tmp = [0u8; 4];
                out.push_str(&escape_controls(c.encode_utf8(&mut tmp)));
            }
        }
    }
    out
}

/// The first `max` characters of `text`.
fn prefix(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

fn millis(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

fn json_opt<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or("null".into(), |v| v.to_string())
}

/// Encodes straight into the output buffer, with no intermediate String.
fn base64_into(out: &mut Vec<u8>, data: &[u8]) {
    let start = out.len();
    let len = base64::encoded_len(data.len(), true).unwrap_or(0);
    out.resize(start + len, 0);
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(data, &mut out[start..])
        .unwrap_or(0);
    out.truncate(start + written);
}

/// `s` as a JSON string literal (see [`json_string_into`]).
pub fn json_string(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len() + 2);
    json_string_into(&mut out, s);
    // Only ASCII escapes were added to valid UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// How [`json_string_into`] treats each byte: copied, or looked at.
const PASS: u8 = 0;
const CONTROL: u8 = 1;
const QUOTE: u8 = 2;
const BACKSLASH: u8 = 3;
/// 0xC2 starts U+0080..U+00BF, among them the C1 controls.
const LEAD_C2: u8 = 4;
/// 0xE2 starts U+2000..U+2FFF, among them U+2028/2029 and the bidi controls.
const LEAD_E2: u8 = 5;

const JSON_BYTES: [u8; 256] = {
    let mut table = [PASS; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = CONTROL;
        b += 1;
    }
    table[0x7f] = CONTROL;
    table[b'"' as usize] = QUOTE;
    table[b'\\' as usize] = BACKSLASH;
    table[0xc2] = LEAD_C2;
    table[0xe2] = LEAD_E2;
    table
};

/// The escape for the byte at `i` (with `bytes[start..i]` before it), if it
/// needs one; returns where the text still to copy starts.
#[inline(never)]
fn json_escape_at(out: &mut Vec<u8>, bytes: &[u8], start: usize, i: usize) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let byte = bytes[i];
    let (len, code) = match JSON_BYTES[byte as usize] {
        CONTROL => (1, u32::from(byte)),
        QUOTE | BACKSLASH => {
            out.extend_from_slice(&bytes[start..i]);
            out.extend_from_slice(&[b'\\', byte]);
            return i + 1;
        }
        LEAD_C2 => match bytes.get(i + 1) {
            // U+0080..U+009F: the second byte is the code point.
            Some(&next @ 0x80..=0x9f) => (2, u32::from(next)),
            _ => return start,
        },
        LEAD_E2 => match (bytes.get(i + 1), bytes.get(i + 2)) {
            (Some(&b1), Some(&b2)) => {
                let code = 0x2000 | (u32::from(b1 & 0x3f) << 6) | u32::from(b2 & 0x3f);
                if !matches!(code, 0x2028..=0x202e | 0x2066..=0x2069) {
                    return start;
                }
                (3, code)
            }
            _ => return start,
        },
        _ => return start,
    };
    out.extend_from_slice(&bytes[start..i]);
    match code {
        0x08 => out.extend_from_slice(b"\\b"),
        0x09 => out.extend_from_slice(b"\\t"),
        0x0a => out.extend_from_slice(b"\\n"),
        0x0c => out.extend_from_slice(b"\\f"),
        0x0d => out.extend_from_slice(b"\\r"),
        _ => out.extend_from_slice(&[
            b'\\',
            b'u',
            HEX[(code >> 12) as usize & 0xf],
            HEX[(code >> 8) as usize & 0xf],
            HEX[(code >> 4) as usize & 0xf],
            HEX[code as usize & 0xf],
        ]),
    }
    i + len
}

/// Appends `s` as a JSON string literal. Beyond what JSON requires (quote,
/// backslash, C0 controls), DEL, the C1 controls (U+0080..U+009F, e.g. U+009B,
/// a one-byte CSI), the bidi overrides and isolates (U+202A..U+202E,
/// U+2066..U+2069) and the line and paragraph separators U+2028/U+2029 are
/// written as `\uXXXX`: a `--json` line shown on a terminal cannot drive
/// it or reorder it, and JavaScript line splitters stay safe. Still valid
/// JSON, and the same text once parsed. The common case, plain ASCII, is one
/// table lookup a byte and one copy.
pub fn json_string_into(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        // Continuation bytes (0x80..0xBF) pass: after an escaped sequence
        // they are skipped by moving `start`, not by the loop.
        if JSON_BYTES[byte as usize] != PASS {
            start = json_escape_at(out, bytes, start, i);
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// RFC 3339 in UTC with milliseconds.
pub fn timestamp(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

pub fn format_rtt(rtt: Duration) -> String {
    format!("{:.1} ms", rtt.as_secs_f64() * 1e3)
}

pub fn format_delay(delay: Duration) -> String {
    if delay < Duration::from_secs(1) {
        format!("{} ms", delay.as_millis())
    } else {
        format!("{:.1} s", delay.as_secs_f64())
    }
}

/// Shows control characters and escape sequences as visible escapes, so a
/// hostile server cannot drive the terminal. Newlines and tabs pass.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    let needs = |c: char| (c.is_control() && c != '\n' && c != '\t') || is_bidi_control(c);
    if !text.chars().any(needs) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            '\x1b' => out.push_str("\\e"),
            c if needs(c) && (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if needs(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Characters that reorder text on screen (Trojan Source style).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

pub fn hex(data: &[u8]) -> String {
    let mut out = Vec::with_capacity(data.len() * 2);
    hex_into(&mut out, data);
    String::from_utf8(out).unwrap_or_default()
}

fn hex_into(out: &mut Vec<u8>, data: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(data.len() * 2);
    for byte in data {
        out.push(DIGITS[usize::from(byte >> 4)]);
        out.push(DIGITS[usize::from(byte & 0xf)]);
    }
}

/// `offset  hex bytes  |ascii|`, 16 bytes a row, elided after `limit` bytes.
pub fn hexdump(data: &[u8], limit: usize) -> String {
    let shown = &data[..data.len().min(limit)];
    let mut out = String::new();
    for (row, chunk) in shown.chunks(16).enumerate() {
        if row > 0 {
            out.push('\n');
        }
        let _ = write!(out, "{:08x} ", row * 16);
        for i in 0..16 {
            if i == 8 {
                out.push(' ');
            }
            match chunk.get(i) {
                Some(b) => {
                    let _ = write!(out, " {b:02x}");
                }
                None => out.push_str("   "),
            }
        }
        out.push_str("  |");
        out.extend(chunk.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        }));
        out.push('|');
    }
    if data.is_empty() {
        out.push_str("(empty binary message)");
    }
    if data.len() > limit {
        let _ = write!(
            out,
            "\n... {} more bytes not shown ({} in all)",
            data.len() - limit,
            data.len()
        );
    }
    out
}

/// Writes a person-facing diagnostic line to stderr. Every diagnostic goes
/// through here, and many quote the server (close reasons, handshake bodies,
/// redirect locations, error texts), so the line is escaped as messages on a
/// terminal are: a hostile server cannot set the title or write the
/// clipboard through stderr. Text that is already escaped (excerpts, Debug
/// quoting) has no controls left, so it passes unchanged: nothing is escaped
/// twice.
pub fn eprint_line(line: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "tether: {}", escape_controls(line));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_are_made_visible() {
        assert_eq!(escape_controls("plain\ttext\n"), "plain\ttext\n");
        assert_eq!(escape_controls("\x1b[2Jgone\r\x07"), "\\e[2Jgone\\r\\x07");
        assert_eq!(escape_controls("a\u{9b}31m"), "a\\x9b31m");
        assert_eq!(escape_controls("x\u{202e}y"), "x\\u{202e}y");
    }

    #[test]
    fn json_strings_escape_c1_bidi_and_line_separators() {
        assert_eq!(
            json_string(
                "a\u{9b}31m\u{202e}b\u{2028}c\u{2029}\u{2066}\u{2069}\u{85}\x7f\x1b\"\\\n\t"
            ),
            r#""a\u009b31m\u202eb\u2028c\u2029\u2066\u2069\u0085\u007f\u001b\"\\\n\t""#
        );
        // Their neighbours are left alone.
        for kept in [
            "\u{a0}é",
            "\u{2027}\u{202f}\u{2065}\u{206a}",
            "€ 日本 😀",
            "plain",
        ] {
            assert_eq!(
                json_string(kept),
                serde_json::to_string(kept).unwrap(),
                "{kept}"
            );
        }
        // Cut multi-byte sequences cannot occur in a str, but ends of text can.
        assert_eq!(json_string("\u{c2}"), "\"\u{c2}\"");
        assert_eq!(json_string("x\u{2000}"), "\"x\u{2000}\"");
    }

    #[test]
    fn json_strings_round_trip_through_a_json_parser() {
        let mut all = String::new();
        for c in (0u32..0x3000).filter_map(char::from_u32) {
            all.push(c);
        }
        all.push_str("end 😀");
        let encoded = json_string(&all);
        let decoded: String = serde_json::from_str(&encoded).unwrap();
        assert_eq!(decoded, all);
        assert!(
            !encoded.chars().any(|c| c.is_control()
                || is_bidi_control(c)
                || c == '\u{2028}'
                || c == '\u{2029}')
        );
        let mut out = Vec::new();
        json_string_into(&mut out, "ascii only, \"quoted\"");
        assert_eq!(out, serde_json::to_vec("ascii only, \"quoted\"").unwrap());
    }

    #[test]
    fn json_message_events_carry_no_raw_controls() {
        let r = terminal(false);
        let mut json = Renderer::new(OutputConfig {
            json: true,
            ..r.config
        });
        json.config.terminal = false;
        let mut out = Vec::new();
        json.json_event(
            &mut out,
            &Event::Message(Payload::text("\u{9b}2J\u{202e}\u{2028}")),
        );
        let line = String::from_utf8(out).unwrap();
        assert!(
            line.ends_with(
                "\"event\":\"message\",\"type\":\"text\",\"data\":\"\\u009b2J\\u202e\\u2028\"}\n"
            ),
            "{line}"
        );
        // On a terminal the REPL shows the same line, not escaped a second time.
        let repl = Renderer::new(OutputConfig {
            json: true,
            ..r.config
        });
        let shown = repl.repl_message(&Payload::text("\u{9b}2J"));
        assert!(shown.contains(r#""data":"\u009b2J""#), "{shown}");
    }

    #[test]
    fn hexdump_shows_offset_hex_and_ascii() {
        let dump = hexdump(b"Hello, world!\x00\x01\xff and more", 4096);
        assert_eq!(
            dump,
            "00000000  48 65 6c 6c 6f 2c 20 77  6f 72 6c 64 21 00 01 ff  |Hello, world!...|\n\
             00000010  20 61 6e 64 20 6d 6f 72  65                       | and more|"
        );
    }

    #[test]
    fn excerpts_are_one_escaped_line_cut_short() {
        assert_eq!(excerpt("a\nb\tc\x1b[0m", 100), "a\\nb\\tc\\e[0m");
        let long = "é".repeat(10);
        assert_eq!(excerpt(&long, 3), "ééé... (20 bytes in all)");
        assert_eq!(excerpt("abc", 3), "abc");
        assert_eq!(prefix("héllo", 2), "hé");
        assert_eq!(prefix("hé", 5), "hé");
    }

    #[test]
    fn large_binary_in_pieces_is_the_same_record() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let payload = Payload::Binary(Bytes::from(data));
        for (format, json) in [
            (BinaryFormat::Base64, false),
            (BinaryFormat::Hex, false),
            (BinaryFormat::Hex, true),
        ] {
            let renderer = Renderer::new(OutputConfig {
                binary_format: format,
                json,
                terminal: false,
                ..terminal(false).config
            });
            let mut whole = Vec::new();
            renderer.message(&mut whole, &payload);
            let pieces: Vec<Vec<u8>> = renderer.message_pieces(&payload, 4096).unwrap().collect();
            assert!(pieces.iter().all(|p| p.len() <= 4096), "{format:?}");
            let joined = pieces.concat();
            if json {
                // The times may differ by a millisecond; the rest must not.
                let cut = |v: &[u8]| {
                    String::from_utf8(v[v.iter().position(|&b| b == b'Z').unwrap()..].to_vec())
                        .unwrap()
                };
                assert_eq!(cut(&joined), cut(&whole));
            } else {
                assert_eq!(joined, whole, "{format:?}");
            }
        }
    }

    #[test]
    fn binary_is_matched_as_hex_or_base64() {
        let data = Payload::Binary(bytes::Bytes::from_static(b"\x00\xffhi"));
        assert_eq!(match_form(&data, BinaryFormat::Hex), "00ff6869");
        assert_eq!(match_form(&data, BinaryFormat::Base64), "AP9oaQ==");
        assert_eq!(match_form(&Payload::text("t"), BinaryFormat::Hex), "t");
    }

    #[test]
    fn the_received_tail_counts_and_lists() {
        assert_eq!(
            received_tail(0, std::iter::empty()),
            "\n  no messages were received"
        );
        let recent = [(6, false, "six"), (7, true, "00ff")];
        assert_eq!(
            received_tail(7, recent.into_iter()),
            "\n  7 messages were received; the last 2:\n    #6: six\n    #7: [binary] 00ff"
        );
    }

    fn terminal(color: bool) -> Renderer {
        Renderer::new(OutputConfig {
            binary_format: BinaryFormat::HexDump,
            timestamps: false,
            json: false,
            pretty: false,
            color,
            terminal: true,
            separator: b'\n',
            verbosity: Verbosity::Normal,
        })
    }

    #[test]
    fn repl_messages_are_marked_escaped_and_indented() {
        let r = terminal(false);
        assert_eq!(r.repl_message(&Payload::text("hi")), "< hi\n");
        assert_eq!(
            r.repl_message(&Payload::text("\x1b[2Jtwo\nlines\x07")),
            "< \\e[2Jtwo\n  lines\\x07\n"
        );
        let binary = r.repl_message(&Payload::Binary(bytes::Bytes::from_static(b"\x00\xff")));
        assert_eq!(
            binary,
            "< [binary, 2 bytes]\n  00000000  00 ff                                             |..|\n"
        );
    }

    #[test]
    fn repl_colour_only_when_asked() {
        let plain = terminal(false).repl_message(&Payload::text("x"));
        assert!(!plain.contains('\x1b'), "{plain:?}");
        let coloured = terminal(true).repl_message(&Payload::text("x"));
        assert_eq!(coloured, "\x1b[32m<\x1b[0m x\n");
        // The server's escapes are escaped even when ours are used.
        let hostile = terminal(true).repl_message(&Payload::text("\x1b[31m"));
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
            let plain = Renderer::prompt_plain(link);
            assert_eq!(plain.chars().count(), width, "{plain:?}");
            assert_eq!(terminal(false).prompt(link), plain);
            let coloured = terminal(true).prompt(link);
            assert!(coloured.contains('\x1b'), "{coloured:?}");
            assert_eq!(strip_sgr(&coloured), plain, "{coloured:?}");
        }
        assert_eq!(Renderer::prompt_plain(Link::Connected), "connected > ");
        assert_eq!(
            Renderer::prompt_plain(Link::Retry(Duration::from_millis(2500))),
            "retry 3s  > "
        );
        assert_eq!(
            Renderer::prompt_plain(Link::Retry(Duration::from_secs(599))),
            "retry 10m > "
        );
    }

    fn strip_sgr(text: &str) -> String {
        let re = regex::Regex::new("\x1b\\[[0-9;]*m").unwrap();
        re.replace_all(text, "").into_owned()
    }

    #[test]
    fn hexdump_elides_past_the_limit() {
        let dump = hexdump(&[0u8; 100], 32);
        assert_eq!(dump.lines().count(), 3);
        assert!(
            dump.ends_with("... 68 more bytes not shown (100 in all)"),
            "{dump}"
        );
    }
}
