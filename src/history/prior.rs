//! What a run asks the history while it runs ([`crate::model::Prior`]): which of its tests are new,
//! how often a failing test flaked before, whether history saw its failure fail it for good. Each
//! question reads an index; all of them together share the run's history budget ([`RUN_BUDGET`]).

use super::backend::Value;
use super::query::WINDOW;
use super::{Location, RUN_BUDGET, Store};
use crate::model::Prior;

/// How many node ids one query asks about.
const BATCH: usize = 500;

/// The history a run consults, opened once its settings are known.
#[derive(Default)]
pub(crate) struct HistoryPrior {
    store: Option<Store>,
}

impl HistoryPrior {
    fn store(&mut self) -> Result<&mut Store, String> {
        self.store
            .as_mut()
            .ok_or_else(|| "the history is not open".to_owned())
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Vec<Value>>, String> {
        let store = self.store()?;
        match store.backend().query(sql, params) {
            Ok(rows) => Ok(rows),
            Err(e) => Err(crate::errors::chain(&store.read_error(e))),
        }
    }
}

fn text(s: &str) -> Value {
    Value::Text(Some(s.to_owned()))
}

impl Prior for HistoryPrior {
    fn open(&mut self, location: &str) -> Result<(), String> {
        let location = Location::parse(location).map_err(|e| e.to_string())?;
        let store =
            Store::open(&location, true, RUN_BUDGET).map_err(|e| crate::errors::chain(&e))?;
        self.store = Some(store);
        Ok(())
    }

    fn unseen(&mut self, nodeids: &[&str]) -> Result<Option<Vec<bool>>, String> {
        let runs = self.query("SELECT COUNT(*) FROM runs", &[])?;
        if runs.first().and_then(|r| r[0].int()).unwrap_or(0) == 0 {
            return Ok(None);
        }
        let mut seen = std::collections::HashSet::new();
        for batch in nodeids.chunks(BATCH) {
            let marks: Vec<String> = (1..=batch.len()).map(|k| format!("${k}")).collect();
            let sql = format!(
                "SELECT DISTINCT nodeid FROM results WHERE nodeid IN ({})",
                marks.join(", ")
            );
            let params: Vec<Value> = batch.iter().map(|n| text(n)).collect();
            for row in self.query(&sql, &params)? {
                if let Some(nodeid) = row[0].text() {
                    seen.insert(nodeid.to_owned());
                }
            }
        }
        Ok(Some(nodeids.iter().map(|n| !seen.contains(*n)).collect()))
    }

    fn flakes(&mut self, nodeid: &str) -> Result<(u32, u32), String> {
        let rows = self.query(
            "SELECT outcome FROM results WHERE nodeid = $1 ORDER BY started_at DESC, run_id DESC LIMIT $2",
            &[text(nodeid), Value::Int(Some(WINDOW))],
        )?;
        let flaky = rows.iter().filter(|r| r[0].text() == Some("flaky")).count();
        Ok((flaky as u32, rows.len() as u32))
    }

    fn failed_for_good(&mut self, nodeid: &str, fingerprint: &str) -> Result<u32, String> {
        // Each earlier run where this failure happened, with how the test ended in that run.
        let rows = self.query(
            "SELECT DISTINCT r.run_id, r.outcome FROM attempts a \
             JOIN results r ON r.run_id = a.run_id AND r.nodeid = a.nodeid \
             WHERE a.nodeid = $1 AND a.fingerprint = $2",
            &[text(nodeid), text(fingerprint)],
        )?;
        let ended = |r: &Vec<Value>| r[1].text().unwrap_or_default().to_owned();
        if rows
            .iter()
            .any(|r| !matches!(ended(r).as_str(), "failed" | "error"))
        {
            // It passed on a rerun after failing this way at least once: not for good.
            return Ok(0);
        }
        Ok(rows.len() as u32)
    }
}
