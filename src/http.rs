//! The HTTP/1.x server: accept, bounded connections, request heads parsed with httparse,
//! bodies skipped, keep-alive and pipelining, every read and write with a deadline.
//!
//! Shape: the accept loop runs on the caller's thread; each connection is served by a thread
//! of its own with a small stack, and at most `max_connections` exist at once. A connection
//! slot records when its connection started waiting for a request head; when every slot is
//! taken, the accept loop shuts down the connection that has waited longest, so idle
//! keep-alive connections can never lock out a new prober. Bodies are never buffered: up to
//! [`MAX_BODY_SKIP`] bytes are read and thrown away, anything larger (or chunked) gets its
//! answer and then the connection is closed.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use log::{debug, error, info};

use crate::sys;

/// Longest request line, and longest header line: what common servers accept by default.
pub const MAX_LINE: usize = 8 * 1024;
/// Most header fields in one request; a prober sends a handful.
pub const MAX_HEADERS: usize = 100;
/// Longest request head in all, so a head costs at most this much memory per connection.
pub const MAX_HEAD: usize = 32 * 1024;
/// Largest body read and discarded to keep a connection alive; larger ones close it.
pub const MAX_BODY_SKIP: u64 = 64 * 1024;
/// First size of a connection's read buffer: a prober's request is 100-300 bytes; the buffer
/// grows to [`MAX_HEAD`] only for large heads.
const INITIAL_BUFFER: usize = 1024;
/// Stack of a connection thread: it parses (headers array), runs checks and formats reports.
const CONNECTION_STACK: usize = 256 * 1024;
/// Pause after an accept error (EMFILE, ENOBUFS, ...) so a persistent one cannot spin a core.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// After answering a request whose body we will not read, how long and how much we keep
/// reading so the client sees our answer instead of a reset.
const LINGER_TIME: Duration = Duration::from_millis(500);
const LINGER_BYTES: usize = 256 * 1024;

/// A parsed request head, borrowed from the connection's buffer.
pub struct Request<'a> {
    /// The request target, as sent (`/path?query`).
    pub target: &'a str,
    /// The header fields.
    pub headers: &'a [httparse::Header<'a>],
}

impl Request<'_> {
    /// The target without its query.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(self.target, |(p, _)| p)
    }

    /// The query, without the `?`.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// The value of the first header field named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

/// A response under construction; buffers are reused from request to request.
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Value of `Content-Type`.
    pub content_type: &'static str,
    /// The body (not sent for HEAD, but its length is).
    pub body: String,
}

/// What the server calls for every request.
pub trait Handler: Send + Sync + 'static {
    /// Fills `res` for `req`; `res.body` is empty on entry.
    fn handle(&self, req: &Request<'_>, res: &mut Response);

    /// Called for every response sent, rejections of broken requests included.
    fn answered(&self, _status: u16) {}
}

/// The server: a listener, its connection slots and the handler.
pub struct Server<H> {
    listener: TcpListener,
    slots: Arc<Slots>,
    handler: Arc<H>,
    idle_timeout: Duration,
    stop: Arc<AtomicBool>,
}

/// Stops a [`Server`]'s accept loop from another thread.
pub struct Stopper {
    fd: RawFd,
    stop: Arc<AtomicBool>,
}

impl Stopper {
    /// Makes `serve` return. The server (and so its listener) must still exist.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Err(e) = sys::shutdown_listener(self.fd) {
            error!("cannot stop the listener: {e}");
        }
    }
}

