//! Runs: tickets issued by organizers and consumed once, runs saved from tracks or GPX files and
//! judged for plausibility, territory captured cell by cell (checked against the track with a
//! point-in-polygon and a haversine written here, and each fix's H3 cell by `h3o`), tokens mined up
//! to the cap and claimed once, and the nightly finisher at its configured time and zone.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Duration as Span, SecondsFormat, Utc};
use rally::entity::{job_lease, job_run, run};
use rally::jobs::schedule::Schedule;
use rally::jobs::service::{Job, Work, run_due, take_lease};
use sea_orm::prelude::Expr;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::fixtures::create_event;
use crate::common::{Backend, Gql, Session, TRANSPORT_WS, TestApp, WsClient};

crate::on_every_backend!(
    the_whole_game_from_ticket_to_finished_event,
    one_ticket_starts_one_run_under_a_race,
    tickets_and_runs_refuse_strangers,
    a_run_saved_after_its_event_finished_captures_nothing,
    a_run_forgotten_at_an_ended_event_does_not_block_the_next,
    implausible_tracks_are_rejected_and_real_ones_pass,
    gpx_exports_of_real_shapes_are_imported,
    pauses_and_gaps_capture_no_cells_between,
    the_last_runner_holds_a_cell_and_each_capture_is_pushed,
    a_territory_stream_that_fell_behind_shows_each_cell_as_it_is_now,
    ten_concurrent_claims_move_the_tokens_once,
    the_finisher_honours_its_time_and_zone,
    a_missed_finish_is_caught_up_once_at_start,
    instances_racing_for_one_moment_do_it_once,
    overlapping_holders_pay_each_interval_once,
    claims_racing_accruals_lose_no_token,
    runs_racing_the_events_deletion_are_refused_cleanly,
);

const RUN: &str = "id status distanceMeters durationSeconds cellsCaptured rejectionReason startedAt finishedAt user { handle } event { id }";
const PARIS: (f64, f64) = (48.8566, 2.3522);
const EARTH_RADIUS_M: f64 = 6_371_008.8;

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Haversine, written here independently of the server's geodesic.
fn haversine(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lon1) = (a.0.to_radians(), a.1.to_radians());
    let (lat2, lon2) = (b.0.to_radians(), b.1.to_radians());
    let h = ((lat2 - lat1) / 2.0).sin().powi(2)
        + lat1.cos() * lat2.cos() * ((lon2 - lon1) / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().asin()
}

/// A runner heading east from `origin` at `speed` m/s from `from`, one fix every `step` seconds
/// for `seconds`, each fix off by up to `jitter` meters north or south (drifting slowly, as GPS
/// errors do).
fn track(
    origin: (f64, f64),
    from: DateTime<Utc>,
    speed: f64,
    seconds: i64,
    step: i64,
    jitter: f64,
) -> Vec<Value> {
    (0..=seconds / step)
        .map(|n| {
            let s = n * step;
            let wobble = (s as f64 / 30.0).sin();
            let latitude = origin.0 + wobble * jitter / 111_195.0;
            let longitude =
                origin.1 + speed * s as f64 / (111_195.0 * origin.0.to_radians().cos());
            json!({ "latitude": latitude, "longitude": longitude, "at": rfc3339(from + Span::seconds(s)) })
        })
        .collect()
}

fn point(value: &Value) -> (f64, f64) {
    (
        value["latitude"].as_f64().expect("latitude"),
        value["longitude"].as_f64().expect("longitude"),
    )
}

fn length(track: &[Value]) -> f64 {
    track
        .windows(2)
        .map(|pair| haversine(point(&pair[0]), point(&pair[1])))
        .sum()
}

/// Whether `spot` lies inside the polygon of `[lat, lng]` corners (ray casting, written here).
fn inside(spot: (f64, f64), corners: &[Value]) -> bool {
    let corners: Vec<(f64, f64)> = corners
        .iter()
        .map(|c| (c[0].as_f64().expect("lat"), c[1].as_f64().expect("lng")))
        .collect();
    let mut crossings = false;
    for i in 0..corners.len() {
        let (a, b) = (corners[i], corners[(i + 1) % corners.len()]);
        if (a.0 > spot.0) != (b.0 > spot.0) {
            let lng = a.1 + (spot.0 - a.0) / (b.0 - a.0) * (b.1 - a.1);
            if spot.1 < lng {
                crossings = !crossings;
            }
        }
    }
    crossings
}

