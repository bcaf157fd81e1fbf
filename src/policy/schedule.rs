//! Round scheduling: a delay is met by choosing when the next round starts, never by sleeping per test.
//!
//! Each test due for another attempt has a ready time (its failed attempt's end plus its delay). A test
//! that failed early in a long round is usually ready by the time the round ends. The next round starts
//! when the earliest test is ready; tests that become ready shortly after it are waited for and join the
//! same round, because one more pytest start-up costs more than a short wait.

/// What the next round runs and when: `start_at` is a wall-clock time in seconds since the epoch.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NextRound {
    pub start_at: f64,
    /// Indices (into the caller's list) of the tests that run in it.
    pub tests: Vec<usize>,
}

/// Plans the next round from `(test, ready_at)` pairs. Tests ready within `coalesce` seconds of the
/// earliest join it, and the round starts once the last of them is ready; no test starts early.
pub(crate) fn plan_next_round(
    ready: &[(usize, f64)],
    now: f64,
    coalesce: f64,
) -> Option<NextRound> {
    let earliest = ready.iter().map(|&(_, t)| t.max(now)).reduce(f64::min)?;
    let horizon = earliest + coalesce.max(0.0);
    let mut start_at = earliest;
    let mut tests = Vec::new();
    for &(test, at) in ready {
        let at = at.max(now);
        if at <= horizon {
            start_at = start_at.max(at);
            tests.push(test);
        }
    }
    Some(NextRound { start_at, tests })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tests_already_ready_run_now() {
        let plan = plan_next_round(&[(0, 5.0), (1, 9.0)], 10.0, 1.0).unwrap();
        assert_eq!(
            plan,
            NextRound {
                start_at: 10.0,
                tests: vec![0, 1]
            }
        );
    }

    #[test]
    fn a_round_waits_for_the_earliest_and_for_tests_close_behind_it() {
        let ready = [(0, 12.0), (1, 12.5), (2, 20.0)];
        let plan = plan_next_round(&ready, 10.0, 1.0).unwrap();
        assert_eq!(
            plan,
            NextRound {
                start_at: 12.5,
                tests: vec![0, 1]
            }
        );
        let later = plan_next_round(&[(2, 20.0)], 12.6, 1.0).unwrap();
        assert_eq!(
            later,
            NextRound {
                start_at: 20.0,
                tests: vec![2]
            }
        );
    }

    #[test]
    fn no_test_ever_starts_before_its_ready_time() {
        let ready: Vec<(usize, f64)> = (0..50).map(|i| (i, 100.0 + (i as f64) * 0.37)).collect();
        let mut remaining = ready.clone();
        let mut now = 90.0;
        while let Some(plan) = plan_next_round(&remaining, now, 1.0) {
            for t in &plan.tests {
                let at = ready[*t].1;
                assert!(
                    plan.start_at >= at,
                    "test {t} ready at {at} started at {}",
                    plan.start_at
                );
            }
            now = plan.start_at;
            remaining.retain(|(t, _)| !plan.tests.contains(t));
        }
        assert!(remaining.is_empty());
    }

    #[test]
    fn nothing_to_run_plans_nothing() {
        assert_eq!(plan_next_round(&[], 0.0, 1.0), None);
    }
}
