//! TCP check: a connection must open within the timeout, optionally followed by a
//! send/expect exchange (`--tcp 127.0.0.1:2181,send=ruok,expect=imok`).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::{Budget, describe};

/// Default `--tcp-timeout`, as the reference tool's fixed 5 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Most bytes read while waiting for the expected reply: a status word, not a stream.
const MAX_REPLY: usize = 64 * 1024;
/// Most name lookups in flight at once. `getaddrinfo` has no timeout, so a lookup that
/// outlives its check keeps its thread; this bounds how many a dead resolver can pile up.
const MAX_LOOKUPS: usize = 16;
/// Stack of a lookup thread: getaddrinfo and its buffers.
const LOOKUP_STACK: usize = 128 * 1024;

static LOOKUPS: AtomicUsize = AtomicUsize::new(0);

/// Where to connect: an address, or a name resolved at check time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// An IP literal.
    Ip(IpAddr),
    /// A name for the system resolver.
    Name(String),
}

/// A `--tcp` value: host, port, and an optional exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The host.
    pub host: Host,
    /// The port, 1-65535.
    pub port: u16,
    /// Bytes to send once connected.
    pub send: Option<Vec<u8>>,
    /// Bytes the reply must contain.
    pub expect: Option<Vec<u8>>,
}

impl Target {
    /// `127.0.0.1:port`, what `--port` means.
    pub fn local(port: u16) -> Self {
        Target {
            host: Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            port,
            send: None,
            expect: None,
        }
    }

    /// Parses `HOST:PORT[,send=TEXT][,expect=TEXT]`; TEXT takes `\n`, `\r`, `\t`, `\\` and `\,`.
    pub fn parse(s: &str) -> Result<Target, String> {
        let mut parts = split_unescaped(s).into_iter();
        let addr = parts.next().unwrap_or_default();
        let (host, port) = split_host_port(&addr)?;
        let mut target = Target {
            host,
            port,
            send: None,
            expect: None,
        };
        for part in parts {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("expected send=TEXT or expect=TEXT, got {part:?}"))?;
            let value = unescape(value)?;
            if value.is_empty() {
                return Err(format!("{key}= needs some text"));
            }
            let slot = match key {
                "send" => &mut target.send,
                "expect" => &mut target.expect,
                _ => return Err(format!("unknown key {key:?}: expected send or expect")),
            };
            if slot.replace(value).is_some() {
                return Err(format!("{key}= given twice"));
            }
        }
        Ok(target)
    }
}

/// `HOST:PORT` with HOST an IPv4 literal, `[IPv6]` or a name; PORT 1-65535.
pub fn split_host_port(s: &str) -> Result<(Host, u16), String> {
    let (host, port) = s.rsplit_once(':').ok_or("expected HOST:PORT")?;
    let port = match port.parse::<u16>() {
        Ok(0) | Err(_) => return Err(format!("{port:?} is not a port number (1-65535)")),
        Ok(p) => p,
    };
    let host = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Host::Ip(IpAddr::V6(
            v6.parse()
                .map_err(|_| format!("{v6:?} is not an IPv6 address"))?,
        ))
    } else if let Ok(ip) = host.parse::<Ipv4Addr>() {
        Host::Ip(IpAddr::V4(ip))
    } else if is_host_name(host) {
        Host::Name(host.to_string())
    } else {
        return Err(format!(
            "{host:?} is not a host name or address (IPv6 goes in brackets)"
        ));
    };
    Ok((host, port))
}

fn is_host_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Splits at commas not preceded by a backslash; escapes stay for [`unescape`].
fn split_unescaped(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            ',' => parts.push(std::mem::take(&mut cur)),
            '\\' => {
                cur.push('\\');
                cur.extend(chars.next());
            }
            c => cur.push(c),
        }
    }
    parts.push(cur);
    parts
}

fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut b = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            continue;
        }
        out.push(match chars.next() {
            Some('n') => b'\n',
            Some('r') => b'\r',
            Some('t') => b'\t',
            Some('\\') => b'\\',
            Some(',') => b',',
            Some(other) => {
                return Err(format!(
                    "unknown escape \\{other} (use \\n \\r \\t \\\\ \\,)"
                ));
            }
            None => return Err("ends in a lone backslash".to_string()),
        });
    }
    Ok(out)
}

/// A TCP connection that must open, and perhaps answer.
#[derive(Debug)]
pub struct TcpCheck {
    /// `tcp HOST:PORT`.
    pub name: String,
    target: Target,
    /// `--tcp-timeout`.
    pub timeout: Duration,
}

impl TcpCheck {
    /// A check of `target` within `timeout`.
    pub fn new(target: Target, timeout: Duration) -> Self {
        let name = match &target.host {
            Host::Ip(ip) => format!("tcp {}", SocketAddr::new(*ip, target.port)),
            Host::Name(n) => format!("tcp {n}:{}", target.port),
        };
        TcpCheck {
            name,
            target,
            timeout,
        }
    }

    /// A check of `127.0.0.1:port`, as `--port` means.
    pub fn local(port: u16, timeout: Duration) -> Self {
        Self::new(Target::local(port), timeout)
    }

    /// Connects (and exchanges, if asked) within `budget`; the error is the reason.
    pub fn run(&self, budget: Budget) -> Result<(), String> {
        let deadline = budget.end;
        let stream = match &self.target.host {
            Host::Ip(ip) => connect(&[SocketAddr::new(*ip, self.target.port)], deadline),
            Host::Name(name) => {
                let addrs = resolve(name, self.target.port, deadline)?;
                connect(&addrs, deadline)
            }
        }
        .map_err(|e| reason(&e, budget))?;
        if self.target.send.is_some() || self.target.expect.is_some() {
            self.exchange(stream, deadline)
                .map_err(|e| reason(&e, budget))?;
        }
        Ok(())
    }

    // Kept out of line: its 4 KiB buffer would otherwise sit in the frame of every
    // connection thread that runs a plain connect, deepening the stack pages they all touch.
    #[inline(never)]
    fn exchange(&self, mut stream: TcpStream, deadline: Instant) -> std::io::Result<()> {
        if let Some(send) = &self.target.send {
            stream.set_write_timeout(Some(left(deadline)?))?;
            stream.write_all(send)?;
        }
        let Some(expect) = &self.target.expect else {
            return Ok(());
        };
        let mut reply = Vec::new();
        let mut buf = [0u8; 4096];
        while reply.len() < MAX_REPLY {
            stream.set_read_timeout(Some(left(deadline)?))?;
            let n = stream.read(&mut buf)?;
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&buf[..n]);
            if contains(&reply, expect) {
                return Ok(());
            }
        }
        let shown = String::from_utf8_lossy(&reply[..reply.len().min(64)]).into_owned();
        Err(std::io::Error::other(format!(
            "expected {:?}, got {shown:?}",
            String::from_utf8_lossy(expect)
        )))
    }
}

/// The reason for an I/O error, the budget's wording when time ran out.
pub fn reason(e: &std::io::Error, budget: Budget) -> String {
    match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => budget.expired(),
        _ => describe(e),
    }
}

