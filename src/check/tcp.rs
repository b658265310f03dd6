//! TCP check: a connection must open within the timeout; it is closed at once.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use super::describe;

/// How long a `--port` connection may take, as in the reference tool.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A TCP connection that must open.
#[derive(Debug)]
pub struct TcpCheck {
    /// `tcp ADDR:PORT`.
    pub name: String,
    addr: SocketAddr,
    timeout: Duration,
}

impl TcpCheck {
    /// A check of `127.0.0.1:port`, as `--port` means.
    pub fn local(port: u16, timeout: Duration) -> Self {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        TcpCheck {
            name: format!("tcp {addr}"),
            addr,
            timeout,
        }
    }

    /// Connects and closes; the error is the reason.
    pub fn run(&self) -> Result<(), String> {
        match TcpStream::connect_timeout(&self.addr, self.timeout) {
            Ok(_stream) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                Err(format!("timed out after {}", super::seconds(self.timeout)))
            }
            Err(e) => Err(describe(&e)),
        }
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
        assert_eq!(check.name, format!("tcp 127.0.0.1:{port}"));
        assert_eq!(check.run(), Ok(()));
        drop(l);
        assert_eq!(check.run(), Err("connection refused".to_string()));
    }
}
