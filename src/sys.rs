//! The only unsafe code: the few system calls std has no API for.
//!
//! Each function is a thin, checked wrapper around one libc call; the rest of the crate
//! forbids `unsafe`.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// Sends SIGKILL to every process in the process group `pgid`.
///
/// Fails with ESRCH when the group has no process left. Refuses ids 0 and 1, which would
/// mean "our own group" and "every process we may signal".
pub fn kill_group(pgid: u32) -> io::Result<()> {
    let pgid =
        libc::pid_t::try_from(pgid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    if pgid <= 1 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    if unsafe { libc::kill(-pgid, libc::SIGKILL) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Waits up to `timeout` until one of at most two descriptors can be read without blocking
/// (data, end of file or an error). Returns which ones can; both false on timeout.
pub fn poll_readable(fds: &[RawFd], timeout: Duration) -> io::Result<[bool; 2]> {
    let mut pfds = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; 2];
    let n = fds.len().min(2);
    for (p, &fd) in pfds.iter_mut().zip(fds) {
        p.fd = fd;
        p.events = libc::POLLIN;
    }
    // Round up so that a sub-millisecond remainder still waits instead of spinning.
    let ms = timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int;
    loop {
        // SAFETY: `pfds` is a live array of `n` (≤ 2) initialised pollfd structs.
        let r = unsafe { libc::poll(pfds.as_mut_ptr(), n as libc::nfds_t, ms) };
        if r >= 0 {
            let ready = |p: &libc::pollfd| {
                p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
            };
            return Ok([ready(&pfds[0]), n > 1 && ready(&pfds[1])]);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn refuses_to_kill_our_own_group_or_everyone() {
        assert_eq!(
            kill_group(0).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            kill_group(1).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn poll_sees_data_and_times_out() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let (c, _d) = UnixStream::pair().unwrap();
        assert_eq!(
            poll_readable(&[a.as_raw_fd(), c.as_raw_fd()], Duration::from_millis(10)).unwrap(),
            [false, false]
        );
        b.write_all(b"x").unwrap();
        assert_eq!(
            poll_readable(&[a.as_raw_fd(), c.as_raw_fd()], Duration::from_millis(10)).unwrap(),
            [true, false]
        );
    }
}
