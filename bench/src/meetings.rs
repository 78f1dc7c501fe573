//! Meetings: how fast slots are booked, whether a race for one slot has exactly one winner, and
//! how fast open slots are searched.
//!
//! - **Booking throughput.** One owner publishes 1,000 slots (three `setWeeklyAvailability`
//!   patterns of 334, 333 and 333 days at 09:00, 11:00 and 13:00 UTC); 64 signed-up bookers, each
//!   on its own keep-alive connection, take the next slot from a shared atomic index until none is
//!   left. Every slot is asked for once, so all 1,000 should be booked and none answered CONFLICT.
//!   Latency is that of the successful `bookAvailability` calls.
//! - **Race.** 50 bookers, connected beforehand, wait on a `tokio::sync::Barrier` and then book the
//!   same fresh slot at once; the time runs from the barrier's release to the last answer. Exactly
//!   one must win and the other 49 get CONFLICT. Five rounds, five slots.
//! - **Search.** 274 owners publish one weekly pattern each (every weekday, 366 days from
//!   tomorrow: 100,284 slots), 8 owners at a time; then `availabilities(from, to, first: 20)` over
//!   one-day windows at random days of the seeded year (64 windows, each loop cycling through them)
//!   runs at the bench's concurrency, beside `{ __typename }` on the same instance as the baseline.
//!
//! Sign-ups are not measured; `main` starts Rally for this part with argon2 at its cheapest so the
//! 400 or so of them take seconds. Failures are counted, never unwrapped: a failed set-up is
//! reported in the table and the next scenario still runs. With `--database-url`, slots from
//! earlier runs stay in the shared database, so the searched table holds more than one run's slots.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use chrono::{NaiveDate, NaiveTime, SecondsFormat, Utc};
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use serde_json::{Value, json};
use tokio::sync::Barrier;

use crate::http::{Figures, TRIVIAL, connection, load, load_cycled};
use crate::rally::{call, signup};

const PASSWORD: &str = "benchmark-password";

const WEEKLY: &str =
    "mutation($i: WeeklyAvailabilityInput!) { setWeeklyAvailability(input: $i) { id startTime } }";
const SINGLE: &str = "mutation($i: AvailabilityInput!) { setAvailability(input: $i) { id } }";
const BOOK: &str = "mutation($id: ID!) { bookAvailability(id: $id) { id } }";
const SEARCH: &str = "query($from: DateTime!, $to: DateTime!, $first: Int) { availabilities(from: $from, to: $to, first: $first) { edges { node { id startTime } } pageInfo { hasNextPage endCursor } } }";

/// Slots the booking scenario publishes, as (local start, days after the first date).
const BOOKING_PATTERNS: [(&str, i64); 3] = [("09:00", 333), ("11:00", 332), ("13:00", 332)];
/// Bookers in the throughput scenario.
pub const BOOKERS: usize = 64;
/// Bookers racing for one slot.
pub const RACERS: usize = 50;
/// Race rounds, one fresh slot each.
pub const ROUNDS: usize = 5;
/// Owners seeded for the search, each with 366 daily slots.
pub const SEARCH_OWNERS: usize = 274;
/// Days of each seeded pattern after its first (so 366 slots).
const SEARCH_DAYS: i64 = 365;
/// Owners seeded at once.
pub const SEED_IN_FLIGHT: usize = 8;
/// Distinct search windows the load cycles through.
const WINDOWS: usize = 64;

/// Whole-second RFC 3339 in UTC.
fn rfc3339(at: chrono::DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Tomorrow's UTC date: every slot of a pattern starting then lies in the future.
fn tomorrow() -> NaiveDate {
    (Utc::now() + chrono::Duration::days(1)).date_naive()
}

fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
}

