//! Script check: a program, run directly in its own process group, must exit 0 in time.
//!
//! Invariants: stdin is /dev/null; stdout and stderr are drained to the end (a script whose
//! pipe fills, or that gets SIGPIPE, would fail for our sake) but only the last
//! [`MAX_CAPTURE`] bytes of each are kept; when the deadline passes the whole process group is
//! killed and reaped, and after a normal exit whatever the script left in its group is killed
//! too, so no child outlives its check.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use wait_timeout::ChildExt;

use super::{Budget, describe};
use crate::cli::Script;
use crate::limit::Semaphore;
use crate::sys;

/// Output kept per stream: enough for an error message, bounded for a script that floods.
pub const MAX_CAPTURE: usize = 64 * 1024;
/// One read from a pipe; lives on the reader's stack.
const READ_CHUNK: usize = 16 * 1024;
/// Stack of the output reader thread: one read buffer and a little more.
const READER_STACK: usize = 64 * 1024;
/// How long the reader waits past the deadline for the pipes to close after the kill.
const DRAIN_GRACE: Duration = Duration::from_millis(250);

/// Process groups of the scripts and hooks running now, for [`kill_all`] at shutdown. Its
/// size is bounded by the script slots plus the one hook.
static RUNNING: Mutex<Running> = Mutex::new(Running {
    groups: Vec::new(),
    stopping: false,
});

/// Kills the process group of every script and hook running now and of any started later
/// (at shutdown, so that none outlives the process).
pub fn kill_all() {
    let mut r = RUNNING.lock().unwrap_or_else(PoisonError::into_inner);
    r.stopping = true;
    for &pgid in &r.groups {
        let _ = sys::kill_group(pgid);
    }
}

/// Registers (or forgets) a running group; false when shutting down and it must not run.
fn running(pgid: u32, on: bool) -> bool {
    let mut r = RUNNING.lock().unwrap_or_else(PoisonError::into_inner);
    if !on {
        r.groups.retain(|&p| p != pgid);
        return true;
    }
    if r.stopping {
        return false;
    }
    r.groups.push(pgid);
    true
}

struct Running {
    groups: Vec<u32>,
    stopping: bool,
}

/// A program that must exit 0 before its timeout.
#[derive(Debug)]
pub struct ScriptCheck {
    /// `script PROGRAM`: the program only, never its arguments, which may hold secrets.
    pub name: String,
    script: Script,
    /// `--script-timeout`.
    pub timeout: Duration,
    /// Shared by every script check: how many script processes may run at once.
    slots: Arc<Semaphore>,
}

impl ScriptCheck {
    /// A check that runs `script` with `timeout`, taking one of `slots` while it runs.
    pub fn new(script: Script, timeout: Duration, slots: Arc<Semaphore>) -> Self {
        ScriptCheck {
            name: format!("script {}", script.program),
            script,
            timeout,
            slots,
        }
    }

    /// Runs the script once within `budget`. The error is the reason (no output, no
    /// arguments); the output of a failed run comes beside it, for the log.
    pub fn run(&self, budget: Budget) -> (Result<(), String>, Option<String>) {
        let Some(_slot) = self.slots.acquire(budget.end) else {
            let reason = if budget.overall() {
                budget.expired()
            } else {
                format!("busy: {} scripts already running", self.slots.size())
            };
            return (Err(reason), None);
        };
        let done = run_program(&self.script, &[], budget);
        let output = (done.result.is_err() && (!done.stdout.is_empty() || !done.stderr.is_empty()))
            .then(|| {
                format!(
                    "stdout {:?} stderr {:?}",
                    done.stdout.text(),
                    done.stderr.text()
                )
            });
        (done.result, output)
    }
}

/// What running a program left: its verdict and the tails of its output.
pub struct Finished {
    /// `Ok` when it exited 0 in time; otherwise the reason.
    pub result: Result<(), String>,
    /// The last bytes of its stdout.
    pub stdout: Tail,
    /// The last bytes of its stderr.
    pub stderr: Tail,
}