/// A SCHEDULED event of `organizer` starting at `starts_at`; its id.
async fn scheduled_event(app: &TestApp, organizer: &Session, starts_at: DateTime<Utc>) -> String {
    create_event(app, organizer, "Night run", &rfc3339(starts_at)).await["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

async fn live_event(app: &TestApp, organizer: &Session, starts_at: DateTime<Utc>) -> String {
    let id = scheduled_event(app, organizer, starts_at).await;
    set_status(app, organizer, &id, "LIVE").await;
    id
}

/// `organizer` moves `event` to `status` (LIVE, FINISHED or CANCELLED).
async fn set_status(app: &TestApp, organizer: &Session, event: &str, status: &str) {
    app.gql_as(
        organizer,
        "mutation($id: ID!, $s: EventStatus!) { updateEvent(id: $id, input: { status: $s }) { status } }",
        json!({ "id": event, "s": status }),
    )
    .await
    .data();
}

async fn issue(app: &TestApp, organizer: &Session, event: &str, handles: &[&str]) -> Gql {
    app.gql_as(
        organizer,
        "mutation($e: ID!, $h: [String!]!) { issueTickets(eventId: $e, handles: $h) { id status owner { handle } event { id } issuedAt consumedAt } }",
        json!({ "e": event, "h": handles }),
    )
    .await
}

async fn ticket(app: &TestApp, organizer: &Session, event: &str, runner: &Session) -> String {
    let issued = issue(app, organizer, event, &[&runner.handle]).await;
    issued.data()["issueTickets"][0]["id"]
        .as_str()
        .expect("ticket id")
        .to_owned()
}

async fn start_run(app: &TestApp, runner: &Session, ticket: &str) -> Gql {
    app.gql_as(
        runner,
        &format!("mutation($t: ID!) {{ startRun(ticketId: $t) {{ {RUN} }} }}"),
        json!({ "t": ticket }),
    )
    .await
}

/// A RUNNING run of `runner` at a fresh LIVE event of `organizer`, started at `started_at` (the
/// database row is set back, as if the runner had set off then).
async fn running(
    app: &TestApp,
    organizer: &Session,
    runner: &Session,
    started_at: DateTime<Utc>,
) -> (String, String) {
    let event = live_event(app, organizer, Utc::now() - Span::hours(1)).await;
    let id = started_run(app, organizer, &event, runner, started_at).await;
    (event, id)
}

/// A RUNNING run of `runner` at `event` on a ticket `organizer` gives, set back to `started_at`.
async fn started_run(
    app: &TestApp,
    organizer: &Session,
    event: &str,
    runner: &Session,
    started_at: DateTime<Utc>,
) -> String {
    let ticket = ticket(app, organizer, event, runner).await;
    let id = start_run(app, runner, &ticket).await.data()["startRun"]["id"]
        .as_str()
        .expect("run id")
        .to_owned();
    set_back(app, &id, started_at).await;
    id
}

/// An hourly accrual job named `name`, and its moment a hundred hours back (hourly moments are
/// whole hours since the Unix epoch, computed here, not by the scheduler).
fn hourly_accrual(name: &'static str) -> (Job, DateTime<Utc>) {
    let hour = Span::hours(1);
    let job = Job {
        name,
        schedule: Schedule::Every(hour),
        work: Work::AccrueTokens,
    };
    let now = Utc::now().timestamp();
    let last = DateTime::from_timestamp(now - now.rem_euclid(3_600), 0).expect("a time");
    (job, last - hour * 100)
}

/// `runner` holding cells at a LIVE event of `organizer`'s, by a run saved through them; how many.
async fn holding_cells(app: &TestApp, organizer: &Session, runner: &Session) -> i64 {
    let start = Utc::now() - Span::minutes(30);
    let (event, run) = running(app, organizer, runner, start).await;
    save(
        app,
        runner,
        &run,
        &track(PARIS, start + Span::minutes(1), 3.0, 300, 2, 0.0),
    )
    .await
    .data();
    let cells = territories(app, &event).await.len() as i64;
    assert!(cells > 0, "the run holds cells");
    cells
}

/// Sets run `id`'s start back to `started_at` in the database, as if the runner set off then.
async fn set_back(app: &TestApp, id: &str, started_at: DateTime<Utc>) {
    run::Entity::update_many()
        .col_expr(run::Column::StartedAt, Expr::value(started_at))
        .filter(run::Column::Id.eq(Uuid::parse_str(id).expect("uuid")))
        .exec(&app.state.db)
        .await
        .expect("set back");
}

async fn save(app: &TestApp, runner: &Session, run: &str, track: &[Value]) -> Gql {
    app.gql_as(
        runner,
        &format!("mutation($r: ID!, $t: [TrackPointInput!]!) {{ saveRun(runId: $r, track: $t) {{ {RUN} }} }}"),
        json!({ "r": run, "t": track }),
    )
    .await
}

async fn territories(app: &TestApp, event: &str) -> Vec<Value> {
    app.gql(
        "query($e: ID!) { territories(eventId: $e) { cell capturedAt boundary owner { handle } } }",
        json!({ "e": event }),
    )
    .await
    .data()["territories"]
        .as_array()
        .expect("list")
        .clone()
}

async fn wallet(app: &TestApp, who: &Session) -> Value {
    app.gql_as(
        who,
        "{ me { wallet { tokens claimable cap nextAccrualAt } } }",
        json!({}),
    )
    .await
    .data()["me"]["wallet"]
        .clone()
}

/// Polls the wallet until `done` holds (10 s at most).
async fn wallet_until(app: &TestApp, who: &Session, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..200 {
        let now = wallet(app, who).await;
        if done(&now) {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the wallet never got there: {}", wallet(app, who).await);
}

async fn subscribe(
    app: &TestApp,
    who: Option<&Session>,
    query: &str,
    variables: Value,
) -> WsClient {
    let mut socket = app.ws(TRANSPORT_WS).await;
    let payload = who.map_or(
        json!({}),
        |who| json!({ "authorization": format!("Bearer {}", who.access) }),
    );
    socket.init(payload).await;
    socket.subscribe("s", query, variables).await;
    socket
}

/// The seed's flow: a ticket, a run, its territory, tokens mined and claimed, the event finished at
/// the finish time (with the unused ticket expired).
async fn the_whole_game_from_ticket_to_finished_event(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.mining_interval_seconds = 1).await;
    let org = app.signup("org").await;
    let ann = app.signup("ann").await;
    let event = live_event(&app, &org, Utc::now() - Span::hours(1)).await;

    let issued = issue(&app, &org, &event, &["ann", "ann"]).await;
    assert_eq!(
        issued.data()["issueTickets"]
            .as_array()
            .expect("list")
            .len(),
        1,
        "one ticket per named user per call"
    );
    issue(&app, &org, &event, &["ann"]).await.data();
    let mine = app
        .gql_as(&ann, "{ myTickets { id status event { id } } }", json!({}))
        .await;
    let tickets = mine.data()["myTickets"].as_array().expect("list").clone();
    assert_eq!(tickets.len(), 2, "{tickets:?}");
    assert!(tickets.iter().all(|t| t["status"] == "ACTIVE"));

    let started = start_run(&app, &ann, tickets[0]["id"].as_str().expect("id")).await;
    let run = started.data()["startRun"].clone();
    assert_eq!(run["status"], "RUNNING");
    let id = run["id"].as_str().expect("id").to_owned();
    set_back(&app, &id, Utc::now() - Span::minutes(20)).await;
    let path = track(PARIS, Utc::now() - Span::minutes(18), 3.0, 900, 2, 4.0);
    let saved = save(&app, &ann, &id, &path).await;
    let saved = saved.data()["saveRun"].clone();
    assert_eq!(saved["status"], "SAVED", "{saved}");
    let distance = saved["distanceMeters"].as_f64().expect("distance");
    let expected = length(&path);
    assert!(
        (distance - expected).abs() <= expected * 0.01,
        "{distance} m vs {expected} m"
    );
    assert_eq!(saved["durationSeconds"], 900);
    let cells = saved["cellsCaptured"].as_i64().expect("cells");
    assert!(cells >= 20, "2.7 km captures dozens of cells: {cells}");

    let held = territories(&app, &event).await;
    assert_eq!(held.len() as i64, cells);
    assert!(held.iter().all(|cell| cell["owner"]["handle"] == "ann"));
    for fix in &path {
        assert!(
            held.iter()
                .any(|cell| inside(point(fix), cell["boundary"].as_array().expect("boundary"))),
            "no held cell contains {fix}"
        );
    }
    // And by H3 itself: each fix's cell at the configured resolution is held, named as H3 does.
    let resolution =
        h3o::Resolution::try_from(app.state.config.h3_resolution).expect("a resolution");
    for fix in &path {
        let (latitude, longitude) = point(fix);
        let cell = h3o::LatLng::new(latitude, longitude)
            .expect("a position")
            .to_cell(resolution)
            .to_string();
        assert!(
            held.iter().any(|held| held["cell"] == cell.as_str()),
            "{fix} is in {cell}, which is not held"
        );
    }

    // Tokens accrue every second (cells × 1) up to the cap of 100, then are claimed.
    let full = wallet_until(&app, &ann, |w| w["claimable"] == 100).await;
    assert_eq!(full["cap"], 100);
    assert!(full["nextAccrualAt"].is_string());
    let claimed = app
        .gql_as(
            &ann,
            "mutation { claimTokens { tokens claimable } }",
            json!({}),
        )
        .await;
    let claimed = claimed.data()["claimTokens"].clone();
    assert!(
        claimed["tokens"].as_i64().expect("tokens") >= 100,
        "{claimed}"
    );
    assert!(
        claimed["claimable"].as_i64().expect("claimable") < 100,
        "{claimed}"
    );

    // Events ended by hand: their tickets show EXPIRED at once; the finisher marks the rows.
    let cancelled = scheduled_event(&app, &org, Utc::now() + Span::days(1)).await;
    let ended = live_event(&app, &org, Utc::now() - Span::hours(2)).await;
    for (id, status) in [(&cancelled, "CANCELLED"), (&ended, "FINISHED")] {
        issue(&app, &org, id, &["ann"]).await.data();
        set_status(&app, &org, id, status).await;
    }
    let shown = app
        .gql_as(
            &ann,
            "{ myTickets(activeOnly: false) { status event { id } } }",
            json!({}),
        )
        .await;
    for ticket in shown.data()["myTickets"].as_array().expect("list") {
        if ticket["event"]["id"] != event.as_str() {
            assert_eq!(ticket["status"], "EXPIRED", "{ticket}");
        }
    }

    // A deploy sets the finish time ten seconds ahead: then the event finishes, on its own.
    let finish = Utc::now() + Span::seconds(10);
    let app = app
        .restart_with(|c| c.event_finish_time = finish.time())
        .await;
    let mut statuses = subscribe(
        &app,
        None,
        "subscription { eventStatusChanged { id status } }",
        json!({}),
    )
    .await;
    app.listening("events:status-changes", 1).await;
    let change = first_change_from(&mut statuses, finish).await;
    assert_eq!(
        change["eventStatusChanged"],
        json!({ "id": event, "status": "FINISHED" })
    );
    let after = app
        .gql_as(
            &ann,
            "{ myTickets(activeOnly: false) { id status } }",
            json!({}),
        )
        .await;
    let mut statuses_now: Vec<String> = after.data()["myTickets"]
        .as_array()
        .expect("list")
        .iter()
        .map(|t| t["status"].as_str().expect("status").to_owned())
        .collect();
    statuses_now.sort();
    assert_eq!(
        statuses_now,
        ["CONSUMED", "EXPIRED", "EXPIRED", "EXPIRED"],
        "the run's, the unused one's and the two of the events ended by hand"
    );
    // As stored, not only as shown: the finisher expired the unused ticket's row itself (the
    // query shows an ACTIVE ticket of a finished event as EXPIRED whatever the row says).
    let mut stored = stored_tickets(&app, &event).await;
    stored.sort_by_key(|status| format!("{status:?}"));
    assert_eq!(
        stored,
        [
            rally::entity::ticket::Status::Consumed,
            rally::entity::ticket::Status::Expired
        ]
    );
    let late = start_run(&app, &ann, tickets[1]["id"].as_str().expect("id")).await;
    late.assert_error("CONFLICT", None);
    for id in [&cancelled, &ended] {
        assert_eq!(
            stored_tickets(&app, id).await,
            [rally::entity::ticket::Status::Expired],
            "the finisher expired the ticket of an event ended by hand"
        );
    }
}

/// The statuses of `event`'s tickets as their rows hold them (not as the API shows them).
async fn stored_tickets(app: &TestApp, event: &str) -> Vec<rally::entity::ticket::Status> {
    rally::entity::ticket::Entity::find()
        .filter(rally::entity::ticket::Column::EventId.eq(Uuid::parse_str(event).expect("uuid")))
        .all(&app.state.db)
        .await
        .expect("read")
        .into_iter()
        .map(|ticket| ticket.status)
        .collect()
}

async fn one_ticket_starts_one_run_under_a_race(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let org = app.signup("org").await;
    let bob = app.signup("bob").await;
    let event = live_event(&app, &org, Utc::now() - Span::hours(1)).await;
    let ticket = ticket(&app, &org, &event, &bob).await;
    let attempts: Vec<Gql> =
        futures_util::future::join_all((0..10).map(|_| start_run(&app, &bob, &ticket))).await;
    let started = attempts
        .iter()
        .filter(|a| a.body.get("errors").is_none())
        .count();
    assert_eq!(started, 1, "exactly one run");
    for refused in attempts.iter().filter(|a| a.body.get("errors").is_some()) {
        assert_eq!(refused.code(), "CONFLICT", "{}", refused.body);
    }
    let runs = app
        .gql_as(&bob, "{ myRuns { id status } }", json!({}))
        .await;
    assert_eq!(runs.data()["myRuns"].as_array().expect("list").len(), 1);
    // A second ticket while a run is RUNNING: one RUNNING run per runner.
    let second = self::ticket(&app, &org, &event, &bob).await;
    start_run(&app, &bob, &second)
        .await
        .assert_error("CONFLICT", None);
    let tickets = app.gql_as(&bob, "{ myTickets { id } }", json!({})).await;
    assert_eq!(
        tickets.data()["myTickets"],
        json!([{ "id": second }]),
        "the refused start left the second ticket ACTIVE"
    );
}

async fn tickets_and_runs_refuse_strangers(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let org = app.signup("org").await;
    let bob = app.signup("bob").await;
    let eve = app.signup("eve").await;
    let event = live_event(&app, &org, Utc::now() - Span::hours(1)).await;

    issue(&app, &eve, &event, &["bob"])
        .await
        .assert_error("FORBIDDEN", None);
    issue(&app, &org, &event, &["bob", "nobody_here"])
        .await
        .assert_error("BAD_USER_INPUT", Some("handles[1]"));
    issue(&app, &org, &event, &[])
        .await
        .assert_error("BAD_USER_INPUT", Some("handles"));
    let none = app.gql_as(&bob, "{ myTickets { id } }", json!({})).await;
    assert_eq!(
        none.data()["myTickets"],
        json!([]),
        "a refused call issued nothing"
    );
    app.gql("{ myTickets { id } }", json!({}))
        .await
        .assert_error("UNAUTHENTICATED", None);

    let scheduled = scheduled_event(&app, &org, Utc::now() + Span::days(30)).await;
    let early = ticket(&app, &org, &scheduled, &bob).await;
    start_run(&app, &bob, &early)
        .await
        .assert_error("CONFLICT", None);

    let ticket = ticket(&app, &org, &event, &bob).await;
    start_run(&app, &eve, &ticket)
        .await
        .assert_error("NOT_FOUND", None);
    let run = start_run(&app, &bob, &ticket).await.data()["startRun"]["id"].clone();
    let theirs = app
        .gql_as(
            &eve,
            "query($id: ID!) { run(id: $id) { id } }",
            json!({ "id": run }),
        )
        .await;
    theirs.assert_error("NOT_FOUND", None);
    assert_eq!(theirs.body["data"]["run"], Value::Null);
    let path = track(PARIS, Utc::now(), 3.0, 2, 1, 0.0);
    save(&app, &eve, run.as_str().expect("id"), &path)
        .await
        .assert_error("NOT_FOUND", None);
    // A stranger's bad track is a stranger's request: the run stays hidden.
    let bad = [json!({ "latitude": 91.0, "longitude": 0.0, "at": rfc3339(Utc::now()) })];
    save(&app, &eve, run.as_str().expect("id"), &bad)
        .await
        .assert_error("NOT_FOUND", None);
    let eves = app.gql_as(&eve, "{ myRuns { id } }", json!({})).await;
    assert_eq!(eves.data()["myRuns"], json!([]));
    app.gql("{ myRuns { id } }", json!({}))
        .await
        .assert_error("UNAUTHENTICATED", None);
    // Someone else's wallet is null; one's own is not.
    let looked = app
        .gql_as(
            &eve,
            "query { user(handle: \"bob\") { wallet { tokens } } }",
            json!({}),
        )
        .await;
    assert_eq!(looked.data()["user"]["wallet"], Value::Null);
    let own = wallet(&app, &bob).await;
    assert_eq!(own["tokens"], 0);
    assert_eq!(
        own["nextAccrualAt"],
        Value::Null,
        "no cell held, nothing accrues"
    );
    app.gql("mutation { claimTokens { tokens } }", json!({}))
        .await
        .assert_error("UNAUTHENTICATED", None);

    // A finished event takes no more tickets.
    set_status(&app, &org, &event, "FINISHED").await;
    issue(&app, &org, &event, &["bob"])
        .await
        .assert_error("CONFLICT", None);
}

/// The map closes with the event: a run saved after its event finished is SAVED with its distance
/// and duration but captures no cell, and the territory stays as it was at the finish.
async fn a_run_saved_after_its_event_finished_captures_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let org = app.signup("org").await;
    let ann = app.signup("ann").await;
    let bob = app.signup("bob").await;
    let event = live_event(&app, &org, Utc::now() - Span::hours(1)).await;
    let set_off = Utc::now() - Span::minutes(20);
    let runs = [
        started_run(&app, &org, &event, &ann, set_off).await,
        started_run(&app, &org, &event, &bob, set_off).await,
    ];
    let before = save(
        &app,
        &bob,
        &runs[1],
        &track(PARIS, Utc::now() - Span::minutes(18), 3.0, 600, 2, 4.0),
    )
    .await;
    let bobs = before.data()["saveRun"]["cellsCaptured"]
        .as_i64()
        .expect("cells");
    assert!(bobs > 0, "{before:?}");
    set_status(&app, &org, &event, "FINISHED").await;

    // Ann ran elsewhere, a kilometre north, but saves once the event has finished.
    let north = (PARIS.0 + 0.01, PARIS.1);
    let path = track(north, Utc::now() - Span::minutes(18), 3.0, 600, 2, 4.0);
    let late = save(&app, &ann, &runs[0], &path).await;
    let late = late.data()["saveRun"].clone();
    assert_eq!(late["status"], "SAVED", "{late}");
    assert_eq!(late["cellsCaptured"], 0, "{late}");
    assert_eq!(late["durationSeconds"], 600);
    let distance = late["distanceMeters"].as_f64().expect("distance");
    let expected = length(&path);
    assert!(
        (distance - expected).abs() <= expected * 0.01,
        "{distance} m vs {expected} m"
    );
    let held = territories(&app, &event).await;
    assert_eq!(held.len() as i64, bobs, "the map as it was at the finish");
    assert!(held.iter().all(|cell| cell["owner"]["handle"] == "bob"));
}

/// `runner`'s run `id` as `run(id)` shows it.
async fn run_of(app: &TestApp, runner: &Session, id: &str) -> Value {
    app.gql_as(
        runner,
        "query($id: ID!) { run(id: $id) { status finishedAt rejectionReason cellsCaptured } }",
        json!({ "id": id }),
    )
    .await
    .data()["run"]
        .clone()
}

/// The app never saved Ann's run at last night's event. While that event was LIVE she had to save
/// it first; once it ended, her next run starts and the forgotten one ends REJECTED, for good.
async fn a_run_forgotten_at_an_ended_event_does_not_block_the_next(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let org = app.signup("org").await;
    let ann = app.signup("ann").await;
    let bob = app.signup("bob").await;
    let last_night = live_event(&app, &org, Utc::now() - Span::hours(3)).await;
    let tonight = live_event(&app, &org, Utc::now() - Span::hours(1)).await;
    let forgotten = started_run(&app, &org, &last_night, &ann, Utc::now() - Span::hours(2)).await;
    // Bob's run at last night's event was forgotten too; it is his, and stays as it is.
    let bobs = started_run(&app, &org, &last_night, &bob, Utc::now() - Span::hours(2)).await;
    let next = ticket(&app, &org, &tonight, &ann).await;
    start_run(&app, &ann, &next)
        .await
        .assert_error("CONFLICT", None);

    set_status(&app, &org, &last_night, "FINISHED").await;
    // A start refused for its own reason (its event is not LIVE yet) leaves the forgotten run be.
    let tomorrow = scheduled_event(&app, &org, Utc::now() + Span::days(1)).await;
    let early = ticket(&app, &org, &tomorrow, &ann).await;
    start_run(&app, &ann, &early)
        .await
        .assert_error("CONFLICT", None);
    assert_eq!(run_of(&app, &ann, &forgotten).await["status"], "RUNNING");
    let started = start_run(&app, &ann, &next).await;
    assert_eq!(started.data()["startRun"]["status"], "RUNNING");
    let ended = run_of(&app, &ann, &forgotten).await;
    assert_eq!(ended["status"], "REJECTED", "{ended}");
    assert!(ended["finishedAt"].is_string(), "{ended}");
    assert!(
        ended["rejectionReason"]
            .as_str()
            .is_some_and(|why| why.contains("another run was started")),
        "{ended}"
    );
    assert_eq!(ended["cellsCaptured"], 0);
    assert_eq!(run_of(&app, &bob, &bobs).await["status"], "RUNNING");
    let path = track(PARIS, Utc::now() - Span::minutes(90), 3.0, 60, 2, 0.0);
    save(&app, &ann, &forgotten, &path)
        .await
        .assert_error("CONFLICT", None);
    let held = territories(&app, &last_night).await;
    assert!(held.is_empty(), "{held:?}");
}

async fn implausible_tracks_are_rejected_and_real_ones_pass(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let org = app.signup("org").await;
    let kim = app.signup("kim").await;
    let start = Utc::now() - Span::hours(1);
    let cases: Vec<(&str, Vec<Value>, &str)> = vec![
        (
            "a car at 60 km/h",
            track(PARIS, start + Span::minutes(5), 60.0 / 3.6, 600, 2, 3.0),
            "km/h",
        ),
        (
            "one point",
            track(PARIS, start + Span::minutes(5), 3.0, 0, 1, 0.0),
            "at least 2 points",
        ),
        (
            "times out of order",
            {
                let mut points = track(PARIS, start + Span::minutes(5), 3.0, 60, 1, 0.0);
                points.swap(10, 20);
                points
            },
            "earlier than the point before it",
        ),
        (
            "points before the run started",
            track(PARIS, start - Span::hours(2), 3.0, 600, 2, 0.0),
            "before the run started",
        ),
        (
            "a teleport",
            {
                let mut points = track(PARIS, start + Span::minutes(5), 3.0, 600, 2, 0.0);
                for fix in &mut points[150..] {
                    fix["longitude"] = json!(fix["longitude"].as_f64().expect("lng") + 0.1);
                }
                points
            },
            "faster than",
        ),
        (
            "across the world in no time",
            ["0", "0", "100", "100", "100", "100"]
                .iter()
                .map(|east| {
                    json!({ "latitude": PARIS.0, "longitude": PARIS.1 + east.parse::<f64>().expect("degrees"),
                            "at": rfc3339(start + Span::minutes(5)) })
                })
                .collect(),
            "faster than",
        ),
        (
            // Five spots 150 m around Paris visited as a pentagram, two fixes a second for ten
            // minutes: every 30 s stretch starts and ends at one spot, so only the steps from cell
            // to cell show the hops (the same at 16,000 km would be 130,000 cells each).
            "hops back and forth",
            (0..=1200)
                .map(|n| {
                    let angle = (2 * n % 5) as f64 * std::f64::consts::TAU / 5.0;
                    json!({
                        "latitude": PARIS.0 + 150.0 * angle.cos() / 111_195.0,
                        "longitude": PARIS.1 + 150.0 * angle.sin() / (111_195.0 * PARIS.0.to_radians().cos()),
                        "at": rfc3339(start + Span::minutes(5) + Span::milliseconds(500 * n)),
                    })
                })
                .collect(),
            "steps from cell to cell",
        ),
    ];
    for (name, path, reason) in cases {
        let (event, run) = running(&app, &org, &kim, start).await;
        let judged = save(&app, &kim, &run, &path).await;
        let judged = judged.data()["saveRun"].clone();
        assert_eq!(judged["status"], "REJECTED", "{name}: {judged}");
        let why = judged["rejectionReason"].as_str().expect("reason");
        assert!(why.contains(reason), "{name}: {why}");
        assert_eq!(judged["cellsCaptured"], 0, "{name}");
        assert!(
            territories(&app, &event).await.is_empty(),
            "{name}: nothing captured"
        );
        save(&app, &kim, &run, &path)
            .await
            .assert_error("CONFLICT", None);
    }

    // A bad coordinate is refused before anything is judged: the run stays RUNNING.
    let (_, run) = running(&app, &org, &kim, start).await;
    let mut path = track(PARIS, start + Span::minutes(5), 3.0, 60, 1, 0.0);
    path[1]["latitude"] = json!(95.0);
    save(&app, &kim, &run, &path)
        .await
        .assert_error("BAD_USER_INPUT", Some("track[1].latitude"));
    let still = app
        .gql_as(
            &kim,
            "query($id: ID!) { run(id: $id) { status } }",
            json!({ "id": run }),
        )
        .await;
    assert_eq!(still.data()["run"]["status"], "RUNNING");

    // A fast but real runner (5.5 m/s, 19.8 km/h, for 20 minutes) with GPS noise and one wild
    // fix 400 m off: saved.
    let mut fast = track(PARIS, start + Span::minutes(5), 5.5, 1200, 1, 12.0);
    fast[600]["latitude"] = json!(fast[600]["latitude"].as_f64().expect("lat") + 400.0 / 111_195.0);
    let saved = save(&app, &kim, &run, &fast).await;
    let saved = saved.data()["saveRun"].clone();
    assert_eq!(saved["status"], "SAVED", "{saved}");
    let distance = saved["distanceMeters"].as_f64().expect("distance");
    assert!(
        (6000.0..7500.0).contains(&distance),
        "6.6 km give or take the noise, the wild fix left out: {distance}"
    );
}

/// A multipart `importRunGpx` of `bytes`.
async fn import(app: &TestApp, runner: &Session, run: &str, bytes: Vec<u8>) -> Value {
    use reqwest::multipart::{Form, Part};
    let form = Form::new()
        .text(
            "operations",
            json!({ "query": format!("mutation($r: ID!, $f: Upload!) {{ importRunGpx(runId: $r, file: $f) {{ {RUN} }} }}"), "variables": { "r": run, "f": null } }).to_string(),
        )
        .text("map", r#"{"0":["variables.f"]}"#)
        .part("0", Part::bytes(bytes).file_name("track.gpx"));
    app.http
        .post(app.url("/graphql"))
        .bearer_auth(&runner.access)
        .multipart(form)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json")
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/gpx/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

async fn gpx_exports_of_real_shapes_are_imported(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let org = app.signup("org").await;
    let lea = app.signup("lea").await;
    // The fixtures were recorded on 2024-05-01 from 08:00 UTC (see their README).
    let recorded: DateTime<Utc> = "2024-05-01T07:55:00Z".parse().expect("time");
    for (name, seconds) in [
        ("strava.gpx", 88),
        ("garmin.gpx", 35),
        ("gpx10.gpx", 116),
        ("segments.gpx", 535),
    ] {
        let (event, run) = running(&app, &org, &lea, recorded).await;
        let body = import(&app, &lea, &run, fixture(name)).await;
        assert!(body["errors"].is_null(), "{name}: {body}");
        let saved = &body["data"]["importRunGpx"];
        assert_eq!(saved["status"], "SAVED", "{name}: {saved}");
        assert_eq!(saved["durationSeconds"], seconds, "{name}");
        assert!(
            saved["distanceMeters"].as_f64().expect("distance") > 50.0,
            "{name}"
        );
        let cells = saved["cellsCaptured"].as_i64().expect("cells");
        assert!(cells >= 2, "{name}: {cells}");
        assert_eq!(
            territories(&app, &event).await.len() as i64,
            cells,
            "{name}"
        );
    }
    // Not GPX: refused on `file`, the run still RUNNING. Someone else's run is not found.
    let (_, run) = running(&app, &org, &lea, recorded).await;
    let eve = app.signup("eve").await;
    let theirs = import(&app, &eve, &run, fixture("strava.gpx")).await;
    assert_eq!(
        theirs["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{theirs}"
    );
    for bytes in [
        fixture("not-gpx.gpx"),
        b"{\"type\": \"FeatureCollection\"}".to_vec(),
    ] {
        let body = import(&app, &lea, &run, bytes).await;
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{body}"
        );
        assert_eq!(body["errors"][0]["extensions"]["field"], "file", "{body}");
    }
    let still = app
        .gql_as(
            &lea,
            "query($id: ID!) { run(id: $id) { status } }",
            json!({ "id": run }),
        )
        .await;
    assert_eq!(still.data()["run"]["status"], "RUNNING");
}

/// A GPX file of `segments`, each a `<trkseg>` of one `<trk>`.
fn gpx(segments: &[&[Value]]) -> Vec<u8> {
    let mut xml = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><gpx version="1.1" creator="test" xmlns="http://www.topografix.com/GPX/1/1"><trk>"#,
    );
    for segment in segments {
        xml.push_str("<trkseg>");
        for fix in *segment {
            let (latitude, longitude) = point(fix);
            xml.push_str(&format!(
                r#"<trkpt lat="{latitude:.7}" lon="{longitude:.7}"><time>{}</time></trkpt>"#,
                fix["at"].as_str().expect("at")
            ));
        }
        xml.push_str("</trkseg>");
    }
    xml.push_str("</trk></gpx>");
    xml.into_bytes()
}

/// The H3 cells (by `h3o`) of every fix of each segment and of the grid path between each two
/// consecutive fixes of a segment.
fn cells_within(segments: &[&[Value]], resolution: h3o::Resolution) -> BTreeSet<String> {
    let cell = |fix: &Value| {
        let (latitude, longitude) = point(fix);
        h3o::LatLng::new(latitude, longitude)
            .expect("a position")
            .to_cell(resolution)
    };
    let mut cells = BTreeSet::new();
    for segment in segments {
        for pair in segment.windows(2) {
            for between in cell(&pair[0])
                .grid_path_cells(cell(&pair[1]))
                .expect("a path")
            {
                cells.insert(between.expect("a cell").to_string());
            }
        }
        cells.extend(segment.iter().map(|fix| cell(fix).to_string()));
    }
    cells
}

/// The cells held at `event`, as `territories` names them.
async fn held_cells(app: &TestApp, event: &str) -> BTreeSet<String> {
    territories(app, event)
        .await
        .iter()
        .map(|cell| cell["cell"].as_str().expect("cell").to_owned())
        .collect()
}

/// A runner stops their watch, rides a bus for four minutes and starts it again: the GPX file's
/// two segments capture their own cells and distance, and nothing between them. The same fixes
/// sent as one track (the signal lost for four minutes) count the distance across, but capture no
/// cells along it either.
async fn pauses_and_gaps_capture_no_cells_between(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let org = app.signup("org").await;
    let lea = app.signup("lea").await;
    let start = Utc::now() - Span::minutes(30);
    let east = |meters: f64| {
        (
            PARIS.0,
            PARIS.1 + meters / (111_195.0 * PARIS.0.to_radians().cos()),
        )
    };
    let before = track(PARIS, start + Span::minutes(1), 3.0, 120, 2, 0.0);
    let after = track(east(1200.0), start + Span::minutes(7), 3.0, 120, 2, 0.0);
    let segments: [&[Value]; 2] = [&before, &after];
    let resolution =
        h3o::Resolution::try_from(app.state.config.h3_resolution).expect("a resolution");
    let expected = cells_within(&segments, resolution);
    let between = h3o::LatLng::new(east(780.0).0, east(780.0).1)
        .expect("a position")
        .to_cell(resolution)
        .to_string();
    assert!(!expected.contains(&between), "the segments are apart");
    let apart = length(&before) + length(&after);

    let (paused_at, run) = running(&app, &org, &lea, start).await;
    let body = import(&app, &lea, &run, gpx(&segments)).await;
    assert!(body["errors"].is_null(), "{body}");
    let paused = &body["data"]["importRunGpx"];
    assert_eq!(paused["status"], "SAVED", "{paused}");
    assert_eq!(
        paused["durationSeconds"], 480,
        "elapsed, the pause included"
    );
    let distance = paused["distanceMeters"].as_f64().expect("distance");
    assert!(
        (distance - apart).abs() <= apart * 0.01,
        "{distance} m vs the segments' {apart} m"
    );
    assert_eq!(held_cells(&app, &paused_at).await, expected);
    assert_eq!(paused["cellsCaptured"], expected.len());

    let (gap_at, run) = running(&app, &org, &lea, start).await;
    let whole: Vec<Value> = before.iter().chain(&after).cloned().collect();
    let gap = save(&app, &lea, &run, &whole).await;
    let gap = &gap.data()["saveRun"];
    assert_eq!(gap["status"], "SAVED", "{gap}");
    let distance = gap["distanceMeters"].as_f64().expect("distance");
    let across = length(&whole);
    assert!(
        (distance - across).abs() <= across * 0.01 && across > apart + 800.0,
        "{distance} m vs {across} m"
    );
    assert_eq!(held_cells(&app, &gap_at).await, expected);
}

async fn the_last_runner_holds_a_cell_and_each_capture_is_pushed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let org = app.signup("org").await;
    let ann = app.signup("ann").await;
    let bob = app.signup("bob").await;
    let event = live_event(&app, &org, Utc::now() - Span::hours(1)).await;
    let start = Utc::now() - Span::minutes(30);
    let path = track(PARIS, start + Span::minutes(1), 3.0, 300, 2, 0.0);
    let runs = [
        started_run(&app, &org, &event, &ann, start).await,
        started_run(&app, &org, &event, &bob, start).await,
    ];
    save(&app, &ann, &runs[0], &path).await.data();
    let first = territories(&app, &event).await;
    assert!(first.iter().all(|cell| cell["owner"]["handle"] == "ann"));

    let mut feed = subscribe(
        &app,
        None,
        "subscription($e: ID!) { territoryChanged(eventId: $e) { cell owner { handle } boundary } }",
        json!({ "e": event }),
    )
    .await;
    app.listening(&format!("event:{event}:territory"), 1).await;
    let saved = save(&app, &bob, &runs[1], &path).await;
    let cells = saved.data()["saveRun"]["cellsCaptured"]
        .as_i64()
        .expect("cells");
    assert_eq!(
        cells as usize,
        first.len(),
        "the same track, the same cells"
    );
    let mut pushed = Vec::new();
    for _ in 0..cells {
        let change = feed.next_data("s").await["territoryChanged"].clone();
        assert_eq!(change["owner"]["handle"], "bob");
        assert_eq!(change["boundary"].as_array().expect("boundary").len(), 6);
        pushed.push(change["cell"].as_str().expect("cell").to_owned());
    }
    let now = territories(&app, &event).await;
    assert!(
        now.iter().all(|cell| cell["owner"]["handle"] == "bob"),
        "the last runner holds them"
    );
    let mut held: Vec<String> = now
        .iter()
        .map(|cell| cell["cell"].as_str().expect("cell").to_owned())
        .collect();
    held.sort();
    pushed.sort();
    assert_eq!(held, pushed, "each captured cell pushed once");
}

/// A territory stream that fell behind (more captures queued than a subscriber may fall behind by)
/// lost the oldest. The map it feeds is not left stale: it gets each cell captured meanwhile with
/// its holder now, once, and none of the skipped messages of older captures, which would take the
/// map back.
async fn a_territory_stream_that_fell_behind_shows_each_cell_as_it_is_now(backend: Backend) {
    use futures_util::StreamExt;
    use rally::runs::model::{CellCaptured, TERRITORY};
    let app = TestApp::spawn(backend).await;
    let org = app.signup("org").await;
    let ann = app.signup("ann").await;
    let bob = app.signup("bob").await;
    let event = live_event(&app, &org, Utc::now() - Span::hours(1)).await;
    let event_id = Uuid::parse_str(&event).expect("uuid");
    let start = Utc::now() - Span::minutes(30);
    let path = track(PARIS, start + Span::minutes(1), 3.0, 300, 2, 0.0);
    let runs = [
        started_run(&app, &org, &event, &ann, start).await,
        started_run(&app, &org, &event, &bob, start).await,
    ];
    let mut feed = Box::pin(
        rally::runs::service::follow_territory(&app.state, event_id)
            .await
            .expect("the event exists"),
    );
    // While nobody reads the stream: ann captures the cells, bob takes them over, then 150 copies
    // of ann's capture of one of them (more than the 128 a subscriber may fall behind by) push
    // both saves' messages out.
    save(&app, &ann, &runs[0], &path).await.data();
    let anns = territories_of(&app, &event).await;
    save(&app, &bob, &runs[1], &path).await.data();
    let stale = CellCaptured {
        event_id,
        cell: u64::try_from(anns[0].cell).expect("a cell"),
        owner_id: anns[0].owner_id,
        captured_at: anns[0].captured_at,
        version: anns[0].version,
    };
    for _ in 0..150 {
        app.state.live.publish(&TERRITORY.of(event_id), &stale);
    }
    let held = territories_of(&app, &event).await;
    let bobs = Uuid::parse_str(&bob.id).expect("uuid");
    assert!(
        held.iter().all(|cell| cell.owner_id == bobs),
        "bob holds them"
    );
    let mut shown = Vec::new();
    for _ in 0..held.len() {
        let captured = tokio::time::timeout(Duration::from_secs(5), feed.next())
            .await
            .expect("the catch-up comes")
            .expect("the stream goes on");
        assert_eq!(captured.owner_id, bobs, "each cell as it is now");
        shown.push(captured.cell);
    }
    shown.sort_unstable();
    let mut cells: Vec<u64> = held
        .iter()
        .map(|cell| u64::try_from(cell.cell).expect("a cell"))
        .collect();
    cells.sort_unstable();
    assert_eq!(shown, cells, "each cell once");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), feed.next())
            .await
            .is_err(),
        "none of the skipped older captures follow"
    );
}