/// The `q` quantile of sorted `values` (0 when empty).
fn quantile(values: &[u64], q: f64) -> u64 {
    values
        .get(((values.len() as f64 * q) as usize).min(values.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0)
}

/// A daily pattern (every weekday, UTC) from `from` to `days` later.
fn weekly_input(from: NaiveDate, days: i64, start_local: &str, minutes: i32, title: &str) -> Value {
    json!({
        "timeZone": "UTC",
        "weekdays": ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"],
        "startLocal": start_local,
        "durationMinutes": minutes,
        "fromDate": from.format("%Y-%m-%d").to_string(),
        "untilDate": (from + chrono::Duration::days(days)).format("%Y-%m-%d").to_string(),
        "title": title,
    })
}

/// The ids of the slots a `setWeeklyAvailability` answer holds.
fn slot_ids(data: &Value) -> anyhow::Result<Vec<String>> {
    Ok(data["setWeeklyAvailability"]
        .as_array()
        .context("setWeeklyAvailability returned no list")?
        .iter()
        .filter_map(|slot| slot["id"].as_str().map(str::to_owned))
        .collect())
}

/// `count` users signed up in turn; their access tokens.
async fn sign_up_all(
    http: &reqwest::Client,
    url: &str,
    prefix: &str,
    count: usize,
) -> anyhow::Result<Vec<String>> {
    let mut tokens = Vec::with_capacity(count);
    for n in 0..count {
        tokens.push(signup(http, url, &format!("{prefix}_{n}"), PASSWORD).await?);
    }
    Ok(tokens)
}

/// One keep-alive HTTP/1.1 connection (hyper, as the load loops use) for one signed-in user.
struct Conn {
    uri: http::Uri,
    host: String,
    authorization: String,
    sender: http1::SendRequest<Full<Bytes>>,
}

impl Conn {
    async fn open(url: &str, token: &str) -> anyhow::Result<Self> {
        let uri: http::Uri = url.parse()?;
        let host = uri
            .authority()
            .map_or("127.0.0.1", |a| a.as_str())
            .to_owned();
        let sender = connection(&uri).await?;
        Ok(Self {
            uri,
            host,
            authorization: format!("Bearer {token}"),
            sender,
        })
    }

    /// Posts one GraphQL body and parses the answer; a closed connection is replaced first.
    async fn post(&mut self, body: Bytes) -> anyhow::Result<Value> {
        if self.sender.is_closed() {
            self.sender = connection(&self.uri).await?;
        }
        self.sender.ready().await?;
        let request = http::Request::post(self.uri.path())
            .header(http::header::HOST, &self.host)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::AUTHORIZATION, &self.authorization)
            .body(Full::new(body))?;
        let response = self.sender.send_request(request).await?;
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok(serde_json::from_slice(&bytes)?)
    }
}

fn book_body(id: &str) -> Bytes {
    Bytes::from(json!({ "query": BOOK, "variables": { "id": id } }).to_string())
}

/// How one `bookAvailability` ended.
enum Outcome {
    Booked,
    Conflict,
    /// Any other answer or failure, with what it was.
    Error(String),
}

fn outcome(answer: anyhow::Result<Value>) -> Outcome {
    match answer {
        Ok(body) if body["data"]["bookAvailability"]["id"].is_string() => Outcome::Booked,
        Ok(body) => match body["errors"][0]["extensions"]["code"].as_str() {
            Some("CONFLICT") => Outcome::Conflict,
            _ => Outcome::Error(body.to_string()),
        },
        Err(err) => Outcome::Error(format!("{err:#}")),
    }
}

/// Outcomes counted.
#[derive(Default)]
pub struct Tally {
    pub booked: u64,
    pub conflicts: u64,
    pub errors: u64,
    /// The first error seen, for the log.
    pub first_error: Option<String>,
}

impl Tally {
    fn count(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Booked => self.booked += 1,
            Outcome::Conflict => self.conflicts += 1,
            Outcome::Error(what) => {
                self.errors += 1;
                self.first_error.get_or_insert(what);
            }
        }
    }

    fn merge(&mut self, other: Self) {
        self.booked += other.booked;
        self.conflicts += other.conflicts;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    fn warn(&self, scenario: &str) {
        if let Some(error) = &self.first_error {
            let short: String = error.chars().take(300).collect();
            eprintln!(
                "warning: {scenario}: {} errors, the first: {short}",
                self.errors
            );
        }
    }
}

/// What the booking scenario measured.
pub struct Throughput {
    pub slots: usize,
    pub tally: Tally,
    pub seconds: f64,
    pub per_second: f64,
    pub p50_us: u64,
    pub p99_us: u64,
}