impl<H: Handler> Server<H> {
    /// A server on `listener` with at most `max_connections` connections at once, closing
    /// connections idle for `idle_timeout`.
    pub fn new(
        listener: TcpListener,
        max_connections: usize,
        idle_timeout: Duration,
        handler: Arc<H>,
    ) -> Self {
        Server {
            listener,
            slots: Arc::new(Slots::new(max_connections)),
            handler,
            idle_timeout,
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A handle that stops [`Server::serve`].
    pub fn stopper(&self) -> Stopper {
        Stopper {
            fd: self.listener.as_raw_fd(),
            stop: self.stop.clone(),
        }
    }

    /// Accepts and serves connections until stopped.
    pub fn serve(&self) {
        let mut failing = false;
        loop {
            let accepted = self.listener.accept();
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends pass; stopping the accept loop would make the host
                    // look dead. Out of descriptors, the longest-idle connection gives its own.
                    if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                        self.slots.lock().evict_oldest_idle();
                    }
                    if !failing {
                        error!(
                            "accept failed: {e}; retrying every {} ms",
                            ACCEPT_PAUSE.as_millis()
                        );
                        failing = true;
                    }
                    thread::sleep(ACCEPT_PAUSE);
                    continue;
                }
            };
            if failing {
                info!("accepting connections again");
                failing = false;
            }
            self.spawn(stream);
        }
    }

    fn spawn(&self, stream: TcpStream) {
        let stream = Arc::new(stream);
        let slot = self.slots.take(&stream);
        let (slots, handler, idle) = (self.slots.clone(), self.handler.clone(), self.idle_timeout);
        let spawned = thread::Builder::new()
            .name("conn".into())
            .stack_size(CONNECTION_STACK)
            .spawn(move || {
                let _release = Release {
                    slots: &slots,
                    slot,
                };
                Connection::new(&stream, &slots, slot, idle).serve(&*handler);
            });
        if let Err(e) = spawned {
            error!("cannot start a connection thread: {e}; closing the connection");
            self.slots.release(slot);
        }
    }

    /// After `serve` returned: closes idle connections, lets busy ones finish their request
    /// (and close) until `timeout`, and says how many were still busy then.
    pub fn drain(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        let mut t = self.slots.lock();
        t.draining = true;
        loop {
            while t.evict_oldest_idle() {}
            let busy = t.slots.iter().filter(|s| s.stream.is_some()).count();
            let left = deadline.saturating_duration_since(Instant::now());
            if busy == 0 || left.is_zero() {
                return busy;
            }
            t = self
                .slots
                .freed
                .wait_timeout(t, left.min(Duration::from_millis(50)))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// The connection slots: who is connected and since when each has waited for a request head.
struct Slots {
    table: Mutex<Table>,
    freed: Condvar,
}

struct Table {
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// Set at shutdown: connections close instead of waiting for another request.
    draining: bool,
}

#[derive(Default)]
struct Slot {
    stream: Option<Arc<TcpStream>>,
    /// Set while the connection waits for a request head; cleared while it is being served.
    idle_since: Option<Instant>,
}

impl Table {
    /// Shuts down the connection that has waited longest for a request head, if any; its
    /// blocked read returns at once and its thread then frees the slot.
    fn evict_oldest_idle(&mut self) -> bool {
        let oldest = self
            .slots
            .iter_mut()
            .filter(|s| s.idle_since.is_some())
            .min_by_key(|s| s.idle_since);
        let Some(slot) = oldest else { return false };
        slot.idle_since = None;
        if let Some(s) = &slot.stream {
            let _ = s.shutdown(Shutdown::Both);
        }
        true
    }
}

impl Slots {
    fn new(n: usize) -> Self {
        Slots {
            table: Mutex::new(Table {
                slots: (0..n).map(|_| Slot::default()).collect(),
                free: (0..n).rev().collect(),
                draining: false,
            }),
            freed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // Every write to the table is a single field store, so a poisoned lock is still sound.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a free slot for `stream`, evicting the longest-idle connection while none is free.
    fn take(&self, stream: &Arc<TcpStream>) -> usize {
        let mut t = self.lock();
        loop {
            if let Some(i) = t.free.pop() {
                t.slots[i] = Slot {
                    stream: Some(stream.clone()),
                    idle_since: None,
                };
                return i;
            }
            if t.evict_oldest_idle() {
                debug!("all connection slots taken: closed the one idle the longest");
            }
            // Wake up now and then: a connection that turns idle does not signal.
            t = self
                .freed
                .wait_timeout(t, Duration::from_millis(50))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Marks a connection as waiting for a request head (or not); false when it should close.
    fn set_idle(&self, slot: usize, idle: bool) -> bool {
        let mut t = self.lock();
        if idle && t.draining {
            return false;
        }
        t.slots[slot].idle_since = idle.then(Instant::now);
        true
    }

    fn release(&self, slot: usize) {
        let mut t = self.lock();
        t.slots[slot] = Slot::default();
        t.free.push(slot);
        drop(t);
        self.freed.notify_all();
    }
}

/// Frees a slot when its connection thread ends, however it ends.
struct Release<'a> {
    slots: &'a Slots,
    slot: usize,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.slots.release(self.slot);
    }
}

/// Why reading a request head stopped.
#[derive(Debug, PartialEq, Eq)]
enum HeadError {
    /// The peer closed, was shut down, or stayed idle past the timeout before sending a byte.
    Gone,
    /// Part of a head arrived and then nothing more in time.
    Timeout,
    /// The head broke a limit or the grammar: answer with this status and close.
    Reject(u16),
}

/// One connection's state: its stream and its reusable buffers.
struct Connection<'a> {
    stream: &'a TcpStream,
    slots: &'a Slots,
    slot: usize,
    /// Bytes read; `buf[..filled]` is valid, starting with the next request.
    buf: Vec<u8>,
    filled: usize,
    /// How long to wait for a request head, for a head or body to finish arriving, and for
    /// the client to take a response.
    idle: Duration,
    /// Whether the read timeout differs from `idle` and must be reset.
    timeout_changed: bool,
    out: Vec<u8>,
    res: Response,
}

impl<'a> Connection<'a> {
    fn new(stream: &'a TcpStream, slots: &'a Slots, slot: usize, idle: Duration) -> Self {
        Connection {
            stream,
            slots,
            slot,
            idle,
            buf: vec![0; INITIAL_BUFFER],
            filled: 0,
            timeout_changed: false,
            out: Vec::new(),
            res: Response {
                status: 200,
                content_type: "",
                body: String::new(),
            },
        }
    }

    fn serve(mut self, handler: &dyn Handler) {
        // Responses go out in one write each, so Nagle's algorithm could only delay them.
        let _ = self.stream.set_nodelay(true);
        if self.stream.set_read_timeout(Some(self.idle)).is_err()
            || self.stream.set_write_timeout(Some(self.idle)).is_err()
        {
            return;
        }
        loop {
            if !self.slots.set_idle(self.slot, true) {
                return;
            }
            let head = self.read_head();
            // A head that arrived is served even while draining; the next wait closes.
            self.slots.set_idle(self.slot, false);
            let head_len = match head {
                Ok(n) => n,
                Err(HeadError::Gone) => return,
                Err(HeadError::Timeout) => return self.reject(408, handler),
                Err(HeadError::Reject(code)) => return self.reject(code, handler),
            };
            match self.answer(head_len, handler) {
                Ok(Next::KeepAlive { body }) => {
                    if self.skip(head_len, body).is_err() {
                        return;
                    }
                }
                Ok(Next::Close) => return self.linger(),
                Err(code) => return self.reject(code, handler),
            }
        }
    }

    /// Reads until `buf` holds a whole request head; returns its length.
    fn read_head(&mut self) -> Result<usize, HeadError> {
        if self.timeout_changed {
            self.stream
                .set_read_timeout(Some(self.idle))
                .map_err(|_| HeadError::Gone)?;
            self.timeout_changed = false;
        }
        let mut scanned = 0;
        let mut deadline: Option<Instant> = None;
        loop {
            if let Some(end) = head_end(&self.buf[..self.filled], scanned) {
                return Ok(end);
            }
            scanned = self.filled;
            check_partial(&self.buf[..self.filled])?;
            if self.filled == self.buf.len() {
                let grown = (self.buf.len() * 2).min(MAX_HEAD);
                self.buf.resize(grown, 0);
            }
            if self.filled > 0 {
                // A head has started: from now on it must finish within the idle timeout in all,
                // however slowly its bytes trickle in.
                let d = *deadline.get_or_insert_with(|| Instant::now() + self.idle);
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() || self.stream.set_read_timeout(Some(left)).is_err() {
                    return Err(HeadError::Timeout);
                }
                self.timeout_changed = true;
            }
            match self.stream.read(&mut self.buf[self.filled..]) {
                Ok(0) => return Err(HeadError::Gone),
                Ok(n) => self.filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) && self.filled > 0 => return Err(HeadError::Timeout),
                Err(_) => return Err(HeadError::Gone),
            }
        }
    }

    /// Parses the head in `buf[..head_len]`, calls the handler and writes the response.
    fn answer(&mut self, head_len: usize, handler: &dyn Handler) -> Result<Next, u16> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let Head {
            method,
            version,
            framing,
            keep_alive,
            request,
        } = parse(&self.buf[..head_len], &mut headers)?;
        let target = request.target;
        self.res.status = 200;
        self.res.content_type = "text/plain; charset=utf-8";
        self.res.body.clear();
        handler.handle(&request, &mut self.res);
        handler.answered(self.res.status);
        debug!("{method} {target} -> {}", self.res.status);
        let head_only = method == "HEAD";
        let connection = match (keep_alive, version) {
            (false, _) => Some("close"),
            (true, 0) => Some("keep-alive"),
            (true, _) => None,
        };
        write_response(&mut self.out, &self.res, connection, head_only);
        if self.stream.write_all(&self.out).is_err() {
            return Ok(Next::Close);
        }
        Ok(match (keep_alive, framing) {
            (true, Framing::Length(body)) => Next::KeepAlive { body },
            _ => Next::Close,
        })
    }

    /// Drops the answered head and skips `body` bytes, reading what has not arrived yet.
    fn skip(&mut self, head_len: usize, body: u64) -> io::Result<()> {
        let in_buf = (self.filled - head_len) as u64;
        let from_buf = in_buf.min(body) as usize;
        self.buf.copy_within(head_len + from_buf..self.filled, 0);
        self.filled -= head_len + from_buf;
        let mut left = body - from_buf as u64;
        if left == 0 {
            return Ok(());
        }
        let deadline = Instant::now() + self.idle;
        self.timeout_changed = true;
        while left > 0 {
            let wait = deadline.saturating_duration_since(Instant::now());
            if wait.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            self.stream.set_read_timeout(Some(wait))?;
            let n = left.min(self.buf.len() as u64) as usize;
            match self.stream.read(&mut self.buf[..n]) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(m) => left -= m as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Answers a broken request with `code` and closes.
    #[inline(never)]
    fn reject(mut self, code: u16, handler: &dyn Handler) {
        handler.answered(code);
        self.res.status = code;
        self.res.content_type = "text/plain; charset=utf-8";
        self.res.body.clear();
        self.res.body.push_str(reason(code));
        self.res.body.push('\n');
        write_response(&mut self.out, &self.res, Some("close"), false);
        if self.stream.write_all(&self.out).is_ok() {
            self.linger();
        }
    }

    /// Closes after the response, reading a bounded amount first so that unread request bytes
    /// do not make the kernel reset the connection before the client reads the answer.
    // Out of line, like every path that is not the steady keep-alive loop: its 4 KiB scratch
    // buffer must not deepen the stack of every connection thread.
    #[inline(never)]
    fn linger(mut self) {
        if self.stream.shutdown(Shutdown::Write).is_err() {
            return;
        }
        let deadline = Instant::now() + LINGER_TIME;
        let mut drained = 0;
        let mut scratch = [0u8; 4096];
        while drained < LINGER_BYTES {
            let wait = deadline.saturating_duration_since(Instant::now());
            if wait.is_zero() || self.stream.set_read_timeout(Some(wait)).is_err() {
                return;
            }
            match self.stream.read(&mut scratch) {
                Ok(0) | Err(_) => return,
                Ok(n) => drained += n,
            }
        }
    }
}

/// A request head that passed every check, ready for the handler.
struct Head<'b, 'h> {
    method: &'b str,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    version: u8,
    framing: Framing,
    keep_alive: bool,
    request: Request<'h>,
}

/// Parses a complete request head (`buf` ends with its empty line) and applies every limit
/// and framing rule; the error is the status to answer with before closing.
fn parse<'b: 'h, 'h>(
    buf: &'b [u8],
    headers: &'h mut [httparse::Header<'b>],
) -> Result<Head<'b, 'h>, u16> {
    let mut req = httparse::Request::new(headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(400),
        Err(httparse::Error::TooManyHeaders) => return Err(431),
        Err(httparse::Error::Version) => return Err(505),
        Err(_) => return Err(400),
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(400);
    };
    if line_end(buf) > MAX_LINE {
        return Err(414);
    }
    let headers: &'h [httparse::Header<'b>] = req.headers;
    if headers
        .iter()
        .any(|h| h.name.len() + h.value.len() + 4 > MAX_LINE)
    {
        return Err(431);
    }
    let framing = Framing::of(headers)?;
    let keep_alive = framing.keeps_alive() && wants_keep_alive(version, headers);
    Ok(Head {
        method,
        version,
        framing,
        keep_alive,
        request: Request { target, headers },
    })
}

