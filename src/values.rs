//! How values are spelled on the command line and in scenario files:
//! durations, sizes and hex bytes. A leaf: `config` and `script` both use
//! it, and it uses neither.
//!
//! The `*_value` functions say only whether the text is valid, for callers
//! with their own messages (a scenario file names its line); the others are
//! for flags, and their errors are usage errors that name the flag.

use std::time::Duration;

use crate::error::{Error, Result};

/// Durations: `10s`, `500ms`, `1m30s`, or a bare number of seconds (`2.5`).
pub fn parse_duration(flag: &str, raw: &str) -> Result<Duration> {
    duration_value(raw).ok_or_else(|| {
        Error::Usage(format!(
            "{flag} {:?} is not a duration; use e.g. 10s, 500ms, 2m or a number of seconds",
            raw.trim()
        ))
    })
}

/// A duration that must not be zero (timeouts, backoff delays).
pub fn positive_duration(flag: &str, raw: &str) -> Result<Duration> {
    let d = parse_duration(flag, raw)?;
    if d.is_zero() {
        return Err(Error::Usage(format!("{flag} must be greater than zero")));
    }
    Ok(d)
}

/// The duration syntax of [`parse_duration`], without a message.
pub fn duration_value(raw: &str) -> Option<Duration> {
    let raw = raw.trim();
    match raw.parse::<f64>() {
        Ok(secs) if secs.is_finite() && (0.0..1e9).contains(&secs) => {
            Some(Duration::from_secs_f64(secs))
        }
        Ok(_) => None,
        Err(_) => humantime::parse_duration(raw).ok(),
    }
}

/// A duration as a flag takes it (`250ms`, `1.5s`, `90s`, `2m`, `1h`), so a
/// message echoes `--timeout 1.5s` as it was written, not as humantime's
/// `1s 500ms`. Whatever [`duration_value`] reads back as the same duration.
pub fn format_duration(duration: Duration) -> String {
    const MS: u128 = 1_000_000;
    const S: u128 = 1_000 * MS;
    let nanos = duration.as_nanos();
    match nanos {
        0 => "0s".into(),
        // Finer than a flag is written: Rust's own form, e.g. `1.5µs`.
        _ if !nanos.is_multiple_of(MS) => format!("{duration:?}"),
        _ if nanos < S => format!("{}ms", nanos / MS),
        _ if nanos.is_multiple_of(3_600 * S) => format!("{}h", nanos / (3_600 * S)),
        _ if nanos.is_multiple_of(60 * S) => format!("{}m", nanos / (60 * S)),
        _ if nanos.is_multiple_of(S) => format!("{}s", nanos / S),
        _ => {
            let fraction = format!("{:03}", nanos % S / MS);
            format!("{}.{}s", nanos / S, fraction.trim_end_matches('0'))
        }
    }
}

/// A command line (`--exec`, `--header-cmd`, `--on-connect-cmd`) split into
/// words as a POSIX shell would, with no shell run: a usage error when it is
/// empty or a quote is left open.
pub fn command_words(flag: &str, line: &str) -> Result<Vec<String>> {
    let words = shlex::split(line).ok_or_else(|| {
        Error::Usage(format!(
            "{flag}: cannot split the command into words (an unclosed quote or a trailing backslash)"
        ))
    })?;
    if words.is_empty() {
        return Err(Error::Usage(format!("{flag}: the command is empty")));
    }
    Ok(words)
}

/// Sizes: a number of bytes, with an optional K/KiB/M/MiB/G/GiB suffix; never 0.
pub fn parse_size(flag: &str, raw: &str) -> Result<usize> {
    size_value(raw).ok_or_else(|| {
        Error::Usage(format!(
            "{flag} {:?} is not a size; use e.g. 64MiB, 512KiB or a number of bytes",
            raw.trim()
        ))
    })
}

/// A size where a bare `0` turns the feature off (`--replay-window 0`).
pub fn parse_size_or_zero(flag: &str, raw: &str) -> Result<usize> {
    if raw.trim() == "0" {
        Ok(0)
    } else {
        parse_size(flag, raw)
    }
}

