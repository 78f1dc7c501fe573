//! Proximity: location updates reaching the activities that watch their senders.
//!
//! - **Set-up** (not measured). `activities` owners and ten phones per owner sign up; each owner
//!   asks to watch its ten phones, which accept; each owner reports a position, starts an activity
//!   with a 4,985.05 m radius, and opens one websocket subscribed to `activityUpdated` of that
//!   activity and to `proximityAlerts`.
//! - **Run.** Every phone sends one `updateLocation` a second for `seconds`, spread evenly over the
//!   second, through [`CONNECTIONS`] keep-alive connections. An activity's n-th update (whichever of
//!   its phones sends it) puts that phone due north of the owner at 5,000 − 0.1·n m, so the newest
//!   update is always the nearest person and the distance in an `activityUpdated` frame names the
//!   newest update it reflects. An update's latency runs from its request being written to the
//!   first frame at the owner's screen that reflects it or a newer one (and, as a second figure,
//!   from the moment the phone meant to send it, which counts the wait for a free connection when
//!   the server falls behind); an accepted update that no frame reflects is missed. From the 16th second updates are inside the radius: each phone
//!   enters once, and its alert's latency runs from its first accepted update inside.
//! - If the server falls behind, the dispatcher waits for a free connection, so the offered rate
//!   drops below `10 × activities`/s; the table prints the rate offered and the rate accepted.
//! - CPU is the servers' user + system time from the first update until the screens have heard
//!   nothing for two seconds (at most a minute after the last update), divided by the accepted
//!   updates; late frames and alerts still count as received.
//!
//! With two instances the phones talk to one and the owners' screens to the other.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt, stream};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::http::connection;
use crate::live::cpu_us;
use crate::rally::call;

/// Phones each activity watches.
pub const PHONES_PER_ACTIVITY: usize = 10;
/// Keep-alive connections the phones' updates go through.
pub const CONNECTIONS: usize = 64;
/// The activities' alert radius, meters.
pub const RADIUS: f64 = 4_985.05;
/// Where an activity's first update puts its phone, meters north of the owner.
const FIRST_DISTANCE: f64 = 5_000.0;
/// How much nearer each later update of the activity is, meters.
const STEP: f64 = 0.1;
/// The mean Earth radius, as the geo crate's haversine uses it.
const EARTH_RADIUS: f64 = 6_371_008.8;
/// `sent` for an update that was refused or failed.
const FAILED: u64 = u64::MAX;
const PASSWORD: &str = "benchmark-password";

const UPDATE: &str =
    "mutation($a: Float, $o: Float) { updateLocation(latitude: $a, longitude: $o) { updatedAt } }";
const SCREEN: &str =
    "subscription($id: ID!) { activityUpdated(activityId: $id) { nearest { distanceMeters } } }";
const ALERTS: &str = "subscription { proximityAlerts { user { id } distanceMeters } }";

/// What one run measured.
pub struct ProximityFigures {
    pub activities: usize,
    pub phones: usize,
    pub seconds: u64,
    pub setup_seconds: f64,
    pub offered_per_second: f64,
    pub accepted: u64,
    pub accepted_per_second: f64,
    pub rate_limited: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub frames: u64,
    pub missed: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// p99 from the moment the phone meant to send (includes waiting for a free connection when
    /// the server falls behind: no coordinated omission).
    pub scheduled_p99_us: u64,
    pub alerts_expected: u64,
    pub alerts_received: u64,
    /// Alerts beyond one per entering phone, or for phones that never entered.
    pub alerts_extra: u64,
    pub alert_p50_us: u64,
    pub alert_p99_us: u64,
    pub cpu_us_per_update: f64,
}

/// An owner's starting point: spread over latitudes (and longitudes past 1,000 owners).
fn home(activity: usize) -> (f64, f64) {
    (
        -50.0 + (activity % 1000) as f64 * 0.1,
        -170.0 + (activity / 1000) as f64 * 10.0,
    )
}

/// Where an activity's update number `n` puts its phone.
fn spot(activity: usize, n: usize) -> (f64, f64) {
    let (latitude, longitude) = home(activity);
    let meters = FIRST_DISTANCE - STEP * n as f64;
    (latitude + (meters / EARTH_RADIUS).to_degrees(), longitude)
}

/// The update number a frame's distance names.
fn update_number(meters: f64) -> Option<usize> {
    let n = ((FIRST_DISTANCE - meters) / STEP).round();
    (n >= 0.0 && n.is_finite()).then_some(n as usize)
}

fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX - 1)
}

fn quantile(sorted: &[u64], q: f64) -> u64 {
    sorted
        .get(((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0)
}

/// A signed-up user: access token and id.
struct User {
    token: String,
    id: String,
}

async fn sign_up(http: &reqwest::Client, url: &str, handle: String) -> anyhow::Result<User> {
    let data = call(
        http,
        url,
        None,
        "mutation($h: String!, $e: String!, $p: String!) { signup(input: { handle: $h, email: $e, password: $p }) { accessToken user { id } } }",
        json!({ "h": handle, "e": format!("{handle}@example.com"), "p": PASSWORD }),
    )
    .await?;
    Ok(User {
        token: data["signup"]["accessToken"]
            .as_str()
            .context("token")?
            .to_owned(),
        id: data["signup"]["user"]["id"]
            .as_str()
            .context("id")?
            .to_owned(),
    })
}

/// Runs `count` futures made by `make`, `in_flight` at a time; fails on the first failure.
async fn all<T, F, Fut>(count: usize, in_flight: usize, make: F) -> anyhow::Result<Vec<T>>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let results: Vec<anyhow::Result<T>> = stream::iter(0..count)
        .map(make)
        .buffered(in_flight)
        .collect()
        .await;
    results.into_iter().collect()
}

/// What an owner's screen saw: frames as (newest update reflected, arrival), alerts as (phone id,
/// arrival).
#[derive(Default)]
struct Screen {
    frames: Vec<(usize, Instant)>,
    alerts: Vec<(String, Instant)>,
}

/// One owner's websocket: both subscriptions, the first status awaited, then everything noted until
/// `stop`.
async fn screen(
    ws_url: String,
    token: String,
    activity: String,
    connects: Arc<Semaphore>,
    ready: mpsc::UnboundedSender<()>,
    mut stop: watch::Receiver<bool>,
    heard: Arc<(Instant, AtomicU64)>,
) -> anyhow::Result<Screen> {
    let mut request = ws_url.into_client_request()?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().context("header")?,
    );
    let permit = connects.acquire().await?;
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
    socket
        .send(Message::text(
            json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } })
                .to_string(),
        ))
        .await?;
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) if text.contains("connection_ack") => break,
            Some(Ok(_)) => {}
            _ => bail!("closed before connection_ack"),
        }
    }
    for (id, query, variables) in [
        ("a", SCREEN, json!({ "id": activity })),
        ("p", ALERTS, json!({})),
    ] {
        socket
            .send(Message::text(
                json!({ "type": "subscribe", "id": id, "payload": { "query": query, "variables": variables } })
                    .to_string(),
            ))
            .await?;
    }
    drop(permit);
    let mut seen = Screen::default();
    let mut first = true;
    loop {
        tokio::select! {
            message = socket.next() => {
                let Some(Ok(message)) = message else { bail!("the screen's socket closed") };
                let Message::Text(text) = message else { continue };
                let at = Instant::now();
                heard.1.fetch_max(micros(at.duration_since(heard.0)), Ordering::Relaxed);
                let frame: Value = serde_json::from_str(&text)?;
                match (frame["type"].as_str(), frame["id"].as_str()) {
                    (Some("next"), Some("a")) => {
                        if first {
                            first = false;
                            let _ = ready.send(());
                            continue;
                        }
                        let meters = &frame["payload"]["data"]["activityUpdated"]["nearest"]["distanceMeters"];
                        if let Some(n) = meters.as_f64().and_then(update_number) {
                            seen.frames.push((n, at));
                        }
                    }
                    (Some("next"), Some("p")) => {
                        let user = &frame["payload"]["data"]["proximityAlerts"]["user"]["id"];
                        seen.alerts.push((user.as_str().unwrap_or_default().to_owned(), at));
                    }
                    (Some("next" | "error" | "complete"), _) => bail!("unexpected frame: {text}"),
                    _ => {}
                }
            }
            _ = stop.wait_for(|stop| *stop) => break,
        }
    }
    let _ = socket.close(None).await;
    Ok(seen)
}

/// One update to send: the phone (activity × 10 + its number), the activity's update number, and
/// when the phone meant to send it (µs since the run's epoch).
struct Due {
    phone: usize,
    n: usize,
    scheduled: u64,
}

/// Counts of the phones' answers.
#[derive(Default)]
struct Answers {
    accepted: u64,
    rate_limited: u64,
    errors: u64,
    first_error: Option<String>,
}

