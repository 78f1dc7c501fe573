//! Rate limits: on credential use (per login name and per client address), and per signed-in user
//! for what a domain must bound (uploads, cup-code attempts).
//!
//! All are GCRA buckets: a burst of N attempts, refilled evenly over the window. Where they live is
//! the [`LimitStore`]: this process's memory (governor) by default, or Redis with
//! `RALLY_REDIS_URL`, where every check is one Lua script run on Redis's clock (no read-modify-write
//! from Rust), so a limit holds across every instance behind a balancer. When Redis does not answer
//! within [`SHARED_TIMEOUT`], a check falls back to this instance's own bucket (logged once per
//! outage, counted in `rally_limiter_fallbacks_total`) and Redis is asked again after
//! [`SHARED_REST`]: requests never fail because the limiter's store is down.

use std::fmt::Display;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use uuid::Uuid;

use super::TokenKeys;
use crate::error::{Error, Result};

/// Longest wait for Redis to settle a check before this instance decides alone.
pub const SHARED_TIMEOUT: Duration = Duration::from_millis(250);
/// How long checks stay local after Redis failed one.
pub const SHARED_REST: Duration = Duration::from_secs(2);

/// GCRA on Redis's clock. `KEYS[1]` holds the bucket's theoretical arrival time (ms); `ARGV[1]` is
/// the refill period (ms) and `ARGV[2]` the burst. Returns 0 when the attempt counts, else the
/// milliseconds until one would.
const GCRA: &str = r"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local period = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local next_tat = tat + period
local wait = next_tat - burst * period - now
if wait > 0 then return wait end
redis.call('SET', KEYS[1], next_tat, 'PX', next_tat - now)
return 0
";

/// Where the buckets are kept: here, or in Redis shared by every instance.
#[derive(Clone, Default)]
pub struct LimitStore(Option<Arc<Shared>>);

struct Shared {
    redis: ConnectionManager,
    gcra: Script,
    prefix: String,
    /// Names keys by an HMAC of the server's secret: login names and addresses are not readable
    /// (nor guessable by hashing candidates) in Redis.
    keys: TokenKeys,
    /// Unix milliseconds before which Redis is not asked (it failed a check).
    resting_until: AtomicU64,
    /// Whether the last check fell back (so an outage is logged once).
    degraded: AtomicBool,
}

impl LimitStore {
    /// Buckets in this process only.
    pub fn local() -> Self {
        Self(None)
    }

    /// Buckets in Redis at `url`, under `{prefix}:limit:`, named through `keys`; connects on first
    /// use.
    pub fn redis(url: &str, prefix: &str, keys: TokenKeys) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)
            .map_err(|e| anyhow::anyhow!("RALLY_REDIS_URL is not a Redis URL: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(SHARED_TIMEOUT))
            .set_response_timeout(Some(SHARED_TIMEOUT))
            .set_number_of_retries(1);
        let redis = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| anyhow::anyhow!("cannot prepare the Redis connection for limits: {e}"))?;
        Ok(Self(Some(Arc::new(Shared {
            redis,
            gcra: Script::new(GCRA),
            prefix: format!("{prefix}:limit:"),
            keys,
            resting_until: AtomicU64::new(0),
            degraded: AtomicBool::new(false),
        }))))
    }

    /// `local`, `redis`, or `local (redis unreachable)` while checks fall back.
    pub fn status(&self) -> &'static str {
        match &self.0 {
            None => "local",
            Some(shared) if shared.degraded.load(Ordering::Relaxed) => "local (redis unreachable)",
            Some(_) => "redis",
        }
    }
}

