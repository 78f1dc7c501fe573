//! Every setting of Rally, read from flags and `RALLY_*` environment variables, with embedded defaults.
//!
//! With nothing set, Rally keeps everything under `./rally-data`: a SQLite file, the media folder and a
//! JWT secret generated on first start. `RALLY_ENV=production` turns the defaults that are only safe on a
//! laptop into start-up errors (see [`Config::check`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use clap::{Args, ValueEnum};
use rand::RngCore;

/// Where Rally runs: development is forgiving, production is strict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Environment {
    /// Local defaults: generated secret, introspection on, any CORS origin.
    Development,
    /// Explicit secret (>= 32 bytes), introspection off unless asked, CORS origins listed.
    Production,
}

/// Format of log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Every setting; each flag is also a `RALLY_*` environment variable.
#[derive(Clone, Debug, Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(
        long,
        env = "RALLY_BIND",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub bind: SocketAddr,

    /// Where the embedded defaults keep their files (SQLite database, media, JWT secret).
    #[arg(
        long,
        env = "RALLY_DATA_DIR",
        default_value = "./rally-data",
        global = true
    )]
    pub data_dir: PathBuf,

    /// `sqlite://…` or `postgres://…`; default: `sqlite://<data dir>/rally.db?mode=rwc`.
    #[arg(
        long,
        env = "RALLY_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    pub database_url: Option<String>,

    /// Largest number of pooled database connections.
    #[arg(
        long,
        env = "RALLY_DATABASE_MAX_CONNECTIONS",
        default_value_t = 16,
        global = true
    )]
    pub database_max_connections: u32,

    /// `redis://…` to share live updates and rate limits between instances; unset: the in-process
    /// broker and per-instance limits.
    #[arg(long, env = "RALLY_REDIS_URL", global = true, hide_env_values = true)]
    pub redis_url: Option<String>,

    /// The namespace of Rally's channels and keys in Redis, so deployments (or tests) can share one.
    #[arg(
        long,
        env = "RALLY_REDIS_PREFIX",
        default_value = "rally",
        global = true
    )]
    pub redis_prefix: String,

    /// HS256 secret for access tokens (>= 32 bytes); default: generated once into the data dir.
    #[arg(long, env = "RALLY_JWT_SECRET", global = true, hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Where media objects live: `file:///path`, `s3://bucket/prefix` (any S3-compatible service,
    /// configured by the standard `AWS_*` variables), `gs://bucket/prefix` or `az://container/prefix`;
    /// default: `<data dir>/media`.
    #[arg(long, env = "RALLY_MEDIA_URL", global = true)]
    pub media_url: Option<String>,

    /// Local media folder (the same as `RALLY_MEDIA_URL=file:///path`).
    #[arg(long, env = "RALLY_MEDIA_DIR", global = true)]
    pub media_dir: Option<PathBuf>,

    /// `development` or `production` (strict checks).
    #[arg(
        long = "env",
        env = "RALLY_ENV",
        value_enum,
        default_value = "development",
        global = true
    )]
    pub environment: Environment,

    /// Tracing filter, e.g. `info` or `rally=debug,tower_http=info`.
    #[arg(long, env = "RALLY_LOG", default_value = "info", global = true)]
    pub log: String,

    /// `text` or `json` log lines.
    #[arg(
        long,
        env = "RALLY_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,

    /// Public base URL used in media links (e.g. `https://api.example.com`); default: relative links.
    #[arg(long, env = "RALLY_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,

    /// Allowed CORS origins, comma separated; empty allows any origin (development only).
    #[arg(long, env = "RALLY_CORS_ORIGINS", value_delimiter = ',', global = true)]
    pub cors_origins: Vec<String>,

    /// Serve schema introspection; default: on in development, off in production.
    #[arg(long, env = "RALLY_INTROSPECTION", global = true)]
    pub introspection: Option<bool>,

    /// Trust `X-Forwarded-For` for the client address (only behind a proxy that sets it).
    #[arg(
        long,
        env = "RALLY_TRUST_PROXY_HEADERS",
        default_value_t = false,
        global = true
    )]
    pub trust_proxy_headers: bool,

    /// Handles that hold the ADMIN role, comma separated: granted at sign-up and at login, and
    /// applied both ways at start-up (admins no longer listed lose the role).
    #[arg(long, env = "RALLY_ADMINS", value_delimiter = ',', global = true)]
    pub admins: Vec<String>,

    /// Lifetime of access tokens, in seconds.
    #[arg(
        long,
        env = "RALLY_ACCESS_TOKEN_TTL_SECONDS",
        default_value_t = 900,
        global = true
    )]
    pub access_token_ttl_seconds: u64,

    /// Lifetime of refresh tokens, in days.
    #[arg(
        long,
        env = "RALLY_REFRESH_TOKEN_TTL_DAYS",
        default_value_t = 30,
        global = true
    )]
    pub refresh_token_ttl_days: u64,

    /// Longest a session lives, in days, however often its refresh token is exchanged: a refresh
    /// past it is refused and the user signs in again (a refresh token taken from a device its
    /// owner no longer uses cannot keep a session alive for ever).
    #[arg(
        long,
        env = "RALLY_SESSION_MAX_DAYS",
        default_value_t = 90,
        global = true
    )]
    pub session_max_days: u64,

    /// argon2id memory cost in KiB (OWASP: 19456).
    #[arg(
        long,
        env = "RALLY_ARGON2_MEMORY_KIB",
        default_value_t = 19_456,
        global = true
    )]
    pub argon2_memory_kib: u32,

    /// argon2id iterations (OWASP: 2).
    #[arg(
        long,
        env = "RALLY_ARGON2_ITERATIONS",
        default_value_t = 2,
        global = true
    )]
    pub argon2_iterations: u32,

    /// Most password hashes computed at once (0: half the cores, at least one). Hashing is
    /// CPU-bound; a bound keeps a login rush from starving every other request.
    #[arg(
        long,
        env = "RALLY_ARGON2_CONCURRENCY",
        default_value_t = 0,
        global = true
    )]
    pub argon2_concurrency: usize,

    /// Failed-or-not login attempts allowed per login name per window.
    #[arg(
        long,
        env = "RALLY_AUTH_ATTEMPTS_PER_LOGIN",
        default_value_t = 10,
        global = true
    )]
    pub auth_attempts_per_login: u32,

    /// Sign-up and login attempts allowed per client address per window.
    #[arg(
        long,
        env = "RALLY_AUTH_ATTEMPTS_PER_ADDRESS",
        default_value_t = 30,
        global = true
    )]
    pub auth_attempts_per_address: u32,

    /// The window of the two limits above, in seconds; attempts come back evenly over it.
    #[arg(
        long,
        env = "RALLY_AUTH_WINDOW_SECONDS",
        default_value_t = 300,
        global = true
    )]
    pub auth_window_seconds: u64,

    /// Largest request body, in bytes, for JSON and GET requests.
    #[arg(long, env = "RALLY_MAX_BODY_BYTES", default_value_t = 1 << 20, global = true)]
    pub max_body_bytes: usize,

    /// Largest uploaded file, in bytes (multipart requests may be this much larger than the body limit).
    #[arg(long, env = "RALLY_MAX_UPLOAD_BYTES", default_value_t = 10 << 20, global = true)]
    pub max_upload_bytes: usize,

    /// Largest uploaded image, in pixels (width x height).
    #[arg(
        long,
        env = "RALLY_MAX_IMAGE_PIXELS",
        default_value_t = 40_000_000,
        global = true
    )]
    pub max_image_pixels: u64,

    /// Deepest query nesting accepted.
    #[arg(
        long,
        env = "RALLY_QUERY_MAX_DEPTH",
        default_value_t = 12,
        global = true
    )]
    pub query_max_depth: usize,

    /// Highest query complexity accepted (a list of `first: n` costs n times its fields).
    #[arg(
        long,
        env = "RALLY_QUERY_MAX_COMPLEXITY",
        default_value_t = 5_000,
        global = true
    )]
    pub query_max_complexity: usize,

    /// Most aliases in one document.
    #[arg(
        long,
        env = "RALLY_QUERY_MAX_ALIASES",
        default_value_t = 50,
        global = true
    )]
    pub query_max_aliases: usize,

    /// Seconds a websocket client has to send `connection_init` (then 4408).
    #[arg(
        long,
        env = "RALLY_WS_INIT_TIMEOUT_SECONDS",
        default_value_t = 10,
        global = true
    )]
    pub ws_init_timeout_seconds: u64,

    /// Seconds between server keep-alive pings on websockets.
    #[arg(
        long,
        env = "RALLY_WS_KEEPALIVE_SECONDS",
        default_value_t = 15,
        global = true
    )]
    pub ws_keepalive_seconds: u64,

    /// Keep-alive periods a websocket client may stay silent (nothing sent, no ping answered)
    /// before it is taken for gone and closed (1001); 0 keeps silent clients (behind a proxy that
    /// swallows websocket pings, a legacy-protocol client that only listens sends nothing).
    #[arg(
        long,
        env = "RALLY_WS_SILENT_PERIODS",
        default_value_t = 2,
        global = true
    )]
    pub ws_silent_periods: u32,

    /// Most running operations on one websocket: subscriptions, and queries or mutations until
    /// they finish (even once the client completed them).
    #[arg(
        long,
        env = "RALLY_WS_MAX_SUBSCRIPTIONS",
        default_value_t = 50,
        global = true
    )]
    pub ws_max_subscriptions: usize,

    /// Most mutations running at once, over HTTP and websockets. A mutation runs to its end even
    /// when its request times out or its client leaves, so without a bound an overloaded server
    /// would pile them up as clients retry; past it a mutation is refused at once (`RATE_LIMITED`,
    /// 429 over HTTP).
    #[arg(
        long,
        env = "RALLY_MAX_RUNNING_MUTATIONS",
        default_value_t = 1024,
        global = true
    )]
    pub max_running_mutations: usize,

    /// Estimated blood alcohol (percent) above which staff see `bacWarning` on a cup session.
    #[arg(
        long,
        env = "RALLY_BAC_WARNING_THRESHOLD",
        default_value_t = 0.08,
        global = true
    )]
    pub bac_warning_threshold: f64,

    /// At most one leaderboard computation per event per this many milliseconds (a change after a
    /// quiet spell is computed at once; a burst waits for the window's end and is computed once).
    #[arg(
        long,
        env = "RALLY_LEADERBOARD_WINDOW_MS",
        default_value_t = 75,
        global = true
    )]
    pub leaderboard_window_ms: u64,

    /// Most distinct operation names labelled in `/metrics`; later ones are counted as `other`, so
    /// clients cannot grow the metrics without bound.
    #[arg(
        long,
        env = "RALLY_METRICS_MAX_OPERATIONS",
        default_value_t = 100,
        global = true
    )]
    pub metrics_max_operations: usize,

    /// Serve `/metrics` on this address instead of the API's (unset: on the API's).
    #[arg(long, env = "RALLY_METRICS_BIND", global = true)]
    pub metrics_bind: Option<SocketAddr>,

    /// Picture uploads (avatars, event pictures, blur photos) per user per minute.
    #[arg(
        long,
        env = "RALLY_UPLOADS_PER_MINUTE",
        default_value_t = 20,
        global = true
    )]
    pub uploads_per_minute: u32,

    /// `refreshSession` calls per user per minute: each stores a token row, kept until it
    /// expires, so a client looping on refreshes cannot grow the table without bound.
    #[arg(
        long,
        env = "RALLY_REFRESHES_PER_MINUTE",
        default_value_t = 30,
        global = true
    )]
    pub refreshes_per_minute: u32,

    /// Seconds a cup code (`requestCupCode`) stays valid.
    #[arg(
        long,
        env = "RALLY_CUP_CODE_TTL_SECONDS",
        default_value_t = 300,
        global = true
    )]
    pub cup_code_ttl_seconds: u64,

    /// `openCupSession` attempts per staff member per minute, so codes cannot be found by trying.
    #[arg(
        long,
        env = "RALLY_CUP_CODE_ATTEMPTS_PER_MINUTE",
        default_value_t = 30,
        global = true
    )]
    pub cup_code_attempts_per_minute: u32,

    /// At most one accepted location update per user per this many milliseconds (proximity).
    #[arg(
        long,
        env = "RALLY_LOCATION_MIN_INTERVAL_MS",
        default_value_t = 1000,
        global = true
    )]
    pub location_min_interval_ms: u64,

    /// Seconds after which a watched person's last position counts as stale (proximity).
    #[arg(
        long,
        env = "RALLY_LOCATION_STALE_SECONDS",
        default_value_t = 300,
        global = true
    )]
    pub location_stale_seconds: u64,

    /// Hours after its last update a position is forgotten (proximity): the hourly sweep deletes
    /// older positions, and the alert states of activities that ended that long ago. At least the
    /// stale threshold, so a position is stale before it goes.
    #[arg(
        long,
        env = "RALLY_LOCATION_RETENTION_HOURS",
        default_value_t = 24,
        global = true
    )]
    pub location_retention_hours: u64,

    /// IANA time zone of scheduled jobs (the event finisher), e.g. `Europe/Paris`.
    #[arg(long, env = "RALLY_TIME_ZONE", default_value = "UTC", value_parser = parse_time_zone, global = true)]
    pub time_zone: chrono_tz::Tz,

    /// Local time (`HH:MM` or `HH:MM:SS`, in `RALLY_TIME_ZONE`) at which, every day, LIVE events that
    /// started before it are finished.
    #[arg(long, env = "RALLY_EVENT_FINISH_TIME", default_value = "22:00", value_parser = parse_local_time, global = true)]
    pub event_finish_time: chrono::NaiveTime,

    /// H3 resolution of territory cells (0 to 15; 10 is about 66 m across).
    #[arg(long, env = "RALLY_H3_RESOLUTION", default_value_t = 10, global = true)]
    pub h3_resolution: u8,

    /// Sustained speed above which a run's track is rejected, km/h.
    #[arg(
        long,
        env = "RALLY_RUN_MAX_SPEED_KMH",
        default_value_t = 40.0,
        global = true
    )]
    pub run_max_speed_kmh: f64,

    /// Seconds between token accruals (mining).
    #[arg(
        long,
        env = "RALLY_MINING_INTERVAL_SECONDS",
        default_value_t = 3600,
        global = true
    )]
    pub mining_interval_seconds: u64,

    /// Seconds a job's lease lasts without renewal: how long a crashed instance keeps its jobs.
    #[arg(
        long,
        env = "RALLY_JOB_LEASE_SECONDS",
        default_value_t = 30,
        global = true
    )]
    pub job_lease_seconds: u64,

    /// Tokens each held cell adds to `claimable` per accrual.
    #[arg(
        long,
        env = "RALLY_MINING_TOKENS_PER_CELL",
        default_value_t = 1,
        global = true
    )]
    pub mining_tokens_per_cell: u32,

    /// Most tokens `claimable` may hold.
    #[arg(long, env = "RALLY_WALLET_CAP", default_value_t = 100, global = true)]
    pub wallet_cap: u32,

    /// Longest availability (meetings), in minutes (at most `LONGEST_SLOT_MINUTES`).
    #[arg(
        long,
        env = "RALLY_MAX_SLOT_MINUTES",
        default_value_t = 480,
        global = true
    )]
    pub max_slot_minutes: u64,

    /// Most upcoming meetings one person may hold as the booker (meetings): one account cannot
    /// hoard every open slot.
    #[arg(
        long,
        env = "RALLY_MAX_UPCOMING_BOOKINGS",
        default_value_t = 20,
        global = true
    )]
    pub max_upcoming_bookings: u64,

    /// Most staff members one event may have (events): each is in every read and live message of
    /// the event's staff.
    #[arg(
        long,
        env = "RALLY_MAX_STAFF_PER_EVENT",
        default_value_t = 100,
        global = true
    )]
    pub max_staff_per_event: u64,

    /// Most availabilities ahead (open or booked) one owner may hold (meetings).
    #[arg(
        long,
        env = "RALLY_MAX_UPCOMING_SLOTS",
        default_value_t = 1000,
        global = true
    )]
    pub max_upcoming_slots: u64,

    /// Requests per minute one calendar feed URL answers (calendar apps poll a few times an hour).
    #[arg(
        long,
        env = "RALLY_CALENDAR_FEED_PER_MINUTE",
        default_value_t = 60,
        global = true
    )]
    pub calendar_feed_per_minute: u32,

    /// Longest time one HTTP request may take, in seconds.
    #[arg(
        long,
        env = "RALLY_REQUEST_TIMEOUT_SECONDS",
        default_value_t = 30,
        global = true
    )]
    pub request_timeout_seconds: u64,

    /// How long shutdown waits for requests in flight, in seconds; then as long again for
    /// mutations still running whose clients left.
    #[arg(
        long,
        env = "RALLY_SHUTDOWN_GRACE_SECONDS",
        default_value_t = 10,
        global = true
    )]
    pub shutdown_grace_seconds: u64,
}

