//! health-checker: answers every HTTP request with 200 when all configured checks pass and
//! 504 when any fails. This file reads the options, wires the pieces and decides exit codes.
#![deny(unsafe_code)]

mod check;
mod cli;
mod config;
mod gate;
mod health;
mod hook;
mod http;
mod limit;
mod report;
mod run;
mod server;
mod shutdown;
mod state;
mod sys;
mod time;
mod words;

use std::io::Write;
use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use log::{LevelFilter, error, info, warn};

use crate::cli::{Command, Config, UsageError};

/// Bad usage: a value, an option, or nothing to check.
const EXIT_USAGE: u8 = 2;
/// The listener (or a thread it needs) cannot be opened.
const EXIT_LISTEN: u8 = 1;
/// `--once` found a failing check.
const EXIT_UNHEALTHY: u8 = 1;

fn main() -> ExitCode {
    let args = match cli::parse_args(std::env::args_os().skip(1)) {
        Ok(Command::Settings(s)) => s,
        Ok(Command::Help) => {
            print!("{}", cli::help());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!(
                "health-checker {} ({})",
                env!("CARGO_PKG_VERSION"),
                env!("HEALTH_CHECKER_TARGET")
            );
            return ExitCode::SUCCESS;
        }
        Err(e) => return usage_error(&e),
    };
    let loaded = match config::load(args, std::env::vars_os()) {
        Ok(l) => l,
        Err(e) => return usage_error(&e),
    };
    let config = loaded.config;
    // With --once and --check-config, stdout carries the result, so the log goes to stderr.
    init_logging(config.log_level, config.once || loaded.check_only);
    for var in &loaded.unknown_env {
        warn!("ignoring environment variable {var}: it names no option");
    }
    let result = if loaded.check_only {
        check_config(&config, &loaded.settings)
    } else if config.once {
        once(&config)
    } else {
        serve(config)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => ExitCode::from(code),
    }
}

fn usage_error(e: &UsageError) -> ExitCode {
    match e {
        UsageError::NoArguments => eprint!("{}", cli::help()),
        e => eprintln!("health-checker: {e}\nRun 'health-checker --help' for usage."),
    }
    ExitCode::from(EXIT_USAGE)
}

/// `--check-config`: the effective configuration on stdout; 2 when a script cannot run.
fn check_config(config: &Config, settings: &[cli::Setting]) -> Result<(), u8> {
    let (errors, warnings) = config::check_scripts(config);
    for w in &warnings {
        warn!("{w}");
    }
    print!("{}", config::render(settings));
    if errors.is_empty() {
        return Ok(());
    }
    for e in &errors {
        eprintln!("health-checker: {e}");
    }
    Err(EXIT_USAGE)
}

/// `--once`: one run, the report on stdout, 0 when healthy and 1 otherwise.
fn once(config: &Config) -> Result<(), u8> {
    let checks = check::from_config(config);
    let names = checks.iter().map(|c| c.name().to_string());
    let mut state = state::State::new(names, state::Thresholds::default());
    let runner = run::Runner::new(checks, 1, worker_wait(config), config.deadline);
    state.record(runner.run());
    let mut out = String::new();
    match config.format {
        cli::Format::Text => report::text(&state, &mut out),
        cli::Format::Json => {
            report::json(&state, &mut out);
            out.push('\n');
        }
    }
    print!("{out}");
    if state.host() == state::Health::Healthy {
        Ok(())
    } else {
        Err(EXIT_UNHEALTHY)
    }
}

/// How long a run may wait for a worker: the longest check timeout, so a queued request is
/// answered no later than one that ran.
fn worker_wait(config: &Config) -> Duration {
    config
        .script_timeout
        .max(config.tcp_timeout)
        .max(config.http_timeout)
}

