//! Rate limits: on credential use (per login name and per client address), and per signed-in user
//! for what a domain must bound (uploads, cup-code attempts).
//!
//! All are GCRA buckets (governor): a burst of N attempts, refilled evenly over the window. The
//! buckets live in this process; with several instances each keeps its own, so the effective limit
//! is N per instance (the load balancer's stickiness or a shared store would tighten it).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use uuid::Uuid;

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
            retry_after_seconds: retry_after(wait),
        }
    }
}

/// A per-user limit: `per_minute` actions of one user a minute, then RATE_LIMITED saying `what`.
#[derive(Clone)]
pub struct PerUserLimit {
    per_user: Arc<DefaultKeyedRateLimiter<Uuid>>,
    what: &'static str,
    clock: DefaultClock,
}

impl PerUserLimit {
    /// `per_minute` actions per user; RATE_LIMITED with `what` past it.
    pub fn per_minute(per_minute: u32, what: &'static str) -> Self {
        Self {
            per_user: Arc::new(RateLimiter::keyed(quota(
                per_minute,
                Duration::from_secs(60),
            ))),
            what,
            clock: DefaultClock::default(),
        }
    }

    /// Counts one action of `user`; RATE_LIMITED once their bucket is empty.
    pub fn check(&self, user: Uuid) -> Result<()> {
        self.per_user
            .check_key(&user)
            .map_err(|not_until| Error::RateLimited {
                what: self.what,
                retry_after_seconds: retry_after(not_until.wait_time_from(self.clock.now())),
            })
    }

    /// Forgets buckets that are full again.
    pub fn shrink(&self) {
        self.per_user.retain_recent();
        self.per_user.shrink_to_fit();
    }
}

/// Whole seconds to wait, at least one.
fn retry_after(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
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

    #[test]
    fn a_user_is_limited_after_their_minute() {
        let limit = PerUserLimit::per_minute(2, "too many uploads");
        let (ann, bob) = (Uuid::now_v7(), Uuid::now_v7());
        limit.check(ann).unwrap();
        limit.check(ann).unwrap();
        assert!(matches!(
            limit.check(ann),
            Err(Error::RateLimited { what: "too many uploads", retry_after_seconds }) if (1..=30).contains(&retry_after_seconds)
        ));
        limit.check(bob).unwrap();
    }
}