/// What happens after a response.
enum Next {
    /// Skip this many body bytes, then read the next request.
    KeepAlive { body: u64 },
    /// Close the connection.
    Close,
}

/// How the request's body is delimited.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Framing {
    /// `Content-Length` (0 when absent).
    Length(u64),
    /// A body we will not read: chunked or too large. Answer, then close.
    Unread,
}

impl Framing {
    fn of(headers: &[httparse::Header<'_>]) -> Result<Framing, u16> {
        let mut length: Option<u64> = None;
        let mut chunked = false;
        let mut expect = false;
        for h in headers {
            if h.name.eq_ignore_ascii_case("content-length") {
                let v = parse_length(h.value).ok_or(400u16)?;
                // Two different lengths are a smuggling attempt, not a typo.
                if length.is_some_and(|l| l != v) {
                    return Err(400);
                }
                length = Some(v);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = true;
            } else if h.name.eq_ignore_ascii_case("expect") {
                expect = true;
            }
        }
        match (length, chunked) {
            (Some(_), true) => Err(400),
            (_, true) => Ok(Framing::Unread),
            // A client waiting for `100 Continue` gets the final answer instead and no wait.
            (Some(l), false) if l > MAX_BODY_SKIP || (expect && l > 0) => Ok(Framing::Unread),
            (l, false) => Ok(Framing::Length(l.unwrap_or(0))),
        }
    }

    fn keeps_alive(self) -> bool {
        matches!(self, Framing::Length(_))
    }
}

fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 20 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 closes unless told to keep it.
fn wants_keep_alive(version: u8, headers: &[httparse::Header<'_>]) -> bool {
    let mut close = false;
    let mut keep = false;
    for h in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
    {
        for token in h.value.split(|&b| b == b',') {
            let token = token.trim_ascii();
            close |= token.eq_ignore_ascii_case(b"close");
            keep |= token.eq_ignore_ascii_case(b"keep-alive");
        }
    }
    if version == 0 { keep && !close } else { !close }
}

/// Finds the end of a request head (after an empty line) searching from `from`.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    // Look back three bytes so a "\r\n\r\n" split across reads is still found.
    let start = from.saturating_sub(3);
    let mut i = start;
    while let Some(p) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + p;
        let blank = (nl >= 1 && buf[nl - 1] == b'\n')
            || (nl >= 2 && buf[nl - 1] == b'\r' && buf[nl - 2] == b'\n');
        // A head starts with a request line, so an empty line at the very start is not its end.
        if blank && buf[..nl].iter().any(|&b| b != b'\r' && b != b'\n') {
            return Some(nl + 1);
        }
        i = nl + 1;
    }
    None
}