/// The first frame of `statuses` (subscription `s`), which must come no earlier than `finish`:
/// the set-up must be done before it, and nothing may arrive until then.
async fn first_change_from(statuses: &mut WsClient, finish: DateTime<Utc>) -> Value {
    assert!(
        Utc::now() < finish,
        "the set-up ran past the finish time; nothing is proven"
    );
    // Quiet until shortly before the finish time (a frame sent just after it must not be
    // counted as early by a late timer), then the change, read at or after it.
    let quiet = finish - Span::milliseconds(200) - Utc::now();
    let early = statuses
        .frames_within(quiet.to_std().unwrap_or_default())
        .await;
    assert!(
        early.is_empty(),
        "nothing before the finish time: {early:?}"
    );
    let change = statuses.next_data("s").await;
    let arrived = Utc::now();
    assert!(arrived >= finish, "a change at {arrived}, before {finish}");
    change
}

async fn ten_concurrent_claims_move_the_tokens_once(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.mining_interval_seconds = 5;
        c.wallet_cap = 5;
    })
    .await;
    let org = app.signup("org").await;
    let cat = app.signup("cat").await;
    let start = Utc::now() - Span::minutes(30);
    let (_, run) = running(&app, &org, &cat, start).await;
    save(
        &app,
        &cat,
        &run,
        &track(PARIS, start + Span::minutes(1), 3.0, 300, 2, 0.0),
    )
    .await
    .data();
    let full = wallet_until(&app, &cat, |w| w["claimable"] == 5).await;
    // Right after the next accrual has committed (its ledger row is written in the same
    // transaction), so none lands during the race: the one after is an interval away.
    let next: DateTime<Utc> = full["nextAccrualAt"]
        .as_str()
        .expect("next accrual")
        .parse()
        .expect("time");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let accrued = job_run::Entity::find()
            .filter(job_run::Column::Job.eq("accrue-tokens"))
            .filter(job_run::Column::Moment.gte(next))
            .count(&app.state.db)
            .await
            .expect("count");
        if accrued > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the accrual due at {next} never ran"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let claims: Vec<Gql> = futures_util::future::join_all((0..10).map(|_| {
        app.gql_as(
            &cat,
            "mutation { claimTokens { tokens claimable } }",
            json!({}),
        )
    }))
    .await;
    for claim in &claims {
        claim.data();
    }
    let after = wallet(&app, &cat).await;
    assert_eq!(after["tokens"], 5, "moved exactly once: {after}");
    assert_eq!(after["claimable"], 0, "{after}");
}