/// One keep-alive connection sending the updates it is handed; `sent[activity × per + n]` gets the
/// time the request was written, or [`FAILED`].
async fn phone_connection(
    url: http::Uri,
    authorizations: Arc<Vec<http::HeaderValue>>,
    sent: Arc<Vec<AtomicU64>>,
    scheduled_at: Arc<Vec<AtomicU64>>,
    per_activity: usize,
    epoch: Instant,
    mut due: mpsc::Receiver<Due>,
) -> anyhow::Result<Answers> {
    let host = url
        .authority()
        .map_or("127.0.0.1", |a| a.as_str())
        .to_owned();
    let mut sender = connection(&url).await?;
    let mut answers = Answers::default();
    while let Some(Due {
        phone,
        n,
        scheduled,
    }) = due.recv().await
    {
        let activity = phone / PHONES_PER_ACTIVITY;
        let (latitude, longitude) = spot(activity, n);
        let body = Bytes::from(
            json!({ "query": UPDATE, "variables": { "a": latitude, "o": longitude } }).to_string(),
        );
        if sender.is_closed() {
            sender = connection(&url).await?;
        }
        sender.ready().await?;
        let request = http::Request::post(url.path())
            .header(http::header::HOST, &host)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::AUTHORIZATION, authorizations[phone].clone())
            .body(Full::new(body))?;
        let slot = &sent[activity * per_activity + n];
        scheduled_at[activity * per_activity + n].store(scheduled, Ordering::SeqCst);
        slot.store(micros(epoch.elapsed()), Ordering::SeqCst);
        let answer: anyhow::Result<Value> = async {
            let response = sender.send_request(request).await?;
            let bytes = response.into_body().collect().await?.to_bytes();
            Ok(serde_json::from_slice(&bytes)?)
        }
        .await;
        match answer {
            Ok(body) if body["data"]["updateLocation"]["updatedAt"].is_string() => {
                answers.accepted += 1;
            }
            Ok(body) if body["errors"][0]["extensions"]["code"] == "RATE_LIMITED" => {
                slot.store(FAILED, Ordering::SeqCst);
                answers.rate_limited += 1;
            }
            other => {
                slot.store(FAILED, Ordering::SeqCst);
                answers.errors += 1;
                answers.first_error.get_or_insert_with(|| match other {
                    Ok(body) => body.to_string(),
                    Err(err) => format!("{err:#}"),
                });
            }
        }
    }
    Ok(answers)
}

