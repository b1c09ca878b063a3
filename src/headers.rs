//! `-H` arguments: one `Name: value` header each, or `@FILE` for a file of
//! them, so a secret need not be on the command line, where `ps` and
//! `/proc/PID/cmdline` show it to every user of the machine.

use std::io::Read;
use std::path::Path;

use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};

use crate::error::{Error, Result};

/// The largest header file read: far more than any set of headers a server
/// accepts (they commonly stop at 8 to 64 KiB), and a bound on what a
/// mistaken path (`-H @/dev/zero`) can cost.
pub const HEADER_FILE_MAX: u64 = 64 * 1024;

/// The `-H` arguments, in order, files expanded in place.
pub fn from_args(args: &[String]) -> Result<Vec<(HeaderName, HeaderValue)>> {
    let mut headers = Vec::with_capacity(args.len());
    for raw in args {
        match raw.strip_prefix('@') {
            Some(path) => headers.extend(from_file(path)?),
            None => headers.push(supported(parse_header(raw)?, "-H")?),
        }
    }
    Ok(headers)
}

/// One `Name: value` header; a secret's value is marked sensitive.
pub fn parse_header(raw: &str) -> Result<(HeaderName, HeaderValue)> {
    let (name, value) = raw.split_once(':').ok_or_else(|| {
        // Show only the first word: the rest may be a token.
        let name = raw.split_whitespace().next().unwrap_or_default();
        Error::Usage(format!(
            "-H \"{name} ...\" has no colon: a header is 'Name: value'"
        ))
    })?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| Error::Usage(format!("-H: {:?} is not a valid header name", name.trim())))?;
    let value = HeaderValue::from_str(value.trim()).map_err(|_| {
        Error::Usage(format!(
            "-H: the value of {name} contains characters a header cannot carry"
        ))
    })?;
    let value = if is_secret_header(name.as_str()) {
        sensitive(value)
    } else {
        value
    };
    Ok((name, value))
}

/// Headers whose values are secrets: never printed.
pub fn is_secret_header(name: &str) -> bool {
    name.eq_ignore_ascii_case("authorization")
        || name.eq_ignore_ascii_case("proxy-authorization")
        || name.eq_ignore_ascii_case("cookie")
        || name.eq_ignore_ascii_case("set-cookie")
}

/// Marks credentials so the http crate's Debug output hides them.
pub fn sensitive(mut value: HeaderValue) -> HeaderValue {
    value.set_sensitive(true);
    value
}

/// `-H @PATH`: one header a line; blank lines and lines starting with `#`
/// are skipped, spaces around a line are trimmed.
fn from_file(path: &str) -> Result<Vec<(HeaderName, HeaderValue)>> {
    if path.is_empty() {
        return Err(Error::Usage(
            "-H @: no file name after @; use -H @FILE for headers in a file".into(),
        ));
    }
    if path == "-" {
        return Err(Error::Usage(
            "-H @-: headers cannot come from stdin, which carries the messages; \
             write them to a file and pass -H @FILE"
                .into(),
        ));
    }
    let text =
        read_capped(Path::new(path)).map_err(|why| Error::Usage(format!("-H @{path}: {why}")))?;
    let mut headers = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = format!("-H @{path}:{}", index + 1);
        let header = parse_header(line).map_err(|err| {
            // parse_header speaks of "-H"; say which file and line instead.
            let message = err.to_string();
            let message = message
                .strip_prefix("-H: ")
                .or_else(|| message.strip_prefix("-H "))
                .unwrap_or(&message)
                .to_owned();
            Error::Usage(format!("{at}: {message}"))
        })?;
        headers.push(supported(header, &at)?);
    }
    Ok(headers)
}

/// The file's text, at most [`HEADER_FILE_MAX`] bytes; the error says why not.
fn read_capped(path: &Path) -> std::result::Result<String, String> {
    let file = std::fs::File::open(path).map_err(|err| format!("cannot read it: {err}"))?;
    let mut bytes = Vec::new();
    file.take(HEADER_FILE_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| format!("cannot read it: {err}"))?;
    if bytes.len() as u64 > HEADER_FILE_MAX {
        return Err(format!(
            "the file is larger than {} KiB, the most a header file may hold",
            HEADER_FILE_MAX / 1024
        ));
    }
    String::from_utf8(bytes).map_err(|_| "the file is not UTF-8 text".into())
}

