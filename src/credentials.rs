//! `--header-cmd` and `--on-connect-cmd`: commands run before every dial
//! whose output is that attempt's fresh credentials (handshake headers, or
//! messages sent once connected). Tokens expire; a session that reconnects
//! an hour later must not present the one it started with.
//!
//! What a command prints is a secret: no error, trace or event quotes it.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};

use crate::error::{Error, Result};
use crate::headers::{HEADER_FILE_MAX, sensitive};

/// The most a command may print: as for `-H @FILE`.
pub const OUTPUT_MAX: u64 = HEADER_FILE_MAX;

/// One command, split into words as a shell would (no shell runs it).
#[derive(Debug, Clone)]
pub struct CredentialCommand {
    /// `--header-cmd` or `--on-connect-cmd`, for messages.
    pub flag: &'static str,
    pub argv: Vec<String>,
    /// How long it may take (`--connect-timeout`).
    pub timeout: Duration,
}

impl CredentialCommand {
    /// Splits `line` into words; an empty or unbalanced one is a usage error.
    pub fn parse(flag: &'static str, line: &str, timeout: Duration) -> Result<CredentialCommand> {
        let argv = crate::values::command_words(flag, line)?;
        Ok(CredentialCommand {
            flag,
            argv,
            timeout,
        })
    }

    fn program(&self) -> &str {
        &self.argv[0]
    }

    fn fail(&self, detail: String) -> Error {
        Error::Command {
            flag: self.flag,
            detail: format!("`{}` {detail}", self.program()),
        }
    }

    /// Runs it: stdin null, stderr the user's, stdout read (at most
    /// [`OUTPUT_MAX`]) as UTF-8. Killed if it overruns its time, or if the
    /// future is dropped (an interrupt).
    async fn output(&self) -> Result<String> {
        tracing::debug!("running {} ({})", self.flag, self.program());
        let mut child = Command::new(self.program())
            .args(&self.argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|err| self.fail(format!("could not be run: {err}")))?;
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let run = async {
            let mut bytes = Vec::new();
            (&mut stdout)
                .take(OUTPUT_MAX + 1)
                .read_to_end(&mut bytes)
                .await
                .map_err(|err| self.fail(format!("could not be read: {err}")))?;
            if bytes.len() as u64 > OUTPUT_MAX {
                return Err(self.fail(format!(
                    "printed more than {} KiB, the most a command may print",
                    OUTPUT_MAX / 1024
                )));
            }
            let status = child
                .wait()
                .await
                .map_err(|err| self.fail(format!("could not be waited for: {err}")))?;
            if !status.success() {
                return Err(self.fail(describe_status(status)));
            }
            String::from_utf8(bytes)
                .map_err(|_| self.fail("printed something that is not UTF-8".into()))
        };
        match tokio::time::timeout(self.timeout, run).await {
            Ok(result) => result,
            Err(_) => Err(self.fail(format!(
                "did not finish within {} (--connect-timeout); it was killed",
                crate::values::format_duration(self.timeout)
            ))),
        }
    }

    /// `--header-cmd`: the headers it printed, one `Name: value` a line
    /// (blank lines and `#` comments skipped, as in `-H @FILE`), every value
    /// marked secret.
    pub async fn headers(&self) -> Result<Vec<(HeaderName, HeaderValue)>> {
        let text = self.output().await?;
        parse_headers(&text).map_err(|detail| self.fail(detail))
    }

    /// `--on-connect-cmd`: the messages it printed, one a line (a CRLF's
    /// `\r` dropped, empty lines skipped, as stdin's lines are).
    pub async fn messages(&self) -> Result<Vec<String>> {
        let text = self.output().await?;
        Ok(text
            .lines()
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect())
    }
}

fn describe_status(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => format!("failed ({status})"),
    }
}

/// The headers in a command's output. An error names the line by its number
/// only: the line may hold a token.
fn parse_headers(text: &str) -> std::result::Result<Vec<(HeaderName, HeaderValue)>, String> {
    let mut headers = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = index + 1;
        let (name, value) = line.split_once(':').ok_or_else(|| {
            format!("printed line {at} without a colon: a header is 'Name: value'")
        })?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("printed line {at} whose name is not a valid header name"))?;
        let value = HeaderValue::from_str(value.trim()).map_err(|_| {
            format!("printed line {at} whose value contains characters a header cannot carry")
        })?;
        if name == "sec-websocket-extensions" {
            return Err(format!(
                "printed Sec-WebSocket-Extensions (line {at}), which cannot be set: \
                 tether supports no WebSocket extension yet"
            ));
        }
        headers.push((name, sensitive(value)));
    }
    Ok(headers)
}

/// What the commands gave for one attempt.
#[derive(Debug, Default)]
pub struct Fresh {
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub messages: Vec<String>,
}

/// Runs both commands (those given), at once.
pub async fn fresh(
    header_cmd: Option<&CredentialCommand>,
    on_connect_cmd: Option<&CredentialCommand>,
) -> Result<Fresh> {
    let headers = async {
        match header_cmd {
            Some(cmd) => cmd.headers().await,
            None => Ok(Vec::new()),
        }
    };
    let messages = async {
        match on_connect_cmd {
            Some(cmd) => cmd.messages().await,
            None => Ok(Vec::new()),
        }
    };
    let (headers, messages) = tokio::try_join!(headers, messages)?;
    Ok(Fresh { headers, messages })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_lines_are_headers_and_errors_never_quote_them() {
        let headers =
            parse_headers("# fresh\n\nAuthorization: Bearer s3cret\r\n  X-Trace: 7 \n").unwrap();
        assert_eq!(headers.len(), 2);
        assert_eq!(headers[0].0, "authorization");
        assert_eq!(headers[0].1, "Bearer s3cret");
        assert_eq!(headers[1].1, "7");
        assert!(headers.iter().all(|(_, v)| v.is_sensitive()));
        for (text, want) in [
            (
                "X: 1\nBearer s3cret\n",
                "printed line 2 without a colon: a header is 'Name: value'",
            ),
            (
                "s3cret name: x\n",
                "printed line 1 whose name is not a valid header name",
            ),
            (
                "X: s3cret\u{1}\n",
                "printed line 1 whose value contains characters a header cannot carry",
            ),
        ] {
            assert_eq!(parse_headers(text).unwrap_err(), want);
        }
        assert!(parse_headers("sec-websocket-extensions: x").is_err());
    }

    #[test]
    fn commands_are_split_into_words_without_a_shell() {
        let cmd = CredentialCommand::parse(
            "--header-cmd",
            "sh -c 'echo \"a b\"' x",
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(cmd.argv, ["sh", "-c", "echo \"a b\"", "x"]);
        let usage = |line| match CredentialCommand::parse("--header-cmd", line, Duration::ZERO) {
            Err(Error::Usage(message)) => message,
            other => panic!("{other:?}"),
        };
        assert_eq!(usage("  "), "--header-cmd: the command is empty");
        assert!(
            usage("echo 'open").starts_with("--header-cmd: cannot split the command into words (")
        );
    }
}