/// Runs `script` with `env` added, in its own process group, within `budget`; every process
/// left in the group is killed before this returns.
pub fn run_program(script: &Script, env: &[(&str, String)], budget: Budget) -> Finished {
    let failed = |reason| Finished {
        result: Err(reason),
        stdout: Tail::default(),
        stderr: Tail::default(),
    };
    let deadline = budget.end;
    let spawned = Command::new(&script.program)
        .args(&script.args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return failed(spawn_reason(&e)),
    };
    let pid = child.id();
    if !running(pid, true) {
        kill_and_reap(pid, &mut child);
        return failed("shutting down".to_string());
    }
    let pipes = [
        child.stdout.take().map(|p| File::from(OwnedFd::from(p))),
        child.stderr.take().map(|p| File::from(OwnedFd::from(p))),
    ];
    let reader = thread::Builder::new()
        .name("script-output".into())
        .stack_size(READER_STACK)
        .spawn(move || drain(pipes, deadline + DRAIN_GRACE));
    let reader = match reader {
        Ok(r) => r,
        Err(e) => {
            kill_and_reap(pid, &mut child);
            return failed(format!(
                "cannot start a thread to read its output: {}",
                describe(&e)
            ));
        }
    };
    let exit = match child.wait_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(Some(status)) => {
            // The leader is reaped, but its group id stays reserved while any member lives,
            // so this reaches only what the script left behind (ESRCH when nothing).
            let _ = sys::kill_group(pid);
            Ok(status)
        }
        Ok(None) => {
            // Not reaped yet: the group id cannot have been reused.
            kill_and_reap(pid, &mut child);
            Err(budget.expired())
        }
        Err(e) => {
            kill_and_reap(pid, &mut child);
            Err(format!("cannot wait for it: {}", describe(&e)))
        }
    };
    running(pid, false);
    // The reader stops by itself at its deadline, so this join is bounded.
    let [stdout, stderr] = reader.join().unwrap_or_default();
    let result = match exit {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(exit_reason(status)),
        Err(reason) => Err(reason),
    };
    Finished {
        result,
        stdout,
        stderr,
    }
}

fn kill_and_reap(pid: u32, child: &mut Child) {
    let _ = sys::kill_group(pid);
    let _ = child.wait();
}

fn spawn_reason(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOENT) => "cannot run it: no such file or program".to_string(),
        Some(libc::EACCES) => "cannot run it: permission denied (is it executable?)".to_string(),
        Some(libc::ENOEXEC) => {
            "cannot run it: exec format error (does it start with a #! line?)".to_string()
        }
        _ => format!("cannot run it: {}", describe(e)),
    }
}

fn exit_reason(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => format!("ended with {status}"),
    }
}

