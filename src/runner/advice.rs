//! The AI advisor, consulted after each round on the failures it has not seen: what it says sets a
//! test's delay or stops its retries, and every answer goes to the AI report's trail.

use super::ledger::Status;
use super::*;

impl Run<'_> {
    /// Asks the advisor about this round's new failures — one query per distinct fingerprint not asked
    /// before — and applies its answers: a category and reason on the attempt, and for a test still due
    /// for a rerun, stop, or a new delay. The advisor's own deadline and the run's AI budget bound the
    /// wait; whatever is not answered keeps the heuristics' classification.
    pub(super) fn consult_advisor(&mut self) {
        if self.advisor.is_none() || !self.ledger.settings.ai.enabled {
            return;
        }
        let budget = self.ledger.settings.ai.timeout;
        let deadline = *self
            .advice_deadline
            .get_or_insert_with(|| Instant::now() + budget);
        let mut queries: Vec<FailureQuery> = Vec::new();
        let mut asked = std::collections::HashSet::new();
        let policy_info = PolicyInfo::from(&self.ledger.settings.policy);
        for t in &self.ledger.tests {
            let Some(last) = t.attempts().last().filter(|a| a.outcome.is_failure()) else {
                continue;
            };
            let Some(fp) = last.fingerprint.clone() else {
                continue;
            };
            if self.advice.contains_key(&fp) || !asked.insert(fp.clone()) {
                continue;
            }
            let exc = last.exception.clone().unwrap_or_else(|| ExceptionInfo {
                type_name: "smart_rerun.Unknown".into(),
                mro: Vec::new(),
                message: String::new(),
            });
            queries.push(FailureQuery {
                nodeid: t.nodeid.to_string(),
                fingerprint: fp,
                exception_type: exc.type_name,
                exception_bases: exc.mro,
                message: exc.message,
                traceback: last.traceback.clone().unwrap_or_default(),
                attempts: t
                    .attempts()
                    .iter()
                    .map(|a| AttemptSummary {
                        number: a.number,
                        outcome: a.outcome.as_str().to_owned(),
                        exception_type: a.exception.as_ref().map(|e| e.type_name.clone()),
                    })
                    .collect(),
                heuristic: last
                    .classification
                    .clone()
                    .unwrap_or_else(|| crate::classify::heuristics::classify(last)),
                policy: policy_info.clone(),
            });
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if !queries.is_empty() {
            // With the budget spent the advisor still answers from its cache, and says so once.
            if let Some(advisor) = self.advisor.as_mut() {
                let (answers, notes) = advisor.advise(&self.ledger.settings.ai, &queries, left);
                for note in notes {
                    if !self.ledger.warnings.contains(&note) {
                        self.ledger.warnings.push(note);
                    }
                }
                for advice in answers {
                    self.advice
                        .insert(advice.fingerprint.clone(), advice.classification);
                }
            }
        }
        let max_delay = self.ledger.settings.policy.max_delay;
        for t in &mut self.ledger.tests {
            let Some(notes) = t.notes.as_deref_mut() else {
                continue;
            };
            let Some(last) = notes.attempts.last_mut().filter(|a| a.outcome.is_failure()) else {
                continue;
            };
            let Some(fp) = last.fingerprint.clone() else {
                continue;
            };
            // This round's new fingerprints, and new failures with a fingerprint answered earlier; an
            // attempt that already carries the advice is not advised twice.
            let advised = last.classification.as_ref().is_some_and(|c| {
                matches!(
                    c.source,
                    ClassificationSource::Ai | ClassificationSource::Cache
                )
            });
            if advised {
                continue;
            }
            let Some(c) = self.advice.get(&fp).cloned() else {
                continue;
            };
            last.classification = Some(c.clone());
            let applied = match (t.status, c.action) {
                (Status::Queued { .. }, Action::StopRetry) => {
                    t.status = Status::Done;
                    notes.stopped_because = Some(format!(
                        "the AI classifier said {} ({}): stop_retry",
                        c.category.as_str(),
                        c.reason
                    ));
                    "stopped".to_owned()
                }
                (Status::Queued { .. }, Action::RetryWithDelay { seconds }) => {
                    let seconds = max_delay.map_or(seconds, |cap| seconds.min(cap.as_secs_f64()));
                    t.status = Status::Queued {
                        ready_at: t.last_stop + seconds,
                    };
                    format!("delay set to {seconds}s")
                }
                (Status::Queued { .. }, Action::Retry) => "retry as planned".to_owned(),
                (Status::Done, _) => "final: no attempts left".to_owned(),
            };
            self.advice_trail.push(AdviceRecord {
                nodeid: t.nodeid.to_string(),
                attempt: last.number,
                fingerprint: fp,
                classification: c,
                applied,
            });
        }
    }
}
