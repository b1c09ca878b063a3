//! The facts of RFC 6455 (and the IANA close-code registry) that tether's
//! own rules are built on, in one place: which close codes may be on the
//! wire, which ones are worth a reconnect, and the sizes of control frames.
//!
//! **One rule for close codes:** a code may be sent exactly when it may be
//! received. tungstenite 0.30 accepts a Close with 1000-1003, 1007-1013 or
//! 3000-4999 and fails the connection (answering 1002) on any other code, so
//! those are the codes `/close` and a script's `close` step send: a code
//! tether would refuse from a server, it never sends to one. The test below
//! holds this table to tungstenite's, so an upgrade that changes it fails.

/// A control frame's payload (Ping, Pong, Close) is at most 125 bytes (§5.5).
pub const CONTROL_PAYLOAD_MAX: usize = 125;

/// A Close reason is at most 123 bytes: the payload less the 2-byte code.
pub const CLOSE_REASON_MAX: usize = CONTROL_PAYLOAD_MAX - 2;

/// The close code of an ordinary goodbye.
pub const NORMAL_CLOSURE: u16 = 1000;

/// The valid close codes, as a user reads them (for hints and the README).
pub const VALID_CLOSE_CODES: &str = "1000-1003, 1007-1013 or 3000-4999";

/// Whether `code` may appear in a Close frame, in either direction:
/// 1000-1003 and 1007-1011 (§7.4.1), 1012 and 1013 (IANA: service restart,
/// try again later), 3000-4999 (registered and private use, §7.4.2).
///
/// Not 1004 (reserved), 1005, 1006 and 1015 (they stand for "no code",
/// "dropped" and "TLS failed", and must never be sent), nor 1014 (IANA's
/// "bad gateway", which tungstenite refuses like any unassigned code).
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1013 | 3000..=4999)
}

/// Received close codes after which the server is expected to come back:
/// going away (1001), internal error (1011), service restart (1012), try
/// again later (1013). Every one is a valid code: an invalid one is a
/// protocol violation, never a reason to reconnect.
pub fn is_retried_close_code(code: u16) -> bool {
    matches!(code, 1001 | 1011 | 1012 | 1013)
}

/// A close code as typed: a number from 1000 to 4999, for `expect-close`,
/// which names a code the server may send without judging it.
pub fn close_code_value(raw: &str) -> Option<u16> {
    raw.parse::<u16>()
        .ok()
        .filter(|code| (1000..=4999).contains(code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    #[test]
    fn valid_codes_are_the_ones_tungstenite_accepts_on_receive() {
        for code in 0..=u16::MAX {
            assert_eq!(
                is_valid_close_code(code),
                CloseCode::from(code).is_allowed(),
                "{code}"
            );
        }
    }

    #[test]
    fn the_code_list_for_people_says_what_the_rule_says() {
        let ranges: Vec<(u16, u16)> = VALID_CLOSE_CODES
            .split([',', ' '])
            .filter(|part| part.contains('-'))
            .map(|range| {
                let (low, high) = range.split_once('-').unwrap();
                (low.parse().unwrap(), high.parse().unwrap())
            })
            .collect();
        for code in 0..=u16::MAX {
            let listed = ranges.iter().any(|&(l, h)| (l..=h).contains(&code));
            assert_eq!(listed, is_valid_close_code(code), "{code}");
        }
    }

    #[test]
    fn retried_codes_are_valid_and_can_arrive() {
        for code in 0..=u16::MAX {
            if is_retried_close_code(code) {
                assert!(is_valid_close_code(code), "{code}");
            }
        }
        for code in [1000, 1002, 1003, 1007, 1008, 1009, 1010, 1014, 3000, 4999] {
            assert!(!is_retried_close_code(code), "{code}");
        }
        assert!(!is_valid_close_code(1014));
    }

    #[test]
    fn the_reason_fits_a_control_frame_with_its_code() {
        assert_eq!(CLOSE_REASON_MAX + 2, CONTROL_PAYLOAD_MAX);
        assert_eq!(close_code_value("4001"), Some(4001));
        assert_eq!(close_code_value("999"), None);
        assert_eq!(close_code_value("5000"), None);
        assert_eq!(close_code_value("x"), None);
    }
}
