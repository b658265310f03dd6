//! Graceful shutdown on SIGTERM and SIGINT: answer failure for `--shutdown-delay` so the load
//! balancer drains the host, stop accepting, let requests in flight finish for a bounded time,
//! kill every script and hook still running, and let their requests answer.

use std::io;
use std::thread;
use std::time::Duration;

use log::info;

use crate::check::{self, script};
use crate::health::Monitor;
use crate::http::{Handler, Server, Stopper};
use crate::sys;

/// How long a shutdown waits for requests in flight before their scripts are killed.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// After killing the scripts of requests still in flight, how long those get to answer.
const FINAL_ANSWER_TIMEOUT: Duration = Duration::from_millis(500);
/// Stack of the thread that waits for SIGTERM and SIGINT.
const SIGNAL_STACK: usize = 64 * 1024;

/// Starts the thread that waits for SIGTERM or SIGINT (blocked in every thread by
/// `sys::block_termination`), tells `monitor` to answer failure, waits out `delay` (a second
/// signal cuts it short), and stops the server's accept loop.
pub fn watch(monitor: &'static Monitor, stopper: Stopper, delay: Duration) -> io::Result<()> {
    thread::Builder::new()
        .name("signals".into())
        .stack_size(SIGNAL_STACK)
        .spawn(move || {
            let Some(sig) = sys::wait_termination(None) else {
                return;
            };
            monitor.stop();
            if delay.is_zero() {
                info!("{sig}: shutting down");
            } else {
                info!(
                    "{sig}: answering failure for {} before shutting down",
                    check::seconds(delay)
                );
                if let Some(again) = sys::wait_termination(Some(delay)) {
                    info!("{again} again: shutting down now");
                }
            }
            stopper.stop();
        })
        .map(|_| ())
}

/// After the accept loop returned: drains the connections, kills what still runs, and lets
/// the requests that waited on it send their answers.
pub fn finish<H: Handler>(server: &Server<H>) {
    let busy = server.drain(DRAIN_TIMEOUT);
    if busy > 0 {
        info!(
            "{busy} requests still in flight after {} s; ending them",
            DRAIN_TIMEOUT.as_secs()
        );
    }
    script::kill_all();
    if busy > 0 {
        // Their scripts are gone now: let those requests send their (failed) answers.
        server.drain(FINAL_ANSWER_TIMEOUT);
    }
    info!("stopped");
}
