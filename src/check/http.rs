//! HTTP check: `GET` a plain `http://` URL; pass on status 200-399, like a Kubernetes
//! `httpGet` probe. Redirects are not followed; only the status line and headers are read.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::Budget;
use super::tcp::{self, Host, left};

/// Default `--http-timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Most bytes of a response head read: its status line is all we need.
const MAX_HEAD: usize = 64 * 1024;
/// Most header fields parsed from a response.
const MAX_HEADERS: usize = 100;

/// A parsed `http://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// The URL as given, for the check's name.
    pub text: String,
    /// The host to connect to.
    pub host: Host,
    /// The port, 80 unless given.
    pub port: u16,
    /// The `Host` header value: the authority as given.
    pub authority: String,
    /// Path and query, `/` when empty.
    pub path: String,
}

impl Url {
    /// Parses `http://HOST[:PORT][/PATH][?QUERY]`; `https://` and credentials are refused.
    pub fn parse(s: &str) -> Result<Url, String> {
        let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
        if lower.starts_with("https://") {
            return Err(
                "https is not supported; use --script \"curl -fsS --max-time 5 URL\" instead"
                    .to_string(),
            );
        }
        let rest = if lower.starts_with("http://") {
            &s[7..]
        } else {
            return Err("expected a URL starting with http://".to_string());
        };
        let rest = rest.split('#').next().unwrap_or("");
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err("no host in the URL".to_string());
        }
        if authority.contains('@') {
            return Err("credentials in the URL are not supported".to_string());
        }
        if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(
                "spaces or control characters in the path; percent-encode them".to_string(),
            );
        }
        let with_port = if authority.ends_with(']') || !authority.contains(':') {
            format!("{authority}:80")
        } else {
            authority.to_string()
        };
        let (host, port) = tcp::split_host_port(&with_port)?;
        let path = match path {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        Ok(Url {
            text: s.to_string(),
            host,
            port,
            authority: authority.to_string(),
            path,
        })
    }
}

/// A URL that must answer 200-399.
#[derive(Debug)]
pub struct HttpCheck {
    /// `http URL`.
    pub name: String,
    url: Url,
    /// The request, built once.
    request: Vec<u8>,
    /// `--http-timeout`.
    pub timeout: Duration,
}

impl HttpCheck {
    /// A check of `url` within `timeout`.
    pub fn new(url: Url, timeout: Duration) -> Self {
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: health-checker/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
            url.path,
            url.authority,
            env!("CARGO_PKG_VERSION")
        )
        .into_bytes();
        HttpCheck {
            name: format!("http {}", url.text),
            url,
            request,
            timeout,
        }
    }

    /// Sends the request and reads the status within `budget`; the error is the reason.
    pub fn run(&self, budget: Budget) -> Result<(), String> {
        let deadline = budget.end;
        let addrs = match &self.url.host {
            Host::Ip(ip) => vec![SocketAddr::new(*ip, self.url.port)],
            Host::Name(name) => tcp::resolve(name, self.url.port, deadline)?,
        };
        let status = self
            .fetch_status(&addrs, deadline)
            .map_err(|e| tcp::reason(&e, budget))?;
        if (200..400).contains(&status) {
            Ok(())
        } else {
            Err(format!("status {status}"))
        }
    }

    // Kept out of line for the same reason as the TCP exchange: 7 KiB of buffers.
    #[inline(never)]
    fn fetch_status(&self, addrs: &[SocketAddr], deadline: Instant) -> std::io::Result<u16> {
        let mut stream = tcp::connect(addrs, deadline)?;
        stream.set_write_timeout(Some(left(deadline)?))?;
        stream.write_all(&self.request)?;
        let mut head = Vec::with_capacity(1024);
        let mut buf = [0u8; 4096];
        loop {
            stream.set_read_timeout(Some(left(deadline)?))?;
            let n = stream.read(&mut buf)?;
            if n == 0 {
                return Err(std::io::Error::other(
                    "connection closed before a complete status line",
                ));
            }
            head.extend_from_slice(&buf[..n]);
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut res = httparse::Response::new(&mut headers);
            match res.parse(&head) {
                // The status line is enough, even while headers are still arriving.
                Ok(_) if res.code.is_some() => return Ok(res.code.unwrap_or_default()),
                Ok(_) if head.len() < MAX_HEAD => continue,
                Ok(_) => return Err(std::io::Error::other("response head larger than 64 KiB")),
                Err(e) => return Err(std::io::Error::other(format!("invalid response: {e}"))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let u = Url::parse("http://127.0.0.1:8080/health?deep=1").unwrap();
        assert_eq!(u.host, Host::Ip("127.0.0.1".parse().unwrap()));
        assert_eq!(
            (u.port, u.authority.as_str(), u.path.as_str()),
            (8080, "127.0.0.1:8080", "/health?deep=1")
        );
        let u = Url::parse("http://example.internal").unwrap();
        assert_eq!((u.port, u.path.as_str()), (80, "/"));
        assert_eq!(u.host, Host::Name("example.internal".into()));
        let u = Url::parse("HTTP://[::1]/x#frag").unwrap();
        assert_eq!(
            (u.host, u.port, u.path.as_str()),
            (Host::Ip("::1".parse().unwrap()), 80, "/x")
        );
        assert_eq!(Url::parse("http://h:81?q").unwrap().path, "/?q");
    }

    #[test]
    fn rejected_urls_say_why() {
        let e = |s| Url::parse(s).unwrap_err();
        assert!(e("https://h/").starts_with("https is not supported; use --script"));
        assert_eq!(e("ftp://h/"), "expected a URL starting with http://");
        assert_eq!(e("127.0.0.1:80"), "expected a URL starting with http://");
        assert_eq!(e("http://"), "no host in the URL");
        assert_eq!(e("http:///path"), "no host in the URL");
        assert_eq!(e("http://h:0/"), "\"0\" is not a port number (1-65535)");
        assert_eq!(
            e("http://h:99999/"),
            "\"99999\" is not a port number (1-65535)"
        );
        assert_eq!(e("http://h:x/"), "\"x\" is not a port number (1-65535)");
        assert_eq!(
            e("http://u:p@h/"),
            "credentials in the URL are not supported"
        );
        assert_eq!(
            e("http://h/a b"),
            "spaces or control characters in the path; percent-encode them"
        );
    }

    #[test]
    fn request_has_host_and_closes() {
        let c = HttpCheck::new(
            Url::parse("http://127.0.0.1:8080/health").unwrap(),
            DEFAULT_TIMEOUT,
        );
        let req = String::from_utf8(c.request.clone()).unwrap();
        assert!(req.starts_with("GET /health HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"));
        assert!(req.ends_with("Connection: close\r\n\r\n"));
        assert_eq!(c.name, "http http://127.0.0.1:8080/health");
    }
}
