//! Reading stdin records on a thread of their own and queueing each as one
//! message. Blocking reads stay off the runtime, and a full queue simply
//! blocks this thread: that is the backpressure on stdin.

use std::io::{BufRead, BufReader, Read};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::config::InputConfig;
use crate::error::Error;
use crate::session::{Command, Payload};

/// How stdin ended: the number of records read, or why reading stopped.
pub type InputEnd = Result<u64, Error>;

/// Starts the reader. At the end of input it asks the supervisor to drain,
/// and reports how input ended on the returned channel.
pub fn spawn(
    config: InputConfig,
    reader: impl Read + Send + 'static,
    commands: mpsc::Sender<Command>,
) -> oneshot::Receiver<InputEnd> {
    let (done_tx, done_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let end = pump(config, reader, &commands);
            if end.is_ok() || matches!(end, Err(Error::Input(_))) {
                let _ = commands.blocking_send(Command::Drain);
            }
            let _ = done_tx.send(end);
        })
        .expect("spawning the stdin thread");
    done_rx
}

fn pump(config: InputConfig, reader: impl Read, commands: &mpsc::Sender<Command>) -> InputEnd {
    let mut reader = BufReader::with_capacity(256 * 1024, reader);
    let mut records = 0u64;
    loop {
        let mut record = Vec::new();
        let n = reader
            .read_until(config.separator, &mut record)
            .map_err(|err| Error::Input(format!("cannot read stdin: {err}")))?;
        if n == 0 {
            return Ok(records);
        }
        records += 1;
        if record.last() == Some(&config.separator) {
            record.pop();
        }
        let payload = if config.binary {
            Payload::Binary(Bytes::from(record))
        } else {
            match String::from_utf8(record) {
                Ok(text) => Payload::Text(Utf8Bytes::from(text)),
                Err(err) => return Err(invalid_utf8(records, config.separator, &err)),
            }
        };
        if commands.blocking_send(Command::Send(payload)).is_err() {
            // The session is over; nobody is left to send to.
            return Ok(records);
        }
    }
}

fn invalid_utf8(record: u64, separator: u8, err: &std::string::FromUtf8Error) -> Error {
    let what = if separator == b'\n' { "line" } else { "record" };
    let at = err.utf8_error().valid_up_to();
    let byte = err.as_bytes().get(at).copied().unwrap_or(0);
    Error::Input(format!(
        "stdin {what} {record} is not valid UTF-8 (byte 0x{byte:02x} at offset {at}); \
         it was not sent, nor was anything after it. Use --binary to send bytes as they are"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &'static [u8], binary: bool) -> (Vec<Command>, InputEnd) {
        let (tx, mut rx) = mpsc::channel(100);
        let config = InputConfig {
            binary,
            separator: b'\n',
        };
        let end = pump(config, input, &tx);
        drop(tx);
        let mut commands = Vec::new();
        while let Ok(cmd) = rx.try_recv() {
            commands.push(cmd);
        }
        (commands, end)
    }

    fn texts(commands: &[Command]) -> Vec<String> {
        commands
            .iter()
            .map(|c| match c {
                Command::Send(Payload::Text(t)) => t.to_string(),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn each_line_is_one_message_and_a_last_unterminated_line_counts() {
        let (commands, end) = read_all(b"one\n\ntwo\r\nthree", false);
        assert_eq!(texts(&commands), ["one", "", "two\r", "three"]);
        assert_eq!(end.unwrap(), 4);
    }

    #[test]
    fn invalid_utf8_names_the_line_and_stops() {
        let (commands, end) = read_all(b"fine\nbad \xff here\nnever\n", false);
        assert_eq!(texts(&commands), ["fine"]);
        let msg = end.unwrap_err().to_string();
        assert!(
            msg.contains("line 2") && msg.contains("0xff") && msg.contains("--binary"),
            "{msg}"
        );
    }

    #[test]
    fn binary_mode_keeps_bytes_as_they_are() {
        let (commands, _) = read_all(b"\xff\x00\n", true);
        assert!(
            matches!(&commands[0], Command::Send(Payload::Binary(b)) if b.as_ref() == b"\xff\x00")
        );
    }
}
