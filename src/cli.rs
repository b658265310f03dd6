//! Options: the table of every option, parsing with lexopt, validation, and the `--help` text.
//!
//! Parsing has two steps so that other sources of settings can share the second: the command
//! line becomes a list of `(option, value)` pairs, and [`build`] validates such a list into a
//! [`Config`]. Every message quotes the option and the offending value.

use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use log::LevelFilter;

use crate::check::http::Url;
use crate::check::tcp::Target;
use crate::words;

/// The longest timeout accepted, in seconds: a day is already far past any probe's patience,
/// and the bound keeps `Duration::from_secs_f64` away from overflow.
const MAX_SECONDS: f64 = 86_400.0;
/// Most check workers: each may hold a thread per check, so the bound caps threads.
const MAX_WORKERS: usize = 1024;
/// Largest threshold: past 100 consecutive results a state change is too late to matter.
const MAX_THRESHOLD: u32 = 100;
/// Most connections served at once: each costs one thread with a small stack.
const MAX_CONNECTIONS: usize = 65_535;

/// One option of the table: its name, what its value looks like, and its line in `--help`.
#[derive(Debug, PartialEq, Eq)]
pub struct Opt {
    /// Long name without the dashes.
    pub name: &'static str,
    /// Short letter, if any.
    pub short: Option<char>,
    /// Placeholder for the value in `--help`; `None` for a flag.
    pub value: Option<&'static str>,
    /// Its default as written in a config file, if it has one worth printing.
    pub default: Option<&'static str>,
    /// Text of its `--help` line.
    pub help: &'static str,
}

