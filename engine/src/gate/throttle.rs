//! Slowing failed sign-ins. Each failure is answered only after a fixed delay (so guessing
//! is slow even from one connection), and a user name with too many recent failures is
//! refused outright until the window passes, whatever token comes with it: the refusal is
//! audited like any other, so a steward sees the attempts.
//!
//! The table of recent failures is bounded: when it is full, the name whose failures are
//! oldest is forgotten first, so a flood of made-up names cannot grow memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{EngineError, Rule};
use crate::sync;

/// Failures within [`WINDOW`] after which a user name is refused.
pub const MAX_FAILURES: usize = 5;
/// How long failures count against a user name.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// How long each failed sign-in waits before it is answered.
pub const FAILURE_DELAY: Duration = Duration::from_millis(500);
/// User names whose failures are remembered at once.
const REMEMBERED: usize = 10_000;

#[derive(Debug, Default)]
pub(crate) struct Throttle {
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

impl Throttle {
    /// Refuse `user` if they have failed too often lately.
    pub(crate) fn check(&self, user: &str, now: Instant) -> Result<(), EngineError> {
        let mut failures = sync::lock(&self.failures);
        let Some(times) = failures.get_mut(user) else {
            return Ok(());
        };
        times.retain(|t| now.duration_since(*t) < WINDOW);
        if times.len() < MAX_FAILURES {
            return Ok(());
        }
        let wait = times
            .first()
            .map(|first| WINDOW.saturating_sub(now.duration_since(*first)))
            .unwrap_or_default();
        Err(EngineError::refused(
            Rule::SignInThrottle,
            format!(
                "{MAX_FAILURES} failed sign-ins for this user in {} minutes; try again in {} s",
                WINDOW.as_secs() / 60,
                wait.as_secs().max(1)
            ),
        ))
    }

    /// Count a failed sign-in for `user`.
    pub(crate) fn failed(&self, user: &str, now: Instant) {
        let mut failures = sync::lock(&self.failures);
        if !failures.contains_key(user) && failures.len() >= REMEMBERED {
            failures.retain(|_, times| times.last().is_some_and(|t| now.duration_since(*t) < WINDOW));
            if failures.len() >= REMEMBERED {
                let oldest = failures
                    .iter()
                    .min_by_key(|(_, times)| times.last().copied())
                    .map(|(name, _)| name.clone());
                if let Some(oldest) = oldest {
                    failures.remove(&oldest);
                }
            }
        }
        let times = failures.entry(user.to_string()).or_default();
        times.push(now);
        // Only the last MAX_FAILURES matter to `check`.
        if times.len() > MAX_FAILURES {
            times.remove(0);
        }
    }

    /// A successful sign-in clears the name's failures.
    pub(crate) fn succeeded(&self, user: &str) {
        sync::lock(&self.failures).remove(user);
    }

    #[cfg(test)]
    fn remembered(&self) -> usize {
        sync::lock(&self.failures).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_refused_after_too_many_failures_until_the_window_passes() {
        let throttle = Throttle::default();
        let start = Instant::now();
        for i in 0..MAX_FAILURES {
            assert!(throttle.check("cam", start).is_ok(), "attempt {i}");
            throttle.failed("cam", start);
        }
        let refused = throttle.check("cam", start).expect_err("throttled");
        assert_eq!(refused.rule(), Some(Rule::SignInThrottle));
        assert!(throttle.check("ann", start).is_ok(), "other names are not affected");
        assert!(throttle.check("cam", start + WINDOW).is_ok(), "the window passes");
    }

    #[test]
    fn success_clears_and_the_table_stays_bounded() {
        let throttle = Throttle::default();
        let now = Instant::now();
        throttle.failed("cam", now);
        throttle.succeeded("cam");
        assert_eq!(throttle.remembered(), 0);
        for i in 0..REMEMBERED + 50 {
            throttle.failed(&format!("made-up-{i}"), now);
        }
        assert_eq!(throttle.remembered(), REMEMBERED);
    }
}
