//! The TCP connection to a host: its addresses (from `--resolve`, or DNS),
//! filtered by `-4`/`-6`, and raced as RFC 8305 ("Happy Eyeballs v2") says.
//!
//! Trying addresses one after another lets a first address whose SYNs are
//! dropped (an IPv6 route that blackholes, a dead A record) use the whole
//! `--connect-timeout`. Here the next attempt starts [`ATTEMPT_DELAY`] after
//! the previous one, or at once when that one fails, families alternating,
//! and the first connection made wins; the others are dropped. The caller's
//! timeout bounds the whole race. Used for the server and for a proxy alike.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// RFC 8305 §5's recommended "Connection Attempt Delay".
pub const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// `-4`/`-6`: which address families may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Family {
    #[default]
    Any,
    V4,
    V6,
}

impl Family {
    fn admits(self, ip: IpAddr) -> bool {
        match self {
            Family::Any => true,
            Family::V4 => ip.is_ipv4(),
            Family::V6 => ip.is_ipv6(),
        }
    }
}

/// One `--resolve HOST:PORT:ADDR[,ADDR...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// Lower case, as the URL parser leaves a host name.
    pub host: String,
    pub port: u16,
    pub addrs: Vec<IpAddr>,
}

impl Pin {
    /// Parses curl's syntax; the error says what is wrong, without the flag's name.
    pub fn parse(arg: &str) -> Result<Pin, String> {
        let shape = "write it as HOST:PORT:ADDR[,ADDR...], IPv6 addresses in brackets";
        let (host, rest) = arg
            .split_once(':')
            .ok_or_else(|| format!("{arg:?} has no port: {shape}"))?;
        let (port, list) = rest
            .split_once(':')
            .ok_or_else(|| format!("{arg:?} has no address: {shape}"))?;
        if host.is_empty() {
            return Err(format!("{arg:?} has no host name: {shape}"));
        }
        // The form the URL parser gives the endpoint's host (lower case,
        // punycode), so the two compare equal.
        let host = match url::Host::parse(host) {
            Ok(url::Host::Domain(name)) => name,
            Ok(_) => return Err(format!("{host:?} is an address already: pin a host name")),
            Err(err) => return Err(format!("{host:?} is not a host name ({err})")),
        };
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{port:?} in {arg:?} is not a port (1-65535)"))?;
        let addrs = list
            .split(',')
            .map(|addr| {
                let bare = addr
                    .strip_prefix('[')
                    .and_then(|a| a.strip_suffix(']'))
                    .unwrap_or(addr);
                bare.parse::<IpAddr>()
                    .map_err(|_| format!("{addr:?} in {arg:?} is not an IP address"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Pin { host, port, addrs })
    }
}

/// How host names become addresses, and which of them are used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolver {
    /// In the order given; a later pin of the same host and port replaces an
    /// earlier one, as in curl.
    pub pins: Vec<Pin>,
    pub family: Family,
}

impl Resolver {
    /// The addresses to try for `host` (an IP address, or a name: pinned, or
    /// looked up), in the order to try them. The error is a sentence about
    /// `host`.
    pub async fn addresses(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        let (found, source): (Vec<SocketAddr>, &str) = if let Ok(ip) = host.parse::<IpAddr>() {
            (vec![SocketAddr::new(ip, port)], "")
        } else if let Some(pin) = self.pin(host, port) {
            let addrs = pin.addrs.iter().map(|ip| SocketAddr::new(*ip, port));
            (addrs.collect(), " (--resolve)")
        } else {
            let addrs = tokio::net::lookup_host((host, port))
                .await
                .map_err(|err| format!("cannot resolve {host}: {err}"))?;
            (addrs.collect(), "")
        };
        if found.is_empty() {
            return Err(format!("{host} resolved to no address"));
        }
        let usable: Vec<SocketAddr> = found
            .iter()
            .copied()
            .filter(|addr| self.family.admits(addr.ip()))
            .collect();
        if usable.is_empty() {
            let (flag, family) = match self.family {
                Family::V6 => ("-6", "IPv6"),
                _ => ("-4", "IPv4"),
            };
            let shown = list(found.iter().map(|a| a.ip()));
            return Err(if host.parse::<IpAddr>().is_ok() {
                format!("{host} is not an {family} address ({flag})")
            } else {
                format!("{host} has no {family} address ({flag}): it resolved to {shown}{source}")
            });
        }
        if !source.is_empty() || usable.len() > 1 {
            tracing::debug!(
                "{host} resolved to {}{source}",
                list(usable.iter().map(|a| a.ip()))
            );
        }
        Ok(interleave(usable))
    }

    fn pin(&self, host: &str, port: u16) -> Option<&Pin> {
        self.pins
            .iter()
            .rev()
            .find(|pin| pin.port == port && pin.host.eq_ignore_ascii_case(host))
    }

    /// A TCP connection to `host:port`: the addresses raced. The error says
    /// why each address failed.
    pub async fn connect(&self, host: &str, port: u16) -> Result<TcpStream, String> {
        let addrs = self.addresses(host, port).await?;
        match race(&addrs, ATTEMPT_DELAY, TcpStream::connect).await {
            Ok(stream) => {
                // Small messages are the common case; don't let Nagle delay them.
                let _ = stream.set_nodelay(true);
                Ok(stream)
            }
            Err(failures) => Err(failures
                .iter()
                .map(|(addr, err)| format!("{addr}: {err}"))
                .collect::<Vec<_>>()
                .join("; ")),
        }
    }
}

fn list(ips: impl Iterator<Item = IpAddr>) -> String {
    ips.map(|ip| ip.to_string()).collect::<Vec<_>>().join(", ")
}

/// RFC 8305 §4: the families alternate, starting with the first address's
/// (the resolver's preferred one), each family in its own order.
pub fn interleave(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let Some(first) = addrs.first() else {
        return addrs;
    };
    let first_v6 = first.is_ipv6();
    let (mut preferred, mut other): (Vec<_>, Vec<_>) =
        addrs.into_iter().partition(|a| a.is_ipv6() == first_v6);
    let mut out = Vec::with_capacity(preferred.len() + other.len());
    preferred.reverse();
    other.reverse();
    loop {
        match (preferred.pop(), other.pop()) {
            (None, None) => return out,
            (a, b) => out.extend(a.into_iter().chain(b)),
        }
    }
}

/// Races `connect` over `addrs`: attempt n+1 starts `delay` after attempt n
/// did, or as soon as n fails; the first success wins and the attempts
/// still running are dropped. When every attempt failed, each one's error,
/// in the order tried. Every step is a `-v` line.
pub async fn race<S, F, Fut>(
    addrs: &[SocketAddr],
    delay: Duration,
    mut connect: F,
) -> Result<S, Vec<(SocketAddr, io::Error)>>
where
    F: FnMut(SocketAddr) -> Fut,
    Fut: Future<Output = io::Result<S>>,
{
    let total = addrs.len();
    let mut running = FuturesUnordered::new();
    let mut failures: Vec<(usize, io::Error)> = Vec::new();
    let mut pending = vec![false; total];
    let mut started = 0;
    let mut last_start = Instant::now();
    let mut start = |n: usize, why: String, running: &mut FuturesUnordered<_>| {
        tracing::debug!("TCP attempt {} of {total}: {}{why}", n + 1, addrs[n]);
        let attempt = connect(addrs[n]);
        running.push(async move { (n, attempt.await) });
    };
    loop {
        if started < total && running.is_empty() {
            // Nothing is left running: the latest attempt failed.
            let why = match started {
                0 => String::new(),
                n => format!(" (attempt {n} failed)"),
            };
            start(started, why, &mut running);
            pending[started] = true;
            started += 1;
            last_start = Instant::now();
        }
        let next_start = tokio::time::sleep_until(last_start + delay);
        tokio::select! {
            Some((n, result)) = running.next() => {
                pending[n] = false;
                match result {
                    Ok(stream) => {
                        tracing::debug!("TCP attempt {} won: {}", n + 1, addrs[n]);
                        for (other, _) in pending.iter().enumerate().filter(|(_, p)| **p) {
                            tracing::debug!("TCP attempt {} dropped: {}", other + 1, addrs[other]);
                        }
                        return Ok(stream);
                    }
                    Err(err) => {
                        tracing::debug!("TCP attempt {} failed: {}: {err}", n + 1, addrs[n]);
                        failures.push((n, err));
                        if n + 1 == started && started < total && !running.is_empty() {
                            // The latest attempt failed while older ones run.
                            start(started, format!(" (attempt {} failed)", n + 1), &mut running);
                            pending[started] = true;
                            started += 1;
                            last_start = Instant::now();
                        }
                    }
                }
            }
            () = next_start, if started < total => {
                let why = format!(
                    " (attempt {started} unanswered after {})",
                    crate::values::format_duration(delay)
                );
                start(started, why, &mut running);
                pending[started] = true;
                started += 1;
                last_start = Instant::now();
            }
        }
        if running.is_empty() && started == total {
            failures.sort_by_key(|(n, _)| *n);
            return Err(failures
                .into_iter()
                .map(|(n, err)| (addrs[n], err))
                .collect());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|s| addr(s)).collect()
    }

    #[test]
    fn families_alternate_starting_with_the_first() {
        let v6_first = addrs(&[
            "[::1]:80",
            "[::2]:80",
            "[::3]:80",
            "1.0.0.1:80",
            "1.0.0.2:80",
        ]);
        assert_eq!(
            interleave(v6_first),
            addrs(&[
                "[::1]:80",
                "1.0.0.1:80",
                "[::2]:80",
                "1.0.0.2:80",
                "[::3]:80"
            ])
        );
        let v4_first = addrs(&["1.0.0.1:80", "[::1]:80", "1.0.0.2:80", "[::2]:80"]);
        assert_eq!(
            interleave(v4_first),
            addrs(&["1.0.0.1:80", "[::1]:80", "1.0.0.2:80", "[::2]:80"])
        );
        let one_family = addrs(&["1.0.0.3:80", "1.0.0.1:80", "1.0.0.2:80"]);
        assert_eq!(interleave(one_family.clone()), one_family);
        assert_eq!(interleave(Vec::new()), Vec::new());
    }

    /// How a fake address answers a connect, on the paused clock.
    #[derive(Clone, Copy)]
    enum Answer {
        /// SYNs dropped: no answer ever.
        Blackhole,
        Refused(u64),
        Accepted(u64),
    }

    /// Runs the race over fake addresses; what won (its index) or what
    /// failed, and when each attempt started (ms after the race began).
    async fn run(answers: &[Answer]) -> (Result<usize, Vec<SocketAddr>>, Vec<u64>, u64) {
        let list: Vec<SocketAddr> = (0..answers.len())
            .map(|i| SocketAddr::new([10, 0, 0, i as u8 + 1].into(), 80))
            .collect();
        let began = Instant::now();
        let starts = Arc::new(Mutex::new(Vec::new()));
        let seen = starts.clone();
        let result = race(&list, ATTEMPT_DELAY, move |a: SocketAddr| {
            let n = usize::from(match a.ip() {
                IpAddr::V4(ip) => ip.octets()[3] - 1,
                IpAddr::V6(_) => unreachable!(),
            });
            seen.lock()
                .unwrap()
                .push(began.elapsed().as_millis() as u64);
            let answer = answers[n];
            async move {
                match answer {
                    Answer::Blackhole => std::future::pending().await,
                    Answer::Refused(ms) => {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        Err(io::Error::from(io::ErrorKind::ConnectionRefused))
                    }
                    Answer::Accepted(ms) => {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        Ok(n)
                    }
                }
            }
        })
        .await
        .map_err(|failed| failed.into_iter().map(|(a, _)| a).collect());
        let starts = starts.lock().unwrap().clone();
        (result, starts, began.elapsed().as_millis() as u64)
    }

    #[tokio::test(start_paused = true)]
    async fn a_blackholed_first_address_costs_one_attempt_delay() {
        let (result, starts, took) = run(&[Answer::Blackhole, Answer::Accepted(5)]).await;
        assert_eq!(result, Ok(1));
        assert_eq!(starts, [0, 250]);
        assert_eq!(took, 255);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_attempt_starts_the_next_at_once() {
        let answers = [
            Answer::Refused(10),
            Answer::Refused(20),
            Answer::Accepted(5),
        ];
        let (result, starts, took) = run(&answers).await;
        assert_eq!(result, Ok(2));
        assert_eq!(starts, [0, 10, 30]);
        assert_eq!(took, 35);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_first_answer_still_wins_over_later_attempts() {
        // Attempt 2 starts at 250 ms; attempt 1 answers at 300, before 2 does.
        let answers = [
            Answer::Accepted(300),
            Answer::Accepted(100),
            Answer::Blackhole,
        ];
        let (result, starts, took) = run(&answers).await;
        assert_eq!(result, Ok(0));
        assert_eq!(starts, [0, 250]);
        assert_eq!(took, 300);
    }

    #[tokio::test(start_paused = true)]
    async fn the_latest_attempt_failing_starts_the_next_while_older_ones_run() {
        let answers = [Answer::Blackhole, Answer::Refused(10), Answer::Accepted(5)];
        let (result, starts, took) = run(&answers).await;
        assert_eq!(result, Ok(2));
        assert_eq!(starts, [0, 250, 260]);
        assert_eq!(took, 265);
    }

    #[tokio::test(start_paused = true)]
    async fn when_all_fail_every_address_is_reported_in_order() {
        let answers = [
            Answer::Refused(400),
            Answer::Refused(10),
            Answer::Refused(1),
        ];
        let (result, starts, took) = run(&answers).await;
        // 2 starts at 250 and fails at 260, so 3 starts then; 1 fails last.
        assert_eq!(starts, [0, 250, 260]);
        assert_eq!(
            result,
            Err(addrs(&["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]))
        );
        assert_eq!(took, 400);
    }

    #[test]
    fn pins_parse_as_in_curl() {
        assert_eq!(
            Pin::parse("Example.COM:443:127.0.0.1,[::1],::2"),
            Ok(Pin {
                host: "example.com".into(),
                port: 443,
                addrs: vec![
                    "127.0.0.1".parse().unwrap(),
                    "::1".parse().unwrap(),
                    "::2".parse().unwrap()
                ],
            })
        );
        let errors = [
            ("example.com", "\"example.com\" has no port"),
            ("example.com:443", "\"example.com:443\" has no address"),
            (":443:127.0.0.1", "\":443:127.0.0.1\" has no host name"),
            (
                "example.com:https:127.0.0.1",
                "\"https\" in \"example.com:https:127.0.0.1\" is not a port (1-65535)",
            ),
            (
                "example.com:0:127.0.0.1",
                "\"0\" in \"example.com:0:127.0.0.1\" is not a port (1-65535)",
            ),
            (
                "example.com:443:127.0.0.1,",
                "\"\" in \"example.com:443:127.0.0.1,\" is not an IP address",
            ),
            (
                "example.com:443:localhost",
                "\"localhost\" in \"example.com:443:localhost\" is not an IP address",
            ),
            (
                "127.0.0.1:443:127.0.0.2",
                "\"127.0.0.1\" is an address already: pin a host name",
            ),
        ];
        for (arg, expected) in errors {
            let err = Pin::parse(arg).unwrap_err();
            assert!(err.starts_with(expected), "{arg}: {err}");
        }
    }

    #[tokio::test]
    async fn pins_and_families_decide_the_addresses() {
        let resolver = |family| Resolver {
            pins: vec![
                Pin::parse("a.test:80:10.0.0.1").unwrap(),
                Pin::parse("a.test:80:[fd00::1],10.0.0.2,10.0.0.3").unwrap(),
                Pin::parse("b.test:80:10.0.0.9").unwrap(),
            ],
            family,
        };
        assert_eq!(
            resolver(Family::Any).addresses("A.test", 80).await,
            Ok(addrs(&["[fd00::1]:80", "10.0.0.2:80", "10.0.0.3:80"]))
        );
        assert_eq!(
            resolver(Family::V4).addresses("a.test", 80).await,
            Ok(addrs(&["10.0.0.2:80", "10.0.0.3:80"]))
        );
        assert_eq!(
            resolver(Family::V6).addresses("b.test", 80).await,
            Err("b.test has no IPv6 address (-6): it resolved to 10.0.0.9 (--resolve)".into())
        );
        assert_eq!(
            resolver(Family::V4).addresses("fd00::2", 80).await,
            Err("fd00::2 is not an IPv4 address (-4)".into())
        );
        // Another port is not pinned: DNS answers (here, for an address).
        assert_eq!(
            resolver(Family::Any).addresses("127.0.0.1", 81).await,
            Ok(addrs(&["127.0.0.1:81"]))
        );
    }
}