/// Every option, in the order `--help` lists them.
pub static OPTIONS: &[Opt] = &[
    Opt {
        name: "port",
        short: None,
        value: Some("PORT"),
        default: None,
        help: "Check that a TCP connection to 127.0.0.1:PORT opens within\n\
               --tcp-timeout. Repeatable.",
    },
    Opt {
        name: "tcp",
        short: None,
        value: Some("HOST:PORT[,send=TEXT][,expect=TEXT]"),
        default: None,
        help: "Check that a TCP connection to HOST opens (a name is resolved at\n\
               check time; IPv6 as [::1]:PORT), then optionally send TEXT and\n\
               expect a reply containing TEXT. TEXT takes \\n \\r \\t \\\\ \\,.\n\
               Repeatable.",
    },
    Opt {
        name: "http",
        short: None,
        value: Some("URL"),
        default: None,
        help: "GET an http:// URL (no https, no redirects followed); pass on a\n\
               status from 200 to 399 within --http-timeout. Repeatable.",
    },
    Opt {
        name: "script",
        short: None,
        value: Some("\"PROGRAM ARGS...\""),
        default: None,
        help: "Run PROGRAM (no shell; words split like sh, PATH searched) and\n\
               pass when it exits 0 within --script-timeout. Repeatable.",
    },
    Opt {
        name: "script-timeout",
        short: None,
        value: Some("SECONDS"),
        default: Some("5"),
        help: "Kill a script's whole process group after SECONDS and fail it.\n\
               Fractions allowed.",
    },
    Opt {
        name: "tcp-timeout",
        short: None,
        value: Some("SECONDS"),
        default: Some("5"),
        help: "Deadline of each --port and --tcp check, name lookup and\n\
               exchange included. Fractions allowed.",
    },
    Opt {
        name: "http-timeout",
        short: None,
        value: Some("SECONDS"),
        default: Some("5"),
        help: "Deadline of each --http check. Fractions allowed.",
    },
    Opt {
        name: "deadline",
        short: None,
        value: Some("SECONDS"),
        default: None,
        help: "Cap on the time of one whole run: checks still running then fail\n\
               with the reason deadline and their processes are killed. Keep it\n\
               under the load balancer's probe timeout. Off by default.",
    },
    Opt {
        name: "singleflight",
        short: None,
        value: None,
        default: Some("false"),
        help: "Requests that arrive while checks are running share that run's\n\
               result instead of starting their own.",
    },
    Opt {
        name: "healthy-threshold",
        short: None,
        value: Some("N"),
        default: Some("1"),
        help: "Consecutive passes that make an unhealthy check healthy again,\n\
               1-100.",
    },
    Opt {
        name: "unhealthy-threshold",
        short: None,
        value: Some("N"),
        default: Some("1"),
        help: "Consecutive failures that make a healthy check unhealthy,\n\
               1-100.",
    },
    Opt {
        name: "interval",
        short: None,
        value: Some("SECONDS"),
        default: None,
        help: "Run the checks in the background every SECONDS (start to start,\n\
               never overlapping); requests answer at once from the last state.",
    },
    Opt {
        name: "cache-ttl",
        short: None,
        value: Some("SECONDS"),
        default: None,
        help: "Answer from the last state, without a run, for SECONDS after a run\n\
               ends; implies --singleflight. Not with --interval.",
    },
    Opt {
        name: "grace-period",
        short: None,
        value: Some("SECONDS"),
        default: Some("0"),
        help: "Start no run until SECONDS after start-up; until then the state is\n\
               starting (504, 503 on /ready).",
    },
    Opt {
        name: "on-change",
        short: None,
        value: Some("\"PROGRAM ARGS...\""),
        default: None,
        help: "Run PROGRAM when the host's state changes, with HEALTH_CHECKER_STATE,\n\
               _PREVIOUS_STATE, _REASONS and _TIME set; bounded by --script-timeout,\n\
               one at a time, in order.",
    },
    Opt {
        name: "once",
        short: None,
        value: None,
        default: Some("false"),
        help: "Run every check once, print the report on stdout and exit: 0 when\n\
               all pass, 1 when any fails. Opens no listener.",
    },
    Opt {
        name: "format",
        short: None,
        value: Some("FORMAT"),
        default: Some("text"),
        help: "Report format of --once: text or json.",
    },
    Opt {
        name: "listener",
        short: None,
        value: Some("ADDR:PORT"),
        default: Some("0.0.0.0:5000"),
        help: "Address to serve HTTP on; [::]:PORT for IPv6, a bare PORT means\n\
               0.0.0.0:PORT, port 0 lets the kernel pick.",
    },
    Opt {
        name: "log-level",
        short: None,
        value: Some("LEVEL"),
        default: None,
        help: "panic, fatal, error, warning, info, debug or trace. Without it,\n\
               RUST_LOG is honoured, else info.",
    },
    Opt {
        name: "workers",
        short: None,
        value: Some("N"),
        default: Some("8"),
        help: "How many check runs may proceed at once, 1-1024; also how many\n\
               script processes may exist at once (others wait within their\n\
               timeout, then fail as busy).",
    },
    Opt {
        name: "max-connections",
        short: None,
        value: Some("N"),
        default: Some("256"),
        help: "Most HTTP connections served at once, 1-65535; when all are taken\n\
               the one idle the longest is closed.",
    },
    Opt {
        name: "idle-timeout",
        short: None,
        value: Some("SECONDS"),
        default: Some("10"),
        help: "Close a connection idle this long before a request; a request\n\
               head or body must also arrive, and a response be taken, within it.",
    },
    Opt {
        name: "shutdown-delay",
        short: None,
        value: Some("SECONDS"),
        default: Some("0"),
        help: "After SIGTERM, keep serving this long but answer failure (504, 503\n\
               on /ready) so the load balancer drains the host.",
    },
    Opt {
        name: "config",
        short: None,
        value: Some("FILE"),
        default: None,
        help: "Read settings from FILE, one `name = value` per line (names are\n\
               these options without dashes). Precedence: command line >\n\
               HEALTH_CHECKER_<NAME> environment variables > FILE > default.",
    },
    Opt {
        name: "check-config",
        short: None,
        value: None,
        default: None,
        help: "Validate every setting and that each script can run, print the\n\
               effective configuration in the FILE format, and exit 0 or 2.",
    },
    Opt {
        name: "help",
        short: Some('h'),
        value: None,
        default: None,
        help: "Print this help and exit.",
    },
    Opt {
        name: "version",
        short: Some('v'),
        value: None,
        default: None,
        help: "Print the version and exit.",
    },
];

/// The option named `name` (long name, no dashes).
pub fn find(name: &str) -> Option<&'static Opt> {
    OPTIONS.iter().find(|o| o.name == name)
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Command {
    /// Settings, not validated yet: other sources may join them.
    Settings(Vec<Setting>),
    /// Print `--help`.
    Help,
    /// Print `--version`.
    Version,
}

/// Where a setting came from, for messages and `--check-config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The command line.
    Args,
    /// An environment variable, by name.
    Env(String),
    /// A line of a config file.
    File {
        /// The file as named.
        path: String,
        /// 1-based line number.
        line: usize,
    },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Args => f.write_str("the command line"),
            Source::Env(var) => write!(f, "environment {var}"),
            Source::File { path, line } => write!(f, "{path}:{line}"),
        }
    }
}

/// One option set to one value by one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The option.
    pub opt: &'static Opt,
    /// Its value as written (`true` for a bare flag).
    pub value: String,
    /// Who set it.
    pub source: Source,
}