/// Sets up `activities` activities on `owners_url` (its websocket at `screens_ws_url`), then sends the
/// phones' updates to `phones_url` for `seconds`. `pids` are the servers whose CPU is counted.
pub async fn run(
    owners_url: &str,
    screens_ws_url: &str,
    phones_url: &str,
    pids: &[u32],
    tag: &str,
    activities: usize,
    seconds: u64,
) -> anyhow::Result<ProximityFigures> {
    let setup = Instant::now();
    let http = reqwest::Client::new();
    let phones = activities * PHONES_PER_ACTIVITY;
    let owners = all(activities, 16, |a| {
        sign_up(&http, owners_url, format!("{tag}o{a}"))
    })
    .await
    .context("owners sign up")?;
    let watched = all(phones, 16, |p| {
        sign_up(&http, owners_url, format!("{tag}p{p}"))
    })
    .await
    .context("phones sign up")?;
    all(phones, 32, |p| {
        let (http, owner) = (&http, &owners[p / PHONES_PER_ACTIVITY]);
        async move {
            call(
                http,
                owners_url,
                Some(&owner.token),
                "mutation($h: String!) { requestMonitor(handle: $h) { status } }",
                json!({ "h": format!("{tag}p{p}") }),
            )
            .await
        }
    })
    .await
    .context("requestMonitor")?;
    all(phones, 32, |p| {
        let (http, phone) = (&http, &watched[p]);
        let owner = format!("{tag}o{}", p / PHONES_PER_ACTIVITY);
        async move {
            call(
                http,
                owners_url,
                Some(&phone.token),
                "mutation($w: String!) { acceptMonitor(watcher: $w) { status } }",
                json!({ "w": owner }),
            )
            .await
        }
    })
    .await
    .context("acceptMonitor")?;
    let running = all(activities, 32, |a| {
        let (http, owner) = (&http, &owners[a]);
        async move {
            let (latitude, longitude) = home(a);
            call(
                http,
                owners_url,
                Some(&owner.token),
                UPDATE,
                json!({ "a": latitude, "o": longitude }),
            )
            .await?;
            let started = call(
                http,
                owners_url,
                Some(&owner.token),
                "mutation($r: Float) { startActivity(alertRadiusMeters: $r) { id } }",
                json!({ "r": RADIUS }),
            )
            .await?;
            Ok(started["startActivity"]["id"]
                .as_str()
                .context("activity id")?
                .to_owned())
        }
    })
    .await
    .context("startActivity")?;

    let connects = Arc::new(Semaphore::new(64));
    let (ready, mut readied) = mpsc::unbounded_channel();
    let (stop, stopped) = watch::channel(false);
    // When any screen last heard anything: the run ends once they have all been quiet a while.
    let heard = Arc::new((Instant::now(), AtomicU64::new(0)));
    let screens: Vec<_> = owners
        .iter()
        .zip(&running)
        .map(|(owner, activity)| {
            tokio::spawn(screen(
                screens_ws_url.to_owned(),
                owner.token.clone(),
                activity.clone(),
                connects.clone(),
                ready.clone(),
                stopped.clone(),
                heard.clone(),
            ))
        })
        .collect();
    drop(ready);
    for got in 0..activities {
        tokio::time::timeout(Duration::from_secs(120), readied.recv())
            .await
            .with_context(|| format!("{got} of {activities} screens subscribed"))?
            .with_context(|| format!("screens failed after {got} subscribed"))?;
    }
    let setup_seconds = setup.elapsed().as_secs_f64();

    // The run.
    let per_activity = PHONES_PER_ACTIVITY * usize::try_from(seconds)?;
    let sent: Arc<Vec<AtomicU64>> = Arc::new(
        (0..activities * per_activity)
            .map(|_| AtomicU64::new(0))
            .collect(),
    );
    let scheduled_at: Arc<Vec<AtomicU64>> = Arc::new(
        (0..activities * per_activity)
            .map(|_| AtomicU64::new(0))
            .collect(),
    );
    let authorizations: Arc<Vec<http::HeaderValue>> = Arc::new(
        watched
            .iter()
            .map(|phone| format!("Bearer {}", phone.token).parse())
            .collect::<Result<_, _>>()?,
    );
    let epoch = Instant::now();
    let uri: http::Uri = phones_url.parse()?;
    let mut lanes = Vec::with_capacity(CONNECTIONS);
    let connections: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (lane, due) = mpsc::channel(16);
            lanes.push(lane);
            tokio::spawn(phone_connection(
                uri.clone(),
                authorizations.clone(),
                sent.clone(),
                scheduled_at.clone(),
                per_activity,
                epoch,
                due,
            ))
        })
        .collect();
    let cpu_before: u64 = pids
        .iter()
        .map(|&pid| cpu_us(pid))
        .sum::<anyhow::Result<u64>>()?;
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let mut offered = 0_u64;
    let mut next_lane = 0;
    for second in 0..seconds {
        for j in 0..PHONES_PER_ACTIVITY {
            for a in 0..activities {
                let offset = second as f64
                    + j as f64 / PHONES_PER_ACTIVITY as f64
                    + a as f64 / (activities * PHONES_PER_ACTIVITY) as f64;
                let at = start + Duration::from_secs_f64(offset);
                if at > tokio::time::Instant::now() + Duration::from_millis(1) {
                    tokio::time::sleep_until(at).await;
                }
                let due = Due {
                    phone: a * PHONES_PER_ACTIVITY + j,
                    n: usize::try_from(second)? * PHONES_PER_ACTIVITY + j,
                    scheduled: micros(at.into_std().duration_since(epoch)),
                };
                lanes[next_lane].send(due).await?;
                next_lane = (next_lane + 1) % lanes.len();
                offered += 1;
            }
        }
    }
    let offered_seconds = start.elapsed().as_secs_f64();
    drop(lanes);
    let mut answers = Answers::default();
    for connection in connections {
        let done = connection.await??;
        answers.accepted += done.accepted;
        answers.rate_limited += done.rate_limited;
        answers.errors += done.errors;
        if answers.first_error.is_none() {
            answers.first_error = done.first_error;
        }
    }
    let sending_seconds = start.elapsed().as_secs_f64();
    // Late frames and alerts still count: wait until the screens have heard nothing for 2 s (at
    // most a minute).
    let quiet = Duration::from_secs(2);
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let last = Duration::from_micros(heard.1.load(Ordering::Relaxed));
        if heard.0.elapsed().saturating_sub(last) >= quiet || Instant::now() >= give_up {
            break;
        }
    }
    let cpu_after: u64 = pids
        .iter()
        .map(|&pid| cpu_us(pid))
        .sum::<anyhow::Result<u64>>()?;
    let _ = stop.send(true);

    // Frames against updates, alerts against the first accepted update inside.
    let phone_of: HashMap<&str, usize> = watched
        .iter()
        .enumerate()
        .map(|(p, phone)| (phone.id.as_str(), p))
        .collect();
    let sent_at = |activity: usize, n: usize| match sent[activity * per_activity + n]
        .load(Ordering::SeqCst)
    {
        0 | FAILED => None,
        us => Some(us),
    };
    let first_inside = (0..per_activity)
        .find(|&n| FIRST_DISTANCE - STEP * n as f64 <= RADIUS)
        .unwrap_or(per_activity);
    let (mut latencies, mut alert_latencies) = (Vec::new(), Vec::new());
    let mut from_schedule = Vec::new();
    let (mut frames, mut missed, mut alerts_expected, mut alerts_received, mut extra) =
        (0, 0, 0, 0, 0);
    for (activity, screen) in screens.into_iter().enumerate() {
        let seen = screen.await??;
        frames += seen.frames.len() as u64;
        // A frame reflects every update up to the newest it shows (kept non-decreasing, so the
        // search below stays valid even if frames arrived out of order).
        let mut newest = 0;
        let arrivals: Vec<(usize, u64)> = seen
            .frames
            .iter()
            .map(|&(n, at)| {
                newest = newest.max(n);
                (newest, micros(at.duration_since(epoch)))
            })
            .collect();
        for n in 0..per_activity {
            let Some(sent) = sent_at(activity, n) else {
                continue;
            };
            let from = arrivals.partition_point(|&(shown, _)| shown < n);
            match arrivals[from..].iter().find(|&&(_, at)| at >= sent) {
                Some(&(_, at)) => {
                    latencies.push(at - sent);
                    let meant = scheduled_at[activity * per_activity + n].load(Ordering::SeqCst);
                    from_schedule.push(at.saturating_sub(meant));
                }
                None => missed += 1,
            }
        }
        let mut alerts_of: HashMap<usize, Vec<u64>> = HashMap::new();
        for (user, at) in &seen.alerts {
            let phone = phone_of.get(user.as_str()).copied().unwrap_or(usize::MAX);
            alerts_of
                .entry(phone)
                .or_default()
                .push(micros(at.duration_since(epoch)));
        }
        for j in 0..PHONES_PER_ACTIVITY {
            let phone = activity * PHONES_PER_ACTIVITY + j;
            let entered = (first_inside..per_activity)
                .filter(|n| n % PHONES_PER_ACTIVITY == j)
                .find_map(|n| sent_at(activity, n));
            let received = alerts_of.remove(&phone).unwrap_or_default();
            extra += received.len().saturating_sub(1) as u64;
            if let Some(entered) = entered {
                alerts_expected += 1;
                if let Some(&at) = received.first() {
                    alerts_received += 1;
                    alert_latencies.push(at.saturating_sub(entered));
                }
            } else {
                extra += received.len() as u64;
            }
        }
        // Alerts for phones this activity does not watch.
        extra += alerts_of.values().map(|v| v.len() as u64).sum::<u64>();
    }
    latencies.sort_unstable();
    alert_latencies.sort_unstable();
    from_schedule.sort_unstable();
    Ok(ProximityFigures {
        activities,
        phones,
        seconds,
        setup_seconds,
        offered_per_second: offered as f64 / offered_seconds.max(f64::EPSILON),
        accepted: answers.accepted,
        accepted_per_second: answers.accepted as f64 / sending_seconds.max(f64::EPSILON),
        rate_limited: answers.rate_limited,
        errors: answers.errors,
        first_error: answers.first_error,
        frames,
        missed,
        p50_us: quantile(&latencies, 0.50),
        p99_us: quantile(&latencies, 0.99),
        max_us: latencies.last().copied().unwrap_or(0),
        scheduled_p99_us: quantile(&from_schedule, 0.99),
        alerts_expected,
        alerts_received,
        alerts_extra: extra,
        alert_p50_us: quantile(&alert_latencies, 0.50),
        alert_p99_us: quantile(&alert_latencies, 0.99),
        cpu_us_per_update: (cpu_after - cpu_before) as f64 / answers.accepted.max(1) as f64,
    })
}
