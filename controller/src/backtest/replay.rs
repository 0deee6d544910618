//! The pieces a replay puts around the real [`Driver`](crate::driver::Driver): a clock that
//! stops at the end of the window, a backend whose weights are the replayed run's own, and an
//! observer that keeps what the timeline and the summary need.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use cutover_core::GateStatus;
use cutover_core::run::{Event, EventKind, RunState};
use cutover_core::{Applied, BackendError, TrafficBackend, Weights};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::observe::Observer;

/// Virtual time over a past window: `sleep(d)` moves "now" forward at once, until the window
/// ends; a sleep past the end sets "now" to the end, says so ([`WindowClock::ended`]) and
/// never returns (the replay then drops the run).
#[derive(Debug)]
pub struct WindowClock {
    now: Mutex<SystemTime>,
    end: SystemTime,
    ended: watch::Sender<bool>,
}

impl WindowClock {
    /// A clock at `start` that stops at `end`.
    pub fn new(start: SystemTime, end: SystemTime) -> WindowClock {
        WindowClock {
            now: Mutex::new(start),
            end,
            ended: watch::channel(false).0,
        }
    }

    /// Resolves once a sleep reached the end of the window.
    pub async fn ended(&self) {
        let mut rx = self.ended.subscribe();
        // Bounded by the sender, which this clock owns: `wait_for` returns when it is true.
        let _ = rx.wait_for(|e| *e).await;
    }

    /// Moves "now" forward by `d` (between two runs), at most to the end.
    pub fn advance(&self, d: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now = (*now + d).min(self.end);
    }

    /// Whether the window is over.
    pub fn is_over(&self) -> bool {
        self.now() >= self.end
    }
}

#[async_trait]
impl Clock for WindowClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn sleep(&self, d: Duration) {
        let past_end = {
            let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
            if *now + d > self.end {
                *now = self.end;
                true
            } else {
                *now += d;
                false
            }
        };
        if past_end {
            self.ended.send_replace(true);
            std::future::pending::<()>().await;
        }
        tokio::task::yield_now().await;
    }
}

/// The replayed run's split, kept in memory and shared with the metric source (which, with
/// `--assume-plan`, re-weights the sites' counts to it). Nothing outside is written.
pub struct ReplayBackend {
    split: Arc<Mutex<Weights>>,
}

impl ReplayBackend {
    /// A backend over `split`, set to all traffic on DR (where every run starts).
    pub fn new(split: Arc<Mutex<Weights>>) -> ReplayBackend {
        *split.lock().unwrap_or_else(|p| p.into_inner()) = Weights::ALL_DR;
        ReplayBackend { split }
    }
}

#[async_trait]
impl TrafficBackend for ReplayBackend {
    fn describe(&self) -> String {
        "the replayed run's weights, in memory (nothing is written)".into()
    }

    async fn get_weights(&self) -> Result<Weights, BackendError> {
        Ok(*self.split.lock().unwrap_or_else(|p| p.into_inner()))
    }

    async fn set_weights(&self, w: Weights, _note: &str) -> Result<Applied, BackendError> {
        *self.split.lock().unwrap_or_else(|p| p.into_inner()) = w;
        Ok(Applied {
            weights: w,
            change: None,
        })
    }
}

/// The events of one replayed run, in order: all of them, or (for long windows) all but
/// the analyses whose every gate passed.
#[derive(Default)]
pub struct Recorder {
    events: Mutex<Vec<Event>>,
    /// Keep the analyses whose every gate passed too.
    passing: bool,
}

impl Recorder {
    /// A recorder that keeps the analyses whose every gate passed only with `passing`.
    pub fn new(passing: bool) -> Recorder {
        Recorder {
            events: Mutex::new(Vec::new()),
            passing,
        }
    }

    /// The events so far.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Observer for Recorder {
    fn event(&self, event: &Event, _state: &RunState) {
        if !self.passing
            && let EventKind::Analyzed { results, .. } = &event.kind
            && results.iter().all(|g| g.status == GateStatus::Pass)
        {
            return;
        }
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_window_clock_stops_at_the_end_and_says_so() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let c = Arc::new(WindowClock::new(t0, t0 + Duration::from_secs(60)));
        c.sleep(Duration::from_secs(30)).await;
        assert_eq!(c.now(), t0 + Duration::from_secs(30));
        let sleeper = c.clone();
        tokio::select! {
            _ = sleeper.sleep(Duration::from_secs(45)) => panic!("a sleep past the end returned"),
            _ = c.ended() => {}
        }
        assert!(c.is_over());
        assert_eq!(c.now(), t0 + Duration::from_secs(60));
    }
}