/// `RALLY_EVENT_FINISH_TIME` a few seconds ahead in a zone far from UTC (read with chrono-tz here):
/// an event that started before it finishes; one that starts after it waits.
async fn the_finisher_honours_its_time_and_zone(backend: Backend) {
    let zone = chrono_tz::Pacific::Kiritimati;
    let finish = Utc::now() + Span::seconds(15);
    let local = finish.with_timezone(&zone).time();
    let app = TestApp::spawn_with(backend, |c| {
        c.time_zone = zone;
        c.event_finish_time = local;
    })
    .await;
    let org = app.signup("org").await;
    let before = live_event(&app, &org, finish - Span::seconds(1)).await;
    let after = live_event(&app, &org, finish + Span::seconds(2)).await;
    // Started before the finish time, but it ends tomorrow: a festival of two days.
    let festival = live_event(&app, &org, finish - Span::hours(2)).await;
    app.gql_as(
        &org,
        "mutation($id: ID!, $end: DateTime!) { updateEvent(id: $id, input: { endsAt: $end }) { id } }",
        json!({ "id": festival, "end": rfc3339(finish + Span::days(1)) }),
    )
    .await
    .data();
    let mut statuses = subscribe(
        &app,
        None,
        "subscription { eventStatusChanged { id status } }",
        json!({}),
    )
    .await;
    app.listening("events:status-changes", 1).await;
    let change = first_change_from(&mut statuses, finish).await;
    assert_eq!(
        change["eventStatusChanged"],
        json!({ "id": before, "status": "FINISHED" })
    );
    let finished_at = Utc::now();
    assert!(
        finished_at >= finish && finished_at - finish < Span::seconds(3),
        "at the finish time: {finished_at} vs {finish}"
    );
    statuses.assert_quiet(Duration::from_millis(500)).await;
    for (id, why) in [
        (&after, "it started after: it waits for tomorrow"),
        (&festival, "it ends tomorrow: it waits for then"),
    ] {
        let later = app
            .gql(
                "query($id: ID!) { event(id: $id) { status } }",
                json!({ "id": id }),
            )
            .await;
        assert_eq!(later.data()["event"]["status"], "LIVE", "{why}");
    }
}