/// One owner publishes 1,000 slots; [`BOOKERS`] users book them all from a shared index.
pub async fn booking_throughput(url: &str, tag: &str) -> anyhow::Result<Throughput> {
    let http = reqwest::Client::new();
    let owner = signup(&http, url, &format!("mo_{tag}"), PASSWORD).await?;
    let from = tomorrow();
    let mut ids = Vec::new();
    for (start_local, days) in BOOKING_PATTERNS {
        let input = weekly_input(from, days, start_local, 60, "Bench booking");
        ids.extend(slot_ids(
            &call(&http, url, Some(&owner), WEEKLY, json!({ "i": input })).await?,
        )?);
    }
    let tokens = sign_up_all(&http, url, &format!("mb_{tag}"), BOOKERS).await?;

    let ids = Arc::new(ids);
    let next = Arc::new(AtomicUsize::new(0));
    // The bookers connect first; the clock starts when all are ready.
    let ready = Arc::new(Barrier::new(tokens.len() + 1));
    let workers: Vec<_> = tokens
        .into_iter()
        .map(|token| {
            let (url, ids, next, ready) =
                (url.to_owned(), ids.clone(), next.clone(), ready.clone());
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut latencies = Vec::new();
                let conn = Conn::open(&url, &token).await;
                ready.wait().await;
                let mut conn = match conn {
                    Ok(conn) => conn,
                    Err(err) => {
                        tally.count(Outcome::Error(format!("connect: {err:#}")));
                        return (tally, latencies);
                    }
                };
                while let Some(id) = ids.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let sent = Instant::now();
                    let answer = outcome(conn.post(book_body(id)).await);
                    if matches!(answer, Outcome::Booked) {
                        latencies.push(micros(sent.elapsed()));
                    }
                    tally.count(answer);
                }
                (tally, latencies)
            })
        })
        .collect();
    ready.wait().await;
    let started = Instant::now();
    let mut tally = Tally::default();
    let mut latencies = Vec::new();
    for worker in futures_util::future::join_all(workers).await {
        match worker {
            Ok((worker_tally, worker_latencies)) => {
                tally.merge(worker_tally);
                latencies.extend(worker_latencies);
            }
            Err(err) => tally.count(Outcome::Error(format!("booker task: {err}"))),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    tally.warn("booking throughput");
    latencies.sort_unstable();
    Ok(Throughput {
        slots: ids.len(),
        per_second: tally.booked as f64 / seconds.max(f64::EPSILON),
        p50_us: quantile(&latencies, 0.50),
        p99_us: quantile(&latencies, 0.99),
        tally,
        seconds,
    })
}

/// One round of the race.
pub struct Round {
    /// From the barrier's release to the last answer.
    pub last_answer_us: u64,
    pub tally: Tally,
}

impl Round {
    /// One winner, everyone else CONFLICT.
    pub fn passed(&self, racers: usize) -> bool {
        self.tally.booked == 1
            && self.tally.conflicts == racers as u64 - 1
            && self.tally.errors == 0
    }
}

/// [`RACERS`] users book one fresh slot at once, [`ROUNDS`] times.
pub async fn race(url: &str, tag: &str) -> anyhow::Result<Vec<Round>> {
    let http = reqwest::Client::new();
    let owner = signup(&http, url, &format!("mr_{tag}"), PASSWORD).await?;
    let midnight = tomorrow().and_time(NaiveTime::MIN).and_utc();
    let mut slots = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let start = midnight + chrono::Duration::hours(i64::try_from(round)?);
        let input = json!({
            "startTime": rfc3339(start),
            "endTime": rfc3339(start + chrono::Duration::minutes(30)),
            "title": format!("Bench race {round}"),
        });
        let data = call(&http, url, Some(&owner), SINGLE, json!({ "i": input })).await?;
        slots.push(
            data["setAvailability"]["id"]
                .as_str()
                .context("setAvailability returned no id")?
                .to_owned(),
        );
    }
    let tokens = sign_up_all(&http, url, &format!("mx_{tag}"), RACERS).await?;

    let slots = Arc::new(slots);
    let barrier = Arc::new(Barrier::new(RACERS));
    let racers: Vec<_> = tokens
        .into_iter()
        .map(|token| {
            let (url, slots, barrier) = (url.to_owned(), slots.clone(), barrier.clone());
            tokio::spawn(async move {
                // Connected before the first round, so the race times the bookings only.
                let mut conn = Conn::open(&url, &token).await;
                let mut rounds = Vec::with_capacity(slots.len());
                for id in slots.iter() {
                    let body = book_body(id);
                    barrier.wait().await;
                    let released = Instant::now();
                    let answer = match &mut conn {
                        Ok(conn) => outcome(conn.post(body).await),
                        Err(err) => Outcome::Error(format!("connect: {err:#}")),
                    };
                    rounds.push((answer, released, Instant::now()));
                }
                rounds
            })
        })
        .collect();
    // Each racer's answers, round by round.
    let mut answers = Vec::with_capacity(RACERS);
    for racer in futures_util::future::join_all(racers).await {
        match racer {
            Ok(rounds) => answers.push(rounds.into_iter()),
            Err(err) => bail!("a racer failed: {err}"),
        }
    }
    let mut rounds = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let mut tally = Tally::default();
        let mut released: Option<Instant> = None;
        let mut last: Option<Instant> = None;
        for racer in &mut answers {
            let Some((answer, at, answered)) = racer.next() else {
                tally.count(Outcome::Error("no answer".to_owned()));
                continue;
            };
            released = Some(released.map_or(at, |r| r.min(at)));
            last = Some(last.map_or(answered, |l| l.max(answered)));
            tally.count(answer);
        }
        tally.warn(&format!("race round {}", round + 1));
        let last_answer_us = match (released, last) {
            (Some(released), Some(last)) => micros(last.duration_since(released)),
            _ => 0,
        };
        rounds.push(Round {
            last_answer_us,
            tally,
        });
    }
    Ok(rounds)
}

