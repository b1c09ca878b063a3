//! The line editor's side of the REPL: rustyline on a thread of its own,
//! typed lines parsed and handed to the runtime over a channel, and the
//! printer thread that puts output above the line being typed.
//!
//! rustyline fixes the prompt when `readline` starts. The prompt shows the
//! connection's state, which changes while the user types, so the helper
//! draws it from shared state on every repaint ([`Highlighter::highlight_prompt`]).
//! rustyline places the cursor by the width of the prompt it was given, so
//! every state's prompt has the same width (see `view::prompt_plain`).

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use nix::sys::termios::{SetArg, Termios, tcgetattr, tcsetattr};
use rustyline::completion::Completer;
use rustyline::config::{ColorMode, CompletionType, Config};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, ExternalPrinter, Helper};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, timeout};

use super::command::{self, Input};
use super::history;
use super::view::{Link, View};

/// Most lines kept in the history file.
const HISTORY_SIZE: usize = 1000;

/// What the editor thread reports.
#[derive(Debug)]
pub enum Typed {
    Input(Input),
    /// Ctrl-C: the line was abandoned.
    Interrupt,
    /// Ctrl-D on an empty line.
    Eof,
    /// The terminal was hung up (closed, or its ssh connection dropped):
    /// the editor has stopped, and nothing typed or printed reaches anyone.
    HangUp,
    Warning(String),
    /// The terminal failed; the editor has stopped.
    Failed(String),
}

/// The connection state the prompt shows; the runtime writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Connecting,
    Connected,
    Retry { until: Instant },
    Closing,
    Closed,
}

impl LinkState {
    pub fn link(self) -> Link {
        match self {
            LinkState::Connecting => Link::Connecting,
            LinkState::Connected => Link::Connected,
            LinkState::Retry { until } => {
                Link::Retry(until.saturating_duration_since(Instant::now()))
            }
            LinkState::Closing => Link::Closing,
            LinkState::Closed => Link::Closed,
        }
    }
}

pub type SharedLink = Arc<Mutex<LinkState>>;

enum Print {
    Text(String),
    /// Redraw the prompt (its state changed) without printing a line.
    Repaint,
    /// Answer once everything before it is on the screen.
    Flush(oneshot::Sender<()>),
}

/// Prints nothing, but makes rustyline redraw the prompt: its external
/// printer clears the edited line, prints this (cursor up a row, then a
/// newline back down to the cleared row) and draws the prompt and line
/// again. Outside `readline`, at the start of a line, it moves nothing.
const REPAINT: &str = "\x1b[A\n";

/// When the printer may hand text to rustyline. Its external printer checks
/// whether a `readline` has the terminal raw and, if not, writes the text
/// straight to the terminal: text handed over between two lines can reach
/// the terminal after the next `readline` has drawn its prompt, which then
/// stays above the text and is not drawn again. So the printer hands text
/// over only while a `readline` runs: from its first drawing of the prompt
/// (the helper's `highlight_prompt`, called once raw mode is on, before the
/// prompt is written) until it returns.
#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Default, Clone, Copy)]
struct GateState {
    reading: bool,
    /// How many `readline` calls have returned.
    returns: u64,
    /// The editor thread has stopped: no prompt is drawn again.
    ended: bool,
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A `readline` is drawing its prompt.
    fn drawing(&self) {
        let mut state = self.lock();
        if !state.reading {
            state.reading = true;
            self.changed.notify_all();
        }
    }

    fn returned(&self) {
        let mut state = self.lock();
        state.reading = false;
        state.returns += 1;
    }

    fn end(&self) {
        self.lock().ended = true;
        self.changed.notify_all();
    }

    /// Waits until a `readline` runs or the editor has stopped.
    fn wait(&self) -> GateState {
        let state = self.lock();
        *self
            .changed
            .wait_while(state, |s| !s.reading && !s.ended)
            .unwrap_or_else(|e| e.into_inner())
    }
}

/// Marks the gate ended however the editor thread leaves.
struct Ended(Arc<Gate>);