async fn a_missed_finish_is_caught_up_once_at_start(backend: Backend) {
    // An instance whose finish time is half a day away; a LIVE event that started after its last
    // finish moment.
    let missed = Utc::now() - Span::minutes(1);
    let app = TestApp::spawn_with(backend, |c| {
        c.event_finish_time = (missed + Span::hours(12)).time();
    })
    .await;
    let org = app.signup("org").await;
    let event = live_event(&app, &org, missed - Span::minutes(30)).await;
    let status = |app: &TestApp| {
        let app_url = app.url("/graphql");
        let http = app.http.clone();
        let event = event.clone();
        async move {
            let body: Value = http
                .post(app_url)
                .json(&json!({ "query": "query($id: ID!) { event(id: $id) { status } }", "variables": { "id": event } }))
                .send()
                .await
                .expect("sent")
                .json()
                .await
                .expect("json");
            body["data"]["event"]["status"]
                .as_str()
                .expect("status")
                .to_owned()
        }
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status(&app).await, "LIVE");
    // A deploy moves the finish time to a minute ago, when no instance ran it: caught up at start.
    let app = app
        .restart_with(|c| c.event_finish_time = missed.time())
        .await;
    // Generous, as below: on a machine running the whole suite at once a start can take seconds.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while status(&app).await != "FINISHED" {
        assert!(tokio::time::Instant::now() < deadline, "caught up at start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done_once = |app: &TestApp| {
        let db = app.state.db.clone();
        async move {
            job_run::Entity::find()
                .filter(job_run::Column::Job.eq("finish-events"))
                .filter(job_run::Column::Moment.gte(missed - Span::seconds(1)))
                .count(&db)
                .await
                .expect("count")
        }
    };
    assert_eq!(done_once(&app).await, 1);
    let holder_of = |app: &TestApp, job: &'static str| {
        let db = app.state.db.clone();
        async move {
            job_lease::Entity::find_by_id(job.to_owned())
                .one(&db)
                .await
                .expect("lease")
                .map(|lease| lease.holder)
        }
    };
    let before = holder_of(&app, "finish-events").await.expect("held");
    let app = app.restart().await;
    // The new instance is past the finisher's moment once it holds the job after it (it takes
    // each lease, then runs that job's due moment, one job after the other).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while holder_of(&app, "accrue-tokens")
        .await
        .is_none_or(|h| h == before)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the restarted instance never took the jobs"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        done_once(&app).await,
        1,
        "the missed moment, once, across restarts"
    );
}

