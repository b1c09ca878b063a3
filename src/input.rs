//! Reading stdin records on a thread of their own and queueing each as one
//! message. Blocking reads stay off the runtime, and a full queue simply
//! blocks this thread: that is the backpressure on stdin. The queue is full
//! when it holds enough messages or enough bytes (the supervisor's send
//! credit), so memory stays flat however large the records are.

use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::config::InputConfig;
use crate::error::Error;
use crate::session::{Command, Payload};
use crate::supervisor::Credit;

/// How stdin ended: the number of records read, or why reading stopped.
pub type InputEnd = Result<u64, Error>;

/// Starts the reader. At the end of input it asks the supervisor to drain,
/// and reports how input ended on the returned channel.
pub fn spawn(
    config: InputConfig,
    reader: impl Read + Send + 'static,
    commands: mpsc::Sender<Command>,
    credit: Arc<Credit>,
) -> oneshot::Receiver<InputEnd> {
    let (done_tx, done_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let end = pump(config, reader, &commands, &credit);
            if end.is_ok() || matches!(end, Err(Error::Input(_))) {
                let _ = commands.blocking_send(Command::Drain);
            }
            let _ = done_tx.send(end);
        })
        .expect("spawning the stdin thread");
    done_rx
}

fn pump(
    config: InputConfig,
    reader: impl Read,
    commands: &mpsc::Sender<Command>,
    credit: &Credit,
) -> InputEnd {
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
        credit.wait_blocking();
        credit.take(payload.len());
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
        let end = pump(config, input, &tx, &Credit::new(1 << 20));
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
    fn reading_waits_while_the_send_credit_is_spent() {
        let credit = Arc::new(Credit::new(10));
        let (tx, mut rx) = mpsc::channel(100);
        let config = InputConfig {
            binary: true,
            separator: b'\n',
        };
        let pump = std::thread::spawn({
            let credit = Arc::clone(&credit);
            move || {
                pump(
                    config,
                    &b"1234567\n1234567\n1234567\n1234567\n"[..],
                    &tx,
                    &credit,
                )
            }
        });
        // Each record takes 7 bytes; the third waits until the budget of 10
        // is no longer spent, and nothing but this loop gives bytes back.
        for _ in 0..4 {
            let Some(Command::Send(payload)) = rx.blocking_recv() else {
                panic!("expected a record")
            };
            assert!(credit.used() <= 14, "{} bytes taken", credit.used());
            credit.give(payload.len());
        }
        assert_eq!(pump.join().unwrap().unwrap(), 4);
        assert_eq!(credit.used(), 0);
    }

    #[test]
    fn binary_mode_keeps_bytes_as_they_are() {
        let (commands, _) = read_all(b"\xff\x00\n", true);
        assert!(
            matches!(&commands[0], Command::Send(Payload::Binary(b)) if b.as_ref() == b"\xff\x00")
        );
    }
}