/// How `--once` prints its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The text report, as HTTP serves it.
    Text,
    /// The JSON report, as HTTP serves it with `?format=json`.
    Json,
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Ports checked on 127.0.0.1, in the order given.
    pub ports: Vec<u16>,
    /// `--tcp` targets, in the order given.
    pub tcp: Vec<Target>,
    /// `--http` URLs, in the order given.
    pub http: Vec<Url>,
    /// Scripts, in the order given.
    pub scripts: Vec<Script>,
    /// Deadline of one script.
    pub script_timeout: Duration,
    /// Deadline of one TCP check.
    pub tcp_timeout: Duration,
    /// Deadline of one HTTP check.
    pub http_timeout: Duration,
    /// Whether concurrent requests share one run.
    pub singleflight: bool,
    /// Consecutive passes that make an unhealthy check healthy.
    pub healthy_threshold: u32,
    /// Consecutive failures that make a healthy check unhealthy.
    pub unhealthy_threshold: u32,
    /// Background run period, if runs are not on demand.
    pub interval: Option<Duration>,
    /// How long a finished run answers on-demand requests without a new run.
    pub cache_ttl: Option<Duration>,
    /// How long after start-up no run starts.
    pub grace_period: Duration,
    /// Program run on every change of the host's state.
    pub on_change: Option<Script>,
    /// Run once, print, exit.
    pub once: bool,
    /// Report format of `--once`.
    pub format: Format,
    /// Where to listen.
    pub listener: SocketAddr,
    /// The log level asked for, or `None` to honour `RUST_LOG`.
    pub log_level: Option<LevelFilter>,
    /// How many check runs may proceed at once.
    pub workers: usize,
    /// How many connections are served at once.
    pub max_connections: usize,
    /// Cap on one whole run.
    pub deadline: Option<Duration>,
    /// How long a connection may idle, and a head or body take.
    pub idle_timeout: Duration,
    /// How long to keep serving failure after SIGTERM.
    pub shutdown_delay: Duration,
}

/// A `--script` value split into its program and arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// The program as written: a path, or a name looked up in PATH.
    pub program: String,
    /// Its arguments, never shown in a response or a log line (they may hold secrets).
    pub args: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ports: Vec::new(),
            tcp: Vec::new(),
            http: Vec::new(),
            scripts: Vec::new(),
            script_timeout: Duration::from_secs(5),
            tcp_timeout: crate::check::tcp::DEFAULT_TIMEOUT,
            http_timeout: crate::check::http::DEFAULT_TIMEOUT,
            singleflight: false,
            healthy_threshold: 1,
            unhealthy_threshold: 1,
            interval: None,
            cache_ttl: None,
            grace_period: Duration::ZERO,
            on_change: None,
            once: false,
            format: Format::Text,
            // As the reference tool documents it.
            listener: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 5000)),
            log_level: None,
            workers: 8,
            max_connections: 256,
            deadline: None,
            idle_timeout: Duration::from_secs(10),
            shutdown_delay: Duration::ZERO,
        }
    }
}

/// A usage error: printed as one line, then the program exits with status 2.
#[derive(Debug, PartialEq, Eq)]
pub enum UsageError {
    /// An option's value does not fit: where, the option, the value as given, and why.
    Invalid {
        source: Source,
        option: &'static str,
        value: String,
        cause: String,
    },
    /// An option nobody knows.
    Unknown(String),
    /// An option given without its value.
    MissingValue(&'static str),
    /// A word that is not an option.
    Unexpected(String),
    /// Everything parsed, but there is nothing to check.
    NoChecks,
    /// Options that cannot go together, and why.
    Conflict(String),
    /// A config file or environment problem, already prefixed with where.
    Source(String),
    /// No arguments at all: the caller prints the usage.
    NoArguments,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::Invalid {
                source,
                option,
                value,
                cause,
            } => {
                if *source != Source::Args {
                    write!(f, "{source}: ")?;
                }
                write!(f, "invalid value {value:?} for --{option}: {cause}")
            }
            UsageError::Unknown(o) => write!(f, "unknown option {o:?}"),
            UsageError::MissingValue(o) => write!(f, "missing value for --{o}"),
            UsageError::Unexpected(v) => write!(f, "unexpected argument {v:?}"),
            UsageError::NoChecks => {
                f.write_str("at least one --port or --script (or --tcp, --http) is required")
            }
            UsageError::Conflict(why) | UsageError::Source(why) => f.write_str(why),
            UsageError::NoArguments => f.write_str("no arguments given"),
        }
    }
}