/// Eight attempts at one finish moment from two instances sharing the database (the moment's
/// ledger row is the only arbiter here: no lease is taken): it is done once, each event finished
/// and announced once.
async fn instances_racing_for_one_moment_do_it_once(backend: Backend) {
    let a = TestApp::spawn(backend).await;
    let url = a.state.config.database_url();
    let b = TestApp::spawn_with(backend, |c| c.database_url = Some(url)).await;
    let org = a.signup("org").await;
    let moment = Utc::now() - Span::seconds(1);
    let mut events = Vec::new();
    for _ in 0..3 {
        events.push(live_event(&a, &org, moment - Span::hours(1)).await);
    }
    let mut feeds = Vec::new();
    for app in [&a, &b] {
        feeds.push(
            subscribe(
                app,
                None,
                "subscription { eventStatusChanged { id status } }",
                json!({}),
            )
            .await,
        );
        app.listening("events:status-changes", 1).await;
    }
    let job = Job {
        name: "finish-events",
        schedule: Schedule::Daily {
            at: moment.time(),
            zone: chrono_tz::UTC,
        },
        work: Work::FinishEvents,
    };
    let now = Utc::now();
    let holders: Vec<String> = (0..8).map(|n| format!("racer-{n}")).collect();
    let attempts = futures_util::future::join_all(holders.iter().enumerate().map(|(n, holder)| {
        let state = if n % 2 == 0 { &a.state } else { &b.state };
        run_due(state, &job, holder, now)
    }))
    .await;
    let done: Vec<u64> = attempts
        .into_iter()
        .filter_map(|attempt| attempt.expect("no attempt fails"))
        .collect();
    assert_eq!(
        done,
        [3],
        "one attempt did the moment, finishing the three events"
    );
    let ledger = job_run::Entity::find()
        .filter(job_run::Column::Job.eq("finish-events"))
        .filter(job_run::Column::Moment.eq(moment))
        .count(&a.state.db)
        .await
        .expect("count");
    assert_eq!(ledger, 1);
    // Each instance announces what it committed: three changes in all, each event once.
    // Read both feeds until the three arrive (or a deadline), then a while longer for duplicates.
    let mut announced = Vec::new();
    let mut read = |frames: Vec<Value>| {
        for frame in frames {
            assert_eq!(frame["type"], "next", "{frame}");
            let change = &frame["payload"]["data"]["eventStatusChanged"];
            assert_eq!(change["status"], "FINISHED");
            announced.push(change["id"].as_str().expect("id").to_owned());
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut seen = 0;
    while seen < events.len() && tokio::time::Instant::now() < deadline {
        for feed in &mut feeds {
            let frames = feed.frames_within(Duration::from_millis(100)).await;
            seen += frames.len();
            read(frames);
        }
    }
    for feed in &mut feeds {
        read(feed.frames_within(Duration::from_millis(500)).await);
    }
    announced.sort();
    events.sort();
    assert_eq!(announced, events);
}

/// A holder whose lease ran out while it worked runs an earlier accrual moment while the next
/// holder, on another instance, runs the one after (each finds only the moment before both in the
/// ledger): every interval between moments is paid once, whichever commits first. Ten rounds;
/// then a moment older than the last done pays nothing.
async fn overlapping_holders_pay_each_interval_once(backend: Backend) {
    let mining = |c: &mut rally::config::Config| {
        // The instances' own accrual job is due every 30 days: it runs at start, then not again.
        c.mining_interval_seconds = 30 * 86_400;
        c.mining_tokens_per_cell = 1;
        c.wallet_cap = 1_000_000_000;
    };
    let a = TestApp::spawn_with(backend, mining).await;
    let url = a.state.config.database_url();
    let b = TestApp::spawn_with(backend, |c| {
        mining(c);
        c.database_url = Some(url);
    })
    .await;
    let org = a.signup("org").await;
    let cat = a.signup("cat").await;
    let cells = holding_cells(&a, &org, &cat).await;
    // The instances' own accrual (at start) is done before the count starts, and its lease is
    // held elsewhere so it cannot run again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while job_run::Entity::find()
        .filter(job_run::Column::Job.eq("accrue-tokens"))
        .count(&a.state.db)
        .await
        .expect("count")
        == 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the accrual at start never ran"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    job_lease::Entity::update_many()
        .col_expr(job_lease::Column::Holder, Expr::value("elsewhere"))
        .col_expr(
            job_lease::Column::ExpiresAt,
            Expr::value(Utc::now() + Span::days(1)),
        )
        .filter(job_lease::Column::Job.eq("accrue-tokens"))
        .exec(&a.state.db)
        .await
        .expect("hold the lease");
    let claimable = || async {
        wallet(&a, &cat).await["claimable"]
            .as_i64()
            .expect("claimable")
    };
    let before = claimable().await;

    let hour = Span::hours(1);
    let (job, first) = hourly_accrual("accrue-overlapping");
    assert!(
        take_lease(&a.state, job.name, "early", first, Span::seconds(1))
            .await
            .expect("lease")
    );
    assert!(
        run_due(&a.state, &job, "early", first)
            .await
            .expect("first moment")
            .is_some()
    );
    let rounds = 10;
    for round in 0..rounds {
        let early = first + hour * (2 * round + 1);
        let late = early + hour;
        let (overrun, next) = futures_util::join!(
            run_due(&a.state, &job, "early", early),
            run_due(&b.state, &job, "late", late),
        );
        overrun.expect("the overrun holder's moment");
        assert!(
            next.expect("the next holder's moment").is_some(),
            "the later moment is never skipped"
        );
    }
    // The first moment pays one interval; each round pays the two that follow.
    let intervals = 1 + 2 * i64::from(rounds);
    assert_eq!(claimable().await - before, cells * intervals);

    let stale = run_due(&a.state, &job, "early", first + hour * 5)
        .await
        .expect("a stale moment");
    assert_eq!(stale, None, "a moment before the last done is covered");
    assert_eq!(claimable().await - before, cells * intervals);
}

/// Claims racing accruals lose nothing: twenty claims set off while twenty hourly accruals run,
/// and the tokens plus what is still claimable grew by exactly what the accruals paid (a claim that
/// read the wallet and wrote it back would drop an accrual landing in between).
async fn claims_racing_accruals_lose_no_token(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        // The instance's own accrual job is due every 30 days: it runs at start, then not again.
        c.mining_interval_seconds = 30 * 86_400;
        c.mining_tokens_per_cell = 1;
        c.wallet_cap = 1_000_000_000;
    })
    .await;
    let org = app.signup("org").await;
    let cat = app.signup("cat").await;
    let cells = holding_cells(&app, &org, &cat).await;
    let hour = Span::hours(1);
    let (job, first) = hourly_accrual("accrue-racing-claims");
    run_due(&app.state, &job, "racer", first)
        .await
        .expect("first moment")
        .expect("done");
    let total = || async {
        let wallet = wallet(&app, &cat).await;
        wallet["tokens"].as_i64().expect("tokens")
            + wallet["claimable"].as_i64().expect("claimable")
    };
    let before = total().await;

    let accruals = async {
        for hours in 1..=20 {
            run_due(&app.state, &job, "racer", first + hour * hours)
                .await
                .expect("an accrual")
                .expect("its moment was not done");
        }
    };
    let claims = futures_util::future::join_all((0..20u64).map(|n| {
        let (app, cat) = (&app, &cat);
        async move {
            tokio::time::sleep(Duration::from_millis(3 * n)).await;
            app.gql_as(cat, "mutation { claimTokens { tokens } }", json!({}))
                .await
                .data();
        }
    }));
    futures_util::join!(accruals, claims);
    assert_eq!(
        total().await - before,
        cells * 20,
        "twenty intervals paid, none lost"
    );
    assert!(
        wallet(&app, &cat).await["tokens"].as_i64().expect("tokens") > 0,
        "the claims moved tokens"
    );
}

