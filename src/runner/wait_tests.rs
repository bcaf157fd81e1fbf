use super::*;

#[derive(Default)]
struct Ticks {
    every: Option<Duration>,
    waits: usize,
    ticks: Vec<Duration>,
    done: usize,
}

impl ProgressSink for Ticks {
    fn event(&mut self, event: ProgressEvent<'_>) {
        match event {
            ProgressEvent::Waiting { .. } => self.waits += 1,
            ProgressEvent::WaitingTick { left } => self.ticks.push(left),
            ProgressEvent::WaitingDone => self.done += 1,
            ProgressEvent::RoundStarting(_) | ProgressEvent::RoundFinished(_) => {}
        }
    }
    fn tick_interval(&self) -> Option<Duration> {
        self.every
    }
}

fn plan() -> RoundPlan<'static> {
    RoundPlan {
        number: 2,
        kind: RoundKind::Rerun,
        tests: vec![PlannedTest {
            nodeid: "t.py::test_a",
            attempt: 2,
            max_attempts: 3,
        }],
        serial: true,
    }
}

#[test]
fn a_wait_ticks_the_progress_sink_with_the_time_left() {
    let mut obs = Ticks {
        every: Some(Duration::from_millis(40)),
        ..Ticks::default()
    };
    let started = Instant::now();
    assert!(wait_before_round(
        &Interrupts::none(),
        &mut obs,
        Duration::from_millis(300),
        &plan()
    ));
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!((obs.waits, obs.done), (1, 1));
    assert!(obs.ticks.len() >= 3, "{:?}", obs.ticks);
    assert!(obs.ticks.windows(2).all(|w| w[0] > w[1]), "{:?}", obs.ticks);
    assert!(
        obs.ticks
            .iter()
            .all(|&left| left <= Duration::from_millis(300))
    );
}

#[test]
fn without_a_tick_interval_the_wait_is_one_sleep() {
    let mut obs = Ticks::default();
    assert!(wait_before_round(
        &Interrupts::none(),
        &mut obs,
        Duration::from_millis(50),
        &plan()
    ));
    assert!(obs.ticks.is_empty());
    assert_eq!(obs.done, 1);
}

#[test]
fn a_signal_cuts_a_ticking_wait_short_and_clears_the_status() {
    let interrupts = Interrupts::none();
    let signaller = interrupts.clone();
    let thread = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        signaller.simulate(crate::signals::SIGINT);
    });
    let mut obs = Ticks {
        every: Some(Duration::from_millis(100)),
        ..Ticks::default()
    };
    let started = Instant::now();
    assert!(!wait_before_round(
        &interrupts,
        &mut obs,
        Duration::from_secs(30),
        &plan()
    ));
    thread.join().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(obs.done, 1);
}
