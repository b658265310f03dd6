//! Routing: which request gets which answer.
//!
//! `/alive` and `/metrics` never run a check; `/ready` and every other path (any method) ask
//! the monitor to refresh (which runs the checks or not, as the mode says) and answer from
//! the state after it.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::health::Monitor;
use crate::http::{Handler, Request, Response};
use crate::report::{self, RequestCount};
use crate::state::Health;

/// Status codes counted one by one for `/metrics`; anything else counts under 0 ("other").
const COUNTED: [u16; 10] = [200, 400, 404, 408, 414, 431, 500, 503, 504, 505];

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";
/// The content type of the Prometheus text exposition format 0.0.4.
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The health-check application behind the HTTP layer.
pub struct App {
    monitor: &'static Monitor,
    /// Responses by status code: one counter per entry of [`COUNTED`], then "other".
    answered: [AtomicU64; COUNTED.len() + 1],
}

impl App {
    /// An app that answers from `monitor`.
    pub fn new(monitor: &'static Monitor) -> Self {
        App {
            monitor,
            answered: Default::default(),
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
                self.monitor
                    .with_state(|s| report::metrics(s, &counts, &mut res.body));
            }
            "/ready" if self.monitor.stopping() => {
                res.status = 503;
                res.content_type = JSON;
                res.body
                    .push_str("{\"ready\":false,\"reasons\":[\"shutting down\"]}");
            }
            "/ready" => {
                self.monitor.refresh();
                res.content_type = JSON;
                res.status = self.monitor.with_state(|s| {
                    report::ready(s, &mut res.body);
                    if s.host() == Health::Healthy {
                        200
                    } else {
                        503
                    }
                });
            }
            _ if self.monitor.stopping() => {
                res.status = 504;
                if wants_json(req) {
                    res.content_type = JSON;
                    res.body
                        .push_str("{\"status\":\"fail\",\"state\":\"stopping\",\"checks\":[]}");
                } else {
                    res.content_type = TEXT;
                    res.body.push_str("FAIL: shutting down\n");
                }
            }
            _ => {
                self.monitor.refresh();
                let json = wants_json(req);
                res.content_type = if json { JSON } else { TEXT };
                res.status = self.monitor.with_state(|s| {
                    if json {
                        report::json(s, &mut res.body);
                    } else {
                        report::text(s, &mut res.body);
                    }
                    if s.host() == Health::Healthy {
                        200
                    } else {
                        504
                    }
                });
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