/// Runners start and save runs (capturing cells) while the organizer deletes the event: each step
/// lands before the deletion (and goes with the event) or is refused as NOT_FOUND or CONFLICT;
/// none fails inside, and the deletion itself never does. Five rounds of ten runners.
async fn runs_racing_the_events_deletion_are_refused_cleanly(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let org = app.signup("org").await;
    let mut runners = Vec::new();
    for n in 0..10 {
        runners.push(app.signup(&format!("runner{n}")).await);
    }
    // Whether a step landed; a refusal must be a clean one. Each runner's outcome: whether its run
    // was saved.
    let landed = |answer: &Gql, round: u64| {
        if answer.body["errors"].is_null() {
            return true;
        }
        assert!(
            ["NOT_FOUND", "CONFLICT"].contains(&answer.code()),
            "round {round}: {}",
            answer.body
        );
        false
    };
    // Runs saved and runners refused, over all rounds: the deletion met runners at work.
    let (mut saved_runs, mut refused_runners) = (0, 0);
    for round in 0..5 {
        let event = live_event(&app, &org, Utc::now() - Span::hours(1)).await;
        let mut tickets = Vec::new();
        for runner in &runners {
            tickets.push(ticket(&app, &org, &event, runner).await);
        }
        let started_at = Utc::now() - Span::minutes(10);
        let runs = runners
            .iter()
            .zip(&tickets)
            .enumerate()
            .map(|(n, (runner, ticket))| {
                let app = &app;
                async move {
                    let started = start_run(app, runner, ticket).await;
                    if !landed(&started, round) {
                        return false;
                    }
                    let id = started.body["data"]["startRun"]["id"]
                        .as_str()
                        .expect("run id");
                    set_back(app, id, started_at).await;
                    // Each runner through cells of its own, a street apart.
                    let origin = (PARIS.0 + 0.003 * n as f64, PARIS.1);
                    let path = track(origin, started_at + Span::minutes(1), 3.0, 120, 2, 0.0);
                    landed(&save(app, runner, id, &path).await, round)
                }
            });
        let delete = async {
            // From at once to after most runs are saved, so the deletion meets every step.
            let delay = [0, 20, 50, 100, 250][usize::try_from(round).expect("round")];
            tokio::time::sleep(Duration::from_millis(delay)).await;
            app.gql_as(
                &org,
                "mutation($id: ID!) { deleteEvent(id: $id) }",
                json!({ "id": event }),
            )
            .await
        };
        let (steps, deleted) = futures_util::join!(futures_util::future::join_all(runs), delete);
        assert_eq!(deleted.data()["deleteEvent"], true, "round {round}");
        for saved in steps {
            if saved {
                saved_runs += 1;
            } else {
                refused_runners += 1;
            }
        }
        assert!(
            territories_of(&app, &event).await.is_empty(),
            "round {round}: cells outlived the event"
        );
    }
    assert!(
        saved_runs > 0 && refused_runners > 0,
        "the deletion never met runners at work: {saved_runs} runs saved, {refused_runners} refused"
    );
}

/// The cells held at `event`, read from the database (the API answers NOT_FOUND once it is gone).
async fn territories_of(app: &TestApp, event: &str) -> Vec<rally::entity::territory::Model> {
    rally::entity::territory::Entity::find()
        .filter(rally::entity::territory::Column::EventId.eq(Uuid::parse_str(event).expect("uuid")))
        .all(&app.state.db)
        .await
        .expect("territories")
}
