//! Runs: saving long tracks, importing big GPX files, and listing a large territory.
//!
//! A run's points must lie between its start and its save (a minute of clock skew allowed each
//! side), and the bench cannot set a run's start back, so every track here spans the 110 seconds
//! around `startRun`; for a 10,000-point track to cover what a 2.8-hour run covers (about 30 km),
//! `main` starts Rally for this part with `RALLY_RUN_MAX_SPEED_KMH=1000`. Every point is still
//! judged (glitches, sustained speed), measured and turned into cells.
//!
//! - **saveRun**: [`SAVES`] tracks of [`TRACK_POINTS`] points, each 29.7 km due east on its own row
//!   (rows 222 m apart, so no two share a cell); time per save from the request to the answer;
//!   cells captured per second of save.
//! - **GPX import**: a GPX 1.1 file of about 2 MB (points with elevation and heart-rate
//!   extensions), imported [`IMPORTS`] times one after the other; tracks per second, and the
//!   server's peak RSS (`VmHWM`) against its RSS before the first import.
//! - **territories**: the event's rows keep coming until it holds at least [`TERRITORY_CELLS`]
//!   cells; then `territories(eventId)` at [`LISTERS`] concurrent requests for the bench's duration,
//!   with and without `boundary`, beside `{ __typename }` on the same instance.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::http::{Figures, TRIVIAL, load};
use crate::rally::{call, signup};

/// Points in each saved track.
pub const TRACK_POINTS: usize = 10_000;
/// Tracks saved in the saveRun scenario.
pub const SAVES: usize = 20;
/// GPX imports.
pub const IMPORTS: usize = 10;
/// Cells the listed territory holds at least.
pub const TERRITORY_CELLS: usize = 100_000;
/// Concurrent `territories` requests.
pub const LISTERS: usize = 4;
/// Seconds a track spans, centred on the run's start.
const SPAN_SECONDS: f64 = 110.0;
/// Meters a track covers.
const TRACK_METERS: f64 = 29_700.0;

const PASSWORD: &str = "benchmark-password";
const SAVE: &str = "mutation($r: ID!, $t: [TrackPointInput!]!) { saveRun(runId: $r, track: $t) { status cellsCaptured rejectionReason } }";

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
}

