//! `NO_PROXY`: the hosts that are dialled directly even when a proxy is set.
//!
//! The rules are curl's, since that is what people's environments are
//! written for: entries are separated by commas (or spaces); `*` matches
//! every host; a name matches itself and its subdomains (`example.com` and
//! `.example.com` both match `api.example.com`); IP addresses match exactly,
//! or by CIDR block (`10.0.0.0/8`, `fd00::/8`). Names are not resolved, so
//! `localhost` does not match `127.0.0.1`. Ports are not considered.

use std::net::IpAddr;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoProxy {
    every_host: bool,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// Lowercase, without leading or trailing dots.
    Domain(String),
    Ip(IpAddr),
    Block(IpAddr, u8),
}

impl NoProxy {
    /// Parses a `NO_PROXY` value. Entries that mean nothing (empty ones, a
    /// CIDR block with a bad prefix) are skipped, as curl skips them.
    pub fn parse(list: &str) -> NoProxy {
        let mut no_proxy = NoProxy::default();
        for raw in list.split(|c: char| c == ',' || c.is_whitespace()) {
            let entry = raw.trim();
            if entry == "*" {
                no_proxy.every_host = true;
            } else if let Some(entry) = Entry::parse(entry) {
                no_proxy.entries.push(entry);
            }
        }
        no_proxy
    }

    /// Whether `host` (as it appears in the URL: a name, an IPv4 address, or
    /// an IPv6 address with or without brackets) bypasses the proxy.
    pub fn matches(&self, host: &str) -> bool {
        if self.every_host {
            return true;
        }
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let ip = host.parse::<IpAddr>().ok();
        self.entries.iter().any(|entry| match (entry, ip) {
            (Entry::Domain(domain), None) => {
                host == *domain
                    || host
                        .strip_suffix(domain.as_str())
                        .is_some_and(|rest| rest.ends_with('.'))
            }
            (Entry::Ip(want), Some(ip)) => canonical(*want) == canonical(ip),
            (Entry::Block(net, bits), Some(ip)) => in_block(ip, *net, *bits),
            _ => false,
        })
    }
}

impl Entry {
    fn parse(entry: &str) -> Option<Entry> {
        if entry.is_empty() {
            return None;
        }
        if let Some((net, bits)) = entry.split_once('/') {
            let net = unbracket(net).parse::<IpAddr>().ok()?;
            let bits = bits.parse::<u8>().ok()?;
            let max = if net.is_ipv4() { 32 } else { 128 };
            return (bits <= max).then_some(Entry::Block(net, bits));
        }
        if let Ok(ip) = unbracket(entry).parse::<IpAddr>() {
            return Some(Entry::Ip(ip));
        }
        let domain = entry
            .trim_start_matches("*.")
            .trim_start_matches('.')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        (!domain.is_empty()).then_some(Entry::Domain(domain))
    }
}

fn unbracket(s: &str) -> &str {
    s.strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(s)
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) compare as the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn in_block(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (canonical(ip), canonical(net)) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bypassed(list: &str, host: &str) -> bool {
        NoProxy::parse(list).matches(host)
    }

    #[test]
    fn a_name_matches_itself_and_its_subdomains_only() {
        for list in [
            "example.com",
            ".example.com",
            "*.example.com",
            "EXAMPLE.com.",
        ] {
            assert!(bypassed(list, "example.com"), "{list}");
            assert!(bypassed(list, "api.example.com"), "{list}");
            assert!(bypassed(list, "a.b.Example.COM"), "{list}");
            assert!(!bypassed(list, "notexample.com"), "{list}");
            assert!(!bypassed(list, "example.com.evil"), "{list}");
        }
        assert!(bypassed("example.com", "example.com."));
    }

    #[test]
    fn lists_split_on_commas_and_spaces() {
        let list = " internal ,example.com  10.1.2.3,,";
        assert!(bypassed(list, "internal"));
        assert!(bypassed(list, "x.example.com"));
        assert!(bypassed(list, "10.1.2.3"));
        assert!(!bypassed(list, "10.1.2.4"));
        assert!(!bypassed("", "anything"));
    }

    #[test]
    fn a_star_matches_every_host() {
        assert!(bypassed("*", "example.com"));
        assert!(bypassed("foo, *", "10.0.0.1"));
        assert!(bypassed("*", "[::1]"));
    }

    #[test]
    fn addresses_match_exactly_and_names_are_not_resolved() {
        assert!(bypassed("127.0.0.1", "127.0.0.1"));
        assert!(!bypassed("127.0.0.1", "localhost"));
        assert!(!bypassed("localhost", "127.0.0.1"));
        assert!(bypassed("::1", "[::1]"));
        assert!(bypassed("[::1]", "[::1]"));
        assert!(bypassed("[::1]", "::1"));
        assert!(bypassed("10.0.0.1", "[::ffff:10.0.0.1]"));
        assert!(!bypassed("127.0.0.1", "127.0.0.10"));
    }

    #[test]
    fn cidr_blocks_match_the_addresses_inside() {
        assert!(bypassed("10.0.0.0/8", "10.200.3.4"));
        assert!(!bypassed("10.0.0.0/8", "11.0.0.1"));
        assert!(bypassed("192.168.1.0/24", "192.168.1.255"));
        assert!(!bypassed("192.168.1.0/24", "192.168.2.1"));
        assert!(bypassed("0.0.0.0/0", "8.8.8.8"));
        assert!(bypassed("fd00::/8", "[fd12:3456::1]"));
        assert!(!bypassed("fd00::/8", "[fe80::1]"));
        assert!(!bypassed("10.0.0.0/8", "ten.example"));
        // A prefix too long for the family means nothing.
        assert!(!bypassed("10.0.0.0/33", "10.0.0.1"));
    }
}