impl Drop for Ended {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// The runtime's handle on the editor and printer threads.
pub struct Terminal {
    print: mpsc::Sender<Print>,
    /// Unbounded, so that the editor thread never waits for the runtime
    /// (see [`Terminal::spawn`]).
    typed: mpsc::UnboundedReceiver<Typed>,
    /// Tells the editor thread not to read another line.
    stop: Arc<AtomicBool>,
    /// Whether the editor thread is still running.
    reading: bool,
    /// Whether rustyline runs the terminal raw (not a dumb terminal), so
    /// that stopping it must interrupt its `readline`.
    raw: Arc<AtomicBool>,
    /// The terminal's settings before the editor touched them, put back if
    /// the editor cannot be stopped, so the shell is not left raw.
    saved: Option<Termios>,
}

impl Terminal {
    /// Starts the editor thread (which starts the printer thread).
    ///
    /// The channel of typed lines is unbounded: the editor thread must never
    /// wait for the runtime. Output reaches the screen only while the editor
    /// is inside `readline` with no key waiting (rustyline takes keys before
    /// external prints), so lines typed or pasted in one burst are read back
    /// to back while their echoes wait. An editor blocked on a full channel
    /// would hold the runtime blocked on the full print channel: a deadlock.
    /// What the channel can hold is what was typed, no more.
    pub fn spawn(view: View, link: SharedLink, history: Option<PathBuf>) -> Terminal {
        let saved = tcgetattr(std::io::stdin()).ok();
        let (print_tx, print_rx) = mpsc::channel(64);
        let (typed_tx, typed_rx) = mpsc::unbounded_channel();
        let stop = Arc::new(AtomicBool::new(false));
        let raw = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let thread_raw = Arc::clone(&raw);
        std::thread::Builder::new()
            .name("editor".into())
            .spawn(move || {
                edit(
                    view,
                    link,
                    history,
                    print_rx,
                    &typed_tx,
                    &thread_stop,
                    &thread_raw,
                )
            })
            .expect("spawning the editor thread");
        Terminal {
            print: print_tx,
            typed: typed_rx,
            stop,
            reading: true,
            raw,
            saved,
        }
    }

    /// The next thing the editor reports; `None` once it has stopped.
    pub async fn typed(&mut self) -> Option<Typed> {
        if !self.reading {
            return std::future::pending().await;
        }
        let typed = self.typed.recv().await;
        if typed.is_none() {
            self.reading = false;
        }
        typed
    }

    /// Prints text (ending with a newline) above the prompt.
    pub async fn print(&self, text: String) {
        if !text.is_empty() {
            let _ = self.print.send(Print::Text(text)).await;
        }
    }

    pub async fn repaint(&self) {
        let _ = self.print.send(Print::Repaint).await;
    }

    /// Waits until everything printed so far is on the screen.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.print.send(Print::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Stops the editor, so the terminal is restored before the process
    /// exits. A `readline` in progress returns only for a key or a signal:
    /// rustyline turns SIGINT into an interrupted line while it reads, and
    /// the editor thread, seeing `stop`, then ends.
    pub async fn stop(&mut self) {
        self.flush().await;
        self.stop.store(true, Ordering::SeqCst);
        if !self.reading {
            return;
        }
        if !self.raw.load(Ordering::SeqCst) {
            // A dumb terminal is never raw: nothing to restore.
            return;
        }
        // The signal can land between two `readline` calls, where tokio's
        // handler takes it; the editor then sees `stop` before reading again.
        // Each round waits a bounded time, and gives up after a few.
        for _ in 0..20 {
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGINT);
            loop {
                match timeout(Duration::from_millis(100), self.typed.recv()).await {
                    Ok(None) => {
                        self.reading = false;
                        return;
                    }
                    Ok(Some(_)) => {}
                    Err(_) => break,
                }
            }
        }
        if let Some(saved) = &self.saved {
            let _ = tcsetattr(std::io::stdin(), SetArg::TCSANOW, saved);
        }
    }
}