/// Refuses the headers tether cannot honour. `Sec-WebSocket-Extensions`
/// is tether's own: it offers permessage-deflate itself (`--compression`)
/// and must know what was offered to read what the server agreed to.
fn supported(header: (HeaderName, HeaderValue), flag: &str) -> Result<(HeaderName, HeaderValue)> {
    if header.0 == "sec-websocket-extensions" {
        return Err(Error::Usage(format!(
            "{flag}: Sec-WebSocket-Extensions cannot be set: tether negotiates extensions \
             itself (it offers permessage-deflate unless --compression off, and compresses what \
             it sends with --compress), so drop this header"
        )));
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file holding `text`, removed when the test ends, and its `-H` argument.
    fn file(text: &[u8]) -> (tempfile::NamedTempFile, String) {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, text).unwrap();
        let arg = format!("@{}", file.path().display());
        (file, arg)
    }

    fn usage(args: &[&str]) -> String {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        match from_args(&args) {
            Err(Error::Usage(message)) => message,
            other => panic!("{args:?} should be a usage error, not {other:?}"),
        }
    }

    #[test]
    fn headers_are_validated_and_secrets_marked() {
        let (name, value) = parse_header("Authorization: Bearer abc").unwrap();
        assert_eq!(name.as_str(), "authorization");
        assert!(value.is_sensitive());
        let err = parse_header("Authorization Bearer abc")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("abc"), "{err}");
        assert!(parse_header("Bad Name: x").is_err());
        assert!(!parse_header("X-Team: blue").unwrap().1.is_sensitive());
    }

    #[test]
    fn a_header_file_is_read_line_by_line_in_place() {
        let (_keep, arg) =
            file(b"# secrets for staging\n\nAuthorization: Bearer abc\r\n  X-Team: blue  \n");
        let args = ["X-First: 1".to_owned(), arg, "X-Last: 2".to_owned()];
        let headers = from_args(&args).unwrap();
        let shown: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        assert_eq!(
            shown,
            [
                ("x-first", "1"),
                ("authorization", "Bearer abc"),
                ("x-team", "blue"),
                ("x-last", "2"),
            ]
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
        );
        assert!(headers[1].1.is_sensitive());
    }

    #[test]
    fn a_bad_header_file_is_a_usage_error_that_names_it() {
        let (_keep, arg) = file(b"X-Ok: 1\nBearer s3cret-token\n");
        let message = usage(&[&arg]);
        assert_eq!(
            message,
            format!("-H {arg}:2: \"Bearer ...\" has no colon: a header is 'Name: value'")
        );
        assert!(!message.contains("s3cret"), "{message}");

        let (_keep, big) = file(&vec![b'#'; HEADER_FILE_MAX as usize + 1]);
        assert_eq!(
            usage(&[&big]),
            format!("-H {big}: the file is larger than 64 KiB, the most a header file may hold")
        );
        let (_keep, exact) = file(&vec![b'#'; HEADER_FILE_MAX as usize]);
        assert!(from_args(&[exact]).unwrap().is_empty());

        let (_keep, binary) = file(b"X: \xff\n");
        assert!(usage(&[&binary]).ends_with(": the file is not UTF-8 text"));
        assert!(
            usage(&["@/nonexistent/tether-h"])
                .starts_with("-H @/nonexistent/tether-h: cannot read it: ")
        );
        assert!(usage(&["@-"]).contains("stdin"));
        assert!(usage(&["@"]).contains("no file name"));
    }

    #[test]
    fn offering_extensions_is_refused() {
        let message = usage(&["Sec-WebSocket-Extensions: permessage-deflate"]);
        assert_eq!(
            message,
            "-H: Sec-WebSocket-Extensions cannot be set: tether negotiates extensions itself \
             (it offers permessage-deflate unless --compression off, and compresses what it \
             sends with --compress), so drop this header"
        );
        let (_keep, arg) = file(b"sec-websocket-extensions: x\n");
        assert!(usage(&[&arg]).starts_with(&format!("-H {arg}:1: Sec-WebSocket-Extensions")));
    }
}