fn serve(config: Config) -> Result<(), u8> {
    let started = Instant::now();
    // Before any thread starts, so that every thread inherits the mask.
    if let Err(e) = sys::block_termination() {
        error!("cannot block SIGTERM and SIGINT for a graceful shutdown: {e}");
    }
    let listener = TcpListener::bind(config.listener).map_err(|e| {
        error!(
            "cannot listen on {}: {}",
            config.listener,
            check::describe(&e)
        );
        EXIT_LISTEN
    })?;
    let addr = listener.local_addr().unwrap_or(config.listener);
    let checks = check::from_config(&config);
    let names: Vec<&str> = checks.iter().map(|c| c.name()).collect();
    let mode = match (config.interval, config.cache_ttl) {
        (Some(period), _) => health::Mode::Interval(period),
        (None, cache_ttl) => health::Mode::OnDemand { cache_ttl },
    };
    info!(
        "health-checker {} listening on {addr}; checking {}; {}",
        env!("CARGO_PKG_VERSION"),
        names.join(", "),
        describe_mode(&config, mode)
    );
    let hook = match &config.on_change {
        Some(script) => Some(
            hook::Hook::start(script.clone(), config.script_timeout).map_err(|e| {
                error!("cannot start the on-change thread: {e}");
                EXIT_LISTEN
            })?,
        ),
        None => None,
    };
    let thresholds = state::Thresholds {
        healthy: config.healthy_threshold,
        unhealthy: config.unhealthy_threshold,
    };
    let runner = run::Runner::new(
        checks,
        config.workers,
        worker_wait(&config),
        config.deadline,
    );
    // The monitor lives as long as the process; leaking it lets every thread borrow it.
    let monitor: &'static health::Monitor = Box::leak(Box::new(health::Monitor::new(
        runner,
        thresholds,
        mode,
        config.singleflight,
        started + config.grace_period,
        hook,
    )));
    monitor.start_interval().map_err(|_| EXIT_LISTEN)?;
    let app = Arc::new(server::App::new(monitor));
    let server = http::Server::new(listener, config.max_connections, config.idle_timeout, app);
    shutdown::watch(monitor, server.stopper(), config.shutdown_delay).map_err(|e| {
        error!("cannot start the signal thread: {e}");
        EXIT_LISTEN
    })?;
    server.serve();
    shutdown::finish(&server);
    Ok(())
}

fn describe_mode(config: &Config, mode: health::Mode) -> String {
    let mut s = match mode {
        health::Mode::Interval(p) => format!("runs every {}", check::seconds(p)),
        health::Mode::OnDemand { cache_ttl: Some(t) } => {
            format!(
                "runs on demand, answered from cache for {}",
                check::seconds(t)
            )
        }
        health::Mode::OnDemand { cache_ttl: None } if config.singleflight => {
            "runs on demand (singleflight)".to_string()
        }
        health::Mode::OnDemand { cache_ttl: None } => "runs on demand".to_string(),
    };
    if !config.grace_period.is_zero() {
        s.push_str(&format!(
            ", none before {} after start-up",
            check::seconds(config.grace_period)
        ));
    }
    if config.healthy_threshold > 1 || config.unhealthy_threshold > 1 {
        s.push_str(&format!(
            ", thresholds {} healthy / {} unhealthy",
            config.healthy_threshold, config.unhealthy_threshold
        ));
    }
    s
}

/// Logs go to stdout (stderr with `--once`), one line per event: time, level, message.
fn init_logging(level: Option<LevelFilter>, to_stderr: bool) {
    let mut b = env_logger::Builder::new();
    b.target(if to_stderr {
        env_logger::Target::Stderr
    } else {
        env_logger::Target::Stdout
    });
    b.format(|f, r| {
        writeln!(
            f,
            "{} {:<5} {}",
            time::rfc3339(SystemTime::now()),
            r.level(),
            r.args()
        )
    });
    match level {
        Some(l) => {
            b.filter_level(l);
        }
        None => {
            b.filter_level(LevelFilter::Info);
            if let Ok(spec) = std::env::var("RUST_LOG") {
                b.parse_filters(&spec);
            }
        }
    }
    b.init();
}