fn quantile(sorted: &[u64], q: f64) -> u64 {
    sorted
        .get(((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0)
}

/// The points of row `row`: due east from (45°, 5°) + row × 222 m north, spanning the 110 s
/// around `started`.
fn row_points(row: usize, started: DateTime<Utc>) -> Vec<(f64, f64, DateTime<Utc>)> {
    let latitude = 45.0 + row as f64 * 0.002;
    let per_degree = 111_195.0 * latitude.to_radians().cos();
    (0..TRACK_POINTS)
        .map(|n| {
            let share = n as f64 / (TRACK_POINTS - 1) as f64;
            let at = started - chrono::Duration::milliseconds((SPAN_SECONDS * 500.0) as i64)
                + chrono::Duration::milliseconds((share * SPAN_SECONDS * 1000.0) as i64);
            (latitude, 5.0 + share * TRACK_METERS / per_degree, at)
        })
        .collect()
}

/// A GPX 1.1 file of `points`, as a watch exports it.
fn gpx(points: &[(f64, f64, DateTime<Utc>)]) -> String {
    let mut file = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<gpx creator="Bench" version="1.1" xmlns="http://www.topografix.com/GPX/1/1" xmlns:gpxtpx="http://www.garmin.com/xmlschemas/TrackPointExtension/v1">
 <metadata><time>2026-01-01T00:00:00Z</time></metadata>
 <trk><name>Bench run</name><type>running</type><trkseg>
"#,
    );
    for (n, (latitude, longitude, at)) in points.iter().enumerate() {
        file.push_str(&format!(
            "  <trkpt lat=\"{latitude:.7}\" lon=\"{longitude:.7}\"><ele>{:.1}</ele><time>{}</time><extensions><gpxtpx:TrackPointExtension><gpxtpx:hr>{}</gpxtpx:hr><gpxtpx:cad>{}</gpxtpx:cad></gpxtpx:TrackPointExtension></extensions></trkpt>\n",
            100.0 + (n % 50) as f64 * 0.2,
            rfc3339(*at),
            140 + n % 30,
            85 + n % 5,
        ));
    }
    file.push_str(" </trkseg></trk>\n</gpx>\n");
    file
}

/// The organizer, the runner and the LIVE event every run of this part belongs to.
pub struct Game {
    http: reqwest::Client,
    url: String,
    organizer: String,
    runner: String,
    runner_handle: String,
    event: String,
    row: usize,
}

impl Game {
    /// Signs both up and makes the event LIVE.
    pub async fn set_up(url: &str, tag: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::new();
        let organizer = signup(&http, url, &format!("{tag}org"), PASSWORD).await?;
        let runner_handle = format!("{tag}run");
        let runner = signup(&http, url, &runner_handle, PASSWORD).await?;
        let created = call(
            &http,
            url,
            Some(&organizer),
            "mutation($s: DateTime!) { createEvent(input: { title: \"Bench run\", startsAt: $s }) { id } }",
            json!({ "s": rfc3339(Utc::now() - chrono::Duration::hours(1)) }),
        )
        .await?;
        let event = created["createEvent"]["id"]
            .as_str()
            .context("event id")?
            .to_owned();
        call(
            &http,
            url,
            Some(&organizer),
            "mutation($id: ID!) { updateEvent(id: $id, input: { status: LIVE }) { id } }",
            json!({ "id": event }),
        )
        .await?;
        Ok(Self {
            http,
            url: url.to_owned(),
            organizer,
            runner,
            runner_handle,
            event,
            row: 0,
        })
    }

    /// A ticket and a RUNNING run; its id and start.
    async fn start(&self) -> anyhow::Result<(String, DateTime<Utc>)> {
        let issued = call(
            &self.http,
            &self.url,
            Some(&self.organizer),
            "mutation($e: ID!, $h: [String!]!) { issueTickets(eventId: $e, handles: $h) { id } }",
            json!({ "e": self.event, "h": [self.runner_handle] }),
        )
        .await?;
        let ticket = issued["issueTickets"][0]["id"].as_str().context("ticket")?;
        let started = call(
            &self.http,
            &self.url,
            Some(&self.runner),
            "mutation($t: ID!) { startRun(ticketId: $t) { id startedAt } }",
            json!({ "t": ticket }),
        )
        .await?;
        let id = started["startRun"]["id"]
            .as_str()
            .context("run")?
            .to_owned();
        let at: DateTime<Utc> = started["startRun"]["startedAt"]
            .as_str()
            .context("startedAt")?
            .parse()?;
        Ok((id, at))
    }

    /// Saves the next row as a track; time taken and cells captured.
    async fn save_row(&mut self) -> anyhow::Result<(Duration, u64)> {
        let (run, started) = self.start().await?;
        let track: Vec<Value> = row_points(self.row, started)
            .into_iter()
            .map(|(latitude, longitude, at)| {
                json!({ "latitude": latitude, "longitude": longitude, "at": rfc3339(at) })
            })
            .collect();
        self.row += 1;
        let body = json!({ "query": SAVE, "variables": { "r": run, "t": track } }).to_string();
        let sent = Instant::now();
        let answer: Value = self
            .http
            .post(&self.url)
            .bearer_auth(&self.runner)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?
            .json()
            .await?;
        let took = sent.elapsed();
        let saved = &answer["data"]["saveRun"];
        if saved["status"] != "SAVED" {
            anyhow::bail!("saveRun: {answer}");
        }
        Ok((took, saved["cellsCaptured"].as_u64().unwrap_or(0)))
    }

    /// Imports the next row as a GPX file; time taken and the file's size.
    async fn import_row(&mut self) -> anyhow::Result<(Duration, usize)> {
        let (run, started) = self.start().await?;
        let file = gpx(&row_points(self.row, started));
        self.row += 1;
        let size = file.len();
        let form = reqwest::multipart::Form::new()
            .text(
                "operations",
                json!({ "query": "mutation($r: ID!, $f: Upload!) { importRunGpx(runId: $r, file: $f) { status rejectionReason } }", "variables": { "r": run, "f": null } }).to_string(),
            )
            .text("map", r#"{"0":["variables.f"]}"#)
            .part(
                "0",
                reqwest::multipart::Part::bytes(file.into_bytes()).file_name("run.gpx"),
            );
        let sent = Instant::now();
        let answer: Value = self
            .http
            .post(&self.url)
            .bearer_auth(&self.runner)
            .multipart(form)
            .send()
            .await?
            .json()
            .await?;
        let took = sent.elapsed();
        if answer["data"]["importRunGpx"]["status"] != "SAVED" {
            anyhow::bail!("importRunGpx: {answer}");
        }
        Ok((took, size))
    }
}

/// What the runs part measured.
pub struct RunsFigures {
    pub saves: usize,
    pub save_p50_us: u64,
    pub save_max_us: u64,
    pub cells_per_second: f64,
    pub cells_per_save: f64,
    pub imports: usize,
    pub gpx_bytes: usize,
    pub import_p50_us: u64,
    pub imports_per_second: f64,
    pub rss_before_bytes: u64,
    pub peak_rss_bytes: u64,
    pub territory_cells: u64,
    pub seed_seconds: f64,
    pub listed: Figures,
    pub listed_no_boundary: Figures,
    pub trivial: Figures,
    pub list_bytes: usize,
}

/// Peak resident memory (`VmHWM`) of `pid`, in bytes.
fn peak_rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .context("VmHWM")?
        .parse()?;
    Ok(kib * 1024)
}

/// Runs the three scenarios on one instance (`pid` is its process).
pub async fn run(
    url: &str,
    pid: u32,
    tag: &str,
    duration: Duration,
) -> anyhow::Result<RunsFigures> {
    let mut game = Game::set_up(url, tag).await?;
    // Imports first, on a fresh instance, so the peak RSS is theirs.
    let rss_before = crate::live::rss_bytes(pid)?;
    let mut imports = Vec::with_capacity(IMPORTS);
    let mut gpx_bytes = 0;
    for _ in 0..IMPORTS {
        let (took, size) = game.import_row().await?;
        imports.push(micros(took));
        gpx_bytes = size;
    }
    let peak = peak_rss(pid)?;
    let import_spent: u64 = imports.iter().sum();
    imports.sort_unstable();

    let mut times = Vec::with_capacity(SAVES);
    let mut cells = 0;
    for _ in 0..SAVES {
        let (took, captured) = game.save_row().await?;
        times.push(micros(took));
        cells += captured;
    }
    let spent: u64 = times.iter().sum();
    times.sort_unstable();

    // Grow the territory to the target size (the saves above count).
    let seeding = Instant::now();
    // (The imported rows hold cells too: the table counts what the listing returns.)
    let mut held = cells;
    while held < TERRITORY_CELLS as u64 {
        held += game.save_row().await?.1;
    }
    let seed_seconds = seeding.elapsed().as_secs_f64();
    let listed_query = json!({ "query": "query($e: ID!) { territories(eventId: $e) { cell capturedAt boundary owner { handle } } }", "variables": { "e": game.event } }).to_string();
    let bare_query = json!({ "query": "query($e: ID!) { territories(eventId: $e) { cell capturedAt owner { handle } } }", "variables": { "e": game.event } }).to_string();
    let sample = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(listed_query.clone())
        .send()
        .await?
        .bytes()
        .await?;
    let listed_cells = serde_json::from_slice::<Value>(&sample)?["data"]["territories"]
        .as_array()
        .map_or(0, Vec::len);
    let listed = load(url, listed_query, None, LISTERS, duration).await;
    let listed_no_boundary = load(url, bare_query, None, LISTERS, duration).await;
    let trivial = load(url, TRIVIAL.to_owned(), None, LISTERS, duration).await;
    Ok(RunsFigures {
        saves: SAVES,
        save_p50_us: quantile(&times, 0.5),
        save_max_us: times.last().copied().unwrap_or(0),
        cells_per_second: cells as f64 / (spent as f64 / 1e6).max(f64::EPSILON),
        cells_per_save: cells as f64 / SAVES as f64,
        imports: IMPORTS,
        gpx_bytes,
        import_p50_us: quantile(&imports, 0.5),
        imports_per_second: IMPORTS as f64 / (import_spent as f64 / 1e6).max(f64::EPSILON),
        rss_before_bytes: rss_before,
        peak_rss_bytes: peak,
        territory_cells: u64::try_from(listed_cells).unwrap_or(held),
        seed_seconds,
        listed,
        listed_no_boundary,
        trivial,
        list_bytes: sample.len(),
    })
}