/// An IANA time zone name.
fn parse_time_zone(raw: &str) -> Result<chrono_tz::Tz, String> {
    raw.trim()
        .parse()
        .map_err(|_| format!("{raw:?} is not an IANA time zone name (e.g. Europe/Paris)"))
}

/// A local time of day, `HH:MM` or `HH:MM:SS`.
fn parse_local_time(raw: &str) -> Result<chrono::NaiveTime, String> {
    let raw = raw.trim();
    chrono::NaiveTime::parse_from_str(raw, "%H:%M:%S")
        .or_else(|_| chrono::NaiveTime::parse_from_str(raw, "%H:%M"))
        .map_err(|_| format!("{raw:?} is not a time of day as HH:MM or HH:MM:SS"))
}

/// A count or size as `u64` (saturating: anything past `u64` is out of every bound anyway).
fn widen(value: usize) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

/// Name of the generated secret inside the data dir.
const SECRET_FILE: &str = "jwt-secret";
/// Shortest accepted JWT secret, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// The most `RALLY_MAX_SLOT_MINUTES` may be (a week): no slot is ever longer, whatever the setting
/// was when it was made, which bounds the meetings' overlap search.
pub const LONGEST_SLOT_MINUTES: u64 = 7 * 24 * 60;

impl Config {
    /// A configuration with every default, rooted at `data_dir` (tests and tools start from it).
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            config: Config,
        }
        let mut config = <Only as clap::Parser>::parse_from(["rally"]).config;
        config.data_dir = data_dir.into();
        config
    }

    /// Refuses settings that are unsafe for the environment, saying why.
    pub fn check(&self) -> anyhow::Result<()> {
        if let Some(secret) = &self.jwt_secret
            && secret.len() < MIN_SECRET_BYTES
        {
            bail!("RALLY_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes long");
        }
        if self.environment == Environment::Production {
            if self.jwt_secret.is_none() {
                bail!(
                    "RALLY_ENV=production requires RALLY_JWT_SECRET (at least {MIN_SECRET_BYTES} bytes): \
                     a secret generated into the data dir is not shared by other instances"
                );
            }
            if self.cors_origins.is_empty() {
                bail!(
                    "RALLY_ENV=production requires RALLY_CORS_ORIGINS (comma-separated origins, or * to allow any)"
                );
            }
        }
        self.media_url()?;
        if self.redis_prefix.is_empty()
            || !self
                .redis_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            bail!("RALLY_REDIS_PREFIX must be letters, digits, '-', '_' or '.'");
        }
        self.check_bounds()
    }

    /// Every duration, size and count within what Rally can work with, so a setting that would
    /// overflow later (a token lifetime past the calendar's end, say) fails at start-up, named.
    fn check_bounds(&self) -> anyhow::Result<()> {
        const DAY: u64 = 86_400;
        const GIB: u64 = 1 << 30;
        let bounds: [(&str, u64, u64, u64); 42] = [
            ("RALLY_JOB_LEASE_SECONDS", self.job_lease_seconds, 1, 3600),
            ("RALLY_H3_RESOLUTION", self.h3_resolution.into(), 0, 15),
            (
                "RALLY_MINING_INTERVAL_SECONDS",
                self.mining_interval_seconds,
                1,
                30 * DAY,
            ),
            (
                "RALLY_MINING_TOKENS_PER_CELL",
                self.mining_tokens_per_cell.into(),
                0,
                1_000_000,
            ),
            ("RALLY_WALLET_CAP", self.wallet_cap.into(), 1, 1_000_000_000),
            (
                "RALLY_ACCESS_TOKEN_TTL_SECONDS",
                self.access_token_ttl_seconds,
                1,
                7 * DAY,
            ),
            (
                "RALLY_REFRESH_TOKEN_TTL_DAYS",
                self.refresh_token_ttl_days,
                1,
                3650,
            ),
            ("RALLY_SESSION_MAX_DAYS", self.session_max_days, 1, 3650),
            (
                "RALLY_DATABASE_MAX_CONNECTIONS",
                self.database_max_connections.into(),
                1,
                1000,
            ),
            (
                "RALLY_ARGON2_MEMORY_KIB",
                self.argon2_memory_kib.into(),
                8,
                4 << 20,
            ),
            (
                "RALLY_ARGON2_ITERATIONS",
                self.argon2_iterations.into(),
                1,
                100,
            ),
            (
                "RALLY_ARGON2_CONCURRENCY",
                widen(self.argon2_concurrency),
                0,
                1024,
            ),
            (
                "RALLY_AUTH_ATTEMPTS_PER_LOGIN",
                self.auth_attempts_per_login.into(),
                1,
                1_000_000,
            ),
            (
                "RALLY_AUTH_ATTEMPTS_PER_ADDRESS",
                self.auth_attempts_per_address.into(),
                1,
                1_000_000,
            ),
            (
                "RALLY_AUTH_WINDOW_SECONDS",
                self.auth_window_seconds,
                1,
                DAY,
            ),
            (
                "RALLY_MAX_BODY_BYTES",
                widen(self.max_body_bytes),
                1024,
                GIB,
            ),
            (
                "RALLY_MAX_UPLOAD_BYTES",
                widen(self.max_upload_bytes),
                1024,
                GIB,
            ),
            (
                "RALLY_MAX_IMAGE_PIXELS",
                self.max_image_pixels,
                1,
                400_000_000,
            ),
            (
                "RALLY_QUERY_MAX_DEPTH",
                widen(self.query_max_depth),
                1,
                1000,
            ),
            (
                "RALLY_QUERY_MAX_COMPLEXITY",
                widen(self.query_max_complexity),
                1,
                10_000_000,
            ),
            (
                "RALLY_QUERY_MAX_ALIASES",
                widen(self.query_max_aliases),
                0,
                100_000,
            ),
            (
                "RALLY_WS_INIT_TIMEOUT_SECONDS",
                self.ws_init_timeout_seconds,
                1,
                3600,
            ),
            (
                "RALLY_WS_KEEPALIVE_SECONDS",
                self.ws_keepalive_seconds,
                1,
                3600,
            ),
            (
                "RALLY_WS_SILENT_PERIODS",
                self.ws_silent_periods.into(),
                0,
                100,
            ),
            (
                "RALLY_WS_MAX_SUBSCRIPTIONS",
                widen(self.ws_max_subscriptions),
                1,
                100_000,
            ),
            (
                "RALLY_LEADERBOARD_WINDOW_MS",
                self.leaderboard_window_ms,
                0,
                60_000,
            ),
            (
                "RALLY_REQUEST_TIMEOUT_SECONDS",
                self.request_timeout_seconds,
                1,
                DAY,
            ),
            (
                "RALLY_MAX_SLOT_MINUTES",
                self.max_slot_minutes,
                1,
                LONGEST_SLOT_MINUTES,
            ),
            (
                "RALLY_MAX_UPCOMING_BOOKINGS",
                self.max_upcoming_bookings,
                1,
                100_000,
            ),
            (
                "RALLY_MAX_STAFF_PER_EVENT",
                self.max_staff_per_event,
                1,
                10_000,
            ),
            (
                "RALLY_MAX_UPCOMING_SLOTS",
                self.max_upcoming_slots,
                1,
                1_000_000,
            ),
            (
                "RALLY_MAX_RUNNING_MUTATIONS",
                widen(self.max_running_mutations),
                1,
                1_000_000,
            ),
            (
                "RALLY_METRICS_MAX_OPERATIONS",
                widen(self.metrics_max_operations),
                1,
                10_000,
            ),
            (
                "RALLY_UPLOADS_PER_MINUTE",
                self.uploads_per_minute.into(),
                1,
                10_000,
            ),
            (
                "RALLY_REFRESHES_PER_MINUTE",
                self.refreshes_per_minute.into(),
                1,
                10_000,
            ),
            (
                "RALLY_CUP_CODE_TTL_SECONDS",
                self.cup_code_ttl_seconds,
                1,
                DAY,
            ),
            (
                "RALLY_CUP_CODE_ATTEMPTS_PER_MINUTE",
                self.cup_code_attempts_per_minute.into(),
                1,
                10_000,
            ),
            (
                "RALLY_LOCATION_MIN_INTERVAL_MS",
                self.location_min_interval_ms,
                0,
                3_600_000,
            ),
            (
                "RALLY_LOCATION_STALE_SECONDS",
                self.location_stale_seconds,
                1,
                DAY,
            ),
            (
                "RALLY_LOCATION_RETENTION_HOURS",
                self.location_retention_hours,
                1,
                24 * 366,
            ),
            (
                "RALLY_CALENDAR_FEED_PER_MINUTE",
                self.calendar_feed_per_minute.into(),
                1,
                10_000,
            ),
            (
                "RALLY_SHUTDOWN_GRACE_SECONDS",
                self.shutdown_grace_seconds,
                0,
                3600,
            ),
        ];
        for (name, value, min, max) in bounds {
            if !(min..=max).contains(&value) {
                bail!("{name} is {value}; it must be between {min} and {max}");
            }
        }
        if self.location_retention_hours.saturating_mul(3600) < self.location_stale_seconds {
            bail!(
                "RALLY_LOCATION_RETENTION_HOURS is {} hours, shorter than RALLY_LOCATION_STALE_SECONDS \
                 ({} s): a position must go stale before it is forgotten",
                self.location_retention_hours,
                self.location_stale_seconds
            );
        }
        let speed = self.run_max_speed_kmh;
        if !(speed.is_finite() && (1.0..=1000.0).contains(&speed)) {
            bail!("RALLY_RUN_MAX_SPEED_KMH is {speed}; it must be between 1 and 1000");
        }
        let bac = self.bac_warning_threshold;
        if !(bac.is_finite() && bac > 0.0 && bac <= 1.0) {
            bail!(
                "RALLY_BAC_WARNING_THRESHOLD is {bac}; it must be a percentage above 0 and at most 1"
            );
        }
        Ok(())
    }

    /// The database URL, defaulting to a SQLite file in the data dir.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("rally.db").display()
            ),
        }
    }

    /// Where media objects live, as a URL: `RALLY_MEDIA_URL`, or the folder `RALLY_MEDIA_DIR`
    /// (default `<data dir>/media`) as a `file://` URL.
    pub fn media_url(&self) -> anyhow::Result<url::Url> {
        if let Some(url) = &self.media_url {
            if self.media_dir.is_some() {
                bail!("set RALLY_MEDIA_URL or RALLY_MEDIA_DIR, not both");
            }
            return url::Url::parse(url)
                .map_err(|e| anyhow::anyhow!("RALLY_MEDIA_URL is not a URL: {e}"));
        }
        let dir = self
            .media_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("media"));
        let dir = std::path::absolute(&dir)
            .map_err(|e| anyhow::anyhow!("RALLY_MEDIA_DIR {}: {e}", dir.display()))?;
        url::Url::from_directory_path(&dir)
            .map_err(|()| anyhow::anyhow!("RALLY_MEDIA_DIR {} is not a folder path", dir.display()))
    }

    /// Whether introspection is served.
    pub fn introspection_enabled(&self) -> bool {
        self.introspection
            .unwrap_or(self.environment == Environment::Development)
    }

    /// Whether the (canonical) `handle` is listed in `RALLY_ADMINS`.
    pub fn is_admin_handle(&self, handle: &str) -> bool {
        self.admins
            .iter()
            .any(|admin| admin.trim().eq_ignore_ascii_case(handle))
    }

    /// Longest a session lives (`RALLY_SESSION_MAX_DAYS`).
    pub fn session_max_age(&self) -> chrono::Duration {
        chrono::Duration::days(i64::try_from(self.session_max_days).unwrap_or(3650))
    }

    /// Lifetime of access tokens.
    pub fn access_token_ttl(&self) -> Duration {
        Duration::from_secs(self.access_token_ttl_seconds)
    }

    /// The JWT secret: the configured one, or the one generated once into the data dir.
    pub fn load_jwt_secret(&self) -> anyhow::Result<Vec<u8>> {
        if let Some(secret) = &self.jwt_secret {
            return Ok(secret.as_bytes().to_vec());
        }
        load_or_generate_secret(&self.data_dir.join(SECRET_FILE))
    }

    /// Creates the data dir when the embedded defaults use it.
    pub fn prepare_data_dir(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("cannot create data dir {}", self.data_dir.display()))
    }
}