/// Parses the command line (without the program name).
pub fn parse_args<I>(args: I) -> Result<Command, UsageError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    let mut parser = lexopt::Parser::from_args(args);
    let mut settings = Vec::new();
    loop {
        let arg = match parser.next() {
            Ok(Some(arg)) => arg,
            Ok(None) => break,
            Err(e) => return Err(lexopt_error(e)),
        };
        let opt = match arg {
            lexopt::Arg::Long(name) => {
                find(name).ok_or_else(|| UsageError::Unknown(format!("--{name}")))?
            }
            lexopt::Arg::Short(c) => OPTIONS
                .iter()
                .find(|o| o.short == Some(c))
                .ok_or_else(|| UsageError::Unknown(format!("-{c}")))?,
            lexopt::Arg::Value(v) => {
                return Err(UsageError::Unexpected(v.to_string_lossy().into_owned()));
            }
        };
        match opt.name {
            "help" => return Ok(Command::Help),
            "version" => return Ok(Command::Version),
            _ => {}
        }
        let value = if opt.value.is_some() {
            parser
                .value()
                .map_err(|_| UsageError::MissingValue(opt.name))?
        } else {
            // A flag takes no value, but `--singleflight=false` is accepted as in a config file.
            parser
                .optional_value()
                .unwrap_or_else(|| OsString::from("true"))
        };
        let value = value.into_string().map_err(|v| UsageError::Invalid {
            source: Source::Args,
            option: opt.name,
            value: v.to_string_lossy().into_owned(),
            cause: "not valid UTF-8".to_string(),
        })?;
        settings.push(Setting {
            opt,
            value,
            source: Source::Args,
        });
    }
    Ok(Command::Settings(settings))
}

fn lexopt_error(e: lexopt::Error) -> UsageError {
    match e {
        lexopt::Error::UnexpectedValue { option, value } => UsageError::Invalid {
            source: Source::Args,
            option: find(option.trim_start_matches('-')).map_or("?", |o| o.name),
            value: value.to_string_lossy().into_owned(),
            cause: "this option takes no value".to_string(),
        },
        lexopt::Error::UnexpectedArgument(v) => {
            UsageError::Unexpected(v.to_string_lossy().into_owned())
        }
        other => UsageError::Unknown(other.to_string()),
    }
}

/// Validates settings, applied in order, into a configuration. The same code checks every
/// source, so a value means the same and fails the same way wherever it is written.
pub fn build(settings: &[Setting]) -> Result<Config, UsageError> {
    let mut config = Config::default();
    for s in settings {
        if matches!(s.opt.name, "config" | "check-config") {
            continue;
        }
        apply(&mut config, s.opt.name, &s.value).map_err(|cause| UsageError::Invalid {
            source: s.source.clone(),
            option: s.opt.name,
            value: s.value.clone(),
            cause,
        })?;
    }
    if config.ports.is_empty()
        && config.tcp.is_empty()
        && config.http.is_empty()
        && config.scripts.is_empty()
    {
        return Err(UsageError::NoChecks);
    }
    check_conflicts(settings, &config)?;
    Ok(config)
}

/// Options that only make sense while serving, refused with `--once` rather than ignored.
const SERVING_ONLY: &[&str] = &[
    "listener",
    "idle-timeout",
    "shutdown-delay",
    "max-connections",
    "workers",
    "singleflight",
    "interval",
    "cache-ttl",
    "grace-period",
    "healthy-threshold",
    "unhealthy-threshold",
    "on-change",
];

fn check_conflicts(settings: &[Setting], config: &Config) -> Result<(), UsageError> {
    // With --once, only what the command line asks for conflicts: a config file written for
    // the daemon must stay usable by `--config FILE --once`.
    let on_args = |name: &str| {
        settings
            .iter()
            .any(|s| s.opt.name == name && s.source == Source::Args)
    };
    let has = |name: &str| settings.iter().any(|s| s.opt.name == name);
    if config.interval.is_some() && config.cache_ttl.is_some() {
        return Err(UsageError::Conflict(
            "--interval and --cache-ttl cannot be combined: with --interval requests never start runs".to_string(),
        ));
    }
    if config.once {
        if let Some(o) = SERVING_ONLY.iter().find(|o| on_args(o)) {
            return Err(UsageError::Conflict(format!(
                "--{o} makes no sense with --once, which runs the checks once and serves nothing"
            )));
        }
    } else if has("format") && config.format != Format::Text {
        return Err(UsageError::Conflict(
            "--format applies to --once only; over HTTP ask with ?format=json or Accept: application/json"
                .to_string(),
        ));
    }
    Ok(())
}

