//! Routing: which request gets which answer.
//!
//! `/alive` and `/metrics` never run a check; `/ready` and every other path (any method) run
//! them, through the singleflight gate when it is on, and answer from the state after the run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use log::info;

use crate::gate::Gate;
use crate::http::{Handler, Request, Response};
use crate::report::{self, RequestCount};
use crate::run::Runner;
use crate::state::{Change, Health, State, Thresholds};

/// Status codes counted one by one for `/metrics`; anything else counts under 0 ("other").
const COUNTED: [u16; 10] = [200, 400, 404, 408, 414, 431, 500, 503, 504, 505];

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";
/// The content type of the Prometheus text exposition format 0.0.4.
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The health-check application behind the HTTP layer.
pub struct App {
    runner: Runner,
    /// Present with `--singleflight`: concurrent requests share one run.
    gate: Option<Gate<()>>,
    state: Mutex<State>,
    /// Responses by status code: one counter per entry of [`COUNTED`], then "other".
    answered: [AtomicU64; COUNTED.len() + 1],
}

impl App {
    /// An app that runs `runner`'s checks on demand, shared when `singleflight` is set.
    pub fn new(runner: Runner, singleflight: bool, thresholds: Thresholds) -> Self {
        let names = runner.checks().iter().map(|c| c.name().to_string());
        App {
            state: Mutex::new(State::new(names, thresholds)),
            runner,
            gate: singleflight.then(Gate::default),
            answered: Default::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Records are applied whole under the lock, so a poisoned one still holds a sound state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs every check once (or joins the run in flight) and records the result.
    fn refresh(&self) {
        let run = || {
            let outcomes = self.runner.run();
            if let Some(change) = self.state().record(outcomes) {
                log_change(&change);
            }
        };
        match &self.gate {
            Some(gate) => gate.run(run),
            None => run(),
        }
    }

    fn request_counts(&self) -> Vec<RequestCount> {
        let codes = COUNTED.iter().copied().chain([0]);
        codes
            .zip(&self.answered)
            .map(|(code, n)| RequestCount {
                code,
                count: n.load(Ordering::Relaxed),
            })
            .filter(|r| r.count > 0)
            .collect()
    }
}

fn log_change(c: &Change) {
    if c.reasons.is_empty() {
        info!(
            "host is {} (was {})",
            c.current.as_str(),
            c.previous.as_str()
        );
    } else {
        info!(
            "host is {} (was {}): {}",
            c.current.as_str(),
            c.previous.as_str(),
            c.reasons.join("; ")
        );
    }
}

impl Handler for App {
    fn handle(&self, req: &Request<'_>, res: &mut Response) {
        match req.path() {
            "/alive" => {
                res.status = 200;
                res.content_type = JSON;
                res.body.push_str("{\"alive\":true}");
            }
            "/metrics" => {
                let counts = self.request_counts();
                res.status = 200;
                res.content_type = PROMETHEUS;
                report::metrics(&self.state(), &counts, &mut res.body);
            }
            "/ready" => {
                self.refresh();
                let state = self.state();
                res.status = if state.host() == Health::Healthy {
                    200
                } else {
                    503
                };
                res.content_type = JSON;
                report::ready(&state, &mut res.body);
            }
            _ => {
                self.refresh();
                let state = self.state();
                res.status = if state.host() == Health::Healthy {
                    200
                } else {
                    504
                };
                if wants_json(req) {
                    res.content_type = JSON;
                    report::json(&state, &mut res.body);
                } else {
                    res.content_type = TEXT;
                    report::text(&state, &mut res.body);
                }
            }
        }
    }

    fn answered(&self, status: u16) {
        let i = COUNTED
            .iter()
            .position(|&c| c == status)
            .unwrap_or(COUNTED.len());
        self.answered[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// JSON when the query says `format=json` or `Accept` lists a JSON media type.
fn wants_json(req: &Request<'_>) -> bool {
    let by_query = req
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "format=json"));
    let by_accept = req.header("accept").is_some_and(|v| {
        v.split(|&b| b == b',').any(|item| {
            let media = item
                .split(|&b| b == b';')
                .next()
                .unwrap_or_default()
                .trim_ascii();
            media.eq_ignore_ascii_case(b"application/json")
                || media.eq_ignore_ascii_case(b"application/health+json")
        })
    });
    by_query || by_accept
}
