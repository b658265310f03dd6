//! The only unsafe code: the few system calls std has no API for (killing a process group,
//! polling two pipes, waiting for termination signals, waking a blocked accept).
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

fn termination_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill the local set; no other memory.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        set
    }
}

/// Blocks SIGTERM and SIGINT in this thread and in every thread started after it, so they wait
/// for [`wait_termination`] instead of killing the process. Call before starting any thread.
/// Child processes do not inherit the mask: std clears it when it spawns them.
pub fn block_termination() -> io::Result<()> {
    let set = termination_set();
    // SAFETY: `set` is initialised; a null old-set pointer is allowed.
    match unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) } {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

/// Waits for SIGTERM or SIGINT (blocked by [`block_termination`]), at most `timeout` when one
/// is given. Returns the signal's name, or `None` on timeout.
pub fn wait_termination(timeout: Option<Duration>) -> Option<&'static str> {
    let set = termination_set();
    loop {
        let sig = match timeout {
            None => {
                let mut sig: libc::c_int = 0;
                // SAFETY: `set` is initialised and `sig` is a live local.
                match unsafe { libc::sigwait(&set, &mut sig) } {
                    0 => sig,
                    _ => continue,
                }
            }
            Some(t) => {
                let ts = libc::timespec {
                    tv_sec: t.as_secs().min(i32::MAX as u64) as _,
                    tv_nsec: t.subsec_nanos() as _,
                };
                // SAFETY: `set` and `ts` are initialised locals; a null siginfo is allowed.
                let r = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
                if r < 0 {
                    if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return None;
                }
                r
            }
        };
        return Some(if sig == libc::SIGINT {
            "SIGINT"
        } else {
            "SIGTERM"
        });
    }
}

/// Shuts down a listening socket so that a thread blocked in `accept` on it returns at once
/// (Linux answers EINVAL) and later accepts fail. The caller keeps the socket open until then.
pub fn shutdown_listener(fd: RawFd) -> io::Result<()> {
    // SAFETY: shutdown(2) on a descriptor number; no memory is passed.
    if unsafe { libc::shutdown(fd, libc::SHUT_RDWR) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
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