/// Applies one setting; the error is the cause only, the caller names option and value.
fn apply(config: &mut Config, name: &str, value: &str) -> Result<(), String> {
    match name {
        "port" => config.ports.push(parse_port(value)?),
        "tcp" => config.tcp.push(Target::parse(value)?),
        "http" => config.http.push(Url::parse(value)?),
        "tcp-timeout" => config.tcp_timeout = parse_seconds(value)?,
        "http-timeout" => config.http_timeout = parse_seconds(value)?,
        "script" => config.scripts.push(parse_script(value)?),
        "script-timeout" => config.script_timeout = parse_seconds(value)?,
        "singleflight" => config.singleflight = parse_bool(value)?,
        "healthy-threshold" => config.healthy_threshold = parse_threshold(value)?,
        "unhealthy-threshold" => config.unhealthy_threshold = parse_threshold(value)?,
        "interval" => config.interval = Some(parse_seconds(value)?),
        "cache-ttl" => config.cache_ttl = Some(parse_seconds(value)?),
        "grace-period" => config.grace_period = parse_seconds_or_zero(value)?,
        "deadline" => config.deadline = Some(parse_seconds(value)?),
        "idle-timeout" => config.idle_timeout = parse_seconds(value)?,
        "shutdown-delay" => config.shutdown_delay = parse_seconds_or_zero(value)?,
        "on-change" => config.on_change = Some(parse_script(value)?),
        "once" => config.once = parse_bool(value)?,
        "format" => {
            config.format = match value {
                "text" => Format::Text,
                "json" => Format::Json,
                _ => return Err("expected text or json".to_string()),
            }
        }
        "listener" => config.listener = parse_listener(value)?,
        "log-level" => config.log_level = Some(parse_log_level(value)?),
        "workers" => config.workers = parse_count(value, MAX_WORKERS)?,
        "max-connections" => config.max_connections = parse_count(value, MAX_CONNECTIONS)?,
        _ => return Err("not a setting".to_string()),
    }
    Ok(())
}

/// A program and its arguments, split like a shell would.
fn parse_script(value: &str) -> Result<Script, String> {
    let mut words = words::split(value).map_err(|e| e.to_string())?;
    let program = words.remove(0);
    if program.is_empty() {
        return Err("the program name is empty".to_string());
    }
    Ok(Script {
        program,
        args: words,
    })
}

fn parse_threshold(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if (1..=MAX_THRESHOLD).contains(&n) => Ok(n),
        _ => Err(format!("not a whole number from 1 to {MAX_THRESHOLD}")),
    }
}

/// A TCP port, 1-65535.
pub fn parse_port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(0) | Err(_) => Err("not a port number (1-65535)".to_string()),
        Ok(p) => Ok(p),
    }
}

/// A positive number of seconds, fractions allowed, at most a day.
pub fn parse_seconds(s: &str) -> Result<Duration, String> {
    // `f64::from_str` also takes "inf", "NaN" and "1e3"; only plain decimals are meant here.
    let plain = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    match s.parse::<f64>() {
        Ok(x) if plain && x > 0.0 && x <= MAX_SECONDS => Ok(Duration::from_secs_f64(x)),
        Ok(x) if plain && x > MAX_SECONDS => Err(format!("more than {MAX_SECONDS} seconds")),
        _ => Err("not a positive number of seconds".to_string()),
    }
}

/// Like [`parse_seconds`], but 0 (off) is allowed too.
fn parse_seconds_or_zero(s: &str) -> Result<Duration, String> {
    if !s.is_empty()
        && s.bytes().all(|b| b == b'0' || b == b'.')
        && s.bytes().filter(|&b| b == b'.').count() <= 1
    {
        return Ok(Duration::ZERO);
    }
    parse_seconds(s).map_err(|e| e.replace("positive", "non-negative"))
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "on" => Ok(true),
        "false" | "no" | "0" | "off" => Ok(false),
        _ => Err("not true or false".to_string()),
    }
}

fn parse_count(s: &str, max: usize) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!("not a whole number from 1 to {max}")),
    }
}

/// `ADDR:PORT`, `[V6]:PORT`, `HOSTNAME:PORT` (resolved now) or a bare `PORT`.
pub fn parse_listener(s: &str) -> Result<SocketAddr, String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let port = s
            .parse::<u16>()
            .map_err(|_| "port out of range (0-65535)".to_string())?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err("expected ADDR:PORT".to_string());
    };
    if host.is_empty() || port.parse::<u16>().is_err() || host.contains(':') {
        return Err("expected ADDR:PORT".to_string());
    }
    match s.to_socket_addrs() {
        Ok(mut addrs) => addrs.next().ok_or_else(|| format!("{host} has no address")),
        Err(_) => Err(format!("cannot resolve {host}")),
    }
}