/// The size syntax of [`parse_size`], without a message.
pub fn size_value(raw: &str) -> Option<usize> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (digits, unit) = raw.split_at(split);
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    match digits.parse::<u64>().ok()?.checked_mul(multiplier)? {
        0 => None,
        n => Some(usize::try_from(n).unwrap_or(usize::MAX)),
    }
}

/// What is wrong with a hex argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HexError {
    /// A character that is neither a hex digit nor white space.
    NotADigit(char),
    /// This many digits, an odd number: they do not make whole bytes.
    OddDigits(usize),
}

/// Hex digits to bytes, white space anywhere ignored: `00ff 6869`.
pub fn hex_value(raw: &str) -> std::result::Result<Vec<u8>, HexError> {
    let mut bytes = Vec::with_capacity(raw.len() / 2);
    let mut high: Option<u8> = None;
    let mut digits = 0;
    for c in raw.chars().filter(|c| !c.is_whitespace()) {
        let nibble = c.to_digit(16).ok_or(HexError::NotADigit(c))? as u8;
        digits += 1;
        match high.take() {
            Some(h) => bytes.push(h << 4 | nibble),
            None => high = Some(nibble),
        }
    }
    if high.is_some() {
        return Err(HexError::OddDigits(digits));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_flags_take_them() {
        for (raw, shown) in [
            ("1.5s", "1.5s"),
            ("1.5", "1.5s"),
            ("2.3", "2.3s"),
            ("0.25", "250ms"),
            ("250ms", "250ms"),
            ("30s", "30s"),
            ("90s", "90s"),
            ("1m30s", "90s"),
            ("120s", "2m"),
            ("2h", "2h"),
            ("1s 5ms", "1.005s"),
            ("0", "0s"),
        ] {
            let duration = duration_value(raw).unwrap();
            assert_eq!(format_duration(duration), shown, "{raw}");
            assert_eq!(duration_value(shown), Some(duration), "{shown} reads back");
        }
        assert_eq!(format_duration(Duration::from_nanos(1_500)), "1.5µs");
    }

    #[test]
    fn durations_accept_units_and_plain_seconds() {
        assert_eq!(parse_duration("f", "10s").unwrap(), Duration::from_secs(10));
        assert_eq!(
            parse_duration("f", "250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(
            parse_duration("f", "1.5").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(
            parse_duration("f", "1m30s").unwrap(),
            Duration::from_secs(90)
        );
        assert_eq!(parse_duration("f", "0").unwrap(), Duration::ZERO);
        let err = parse_duration("--timeout", "soon").unwrap_err().to_string();
        assert!(err.contains("--timeout \"soon\""), "{err}");
        assert!(parse_duration("f", "-1").is_err());
        assert!(parse_duration("f", "NaN").is_err());
        assert_eq!(
            positive_duration("--ping-timeout", "0")
                .unwrap_err()
                .to_string(),
            "--ping-timeout must be greater than zero"
        );
    }

    #[test]
    fn sizes_accept_binary_suffixes() {
        assert_eq!(parse_size("f", "64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("f", "512k").unwrap(), 512 << 10);
        assert_eq!(parse_size("f", "1 G").unwrap(), 1 << 30);
        assert_eq!(parse_size("f", "1000").unwrap(), 1000);
        assert!(parse_size("f", "0").is_err());
        assert!(parse_size("f", "MiB").is_err());
        assert!(parse_size("f", "99999999999999999999").is_err());
        let err = parse_size("--max-message-size", "12 parsecs")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("--max-message-size \"12 parsecs\" is not a size"),
            "{err}"
        );
        assert_eq!(parse_size_or_zero("f", " 0 ").unwrap(), 0);
        assert_eq!(parse_size_or_zero("f", "4MiB").unwrap(), 4 << 20);
    }

    #[test]
    fn hex_ignores_spaces_and_names_the_mistake() {
        assert_eq!(hex_value("00ff 68 69").unwrap(), b"\x00\xffhi");
        assert_eq!(hex_value("").unwrap(), b"");
        assert_eq!(hex_value("AbCd").unwrap(), [0xab, 0xcd]);
        assert_eq!(hex_value("0g"), Err(HexError::NotADigit('g')));
        assert_eq!(hex_value("ab c"), Err(HexError::OddDigits(3)));
        assert_eq!(hex_value("é0"), Err(HexError::NotADigit('é')));
    }
}