/// Length of the first line, or of everything when there is no line end yet.
fn line_end(buf: &[u8]) -> usize {
    buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len())
}

/// Rejects an incomplete head that already breaks a limit.
fn check_partial(buf: &[u8]) -> Result<(), HeadError> {
    if buf.len() <= MAX_LINE {
        return Ok(());
    }
    if line_end(buf) > MAX_LINE {
        return Err(HeadError::Reject(414));
    }
    let last_line = buf.len() - buf.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    if last_line > MAX_LINE || buf.len() >= MAX_HEAD {
        return Err(HeadError::Reject(431));
    }
    Ok(())
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The reason phrase of each status this server sends.
pub fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        408 => "Request Timeout",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

fn write_response(out: &mut Vec<u8>, res: &Response, connection: Option<&str>, head_only: bool) {
    use std::io::Write as _;
    out.clear();
    // Writing into a Vec cannot fail; `out` is reused, so this allocates only while it grows.
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n",
        res.status,
        reason(res.status),
        res.content_type,
        res.body.len()
    );
    if let Some(c) = connection {
        let _ = write!(out, "Connection: {c}\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(res.body.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn hdr<'a>(name: &'a str, value: &'a str) -> httparse::Header<'a> {
        httparse::Header {
            name,
            value: value.as_bytes(),
        }
    }

    #[test]
    fn head_end_handles_both_line_endings_and_splits() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\n", 0), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n", 0), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n", 0), None);
        assert_eq!(
            head_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET", 25),
            Some(27)
        );
        assert_eq!(head_end(b"\r\n\r\n", 0), None);
    }

    #[test]
    fn lengths_parse_strictly() {
        assert_eq!(parse_length(b"0"), Some(0));
        assert_eq!(parse_length(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_length(b"18446744073709551616"), None);
        assert_eq!(parse_length(b"100000000000000000000000"), None);
        assert_eq!(parse_length(b"-1"), None);
        assert_eq!(parse_length(b"1 2"), None);
        assert_eq!(parse_length(b""), None);
    }

    #[test]
    fn framing_rules() {
        assert_eq!(Framing::of(&[]), Ok(Framing::Length(0)));
        assert_eq!(
            Framing::of(&[hdr("Content-Length", "10")]),
            Ok(Framing::Length(10))
        );
        assert_eq!(
            Framing::of(&[hdr("content-length", "100000000000")]),
            Ok(Framing::Unread)
        );
        assert_eq!(
            Framing::of(&[hdr("Transfer-Encoding", "chunked")]),
            Ok(Framing::Unread)
        );
        assert_eq!(
            Framing::of(&[
                hdr("Transfer-Encoding", "chunked"),
                hdr("Content-Length", "3")
            ]),
            Err(400)
        );
        assert_eq!(
            Framing::of(&[hdr("Content-Length", "3"), hdr("Content-Length", "4")]),
            Err(400)
        );
        assert_eq!(
            Framing::of(&[hdr("Content-Length", "3"), hdr("Content-Length", "3")]),
            Ok(Framing::Length(3))
        );
        assert_eq!(Framing::of(&[hdr("Content-Length", "x")]), Err(400));
        assert_eq!(
            Framing::of(&[hdr("Content-Length", "5"), hdr("Expect", "100-continue")]),
            Ok(Framing::Unread)
        );
    }

    #[test]
    fn keep_alive_rules() {
        assert!(wants_keep_alive(1, &[]));
        assert!(!wants_keep_alive(1, &[hdr("Connection", "close")]));
        assert!(!wants_keep_alive(1, &[hdr("connection", "Upgrade, Close")]));
        assert!(!wants_keep_alive(0, &[]));
        assert!(wants_keep_alive(0, &[hdr("Connection", "Keep-Alive")]));
    }

    #[test]
    fn partial_heads_break_limits_early() {
        let long_line = vec![b'a'; MAX_LINE + 1];
        assert_eq!(check_partial(&long_line), Err(HeadError::Reject(414)));
        let mut long_header = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long_header.extend(std::iter::repeat_n(b'a', MAX_LINE));
        assert_eq!(check_partial(&long_header), Err(HeadError::Reject(431)));
        let many: Vec<u8> = b"GET / HTTP/1.1\r\n"
            .iter()
            .copied()
            .chain((0..MAX_HEAD).flat_map(|_| *b"X: y\r\n"))
            .take(MAX_HEAD)
            .collect();
        assert_eq!(check_partial(&many), Err(HeadError::Reject(431)));
        assert_eq!(check_partial(b"GET / HTTP/1.1\r\nHost"), Ok(()));
    }

    fn parse_str(s: &str) -> Result<(Framing, bool, String), u16> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        parse(s.as_bytes(), &mut headers)
            .map(|h| (h.framing, h.keep_alive, h.request.target.to_string()))
    }

    #[test]
    fn parse_applies_limits_and_rules() {
        assert_eq!(
            parse_str("GET /x?y HTTP/1.1\r\n\r\n"),
            Ok((Framing::Length(0), true, "/x?y".into()))
        );
        assert_eq!(
            parse_str("GET / HTTP/1.0\r\n\r\n"),
            Ok((Framing::Length(0), false, "/".into()))
        );
        assert_eq!(parse_str("GET / HTTP/9.9\r\n\r\n"), Err(505));
        assert_eq!(parse_str("GET\r\n\r\n"), Err(400));
        assert_eq!(parse_str("\u{1}\u{2} / HTTP/1.1\r\n\r\n"), Err(400));
        let long_target = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_LINE));
        assert_eq!(parse_str(&long_target), Err(414));
        let long_header = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_LINE));
        assert_eq!(parse_str(&long_header), Err(431));
        let many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "X: y\r\n".repeat(MAX_HEADERS + 1)
        );
        assert_eq!(parse_str(&many), Err(431));
        let chunked = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse_str(chunked), Ok((Framing::Unread, false, "/".into())));
    }

    /// A small xorshift generator: reproducible inputs without a crate.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Feeds generated and mutated request heads to the head scanner, the limit checks and the
    /// parser for `FUZZ_SECONDS` (default 0.5): none may panic, and what parses must be sane.
    #[test]
    fn fuzz_request_parsing() {
        let secs: f64 = std::env::var("FUZZ_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.5);
        let seed = std::env::var("FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x9e37_79b9_7f4a_7c15);
        let mut rng = Rng(seed);
        let seeds: [&[u8]; 4] = [
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"POST /a?b=c HTTP/1.0\r\nContent-Length: 12\r\nConnection: keep-alive\r\n\r\n",
            b"HEAD * HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            b"GET / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 18446744073709551615\r\n\r\n",
        ];
        let alphabet = b"\r\n :,;-0123456789aAzZ/?*\x00\x7f\xff\t";
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        let mut cases = 0u64;
        while Instant::now() < deadline {
            for _ in 0..256 {
                let mut buf: Vec<u8> = if rng.below(4) == 0 {
                    (0..rng.below(400)).map(|_| rng.next() as u8).collect()
                } else {
                    seeds[rng.below(seeds.len())].to_vec()
                };
                for _ in 0..rng.below(8) {
                    let at = rng.below(buf.len() + 1);
                    match rng.below(3) {
                        0 if at < buf.len() => buf[at] = alphabet[rng.below(alphabet.len())],
                        1 => buf.insert(at, alphabet[rng.below(alphabet.len())]),
                        _ if at < buf.len() => {
                            buf.remove(at);
                        }
                        _ => {}
                    }
                }
                let _ = check_partial(&buf);
                if let Some(end) = head_end(&buf, rng.below(buf.len() + 1)) {
                    assert!(end <= buf.len());
                    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    if let Ok(h) = parse(&buf[..end], &mut headers) {
                        assert!(h.version <= 1);
                        if let Framing::Length(n) = h.framing {
                            assert!(n <= MAX_BODY_SKIP);
                        } else {
                            assert!(!h.keep_alive);
                        }
                    }
                }
                cases += 1;
            }
        }
        eprintln!("fuzz_request_parsing: {cases} cases, seed {seed}");
    }

    struct Panicky;

    impl Handler for Panicky {
        fn handle(&self, req: &Request<'_>, res: &mut Response) {
            if req.path() == "/panic" {
                panic!("a handler bug");
            }
            res.body.push_str("fine");
        }
    }

    #[test]
    fn a_panicking_handler_costs_one_connection_not_the_server() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = Server::new(l, 1, Duration::from_secs(5), Arc::new(Panicky));
        thread::spawn(move || server.serve());
        let ask = |path: &str| {
            let mut c = TcpStream::connect(addr).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            c.write_all(format!("GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n").as_bytes())
                .unwrap();
            let mut out = String::new();
            let _ = c.read_to_string(&mut out);
            out
        };
        assert_eq!(ask("/panic"), "");
        // One slot only: it must have been freed by the panicking thread's unwinding.
        assert!(ask("/").ends_with("\r\n\r\nfine"));
    }

    #[test]
    fn responses_carry_length_and_connection() {
        let res = Response {
            status: 504,
            content_type: "text/plain",
            body: "FAIL\n".to_string(),
        };
        let mut out = Vec::new();
        write_response(&mut out, &res, Some("close"), false);
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "HTTP/1.1 504 Gateway Timeout\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\
             Cache-Control: no-store\r\nConnection: close\r\n\r\nFAIL\n"
        );
        write_response(&mut out, &res, None, true);
        assert!(
            String::from_utf8(out)
                .unwrap()
                .ends_with("Content-Length: 5\r\nCache-Control: no-store\r\n\r\n")
        );
    }
}