/// Time left before `deadline`, or a timeout error when none is.
pub fn left(deadline: Instant) -> std::io::Result<Duration> {
    let d = deadline.saturating_duration_since(Instant::now());
    if d.is_zero() {
        Err(std::io::ErrorKind::TimedOut.into())
    } else {
        Ok(d)
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Tries each address in turn until one connects, all within `deadline`.
pub fn connect(addrs: &[SocketAddr], deadline: Instant) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address to try");
    for addr in addrs {
        match TcpStream::connect_timeout(addr, left(deadline)?) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Resolves `name` on a helper thread and stops waiting at `deadline`.
pub fn resolve(name: &str, port: u16, deadline: Instant) -> Result<Vec<SocketAddr>, String> {
    if LOOKUPS.fetch_add(1, Ordering::SeqCst) >= MAX_LOOKUPS {
        LOOKUPS.fetch_sub(1, Ordering::SeqCst);
        return Err(format!(
            "cannot resolve {name}: {MAX_LOOKUPS} lookups already in flight"
        ));
    }
    let (tx, rx) = mpsc::channel();
    let host = name.to_string();
    let spawned = thread::Builder::new()
        .name("lookup".into())
        .stack_size(LOOKUP_STACK)
        .spawn(move || {
            let result = (host.as_str(), port)
                .to_socket_addrs()
                .map(Iterator::collect::<Vec<_>>);
            LOOKUPS.fetch_sub(1, Ordering::SeqCst);
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        LOOKUPS.fetch_sub(1, Ordering::SeqCst);
        return Err(format!("cannot resolve {name}: {}", describe(&e)));
    }
    match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(Ok(addrs)) if !addrs.is_empty() => Ok(addrs),
        Ok(Ok(_)) => Err(format!("cannot resolve {name}: no address")),
        Ok(Err(e)) => Err(format!("cannot resolve {name}: {e}")),
        Err(_) => Err(format!("cannot resolve {name}: timed out")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn open_port_passes_and_closed_port_is_refused() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let check = TcpCheck::local(port, DEFAULT_TIMEOUT);
        let budget = || Budget::new(Instant::now(), DEFAULT_TIMEOUT, None);
        assert_eq!(check.name, format!("tcp 127.0.0.1:{port}"));
        assert_eq!(check.run(budget()), Ok(()));
        drop(l);
        assert_eq!(check.run(budget()), Err("connection refused".to_string()));
    }

    #[test]
    fn targets_parse() {
        let t = Target::parse("10.0.0.5:80").unwrap();
        assert_eq!(t.host, Host::Ip("10.0.0.5".parse().unwrap()));
        assert_eq!(t.port, 80);
        assert_eq!(
            Target::parse("[::1]:5432").unwrap().host,
            Host::Ip("::1".parse().unwrap())
        );
        assert_eq!(
            Target::parse("db.internal:5432").unwrap().host,
            Host::Name("db.internal".into())
        );
        let zk = Target::parse(r"127.0.0.1:2181,send=ruok,expect=imok").unwrap();
        assert_eq!(zk.send.as_deref(), Some(&b"ruok"[..]));
        assert_eq!(zk.expect.as_deref(), Some(&b"imok"[..]));
        let esc = Target::parse(r"h:1,send=PING\r\n,expect=a\,b\\").unwrap();
        assert_eq!(esc.send.as_deref(), Some(&b"PING\r\n"[..]));
        assert_eq!(esc.expect.as_deref(), Some(&b"a,b\\"[..]));
    }

    #[test]
    fn bad_targets_say_why() {
        let e = |s| Target::parse(s).unwrap_err();
        assert_eq!(e("localhost"), "expected HOST:PORT");
        assert_eq!(e("h:0"), "\"0\" is not a port number (1-65535)");
        assert_eq!(e("h:99999"), "\"99999\" is not a port number (1-65535)");
        assert_eq!(
            e(":80"),
            "\"\" is not a host name or address (IPv6 goes in brackets)"
        );
        assert_eq!(
            e("::1:80"),
            "\"::1\" is not a host name or address (IPv6 goes in brackets)"
        );
        assert_eq!(e("[zz]:80"), "\"zz\" is not an IPv6 address");
        assert_eq!(
            e("h:1,sned=x"),
            "unknown key \"sned\": expected send or expect"
        );
        assert_eq!(
            e("h:1,send"),
            "expected send=TEXT or expect=TEXT, got \"send\""
        );
        assert_eq!(e("h:1,send="), "send= needs some text");
        assert_eq!(e("h:1,send=a,send=b"), "send= given twice");
        assert_eq!(e(r"h:1,send=\q"), r"unknown escape \q (use \n \r \t \\ \,)");
    }
}
