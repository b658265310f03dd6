//! health-checker: answers every HTTP request with 200 when all configured checks pass and
//! 504 when any fails. This file reads the options, wires the pieces and decides exit codes.
#![deny(unsafe_code)]

mod check;
mod cli;
mod gate;
mod http;
mod report;
mod run;
mod server;
mod state;
mod sys;
mod time;
mod words;

use std::io::Write;
use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use log::{LevelFilter, error, info};

use crate::cli::{Command, Config, UsageError};

/// Bad usage: a value, an option, or nothing to check.
const EXIT_USAGE: u8 = 2;
/// The listener cannot be opened.
const EXIT_LISTEN: u8 = 1;

fn main() -> ExitCode {
    let config = match cli::parse_args(std::env::args_os().skip(1)) {
        Ok(Command::Run(c)) => *c,
        Ok(Command::Help) => {
            print!("{}", cli::help());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("health-checker {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(UsageError::NoArguments) => {
            eprint!("{}", cli::help());
            return ExitCode::from(EXIT_USAGE);
        }
        Err(e) => {
            eprintln!("health-checker: {e}\nRun 'health-checker --help' for usage.");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    init_logging(config.log_level);
    match serve(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => ExitCode::from(code),
    }
}

fn serve(config: Config) -> Result<(), u8> {
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
    info!(
        "health-checker {} listening on {addr}; checking {}{}",
        env!("CARGO_PKG_VERSION"),
        names.join(", "),
        if config.singleflight {
            " (singleflight)"
        } else {
            ""
        }
    );
    let worker_wait = config
        .script_timeout
        .max(config.tcp_timeout)
        .max(config.http_timeout);
    let runner = run::Runner::new(checks, config.workers, worker_wait);
    let app = Arc::new(server::App::new(
        runner,
        config.singleflight,
        state::Thresholds::default(),
    ));
    http::serve(listener, config.max_connections, app);
    Ok(())
}

/// Logs go to stdout, one line per event: time, level, message.
fn init_logging(level: Option<LevelFilter>) {
    let mut b = env_logger::Builder::new();
    b.target(env_logger::Target::Stdout);
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