impl Shared {
    /// Redis's verdict on one attempt in `bucket`, or `None` when Redis cannot give one now.
    async fn check(
        &self,
        bucket: &str,
        key: &str,
        burst: u32,
        period: Duration,
    ) -> Option<Verdict> {
        let now = unix_millis();
        if now < self.resting_until.load(Ordering::Relaxed) {
            return None;
        }
        let name = self
            .keys
            .derive("rate limit", &format!("{bucket}\0{key}"))
            .ok()?;
        let redis_key = format!("{}{bucket}:{name}", self.prefix);
        let period_ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut redis = self.redis.clone();
        let mut invocation = self.gcra.key(redis_key);
        invocation.arg(period_ms).arg(burst);
        // A connection dropped since the last check fails the first call (the script did not run)
        // and is re-established by it: one more try, within the same deadline.
        let call = async {
            match invocation.invoke_async::<u64>(&mut redis).await {
                Err(err) if err.is_connection_dropped() => {
                    invocation.invoke_async::<u64>(&mut redis).await
                }
                answer => answer,
            }
        };
        let failure = match tokio::time::timeout(SHARED_TIMEOUT, call).await {
            Ok(Ok(wait_ms)) => {
                if self.degraded.swap(false, Ordering::Relaxed) {
                    tracing::info!("Redis answers again: rate limits are shared again");
                }
                return Some(if wait_ms == 0 {
                    Ok(())
                } else {
                    Err(Duration::from_millis(wait_ms))
                });
            }
            Ok(Err(err)) => err.to_string(),
            Err(_) => format!("no answer within {SHARED_TIMEOUT:?}"),
        };
        let rest = u64::try_from(SHARED_REST.as_millis()).unwrap_or(u64::MAX);
        self.resting_until
            .store(now.saturating_add(rest), Ordering::Relaxed);
        if !self.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %failure, "Redis unreachable: rate limits are per instance until it answers");
        }
        None
    }
}

/// An attempt counts (`Ok`), or is refused until the wait has passed.
type Verdict = std::result::Result<(), Duration>;

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// One keyed limit: `burst` attempts, one back every `period`, in the store or (as a fallback, or
/// without a shared store) in this process.
struct Bucket<K: Hash + Eq + Clone> {
    name: &'static str,
    burst: u32,
    period: Duration,
    local: Arc<DefaultKeyedRateLimiter<K>>,
    store: LimitStore,
}

impl<K: Hash + Eq + Clone + Display> Bucket<K> {
    fn new(name: &'static str, attempts: u32, window: Duration, store: &LimitStore) -> Self {
        let burst = NonZeroU32::new(attempts.max(1)).unwrap_or(NonZeroU32::MIN);
        let period = (window / burst.get()).max(Duration::from_millis(1));
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(burst))
            .allow_burst(burst);
        Self {
            name,
            burst: burst.get(),
            period,
            local: Arc::new(RateLimiter::keyed(quota)),
            store: store.clone(),
        }
    }

    async fn check(&self, key: &K) -> Verdict {
        if let Some(shared) = &self.store.0 {
            if let Some(verdict) = shared
                .check(self.name, &key.to_string(), self.burst, self.period)
                .await
            {
                return verdict;
            }
            metrics::counter!("rally_limiter_fallbacks_total", "limit" => self.name).increment(1);
        }
        let clock = DefaultClock::default();
        self.local
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(clock.now()))
    }

    fn shrink(&self) {
        self.local.retain_recent();
        self.local.shrink_to_fit();
    }
}

impl<K: Hash + Eq + Clone> Clone for Bucket<K> {
    fn clone(&self) -> Self {
        Self {
            name: self.name,
            burst: self.burst,
            period: self.period,
            local: self.local.clone(),
            store: self.store.clone(),
        }
    }
}