fn load_or_generate_secret(path: &Path) -> anyhow::Result<Vec<u8>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let secret = text.trim().as_bytes().to_vec();
            if secret.len() < MIN_SECRET_BYTES {
                bail!(
                    "{} holds a secret shorter than {MIN_SECRET_BYTES} bytes",
                    path.display()
                );
            }
            Ok(secret)
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 48];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
            write_private(path, &secret)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(secret.into_bytes())
        }
        Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
    }
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_embedded() {
        let config = Config::with_data_dir("/tmp/x");
        assert_eq!(config.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(config.database_url(), "sqlite:///tmp/x/rally.db?mode=rwc");
        assert_eq!(config.media_url().unwrap().as_str(), "file:///tmp/x/media/");
        assert!(config.introspection_enabled());
        assert!(config.check().is_ok());
    }

    #[test]
    fn media_is_a_url_or_a_folder_not_both() {
        let mut config = Config::with_data_dir("/tmp/x");
        config.media_dir = Some("/srv/media".into());
        assert_eq!(config.media_url().unwrap().as_str(), "file:///srv/media/");
        config.media_url = Some("s3://bucket/rally".into());
        let err = config.check().expect_err("both set").to_string();
        assert!(
            err.contains("RALLY_MEDIA_URL") && err.contains("RALLY_MEDIA_DIR"),
            "{err}"
        );
        config.media_dir = None;
        assert_eq!(config.media_url().unwrap().as_str(), "s3://bucket/rally");
        config.media_url = Some("not a url".into());
        assert!(
            config
                .check()
                .expect_err("bad URL")
                .to_string()
                .contains("RALLY_MEDIA_URL")
        );
    }

    #[test]
    fn the_redis_prefix_is_a_plain_name() {
        let mut config = Config::with_data_dir("/tmp/x");
        assert_eq!(config.redis_prefix, "rally");
        config.redis_prefix = "staging-2".into();
        assert!(config.check().is_ok());
        for bad in ["", "a b", "a:b", "a*"] {
            config.redis_prefix = bad.into();
            assert!(config.check().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn production_requires_a_long_secret() {
        let mut config = Config::with_data_dir("/tmp/x");
        config.environment = Environment::Production;
        config.cors_origins = vec!["https://app.example".into()];
        let err = config.check().expect_err("no secret");
        assert!(err.to_string().contains("RALLY_JWT_SECRET"));
        config.jwt_secret = Some("short".into());
        assert!(config.check().is_err());
        config.jwt_secret = Some("x".repeat(32));
        assert!(config.check().is_ok());
        assert!(!config.introspection_enabled());
    }

    #[test]
    fn settings_out_of_bounds_are_named_at_start_up() {
        type Tweak = fn(&mut Config);
        let cases: [(Tweak, &str); 7] = [
            (
                |c| c.refresh_token_ttl_days = u64::MAX,
                "RALLY_REFRESH_TOKEN_TTL_DAYS",
            ),
            (
                |c| c.access_token_ttl_seconds = 1 << 62,
                "RALLY_ACCESS_TOKEN_TTL_SECONDS",
            ),
            (|c| c.auth_window_seconds = 0, "RALLY_AUTH_WINDOW_SECONDS"),
            (
                |c| c.max_upload_bytes = usize::MAX,
                "RALLY_MAX_UPLOAD_BYTES",
            ),
            (|c| c.ws_keepalive_seconds = 0, "RALLY_WS_KEEPALIVE_SECONDS"),
            (
                |c| c.bac_warning_threshold = f64::NAN,
                "RALLY_BAC_WARNING_THRESHOLD",
            ),
            (
                |c| {
                    c.location_stale_seconds = 7200;
                    c.location_retention_hours = 1;
                },
                "RALLY_LOCATION_RETENTION_HOURS",
            ),
        ];
        for (tweak, name) in cases {
            let mut config = Config::with_data_dir("/tmp/x");
            tweak(&mut config);
            let err = config.check().expect_err(name).to_string();
            assert!(err.starts_with(name), "{err} names {name}");
        }
        let mut config = Config::with_data_dir("/tmp/x");
        config.refresh_token_ttl_days = 3650;
        config.access_token_ttl_seconds = 7 * 86_400;
        assert!(config.check().is_ok(), "the largest accepted values work");
    }

    #[test]
    fn the_generated_secret_is_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(SECRET_FILE);
        let first = load_or_generate_secret(&path).expect("generated");
        let second = load_or_generate_secret(&path).expect("read back");
        assert!(first.len() >= MIN_SECRET_BYTES);
        assert_eq!(first, second);
    }
}
