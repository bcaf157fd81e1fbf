//! The first round's deferred rendering (the collector's `render.py`): a failed test's traceback is
//! drawn briefly in the first round, and in full only for the tests that will not be rerun. This side
//! tells the collector whether to defer (the verdict's `render` plan) and answers its `render_query`:
//! after folding the round's results so far and hearing the AI advisor, which may stop retries, so the
//! answer is what the run will do.

use super::*;

/// How long the collector waits for an answer before drawing every failure in full; the AI advisor's
/// budget is added when it is consulted.
const RENDER_WAIT: Duration = Duration::from_secs(30);
/// A query waiting for results that never come (a worker's report lost) is answered after this long,
/// the missing tests as staying failed.
const RENDER_PENDING_MAX: Duration = Duration::from_secs(5);

/// A `render_query` not answered yet.
pub(super) struct RenderQuery {
    worker: Option<String>,
    nodeids: Vec<String>,
    since: Instant,
}

impl RenderQuery {
    pub(super) fn new(worker: Option<String>, nodeids: Vec<String>) -> Self {
        RenderQuery {
            worker,
            nodeids,
            since: Instant::now(),
        }
    }
}

impl Run<'_> {
    /// The verdict's `render` entry: where the answers go and how long to wait for them, or null when
    /// no test can be rerun (then nothing is deferred).
    pub(super) fn render_plan(&self, number: u32) -> serde_json::Value {
        let s = &self.ledger.settings;
        let marked = self
            .ledger
            .markers
            .values()
            .any(|m| m.apply(&s.policy).max_attempts > 1);
        let reruns = (s.policy.enabled && s.policy.max_attempts > 1) || s.history_policy || marked;
        if !reruns || s.max_reruns == Some(0) {
            return serde_json::Value::Null;
        }
        let mut wait = RENDER_WAIT;
        if self.advisor.is_some() && s.ai.enabled {
            wait += s.ai.timeout;
        }
        serde_json::json!({
            "answer": self.render_answer_stem(number),
            "wait": wait.as_secs_f64(),
        })
    }

    fn render_answer_stem(&self, number: u32) -> PathBuf {
        self.temp.path().join(format!("render-{number}"))
    }

    /// Answers the queries whose tests' results are all in (or that waited too long), writing each
    /// answer file whole. The advisor is heard first, once per batch.
    pub(super) fn answer_render_queries(
        &mut self,
        progress: &mut RoundProgress,
    ) -> std::io::Result<()> {
        let ready = |q: &RenderQuery, ledger: &Ledger| {
            ledger.render_ready(&q.nodeids) || q.since.elapsed() >= RENDER_PENDING_MAX
        };
        if !progress
            .render_queries
            .iter()
            .any(|q| ready(q, &self.ledger))
        {
            return Ok(());
        }
        if self.ledger.early_exit.is_none() {
            self.consult_advisor();
        }
        let stop_all = progress.interrupted
            || self.interrupts.received().is_some()
            || self.config_errors.is_some();
        let complete = progress.finish.is_some();
        let stem = self.render_answer_stem(progress.number);
        let mut k = 0;
        while k < progress.render_queries.len() {
            if !ready(&progress.render_queries[k], &self.ledger) {
                k += 1;
                continue;
            }
            let query = progress.render_queries.swap_remove(k);
            let mut name = stem.clone().into_os_string();
            match &query.worker {
                None => name.push(".json"),
                // xdist's worker ids (gw0, ...); anything else is not a file name of ours, and goes
                // unanswered: that collector draws everything in full.
                Some(w) if w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                    name.push(format!(".{w}.json"))
                }
                Some(_) => continue,
            }
            let failed = self
                .ledger
                .render_answer(&query.nodeids, stop_all, complete);
            let body = serde_json::json!({ "failed": failed });
            crate::output::write_atomic(Path::new(&name), |f| {
                std::io::Write::write_all(f, &serde_json::to_vec(&body)?)
            })?;
        }
        Ok(())
    }
}