/// Completion of slash commands, and the prompt drawn from the shared state.
struct ReplHelper {
    view: View,
    link: SharedLink,
    gate: Arc<Gate>,
}

impl Completer for ReplHelper {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let candidates = command::complete(&line[..pos])
            .into_iter()
            .map(|name| {
                let takes_args = command::COMMANDS
                    .iter()
                    .any(|(n, args, _)| *n == name && !args.is_empty());
                if takes_args {
                    format!("{name} ")
                } else {
                    name.to_owned()
                }
            })
            .collect();
        Ok((0, candidates))
    }
}

impl Hinter for ReplHelper {
    type Hint = String;
}

impl Validator for ReplHelper {}

impl Highlighter for ReplHelper {
    fn highlight_prompt<'b, 's: 'b, 'p: 'b>(
        &'s self,
        prompt: &'p str,
        default: bool,
    ) -> Cow<'b, str> {
        self.gate.drawing();
        if !default {
            // rustyline's own prompts, e.g. for reverse search.
            return Cow::Borrowed(prompt);
        }
        let link = *self.link.lock().unwrap_or_else(|e| e.into_inner());
        Cow::Owned(self.view.prompt(link.link()))
    }
}

impl Helper for ReplHelper {}

fn edit(
    view: View,
    link: SharedLink,
    history: Option<PathBuf>,
    print: mpsc::Receiver<Print>,
    typed: &mpsc::UnboundedSender<Typed>,
    stop: &AtomicBool,
    raw: &AtomicBool,
) {
    let report = |t: Typed| typed.send(t).is_ok();
    let config = Config::builder()
        .max_history_size(HISTORY_SIZE)
        .and_then(|c| c.history_ignore_dups(true))
        .map(|c| {
            c.history_ignore_space(true)
                .auto_add_history(false)
                .completion_type(CompletionType::List)
                // The helper draws the prompt; colour itself follows --color.
                .color_mode(ColorMode::Forced)
                .build()
        });
    let editor = config.and_then(Editor::<ReplHelper, DefaultHistory>::with_config);
    let mut editor = match editor {
        Ok(editor) => editor,
        Err(err) => {
            spawn_printer(None, print);
            report(Typed::Failed(format!(
                "cannot start the line editor: {err}"
            )));
            return;
        }
    };
    let gate = Arc::new(Gate::default());
    let _ended = Ended(Arc::clone(&gate));
    editor.set_helper(Some(ReplHelper {
        view,
        link: Arc::clone(&link),
        gate: Arc::clone(&gate),
    }));
    let printer = editor.create_external_printer().ok().map(|p| {
        (
            Box::new(p) as Box<dyn ExternalPrinter + Send>,
            Arc::clone(&gate),
        )
    });
    raw.store(printer.is_some(), Ordering::SeqCst);
    spawn_printer(printer, print);

    let history = history.and_then(|path| match history::prepare(&path) {
        Ok(()) => Some(path),
        Err(err) => {
            report(Typed::Warning(format!(
                "history will not be saved: {}: {err}",
                path.display()
            )));
            None
        }
    });
    if let Some(path) = &history
        && let Err(err) = editor.load_history(path)
    {
        report(Typed::Warning(format!(
            "cannot read the history {}: {err}",
            path.display()
        )));
    }
    let mut history_failed = false;

    // Lines that arrive in one read (typed fast, pasted without bracketed
    // paste, sent by tmux or expect) are read here one `readline` at a time.
    // rustyline reads the terminal up to 1024 bytes at once, into a reader it
    // makes for each `readline`; without its `buffer-redux` feature (on in
    // Cargo.toml) that reader, and every byte after the first line's Enter,
    // was dropped when `readline` returned. With it, the rest is handed to the
    // next `readline`, so a line and a half arrive as a line sent and a half
    // line at the next prompt. Its raw mode goes on and off with TCSADRAIN,
    // which keeps unread input. What an interrupted line leaves (keys after a
    // Ctrl-C in the same read) is dropped, as a terminal's Ctrl-C drops
    // what was typed ahead.
    while !stop.load(Ordering::SeqCst) {
        let prompt = View::prompt_plain(link.lock().unwrap_or_else(|e| e.into_inner()).link());
        let read = editor.readline(&prompt);
        gate.returned();
        match read {
            Ok(line) => {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                if !line.is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                    if let Some(path) = &history
                        && let Err(err) = editor.append_history(path)
                        && !history_failed
                    {
                        history_failed = true;
                        report(Typed::Warning(format!(
                            "cannot save the history to {}: {err}",
                            path.display()
                        )));
                    }
                }
                let input = command::parse(&line);
                let ends = input.ends_session();
                if !report(Typed::Input(input)) || ends {
                    return;
                }
            }
            Err(ReadlineError::Interrupted) => {
                if stop.load(Ordering::SeqCst) || !report(Typed::Interrupt) {
                    return;
                }
            }
            // A hung-up terminal reads as the end of input, or fails. A read
            // that fails with EIO is a hang-up too: when the other side of a
            // pty closes, reads fail so a moment before the kernel marks the
            // terminal hung up (which `hung_up` sees).
            Err(err) if hung_up() || is_eio(&err) => {
                report(Typed::HangUp);
                return;
            }
            Err(ReadlineError::Eof) => {
                report(Typed::Eof);
                return;
            }
            Err(err) => {
                report(Typed::Failed(format!("the terminal failed: {err}")));
                return;
            }
        }
    }
}

