//! A cap on how often a link logs input errors, so a peer sending garbage cannot flood the logs.
//! Metrics still count every error; the log says how many lines it left out.

use std::time::{Duration, Instant};

/// Allows `per_window` log lines per `window`, then counts what it suppresses.
#[derive(Debug)]
pub struct LogBudget {
    per_window: u32,
    window: Duration,
    start: Option<Instant>,
    used: u32,
    suppressed: u64,
}

impl LogBudget {
    /// A budget of `per_window` lines per `window`.
    pub fn new(per_window: u32, window: Duration) -> LogBudget {
        LogBudget {
            per_window,
            window,
            start: None,
            used: 0,
            suppressed: 0,
        }
    }

    /// `Some(n)` when a line may be logged now, `n` being how many were suppressed since the
    /// last logged one; `None` when this one is suppressed.
    pub fn take(&mut self, now: Instant) -> Option<u64> {
        match self.start {
            Some(s) if now.saturating_duration_since(s) < self.window => {}
            _ => {
                self.start = Some(now);
                self.used = 0;
            }
        }
        if self.used < self.per_window {
            self.used += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

impl Default for LogBudget {
    /// Ten lines per ten seconds.
    fn default() -> Self {
        LogBudget::new(10, Duration::from_secs(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_window_and_reports_what_it_left_out() {
        let t0 = Instant::now();
        let mut b = LogBudget::new(2, Duration::from_secs(10));
        assert_eq!(b.take(t0), Some(0));
        assert_eq!(b.take(t0), Some(0));
        assert_eq!(b.take(t0), None);
        assert_eq!(b.take(t0 + Duration::from_secs(1)), None);
        assert_eq!(b.take(t0 + Duration::from_secs(10)), Some(2));
        assert_eq!(b.take(t0 + Duration::from_secs(10)), Some(0));
    }
}
