//! Time for the driver: the real clock, or a simulated one for the demo and benchmarks.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

/// Where the driver gets "now" and how it waits.
#[async_trait]
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> SystemTime;
    /// Waits `d`.
    async fn sleep(&self, d: Duration);
}

/// Wall-clock time and real sleeps.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealClock;

#[async_trait]
impl Clock for RealClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
    async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await
    }
}

/// Virtual time: `sleep(d)` moves "now" forward by `d` and waits `d / speed` of real time
/// (no real wait when `speed` is infinite), so a 15-minute cutover can play in 15 seconds.
#[derive(Debug)]
pub struct SimClock {
    now: Mutex<SystemTime>,
    speed: f64,
}

impl SimClock {
    /// A clock starting at `start`, running `speed` times faster than real time.
    pub fn new(start: SystemTime, speed: f64) -> SimClock {
        SimClock {
            now: Mutex::new(start),
            speed,
        }
    }
}

#[async_trait]
impl Clock for SimClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
    async fn sleep(&self, d: Duration) {
        if self.speed.is_finite() && self.speed > 0.0 {
            tokio::time::sleep(d.div_f64(self.speed)).await;
        } else {
            tokio::task::yield_now().await;
        }
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now += d;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sim_clock_moves_only_when_sleeping() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let c = SimClock::new(t0, f64::INFINITY);
        assert_eq!(c.now(), t0);
        c.sleep(Duration::from_secs(3600)).await;
        assert_eq!(c.now(), t0 + Duration::from_secs(3600));
    }
}
