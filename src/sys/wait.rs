//! Waiting between two looks at something outside: the one deadline sleep
//! ([`sleep_until`], cut short by the shutdown latch when there is one) and
//! the one exponential backoff ([`Backoff`]).
//!
//! A sleep never runs past the caller's deadline ([`until`] caps the next
//! step at it), and one with a latch returns as soon as the latch is set,
//! so a shutdown request is never kept waiting by a backoff.

use std::time::{Duration, Instant};

use crate::sys::latch::Latch;

/// `now + step`, or `deadline` when that comes first.
pub(crate) fn until(step: Duration, deadline: Option<Instant>) -> Instant {
    let at = Instant::now() + step;
    deadline.map_or(at, |d| at.min(d))
}

/// Sleeps until `until`, or until `cancel` (when given) is set; true when
/// the latch cut it short.
pub(crate) fn sleep_until(until: Instant, cancel: Option<&Latch>) -> bool {
    match cancel {
        Some(latch) => latch.wait_until(until),
        None => {
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
            false
        }
    }
}

/// A delay that doubles at each step up to a cap, and starts over on
/// [`Backoff::reset`] (when what was waited for shows signs of life).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Backoff {
    first: Duration,
    max: Duration,
    delay: Duration,
}

impl Backoff {
    /// From `first`, doubling to `max`.
    pub(crate) fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            delay: first,
        }
    }

    /// The delay of the current step.
    pub(crate) fn delay(&self) -> Duration {
        self.delay
    }

    /// The next step: twice the delay, at most the cap.
    pub(crate) fn double(&mut self) {
        self.delay = (self.delay * 2).min(self.max);
    }

    /// Back to the first delay.
    pub(crate) fn reset(&mut self) {
        self.delay = self.first;
    }
}