fn is_eio(err: &ReadlineError) -> bool {
    match err {
        ReadlineError::Io(err) => err.raw_os_error() == Some(nix::errno::Errno::EIO as i32),
        ReadlineError::Errno(errno) => *errno == nix::errno::Errno::EIO,
        _ => false,
    }
}

/// Whether the terminal on stdin has been hung up: the kernel then answers
/// every request on it, as for its settings, with EIO.
fn hung_up() -> bool {
    matches!(tcgetattr(std::io::stdin()), Err(nix::errno::Errno::EIO))
}

/// The printer thread: output reaches the screen through rustyline's
/// external printer, which redraws the prompt and the half-typed line below
/// it. Without one (a dumb terminal), output goes straight to stdout.
fn spawn_printer(printer: Option<Printer>, print: mpsc::Receiver<Print>) {
    std::thread::Builder::new()
        .name("printer".into())
        .spawn(move || run_printer(printer, print))
        .expect("spawning the printer thread");
}

type Printer = (Box<dyn ExternalPrinter + Send>, Arc<Gate>);

/// Hands `text` to rustyline while a `readline` runs (see [`Gate`]). Should
/// that `readline` return meanwhile, the text may have gone straight to the
/// terminal, after the next prompt: the next `readline` draws it again.
fn hand_over((printer, gate): &mut Printer, text: String) {
    let before = gate.wait();
    let _ = printer.print(text);
    if !before.ended && gate.lock().returns != before.returns && !gate.wait().ended {
        let _ = printer.print(REPAINT.into());
    }
}

fn run_printer(mut printer: Option<Printer>, mut print: mpsc::Receiver<Print>) {
    use std::io::Write;
    while let Some(job) = print.blocking_recv() {
        match (job, printer.as_mut()) {
            (Print::Text(text), Some(printer)) => hand_over(printer, text),
            (Print::Text(text), None) => {
                let mut stdout = std::io::stdout().lock();
                let _ = stdout.write_all(text.as_bytes());
                let _ = stdout.flush();
            }
            (Print::Repaint, Some(printer)) => hand_over(printer, REPAINT.into()),
            (Print::Repaint, None) => {}
            (Print::Flush(done), Some(printer)) => {
                // The external printer holds one message at a time: once the
                // second repaint is accepted, the first has been taken, so
                // everything before it has been drawn.
                hand_over(printer, REPAINT.into());
                hand_over(printer, REPAINT.into());
                let _ = done.send(());
            }
            (Print::Flush(done), None) => {
                let _ = done.send(());
            }
        }
    }
}