/// Reads both pipes until both end or `deadline` passes, keeping the tail of each.
fn drain(mut pipes: [Option<File>; 2], deadline: Instant) -> [Tail; 2] {
    let mut tails = [Tail::default(), Tail::default()];
    let mut buf = [0u8; READ_CHUNK];
    loop {
        let mut fds: [RawFd; 2] = [-1; 2];
        let mut which = [0usize; 2];
        let mut n = 0;
        for (i, p) in pipes.iter().enumerate() {
            if let Some(f) = p {
                fds[n] = f.as_raw_fd();
                which[n] = i;
                n += 1;
            }
        }
        let now = Instant::now();
        if n == 0 || now >= deadline {
            return tails;
        }
        let Ok(ready) = sys::poll_readable(&fds[..n], deadline - now) else {
            return tails;
        };
        for k in 0..n {
            if !ready[k] {
                continue;
            }
            let i = which[k];
            let Some(pipe) = pipes[i].as_mut() else {
                continue;
            };
            match pipe.read(&mut buf) {
                Ok(0) => pipes[i] = None,
                Ok(m) => tails[i].push(&buf[..m]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => pipes[i] = None,
            }
        }
    }
}

/// The last [`MAX_CAPTURE`] bytes of a stream.
#[derive(Debug, Default)]
pub struct Tail {
    buf: VecDeque<u8>,
}

impl Tail {
    /// Appends `data`, dropping the oldest bytes beyond the bound.
    pub fn push(&mut self, data: &[u8]) {
        let data = &data[data.len().saturating_sub(MAX_CAPTURE)..];
        let over = (self.buf.len() + data.len()).saturating_sub(MAX_CAPTURE);
        self.buf.drain(..over);
        self.buf.extend(data);
    }

    /// Whether nothing was kept.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The kept bytes as text, invalid UTF-8 replaced, surrounding blanks trimmed.
    pub fn text(&self) -> String {
        let (a, b) = self.buf.as_slices();
        let mut v = Vec::with_capacity(a.len() + b.len());
        v.extend_from_slice(a);
        v.extend_from_slice(b);
        String::from_utf8_lossy(&v).trim().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(line: &str, timeout: Duration) -> ScriptCheck {
        let mut w = crate::words::split(line).unwrap();
        let program = w.remove(0);
        ScriptCheck::new(
            Script { program, args: w },
            timeout,
            Arc::new(Semaphore::new(2)),
        )
    }

    impl ScriptCheck {
        fn go(&self) -> Result<(), String> {
            self.run(Budget::new(Instant::now(), self.timeout, None)).0
        }
    }

    #[test]
    fn a_failed_run_brings_its_output_for_the_log() {
        let c = check(
            "sh -c 'echo out; echo err >&2; exit 1'",
            Duration::from_secs(5),
        );
        let (r, output) = c.run(Budget::new(Instant::now(), c.timeout, None));
        assert_eq!(r, Err("exited with status 1".into()));
        assert_eq!(output.as_deref(), Some(r#"stdout "out" stderr "err""#));
        let ok = check("sh -c 'echo fine'", Duration::from_secs(5));
        assert_eq!(
            ok.run(Budget::new(Instant::now(), ok.timeout, None)),
            (Ok(()), None)
        );
    }

    #[test]
    fn no_slot_means_busy() {
        let c = check("true", Duration::from_millis(100));
        let _a = c.slots.acquire(Instant::now()).unwrap();
        let _b = c.slots.acquire(Instant::now()).unwrap();
        assert_eq!(c.go(), Err("busy: 2 scripts already running".into()));
    }

    #[test]
    fn tail_keeps_the_last_bytes_only() {
        let mut t = Tail::default();
        t.push(b"hello ");
        t.push(b"world");
        assert_eq!(t.text(), "hello world");
        let big: Vec<u8> = (0..3 * MAX_CAPTURE)
            .map(|i| b'a' + (i % 26) as u8)
            .collect();
        for chunk in big.chunks(1000) {
            t.push(chunk);
        }
        assert_eq!(t.buf.len(), MAX_CAPTURE);
        assert_eq!(t.text().as_bytes(), &big[big.len() - MAX_CAPTURE..]);
        t.push(&big);
        assert_eq!(t.text().as_bytes(), &big[big.len() - MAX_CAPTURE..]);
    }

    #[test]
    fn exit_status_decides() {
        let t = Duration::from_secs(5);
        assert_eq!(check("true", t).go(), Ok(()));
        assert_eq!(
            check("sh -c 'exit 3'", t).go(),
            Err("exited with status 3".into())
        );
        assert_eq!(
            check("sh -c 'kill -9 $$'", t).go(),
            Err("killed by signal 9".into())
        );
    }

    #[test]
    fn missing_program_is_a_reason() {
        let r = check("/nonexistent/x", Duration::from_secs(1)).go();
        assert_eq!(r, Err("cannot run it: no such file or program".into()));
    }

    #[test]
    fn timeout_kills_and_reports() {
        let start = Instant::now();
        let r = check("sleep 10", Duration::from_millis(200)).go();
        assert_eq!(r, Err("timed out after 0.2s".into()));
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_flood_of_output_is_drained() {
        // 8 MiB through a 64 KiB pipe: the script only exits 0 if we keep reading.
        let r = check(
            "sh -c 'head -c 8388608 /dev/zero; echo done'",
            Duration::from_secs(20),
        )
        .go();
        assert_eq!(r, Ok(()));
    }
}
