//! Log lines that a flood of events cannot multiply: the first in each
//! period is written, the rest counted and reported with the next line.
//!
//! Used where one tenant or one upstream can cause an event per request
//! (refused connections, an upstream that misreports its usage): the
//! operator sees that it happens and how often, without a line per event.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A throttle for one kind of log line.
#[derive(Debug)]
pub struct LogThrottle {
    period: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    logged_at: Option<Instant>,
    held_back: u64,
}

impl LogThrottle {
    /// A throttle writing at most one line per `period`.
    pub const fn new(period: Duration) -> Self {
        LogThrottle {
            period,
            state: Mutex::new(State {
                logged_at: None,
                held_back: 0,
            }),
        }
    }

    /// An event happened: `Some(n)` when its line may be written now (`n`
    /// events were held back since the last line), `None` when it is only
    /// counted.
    pub fn admit(&self) -> Option<u64> {
        self.take(true)
    }

    /// For a periodic summary: `Some(n)` when `n > 0` events were held back
    /// and a period has passed since the last line (which this counts as
    /// written), else `None`.
    pub fn held_back(&self) -> Option<u64> {
        self.take(false)
    }

    fn take(&self, event: bool) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let recent = state
            .logged_at
            .is_some_and(|at| now.duration_since(at) < self.period);
        if recent || (!event && state.held_back == 0) {
            if event {
                state.held_back += 1;
            }
            return None;
        }
        state.logged_at = Some(now);
        Some(std::mem::take(&mut state.held_back))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_and_the_rest_counted() {
        let throttle = LogThrottle::new(Duration::from_millis(200));
        assert_eq!(throttle.admit(), Some(0));
        assert_eq!(throttle.admit(), None);
        assert_eq!(throttle.admit(), None);
        assert_eq!(throttle.held_back(), None, "within the period");
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(throttle.held_back(), Some(2));
        assert_eq!(throttle.held_back(), None, "nothing held back since");
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(throttle.admit(), Some(0));
    }
}