/// The network one client holds, which its per-address bucket counts: an IPv4 address itself
/// (an IPv4-mapped IPv6 one too), and an IPv6 address's /64, as one home or phone connection is
/// given a whole /64 and could try from a new address of it each time.
pub fn network(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

/// The login and address buckets.
#[derive(Clone)]
pub struct AuthLimits {
    per_login: Bucket<String>,
    per_address: Bucket<IpAddr>,
}

impl AuthLimits {
    /// `per_login` and `per_address` attempts per `window`, kept in `store`.
    pub fn new(per_login: u32, per_address: u32, window: Duration, store: &LimitStore) -> Self {
        Self {
            per_login: Bucket::new("login", per_login, window, store),
            per_address: Bucket::new("address", per_address, window, store),
        }
    }

    /// Counts one attempt from `address`'s network (`network`: an IPv6 address's /64);
    /// RATE_LIMITED once its bucket is empty.
    pub async fn check_address(&self, address: IpAddr) -> Result<()> {
        self.per_address
            .check(&network(address))
            .await
            .map_err(limited)
    }

    /// Counts one attempt on the login name `login` (already canonical).
    pub async fn check_login(&self, login: &str) -> Result<()> {
        self.per_login
            .check(&login.to_owned())
            .await
            .map_err(limited)
    }

    /// Where the buckets are kept, for `/readyz`.
    pub fn store_status(&self) -> &'static str {
        self.per_login.store.status()
    }

    /// Forgets local buckets that are full again, so memory stays bounded; call it now and then.
    pub fn shrink(&self) {
        self.per_login.shrink();
        self.per_address.shrink();
    }
}

fn limited(wait: Duration) -> Error {
    Error::RateLimited {
        what: "too many attempts",
        retry_after_seconds: retry_after(wait),
    }
}

/// A per-user limit: `per_minute` actions of one user a minute, then RATE_LIMITED saying `what`.
#[derive(Clone)]
pub struct PerUserLimit {
    per_user: Bucket<Uuid>,
    what: &'static str,
}

impl PerUserLimit {
    /// `per_minute` actions per user, counted in `store` under `name`; RATE_LIMITED with `what`
    /// past it.
    pub fn per_minute(
        name: &'static str,
        per_minute: u32,
        what: &'static str,
        store: &LimitStore,
    ) -> Self {
        Self {
            per_user: Bucket::new(name, per_minute, Duration::from_secs(60), store),
            what,
        }
    }

    /// Counts one action of `user`; RATE_LIMITED once their bucket is empty.
    pub async fn check(&self, user: Uuid) -> Result<()> {
        self.per_user
            .check(&user)
            .await
            .map_err(|wait| Error::RateLimited {
                what: self.what,
                retry_after_seconds: retry_after(wait),
            })
    }

    /// Forgets local buckets that are full again.
    pub fn shrink(&self) {
        self.per_user.shrink();
    }
}

/// Whole seconds to wait, at least one.
fn retry_after(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_login_is_limited_after_its_burst() {
        let limits = AuthLimits::new(3, 100, Duration::from_secs(60), &LimitStore::local());
        for _ in 0..3 {
            limits.check_login("alice").await.unwrap();
        }
        match limits.check_login("alice").await {
            Err(Error::RateLimited {
                retry_after_seconds,
                ..
            }) => {
                assert!((1..=20).contains(&retry_after_seconds));
            }
            other => panic!("expected RATE_LIMITED, got {other:?}"),
        }
        limits.check_login("bob").await.unwrap();
    }

    #[tokio::test]
    async fn addresses_of_one_ipv6_network_share_a_bucket() {
        let limits = AuthLimits::new(100, 2, Duration::from_secs(60), &LimitStore::local());
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        limits.check_address(ip("2001:db8:1:2::1")).await.unwrap();
        limits
            .check_address(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
            .await
            .unwrap();
        assert!(matches!(
            limits.check_address(ip("2001:db8:1:2:abcd::9")).await,
            Err(Error::RateLimited { .. })
        ));
        limits.check_address(ip("2001:db8:1:3::1")).await.unwrap();
        assert_eq!(network(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(network(ip("10.1.2.3")), ip("10.1.2.3"));
    }

    #[tokio::test]
    async fn a_user_is_limited_after_their_minute() {
        let limit =
            PerUserLimit::per_minute("uploads", 2, "too many uploads", &LimitStore::local());
        let (ann, bob) = (Uuid::now_v7(), Uuid::now_v7());
        limit.check(ann).await.unwrap();
        limit.check(ann).await.unwrap();
        assert!(matches!(
            limit.check(ann).await,
            Err(Error::RateLimited { what: "too many uploads", retry_after_seconds }) if (1..=30).contains(&retry_after_seconds)
        ));
        limit.check(bob).await.unwrap();
    }
}