/// What the search scenario measured.
pub struct Search {
    pub owners: usize,
    pub slots: u64,
    pub seed_errors: u64,
    pub seed_seconds: f64,
    /// Edges and `hasNextPage` of one window, checked before the load.
    pub sample_edges: usize,
    pub sample_more: bool,
    pub search: Figures,
    pub trivial: Figures,
}

/// Seeds [`SEARCH_OWNERS`] weekly patterns, then loads `availabilities` over random one-day
/// windows and `{ __typename }`, `concurrency` requests at a time for `duration` each.
pub async fn search(
    url: &str,
    tag: &str,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Search> {
    let http = reqwest::Client::new();
    let from = tomorrow();
    let started = Instant::now();
    let seeded: Vec<anyhow::Result<(String, usize)>> = futures_util::stream::iter(0..SEARCH_OWNERS)
        .map(|n| {
            let http = http.clone();
            async move {
                let token = signup(&http, url, &format!("ms_{tag}_{n}"), PASSWORD).await?;
                // Start times spread over the day, 5 minutes apart.
                let minute = n * 5 % (24 * 60);
                let start_local = format!("{:02}:{:02}", minute / 60, minute % 60);
                let input = weekly_input(from, SEARCH_DAYS, &start_local, 30, "Bench search");
                let data = call(&http, url, Some(&token), WEEKLY, json!({ "i": input })).await?;
                Ok((token, slot_ids(&data)?.len()))
            }
        })
        .buffer_unordered(SEED_IN_FLIGHT)
        .collect()
        .await;
    let seed_seconds = started.elapsed().as_secs_f64();
    let mut slots = 0u64;
    let mut token = None;
    let mut seed_errors = Tally::default();
    for owner in seeded {
        match owner {
            Ok((owner_token, count)) => {
                slots += count as u64;
                token.get_or_insert(owner_token);
            }
            Err(err) => seed_errors.count(Outcome::Error(format!("{err:#}"))),
        }
    }
    seed_errors.warn("search seeding");
    let token = token.context("no owner could be seeded")?;

    // Pseudo-random days (xorshift, fixed seed, so every run searches the same windows).
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let windows: Vec<(String, String)> = (0..WINDOWS)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let day = i64::try_from(state % (SEARCH_DAYS as u64 + 1)).unwrap_or(0);
            let start = (from + chrono::Duration::days(day))
                .and_time(NaiveTime::MIN)
                .and_utc();
            (rfc3339(start), rfc3339(start + chrono::Duration::days(1)))
        })
        .collect();
    let (sample_edges, sample_more) = match windows.first() {
        Some((from, to)) => {
            let data = call(
                &http,
                url,
                Some(&token),
                SEARCH,
                json!({ "from": from, "to": to, "first": 20 }),
            )
            .await?;
            let page = &data["availabilities"];
            (
                page["edges"].as_array().map_or(0, Vec::len),
                page["pageInfo"]["hasNextPage"].as_bool().unwrap_or(false),
            )
        }
        None => (0, false),
    };
    let bodies = windows
        .iter()
        .map(|(from, to)| {
            json!({ "query": SEARCH, "variables": { "from": from, "to": to, "first": 20 } })
                .to_string()
        })
        .collect();
    let search = load_cycled(url, bodies, Some(token), concurrency, duration).await;
    let trivial = load(url, TRIVIAL.to_owned(), None, concurrency, duration).await;
    Ok(Search {
        owners: SEARCH_OWNERS,
        slots,
        seed_errors: seed_errors.errors,
        seed_seconds,
        sample_edges,
        sample_more,
        search,
        trivial,
    })
}
