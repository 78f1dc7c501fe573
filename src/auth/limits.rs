//! Rate limits on credential use: per login name and per client address.
//!
//! Both are GCRA buckets (governor): a burst of N attempts, refilled evenly over the window. The
//! buckets live in this process; with several instances each keeps its own, so the effective limit
//! is N per instance (the load balancer's stickiness or a shared store would tighten it).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::{Error, Result};

/// The login and address buckets.
#[derive(Clone)]
pub struct AuthLimits {
    per_login: Arc<DefaultKeyedRateLimiter<String>>,
    per_address: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    clock: DefaultClock,
}

impl AuthLimits {
    /// `per_login` and `per_address` attempts per `window`.
    pub fn new(per_login: u32, per_address: u32, window: Duration) -> Self {
        Self {
            per_login: Arc::new(RateLimiter::keyed(quota(per_login, window))),
            per_address: Arc::new(RateLimiter::keyed(quota(per_address, window))),
            clock: DefaultClock::default(),
        }
    }

    /// Counts one attempt from `address`; RATE_LIMITED once its bucket is empty.
    pub fn check_address(&self, address: IpAddr) -> Result<()> {
        self.per_address
            .check_key(&address)
            .map_err(|not_until| self.limited(not_until.wait_time_from(self.clock.now())))
    }

    /// Counts one attempt on the login name `login` (already canonical).
    pub fn check_login(&self, login: &str) -> Result<()> {
        self.per_login
            .check_key(&login.to_owned())
            .map_err(|not_until| self.limited(not_until.wait_time_from(self.clock.now())))
    }

    /// Forgets buckets that are full again, so memory stays bounded; call it now and then.
    pub fn shrink(&self) {
        self.per_login.retain_recent();
        self.per_address.retain_recent();
        self.per_login.shrink_to_fit();
        self.per_address.shrink_to_fit();
    }

    fn limited(&self, wait: Duration) -> Error {
        Error::RateLimited {
            what: "too many attempts",
            retry_after_seconds: wait.as_secs_f64().ceil().max(1.0) as u64,
        }
    }
}

fn quota(attempts: u32, window: Duration) -> Quota {
    let burst = NonZeroU32::new(attempts.max(1)).unwrap_or(NonZeroU32::MIN);
    let period = (window / burst.get()).max(Duration::from_millis(1));
    Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(burst))
        .allow_burst(burst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_is_limited_after_its_burst() {
        let limits = AuthLimits::new(3, 100, Duration::from_secs(60));
        for _ in 0..3 {
            limits.check_login("alice").unwrap();
        }
        match limits.check_login("alice") {
            Err(Error::RateLimited {
                retry_after_seconds,
                ..
            }) => {
                assert!((1..=20).contains(&retry_after_seconds));
            }
            other => panic!("expected RATE_LIMITED, got {other:?}"),
        }
        limits.check_login("bob").unwrap();
    }
}