fn parse_log_level(s: &str) -> Result<LevelFilter, String> {
    // The Go tool's logrus levels; `log` has nothing above error, so panic and fatal mean error.
    match s.to_ascii_lowercase().as_str() {
        "panic" | "fatal" | "error" => Ok(LevelFilter::Error),
        "warning" | "warn" => Ok(LevelFilter::Warn),
        "info" => Ok(LevelFilter::Info),
        "debug" => Ok(LevelFilter::Debug),
        "trace" => Ok(LevelFilter::Trace),
        _ => Err("expected panic, fatal, error, warning, info, debug or trace".to_string()),
    }
}

/// The `--help` text.
pub fn help() -> String {
    let mut s = format!(
        "health-checker {}\n\
         Answers every HTTP request with 200 when all checks pass and 504 when any fails.\n\n\
         Usage: health-checker [OPTIONS]\n\n\
         Options:\n",
        env!("CARGO_PKG_VERSION")
    );
    for opt in OPTIONS {
        let mut head = match opt.short {
            Some(c) => format!("  -{c}, --{}", opt.name),
            None => format!("      --{}", opt.name),
        };
        if let Some(v) = opt.value {
            head.push(' ');
            head.push_str(v);
        }
        let text = match opt.default {
            Some(d) => format!("{} [default: {d}]", opt.help),
            None => opt.help.to_string(),
        };
        let mut lines = text.lines();
        let first = lines.next().unwrap_or("");
        // At least two spaces between an option and its text.
        if head.len() <= 28 {
            s.push_str(&format!("{head:<30}{first}\n"));
        } else {
            s.push_str(&format!("{head}\n{:<30}{first}\n", ""));
        }
        for line in lines {
            s.push_str(&format!("{:<30}{}\n", "", line.trim_start()));
        }
    }
    s.push_str(
        "\nExamples:\n  \
         health-checker --listener 0.0.0.0:6000 --port 5432 --port 3306\n  \
         health-checker --port 5432 --script \"/usr/local/bin/check.sh --name 'a b'\" --script-timeout 10\n  \
         health-checker --tcp 10.0.0.5:2181,send=ruok,expect=imok --http http://127.0.0.1:8080/health\n\n\
         Paths: /alive answers 200 without running checks; /ready answers 200 or 503 in\n\
         JSON; /metrics is Prometheus text without running checks; every other path and\n\
         method runs the checks and answers 200 or 504, in JSON with ?format=json or\n\
         Accept: application/json.\n\n\
         Exit status: 0 after --help or --version, 1 when the listener cannot be opened,\n\
         2 for bad usage.\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Config, UsageError> {
        match parse_args(args)? {
            Command::Settings(s) if s.is_empty() => Err(UsageError::NoArguments),
            Command::Settings(s) => build(&s),
            other => panic!("expected settings, got {other:?}"),
        }
    }

    fn err(args: &[&str]) -> String {
        run(args).unwrap_err().to_string()
    }

    #[test]
    fn defaults_match_the_reference_tool() {
        let c = run(&["--port", "5432"]).unwrap();
        assert_eq!(c.ports, [5432]);
        assert_eq!(c.listener.to_string(), "0.0.0.0:5000");
        assert_eq!(c.script_timeout, Duration::from_secs(5));
        assert!(!c.singleflight);
        assert_eq!(c.log_level, None);
        assert_eq!((c.workers, c.max_connections), (8, 256));
    }

    #[test]
    fn repeated_options_keep_their_order() {
        let c = run(&[
            "--port",
            "2",
            "--port=1",
            "--script",
            "/a x 'y z'",
            "--script",
            "b",
        ])
        .unwrap();
        assert_eq!(c.ports, [2, 1]);
        assert_eq!(c.scripts[0].program, "/a");
        assert_eq!(c.scripts[0].args, ["x", "y z"]);
        assert_eq!(c.scripts[1].program, "b");
    }

    #[test]
    fn bad_ports_are_named() {
        for p in ["abc", "0", "70000", "-1", ""] {
            assert_eq!(
                err(&["--port", p]),
                format!("invalid value {p:?} for --port: not a port number (1-65535)")
            );
        }
    }

    #[test]
    fn bad_timeouts_are_named() {
        for t in ["0", "-1", "abc", "inf", "NaN", "1e3", ""] {
            assert_eq!(
                err(&["--port", "1", "--script-timeout", t]),
                format!(
                    "invalid value {t:?} for --script-timeout: not a positive number of seconds"
                )
            );
        }
        assert_eq!(
            err(&["--port", "1", "--script-timeout", "100000"]),
            "invalid value \"100000\" for --script-timeout: more than 86400 seconds"
        );
    }

    #[test]
    fn fractional_timeouts_are_accepted() {
        let c = run(&["--port", "1", "--script-timeout", "0.25"]).unwrap();
        assert_eq!(c.script_timeout, Duration::from_millis(250));
    }

    #[test]
    fn log_levels_follow_logrus_names_in_any_case() {
        for (s, l) in [
            ("PANIC", LevelFilter::Error),
            ("fatal", LevelFilter::Error),
            ("Warning", LevelFilter::Warn),
            ("warn", LevelFilter::Warn),
            ("info", LevelFilter::Info),
            ("DEBUG", LevelFilter::Debug),
            ("trace", LevelFilter::Trace),
        ] {
            assert_eq!(
                run(&["--port", "1", "--log-level", s]).unwrap().log_level,
                Some(l)
            );
        }
        assert!(
            err(&["--port", "1", "--log-level", "loud"])
                .starts_with("invalid value \"loud\" for --log-level: ")
        );
    }

    #[test]
    fn listener_forms() {
        let l = |s| run(&["--port", "1", "--listener", s]).map(|c| c.listener.to_string());
        assert_eq!(l("6000").unwrap(), "0.0.0.0:6000");
        assert_eq!(l("127.0.0.1:7000").unwrap(), "127.0.0.1:7000");
        assert_eq!(l("[::]:5000").unwrap(), "[::]:5000");
        assert_eq!(l("[::1]:0").unwrap(), "[::1]:0");
        assert!(l("localhost:5000").unwrap().ends_with(":5000"));
        for bad in [
            "",
            "abc",
            "1.2.3.4",
            "1.2.3.4:99999",
            ":80",
            "99999",
            "::1:80",
        ] {
            assert!(
                err(&["--port", "1", "--listener", bad])
                    .starts_with(&format!("invalid value {bad:?} for --listener: ")),
                "{bad}"
            );
        }
    }

    #[test]
    fn tcp_http_and_their_timeouts() {
        let c = run(&[
            "--tcp",
            "[::1]:5432",
            "--http",
            "http://127.0.0.1:8080/health",
            "--tcp-timeout",
            "0.5",
            "--http-timeout",
            "2",
        ])
        .unwrap();
        assert_eq!(c.tcp[0].port, 5432);
        assert_eq!(c.http[0].path, "/health");
        assert_eq!(c.tcp_timeout, Duration::from_millis(500));
        assert_eq!(c.http_timeout, Duration::from_secs(2));
        assert!(
            err(&["--http", "https://x/"])
                .starts_with("invalid value \"https://x/\" for --http: https is not supported")
        );
        assert_eq!(
            err(&["--tcp", "localhost"]),
            "invalid value \"localhost\" for --tcp: expected HOST:PORT"
        );
        assert_eq!(
            err(&["--port", "1", "--tcp-timeout", "0"]),
            "invalid value \"0\" for --tcp-timeout: not a positive number of seconds"
        );
    }

    #[test]
    fn state_machine_options() {
        let c = run(&[
            "--port",
            "1",
            "--healthy-threshold",
            "2",
            "--unhealthy-threshold",
            "100",
            "--interval",
            "0.5",
            "--grace-period",
            "0",
            "--on-change",
            "/bin/notify 'x y'",
        ])
        .unwrap();
        assert_eq!((c.healthy_threshold, c.unhealthy_threshold), (2, 100));
        assert_eq!(c.interval, Some(Duration::from_millis(500)));
        assert_eq!(c.grace_period, Duration::ZERO);
        assert_eq!(c.on_change.unwrap().args, ["x y"]);
        for t in ["0", "101", "x"] {
            assert_eq!(
                err(&["--port", "1", "--healthy-threshold", t]),
                format!(
                    "invalid value {t:?} for --healthy-threshold: not a whole number from 1 to 100"
                )
            );
        }
        assert_eq!(
            err(&["--port", "1", "--interval", "0"]),
            "invalid value \"0\" for --interval: not a positive number of seconds"
        );
        assert_eq!(
            err(&["--port", "1", "--cache-ttl", "-1"]),
            "invalid value \"-1\" for --cache-ttl: not a positive number of seconds"
        );
    }

    #[test]
    fn conflicting_modes_are_refused() {
        assert_eq!(
            err(&["--port", "1", "--interval", "1", "--cache-ttl", "1"]),
            "--interval and --cache-ttl cannot be combined: with --interval requests never start runs"
        );
        assert_eq!(
            err(&["--port", "1", "--once", "--listener", "1"]),
            "--listener makes no sense with --once, which runs the checks once and serves nothing"
        );
        assert_eq!(
            err(&["--port", "1", "--once", "--unhealthy-threshold", "2"]),
            "--unhealthy-threshold makes no sense with --once, which runs the checks once and serves nothing"
        );
        assert!(
            err(&["--port", "1", "--format", "json"])
                .starts_with("--format applies to --once only")
        );
        let c = run(&["--port", "1", "--once", "--format", "json"]).unwrap();
        assert!(c.once);
        assert_eq!(c.format, Format::Json);
        assert_eq!(
            err(&["--port", "1", "--once", "--format", "xml"]),
            "invalid value \"xml\" for --format: expected text or json"
        );
    }

    #[test]
    fn counts_are_bounded() {
        assert_eq!(
            err(&["--port", "1", "--workers", "0"]),
            "invalid value \"0\" for --workers: not a whole number from 1 to 1024"
        );
        assert_eq!(
            err(&["--port", "1", "--max-connections", "65536"]),
            "invalid value \"65536\" for --max-connections: not a whole number from 1 to 65535"
        );
        assert_eq!(
            run(&["--port", "1", "--workers", "1024"]).unwrap().workers,
            1024
        );
    }

    #[test]
    fn scripts_that_cannot_be_split_are_named() {
        assert_eq!(
            err(&["--script", "/x 'a"]),
            "invalid value \"/x 'a\" for --script: unterminated ' quote"
        );
        assert_eq!(
            err(&["--script", "  "]),
            "invalid value \"  \" for --script: no program given"
        );
        assert_eq!(
            err(&["--script", "''"]),
            "invalid value \"''\" for --script: the program name is empty"
        );
    }

    #[test]
    fn unknown_missing_and_unexpected() {
        assert_eq!(
            err(&["--port", "1", "--frobnicate"]),
            "unknown option \"--frobnicate\""
        );
        assert_eq!(err(&["-x"]), "unknown option \"-x\"");
        assert_eq!(err(&["--port"]), "missing value for --port");
        assert_eq!(
            err(&["--port", "1", "stray"]),
            "unexpected argument \"stray\""
        );
        assert_eq!(
            err(&["--port", "1", "--singleflight=maybe"]),
            "invalid value \"maybe\" for --singleflight: not true or false"
        );
    }

    #[test]
    fn checks_are_required() {
        assert_eq!(
            err(&["--singleflight"]),
            "at least one --port or --script (or --tcp, --http) is required"
        );
        assert_eq!(run(&[]).unwrap_err(), UsageError::NoArguments);
    }

    #[test]
    fn help_and_version_win() {
        assert!(matches!(
            parse_args(["--port", "x", "--help"]),
            Ok(Command::Help)
        ));
        assert!(matches!(parse_args(["-h"]), Ok(Command::Help)));
        assert!(matches!(parse_args(["--version"]), Ok(Command::Version)));
        assert!(matches!(parse_args(["-v"]), Ok(Command::Version)));
    }

    /// Random command lines from the real option names and hostile values, for
    /// `FUZZ_SECONDS` (default 0.5): parsing must never panic.
    #[test]
    fn fuzz_option_parsing() {
        let secs: f64 = std::env::var("FUZZ_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.5);
        let values = [
            "",
            "0",
            "1",
            "-1",
            "65535",
            "65536",
            "1e9",
            "0.0001",
            "86400.1",
            "NaN",
            "'",
            "\"",
            "\\",
            "a b",
            "[::1]:80",
            "http://",
            "https://x",
            "h:1,send=\\",
            "true",
            "json",
            "\u{0}",
            "ä",
            ":",
            "=",
        ];
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        let deadline = std::time::Instant::now() + Duration::from_secs_f64(secs);
        while std::time::Instant::now() < deadline {
            let mut args = Vec::new();
            for _ in 0..next(6) {
                let o = &OPTIONS[next(OPTIONS.len())];
                match next(4) {
                    0 => args.push(format!("--{}={}", o.name, values[next(values.len())])),
                    1 => args.push(values[next(values.len())].to_string()),
                    _ => {
                        args.push(format!("--{}", o.name));
                        args.push(values[next(values.len())].to_string());
                    }
                }
            }
            let _ = parse_args(&args);
        }
    }

    #[test]
    fn help_lists_every_option() {
        let h = help();
        for o in OPTIONS {
            assert!(h.contains(&format!("--{}", o.name)), "{}", o.name);
        }
    }
}
