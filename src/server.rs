//! Routing: which request gets which answer. Every path and method runs the checks.

use std::sync::Arc;

use crate::gate::Gate;
use crate::http::{Handler, Request, Response};
use crate::report;
use crate::run::{Report, Runner};

/// The health-check application behind the HTTP layer.
pub struct App {
    runner: Runner,
    /// Present with `--singleflight`: concurrent requests share one run.
    gate: Option<Gate<Arc<Report>>>,
}

impl App {
    /// An app that runs `runner`'s checks per request, shared when `singleflight` is set.
    pub fn new(runner: Runner, singleflight: bool) -> Self {
        App {
            runner,
            gate: singleflight.then(Gate::default),
        }
    }

    fn run(&self) -> Arc<Report> {
        match &self.gate {
            Some(gate) => gate.run(|| Arc::new(self.runner.run())),
            None => Arc::new(self.runner.run()),
        }
    }
}

impl Handler for App {
    fn handle(&self, _req: &Request<'_>, res: &mut Response) {
        let report = self.run();
        res.status = if report.passed() { 200 } else { 504 };
        res.content_type = "text/plain; charset=utf-8";
        report::text(self.runner.checks(), &report, &mut res.body);
    }
}
