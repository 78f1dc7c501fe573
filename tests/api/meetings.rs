//! Availabilities and meetings: publishing slots (one at a time or as a weekly pattern in a time
//! zone), finding and paging open slots, booking one (exactly one booker under any concurrency),
//! cancelling from either side, the `myMeetings` event stream, and the private iCalendar feed (read
//! with the `ical` crate, independently of the server's generator). Every operation needs sign-in;
//! each test also checks who else may or may not do it.

use std::collections::HashSet;
use std::sync::OnceLock;
use std::time::Duration;

use chrono::{
    DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, SecondsFormat,
    SubsecRound, TimeDelta, TimeZone, Utc, Weekday,
};
use chrono_tz::Tz;
use futures_util::future::join_all;
use ical::parser::ical::component::IcalEvent;
use serde_json::{Value, json};

use rally::entity::{availability, calendar_feed, meeting};
use sea_orm::prelude::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};

use crate::common::{Backend, Gql, Session, TRANSPORT_WS, TestApp, WsClient};
use crate::on_every_backend;

on_every_backend!(
    a_slot_is_kept_to_the_second_and_listed_for_others,
    set_availability_names_each_invalid_field,
    the_longest_slot_is_configurable,
    a_week_long_slot_still_blocks_its_last_minute,
    own_slots_may_touch_but_not_overlap,
    a_slot_is_updated_by_its_owner_under_the_same_rules,
    a_slot_is_deleted_by_its_owner_unless_booked,
    a_withdrawal_racing_a_booking_and_its_cancellation_never_loses_the_meeting,
    open_slots_are_listed_in_their_window_soonest_first,
    a_slot_that_has_started_is_not_open,
    paging_through_open_slots_sees_each_once_while_slots_are_added,
    my_availabilities_lists_my_slots_of_any_status,
    booking_turns_a_slot_into_a_confirmed_meeting,
    booking_refuses_ones_own_unknown_and_taken_slots,
    exactly_one_of_fifty_concurrent_bookers_wins,
    one_person_holds_at_most_the_capped_bookings_and_slots,
    one_of_ten_concurrent_overlapping_slots_is_kept,
    either_side_cancels_and_the_slot_opens_again,
    a_meeting_is_seen_by_its_owner_and_participant_only,
    my_meetings_lists_both_roles_soonest_first,
    the_owner_hears_of_every_booking_and_cancellation,
    a_participant_hears_of_every_cancellation_of_their_meetings,
    a_stranger_hears_nothing_of_others_meetings,
    streams_that_fell_behind_catch_up_on_the_changes_they_missed,
    weekly_slots_keep_the_wall_clock_across_daylight_saving,
    weekly_slots_move_out_of_gaps_and_take_the_first_of_repeats,
    set_weekly_availability_names_each_invalid_field,
    a_weekly_pattern_is_all_or_nothing,
    the_calendar_feed_url_is_stable_until_rotated,
    a_new_server_secret_retires_every_calendar_feed_url,
    the_calendar_feed_url_is_absolute_under_a_public_url,
    the_calendar_feed_has_one_event_per_meeting,
    meetings_booked_before_titles_were_kept_take_their_slots,
    the_calendar_feed_is_rate_limited_per_feed,
    the_calendar_feeds_first_write_outlives_its_request_among_shutdowns_tasks,
    every_meetings_operation_needs_sign_in,
);

// ---------------------------------------------------------------- time

/// A whole hour two days from now, the same for the whole run: tests lay their slots out from it,
/// so times computed at different moments of a test still line up exactly.
fn origin() -> DateTime<Utc> {
    static ORIGIN: OnceLock<DateTime<Utc>> = OnceLock::new();
    *ORIGIN.get_or_init(|| {
        let soon = Utc::now().timestamp() + 2 * 86_400;
        DateTime::from_timestamp(soon - soon.rem_euclid(3_600), 0).expect("a time")
    })
}

/// RFC 3339 in whole seconds.
fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `minutes` after the origin.
fn at_minutes(minutes: i64) -> String {
    rfc3339(origin() + TimeDelta::minutes(minutes))
}

/// `hours` after the origin.
fn at(hours: i64) -> String {
    at_minutes(hours * 60)
}

/// A DateTime the server sent (or a test made), as an instant.
#[track_caller]
fn time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|_| panic!("RFC 3339: {text}"))
        .with_timezone(&Utc)
}

#[track_caller]
fn time_of(value: &Value) -> DateTime<Utc> {
    time(
        value
            .as_str()
            .unwrap_or_else(|| panic!("a DateTime: {value}")),
    )
}

/// Where the wall-clock `local` falls in `zone`, worked out here with chrono-tz, independently of
/// the server: a time in a spring-forward gap is read with the offset in force just before the gap
/// (which moves it forward by the gap); a time that happens twice is its first occurrence.
fn wall_clock(zone: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => a.with_timezone(&Utc).min(b.with_timezone(&Utc)),
        LocalResult::None => {
            let before = zone
                .from_local_datetime(&(local - TimeDelta::hours(3)))
                .earliest()
                .expect("a time before the gap");
            let offset = TimeDelta::seconds(i64::from(before.offset().fix().local_minus_utc()));
            Utc.from_utc_datetime(&(local - offset))
        }
    }
}

/// The starts a weekly pattern should make: `start` on each day of `days` in [from, until].
fn wall_clock_starts(
    zone: Tz,
    days: &[Weekday],
    start: &str,
    from: &str,
    until: &str,
) -> Vec<DateTime<Utc>> {
    let start = NaiveTime::parse_from_str(start, "%H:%M").expect("HH:MM");
    let from = NaiveDate::parse_from_str(from, "%Y-%m-%d").expect("date");
    let until = NaiveDate::parse_from_str(until, "%Y-%m-%d").expect("date");
    from.iter_days()
        .take_while(|day| *day <= until)
        .filter(|day| days.contains(&day.weekday()))
        .map(|day| wall_clock(zone, day.and_time(start)))
        .collect()
}

fn weekday_name(day: Weekday) -> &'static str {
    match day {
        Weekday::Mon => "MONDAY",
        Weekday::Tue => "TUESDAY",
        Weekday::Wed => "WEDNESDAY",
        Weekday::Thu => "THURSDAY",
        Weekday::Fri => "FRIDAY",
        Weekday::Sat => "SATURDAY",
        Weekday::Sun => "SUNDAY",
    }
}

// ---------------------------------------------------------------- API helpers

/// The availability fields the tests read.
const SLOT: &str = "id owner { handle } startTime endTime title description status createdAt";

/// The meeting fields the tests read.
const MEETING: &str = "id status availability { id status } owner { handle } participant { handle } startTime endTime createdAt cancelledAt cancelledBy { handle } cancellationReason";

const OPEN_SLOTS: &str = "query($from: DateTime!, $to: DateTime!, $owner: String, $first: Int, $after: String) { availabilities(from: $from, to: $to, owner: $owner, first: $first, after: $after) { edges { cursor node { id owner { handle email } startTime endTime title status } } pageInfo { hasNextPage endCursor } } }";

#[track_caller]
fn id(value: &Value) -> String {
    value["id"]
        .as_str()
        .unwrap_or_else(|| panic!("an id in {value}"))
        .to_owned()
}

/// The nodes of a connection.
#[track_caller]
fn nodes(connection: &Value) -> Vec<Value> {
    connection["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("edges in {connection}"))
        .iter()
        .map(|edge| edge["node"].clone())
        .collect()
}

fn ids(values: &[Value]) -> Vec<String> {
    values.iter().map(id).collect()
}

fn is_success(response: &Gql) -> bool {
    response.body.get("errors").is_none()
}

async fn set_slot(app: &TestApp, who: &Session, input: Value) -> Gql {
    app.gql_as(
        who,
        &format!("mutation($i: AvailabilityInput!) {{ setAvailability(input: $i) {{ {SLOT} }} }}"),
        json!({ "i": input }),
    )
    .await
}

/// Publishes a slot as `who`; returns it.
async fn slot(app: &TestApp, who: &Session, start: &str, end: &str, title: &str) -> Value {
    set_slot(
        app,
        who,
        json!({ "startTime": start, "endTime": end, "title": title }),
    )
    .await
    .data()["setAvailability"]
        .clone()
}

async fn update_slot(app: &TestApp, who: &Session, slot: &str, input: Value) -> Gql {
    app.gql_as(
        who,
        &format!("mutation($id: ID!, $i: AvailabilityInput!) {{ updateAvailability(id: $id, input: $i) {{ {SLOT} }} }}"),
        json!({ "id": slot, "i": input }),
    )
    .await
}

async fn delete_slot(app: &TestApp, who: &Session, slot: &str) -> Gql {
    app.gql_as(
        who,
        "mutation($id: ID!) { deleteAvailability(id: $id) }",
        json!({ "id": slot }),
    )
    .await
}

async fn book(app: &TestApp, who: &Session, slot: &str) -> Gql {
    app.gql_as(
        who,
        &format!("mutation($id: ID!) {{ bookAvailability(id: $id) {{ {MEETING} }} }}"),
        json!({ "id": slot }),
    )
    .await
}

/// Books `slot` as `who`; returns the meeting.
async fn booked(app: &TestApp, who: &Session, slot: &Value) -> Value {
    book(app, who, &id(slot)).await.data()["bookAvailability"].clone()
}

async fn cancel(app: &TestApp, who: &Session, meeting: &str, reason: Option<&str>) -> Gql {
    app.gql_as(
        who,
        &format!("mutation($id: ID!, $r: String) {{ cancelMeeting(id: $id, reason: $r) {{ {MEETING} }} }}"),
        json!({ "id": meeting, "r": reason }),
    )
    .await
}

/// `availabilities` from `from` to `to` as `who`, with the `more` arguments (owner, first, after).
async fn open_slots(app: &TestApp, who: &Session, from: &str, to: &str, more: Value) -> Gql {
    let mut variables = json!({ "from": from, "to": to });
    if let (Some(variables), Some(more)) = (variables.as_object_mut(), more.as_object()) {
        variables.extend(more.clone());
    }
    app.gql_as(who, OPEN_SLOTS, variables).await
}

/// The ids of the open slots from `from` to `to`, with the `more` arguments.
async fn open_ids(app: &TestApp, who: &Session, from: &str, to: &str, more: Value) -> Vec<String> {
    ids(&nodes(
        &open_slots(app, who, from, to, more).await.data()["availabilities"],
    ))
}

/// `who`'s own slots, soonest first.
async fn my_slots(app: &TestApp, who: &Session) -> Vec<Value> {
    let response = app
        .gql_as(
            who,
            &format!("{{ myAvailabilities(first: 100) {{ edges {{ node {{ {SLOT} }} }} }} }}"),
            json!({}),
        )
        .await;
    nodes(&response.data()["myAvailabilities"])
}

/// `who`'s meetings; `arguments` is written into the field as is, e.g. `"(role: OWNER)"`.
async fn my_meetings(app: &TestApp, who: &Session, arguments: &str) -> Vec<Value> {
    let response = app
        .gql_as(
            who,
            &format!("{{ myMeetings{arguments} {{ edges {{ node {{ {MEETING} }} }} }} }}"),
            json!({}),
        )
        .await;
    nodes(&response.data()["myMeetings"])
}

async fn weekly(app: &TestApp, who: &Session, input: Value) -> Gql {
    app.gql_as(
        who,
        &format!("mutation($i: WeeklyAvailabilityInput!) {{ setWeeklyAvailability(input: $i) {{ {SLOT} }} }}"),
        json!({ "i": input }),
    )
    .await
}

/// A valid weekly pattern (Mondays 09:00 in Paris for an hour in June 2055) changed by `changes`.
/// Weekly patterns must start in the future, so these tests use 2055 (and 2056): far ahead, and
/// with the same weekdays, leap day and daylight-saving Sundays as 2027 and 2028, 28 years earlier.
fn weekly_input(changes: Value) -> Value {
    let mut input = json!({
        "timeZone": "Europe/Paris",
        "weekdays": ["MONDAY"],
        "startLocal": "09:00",
        "durationMinutes": 60,
        "fromDate": "2055-06-07",
        "untilDate": "2055-06-28",
        "title": "Mentoring",
    });
    if let (Some(input), Some(changes)) = (input.as_object_mut(), changes.as_object()) {
        input.extend(changes.clone());
    }
    input
}

/// `who` listening to their `myMeetings` stream (operation id "m"), registered on the server.
async fn meetings_stream(app: &TestApp, who: &Session) -> WsClient {
    let mut client = app.ws(TRANSPORT_WS).await;
    client
        .init(json!({ "authorization": format!("Bearer {}", who.access) }))
        .await;
    client
        .subscribe(
            "m",
            "subscription { myMeetings { id status participant { handle } cancelledBy { handle } } }",
            json!({}),
        )
        .await;
    app.listening(&format!("user:{}:meetings", who.id), 1).await;
    client
}

// ---------------------------------------------------------------- calendar feed helpers

async fn feed_url(app: &TestApp, who: &Session) -> String {
    app.gql_as(who, "{ myCalendarFeedUrl }", json!({}))
        .await
        .data()["myCalendarFeedUrl"]
        .as_str()
        .expect("a URL")
        .to_owned()
}

/// GETs a feed path, without any token.
async fn get_feed(app: &TestApp, path: &str) -> reqwest::Response {
    app.http.get(app.url(path)).send().await.expect("sent")
}

/// A feed as fetched: its ETag, its raw text and its events as the `ical` crate reads them.
struct Feed {
    etag: String,
    body: String,
    events: Vec<IcalEvent>,
}

/// GETs a feed, asserting a 200 iCalendar answer with an ETag, and parses it.
async fn read_feed(app: &TestApp, path: &str) -> Feed {
    let response = get_feed(app, path).await;
    assert_eq!(response.status(), 200, "{path}");
    feed_from(response).await
}

async fn feed_from(response: reqwest::Response) -> Feed {
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    assert!(
        content_type.starts_with("text/calendar"),
        "content-type {content_type}"
    );
    let etag = response
        .headers()
        .get("etag")
        .expect("an ETag")
        .to_str()
        .expect("ASCII")
        .to_owned();
    let body = response.text().await.expect("body");
    let calendars = ical::IcalParser::new(std::io::BufReader::new(body.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|error| panic!("not iCalendar ({error}):\n{body}"));
    assert_eq!(calendars.len(), 1, "one VCALENDAR:\n{body}");
    let events = calendars
        .into_iter()
        .next()
        .map(|calendar| calendar.events)
        .unwrap_or_default();
    Feed { etag, body, events }
}

/// The raw (still escaped, but unfolded) value of property `name` of `event`.
#[track_caller]
fn prop<'e>(event: &'e IcalEvent, name: &str) -> &'e str {
    event
        .properties
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(name))
        .and_then(|p| p.value.as_deref())
        .unwrap_or_else(|| panic!("{name} in {event:?}"))
}

/// SEQUENCE, 0 when absent (RFC 5545's default).
fn sequence(event: &IcalEvent) -> i64 {
    event
        .properties
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case("SEQUENCE"))
        .and_then(|p| p.value.as_deref())
        .map_or(0, |v| v.trim().parse().expect("an integer SEQUENCE"))
}

/// RFC 5545 TEXT unescaped.
fn unescape(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n' | 'N') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// An instant in iCalendar's UTC form.
fn ical_utc(time: DateTime<Utc>) -> String {
    time.format("%Y%m%dT%H%M%SZ").to_string()
}

/// The event of `events` that starts at `start`.
#[track_caller]
fn event_starting<'e>(events: &'e [IcalEvent], start: &Value) -> &'e IcalEvent {
    let dtstart = ical_utc(time_of(start));
    events
        .iter()
        .find(|e| prop(e, "DTSTART") == dtstart)
        .unwrap_or_else(|| panic!("an event starting {dtstart} in {events:?}"))
}

// ---------------------------------------------------------------- slots

async fn a_slot_is_kept_to_the_second_and_listed_for_others(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann").await;
    let ben = app.signup("ben").await;
    let start = origin() + TimeDelta::hours(1) + TimeDelta::milliseconds(750);
    let set = set_slot(
        &app,
        &ann,
        json!({
            "startTime": start.to_rfc3339_opts(SecondsFormat::Millis, true),
            "endTime": at(2),
            "title": "  Coffee chat  ",
            "description": "Bring questions",
        }),
    )
    .await;
    let coffee = set.data()["setAvailability"].clone();
    assert_eq!(
        time_of(&coffee["startTime"]),
        time(&at(1)),
        "kept to the second"
    );
    assert_eq!(time_of(&coffee["endTime"]), time(&at(2)));
    assert_eq!(coffee["title"], "Coffee chat");
    assert_eq!(coffee["description"], "Bring questions");
    assert_eq!(coffee["status"], "SCHEDULED");
    assert_eq!(coffee["owner"]["handle"], "ann");
    let created = time_of(&coffee["createdAt"]);
    assert!(created <= Utc::now() && created > Utc::now() - TimeDelta::minutes(5));
    let bare = slot(&app, &ann, &at(3), &at(4), "No description").await;
    assert_eq!(bare["description"], Value::Null);

    let listed = open_slots(&app, &ben, &at(0), &at(24), json!({})).await;
    let listed = nodes(&listed.data()["availabilities"]);
    assert_eq!(ids(&listed), [id(&coffee), id(&bare)]);
    assert_eq!(
        listed[0]["owner"],
        json!({ "handle": "ann", "email": null }),
        "others see the public profile"
    );
    assert_eq!(time_of(&listed[0]["startTime"]), time(&at(1)));
}

async fn set_availability_names_each_invalid_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let cy = app.signup("cyd").await;
    let hour_ago = rfc3339(Utc::now() - TimeDelta::hours(1));
    let in_an_hour = rfc3339(Utc::now() + TimeDelta::hours(1));
    let cases = [
        (
            json!({ "startTime": at(1), "endTime": at(1), "title": "t" }),
            "input.endTime",
        ),
        (
            json!({ "startTime": at(2), "endTime": at(1), "title": "t" }),
            "input.endTime",
        ),
        (
            json!({ "startTime": hour_ago, "endTime": in_an_hour, "title": "t" }),
            "input.startTime",
        ),
        (
            json!({ "startTime": at(0), "endTime": at_minutes(481), "title": "t" }),
            "input.endTime",
        ),
        (
            json!({ "startTime": at(1), "endTime": at(2), "title": "   " }),
            "input.title",
        ),
        (
            json!({ "startTime": at(1), "endTime": at(2), "title": "x".repeat(201) }),
            "input.title",
        ),
        (
            json!({ "startTime": at(1), "endTime": at(2), "title": "t", "description": "d".repeat(5001) }),
            "input.description",
        ),
    ];
    for (input, field) in cases {
        set_slot(&app, &cy, input)
            .await
            .assert_error("BAD_USER_INPUT", Some(field));
    }
    assert!(my_slots(&app, &cy).await.is_empty(), "nothing was made");

    // Each limit itself is allowed.
    slot(&app, &cy, &at(10), &at(18), "Eight hours").await;
    let long_title = slot(
        &app,
        &cy,
        &at(20),
        &at(21),
        &format!(" {} ", "x".repeat(200)),
    )
    .await;
    assert_eq!(long_title["title"], "x".repeat(200));
    set_slot(
        &app,
        &cy,
        json!({ "startTime": at(22), "endTime": at(23), "title": "t", "description": "d".repeat(5000) }),
    )
    .await
    .data();
    assert_eq!(my_slots(&app, &cy).await.len(), 3);
}

async fn the_longest_slot_is_configurable(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.max_slot_minutes = 90).await;
    let dee = app.signup("dee").await;
    set_slot(
        &app,
        &dee,
        json!({ "startTime": at(1), "endTime": at_minutes(60 + 91), "title": "t" }),
    )
    .await
    .assert_error("BAD_USER_INPUT", Some("input.endTime"));
    weekly(&app, &dee, weekly_input(json!({ "durationMinutes": 91 })))
        .await
        .assert_error("BAD_USER_INPUT", Some("input.durationMinutes"));
    slot(&app, &dee, &at(1), &at_minutes(60 + 90), "Ninety minutes").await;
    let made = weekly(&app, &dee, weekly_input(json!({ "durationMinutes": 90 }))).await;
    assert_eq!(
        made.data()["setWeeklyAvailability"]
            .as_array()
            .map(Vec::len),
        Some(4)
    );
}

/// The overlap check reads a week back, as no slot is longer: with week-long slots allowed, a
/// slot starting a minute before a week-long one ends overlaps it; one starting as it ends touches
/// it, which is fine.
async fn a_week_long_slot_still_blocks_its_last_minute(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.max_slot_minutes = 7 * 24 * 60).await;
    let dee = app.signup("dee").await;
    let week = 7 * 24;
    slot(&app, &dee, &at(1), &at(1 + week), "A whole week").await;
    set_slot(
        &app,
        &dee,
        json!({ "startTime": at_minutes(60 * (1 + week) - 1), "endTime": at(2 + week), "title": "Clash" }),
    )
    .await
    .assert_error("CONFLICT", Some("input.startTime"));
    slot(&app, &dee, &at(1 + week), &at(2 + week), "Right after").await;
    assert_eq!(my_slots(&app, &dee).await.len(), 2);
}

async fn own_slots_may_touch_but_not_overlap(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann").await;
    let ben = app.signup("ben").await;
    let two_to_four = slot(&app, &ann, &at(2), &at(4), "Two to four").await;
    for (start, end) in [
        (at(3), at(5)),
        (at(1), at(3)),
        (at(1), at(5)),
        (at_minutes(150), at_minutes(210)),
        (at(2), at(4)),
    ] {
        set_slot(
            &app,
            &ann,
            json!({ "startTime": start, "endTime": end, "title": "Overlap" }),
        )
        .await
        .assert_error("CONFLICT", Some("input.startTime"));
    }
    slot(&app, &ann, &at(4), &at(5), "Right after").await;
    slot(&app, &ann, &at(1), &at(2), "Right before").await;
    slot(&app, &ben, &at(2), &at(4), "Ben's, at the same time").await;

    booked(&app, &ben, &two_to_four).await;
    set_slot(
        &app,
        &ann,
        json!({ "startTime": at_minutes(150), "endTime": at_minutes(180), "title": "Over a booked one" }),
    )
    .await
    .assert_error("CONFLICT", Some("input.startTime"));

    let gone = slot(&app, &ann, &at(10), &at(11), "Deleted").await;
    delete_slot(&app, &ann, &id(&gone)).await.data();
    slot(&app, &ann, &at(10), &at(11), "Where the deleted one was").await;
    let live = my_slots(&app, &ann)
        .await
        .into_iter()
        .filter(|s| s["status"] != "CANCELLED")
        .count();
    assert_eq!(live, 4, "the refused ones were not made");
}

async fn a_slot_is_updated_by_its_owner_under_the_same_rules(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann").await;
    let ben = app.signup("ben").await;
    let intro = id(&slot(&app, &ann, &at(1), &at(2), "Intro").await);
    let other = id(&slot(&app, &ann, &at(3), &at(4), "Other").await);
    let valid = json!({ "startTime": at(10), "endTime": at(11), "title": "Moved" });

    let moved = update_slot(
        &app,
        &ann,
        &intro,
        json!({ "startTime": at_minutes(90), "endTime": at_minutes(150), "title": " Intro call ", "description": "Half an hour later" }),
    )
    .await;
    let moved = moved.data()["updateAvailability"].clone();
    assert_eq!(id(&moved), intro);
    assert_eq!(
        time_of(&moved["startTime"]),
        time(&at_minutes(90)),
        "overlapping itself is fine"
    );
    assert_eq!(time_of(&moved["endTime"]), time(&at_minutes(150)));
    assert_eq!(moved["title"], "Intro call");
    assert_eq!(moved["description"], "Half an hour later");
    assert_eq!(moved["status"], "SCHEDULED");

    let cases = [
        (
            json!({ "startTime": at_minutes(150), "endTime": at_minutes(210), "title": "t" }),
            "CONFLICT",
            "input.startTime",
        ),
        (
            json!({ "startTime": at(2), "endTime": at(1), "title": "t" }),
            "BAD_USER_INPUT",
            "input.endTime",
        ),
        (
            json!({ "startTime": rfc3339(Utc::now() - TimeDelta::hours(1)), "endTime": rfc3339(Utc::now() + TimeDelta::hours(1)), "title": "t" }),
            "BAD_USER_INPUT",
            "input.startTime",
        ),
        (
            json!({ "startTime": at(10), "endTime": at_minutes(600 + 481), "title": "t" }),
            "BAD_USER_INPUT",
            "input.endTime",
        ),
        (
            json!({ "startTime": at(10), "endTime": at(11), "title": "" }),
            "BAD_USER_INPUT",
            "input.title",
        ),
        (
            json!({ "startTime": at(10), "endTime": at(11), "title": "t", "description": "d".repeat(5001) }),
            "BAD_USER_INPUT",
            "input.description",
        ),
    ];
    for (input, code, field) in cases {
        update_slot(&app, &ann, &intro, input)
            .await
            .assert_error(code, Some(field));
    }
    let touching = update_slot(
        &app,
        &ann,
        &intro,
        json!({ "startTime": at(2), "endTime": at(3), "title": "Just before the other" }),
    )
    .await;
    assert_eq!(
        time_of(&touching.data()["updateAvailability"]["endTime"]),
        time(&at(3))
    );

    update_slot(&app, &ben, &intro, valid.clone())
        .await
        .assert_error("FORBIDDEN", None);
    // A stranger's bad input is refused as a stranger's: what is wrong with it is for the owner.
    update_slot(
        &app,
        &ben,
        &intro,
        json!({ "startTime": at(3), "endTime": at(2), "title": "" }),
    )
    .await
    .assert_error("FORBIDDEN", None);
    update_slot(
        &app,
        &ann,
        "0193a0b0-0000-7000-8000-000000000000",
        valid.clone(),
    )
    .await
    .assert_error("NOT_FOUND", None);
    book(&app, &ben, &other).await.data();
    update_slot(&app, &ann, &other, valid)
        .await
        .assert_error("CONFLICT", None);

    let listed = open_slots(&app, &ben, &at(0), &at(24), json!({})).await;
    let listed = nodes(&listed.data()["availabilities"]);
    assert_eq!(ids(&listed), [intro]);
    assert_eq!(listed[0]["title"], "Just before the other");
}

async fn a_slot_is_deleted_by_its_owner_unless_booked(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann").await;
    let ben = app.signup("ben").await;
    let doomed = id(&slot(&app, &ann, &at(1), &at(2), "Doomed").await);
    let taken = slot(&app, &ann, &at(3), &at(4), "Taken").await;
    let kept = id(&slot(&app, &ann, &at(5), &at(6), "Kept").await);
    delete_slot(&app, &ben, &doomed)
        .await
        .assert_error("FORBIDDEN", None);
    booked(&app, &ben, &taken).await;
    delete_slot(&app, &ann, &id(&taken))
        .await
        .assert_error("CONFLICT", None);
    assert_eq!(
        delete_slot(&app, &ann, &doomed).await.data()["deleteAvailability"],
        true
    );
    assert_eq!(
        open_ids(&app, &ben, &at(0), &at(24), json!({})).await,
        [kept]
    );
    assert_eq!(
        my_meetings(&app, &ann, "").await.len(),
        1,
        "the booked one is still a meeting"
    );

    // A slot whose meeting was cancelled is open again; withdrawn, it stays CANCELLED as the
    // cancelled meeting's history instead of going (and taking the meeting with it).
    let once = slot(&app, &ann, &at(7), &at(8), "Once").await;
    let meeting = id(&booked(&app, &ben, &once).await);
    cancel(&app, &ben, &meeting, None).await.data();
    assert_eq!(
        delete_slot(&app, &ann, &id(&once)).await.data()["deleteAvailability"],
        true
    );
    let withdrawn: Vec<Value> = my_slots(&app, &ann)
        .await
        .into_iter()
        .filter(|slot| slot["id"] == once["id"])
        .collect();
    assert_eq!(withdrawn.len(), 1, "kept");
    assert_eq!(withdrawn[0]["status"], "CANCELLED");
    let history: Vec<Value> = my_meetings(&app, &ben, "")
        .await
        .into_iter()
        .filter(|m| m["id"] == meeting.as_str())
        .collect();
    assert_eq!(history.len(), 1, "the cancelled meeting is still there");
    assert_eq!(history[0]["status"], "CANCELLED");
}

/// The owner withdraws a slot while someone books it and cancels at once, round after round. A
/// meeting once made is never lost with its slot: whatever the order, a booking that went through
/// leaves its (cancelled) meeting, and its slot CANCELLED if withdrawn; a withdrawal that came
/// first leaves no slot and refuses the booking (NOT_FOUND or CONFLICT). Never INTERNAL.
async fn a_withdrawal_racing_a_booking_and_its_cancellation_never_loses_the_meeting(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann").await;
    let ben = app.signup("ben").await;
    for round in 0..12_i64 {
        let open = id(&slot(&app, &ann, &at(1 + 2 * round), &at(2 + 2 * round), "Race").await);
        let delay = Duration::from_millis([0, 2, 5][usize::try_from(round % 3).expect("round")]);
        let book_and_cancel = async {
            let booking = book(&app, &ben, &open).await;
            if is_success(&booking) {
                let meeting = booking.data()["bookAvailability"]["id"]
                    .as_str()
                    .expect("id")
                    .to_owned();
                cancel(&app, &ben, &meeting, None).await.data();
            }
            booking
        };
        let withdraw = async {
            tokio::time::sleep(delay).await;
            delete_slot(&app, &ann, &open).await
        };
        let (booking, withdrawal) = tokio::join!(book_and_cancel, withdraw);
        let mine = my_slots(&app, &ann)
            .await
            .into_iter()
            .find(|slot| slot["id"] == open.as_str());
        let meetings: Vec<Value> = my_meetings(&app, &ben, "")
            .await
            .into_iter()
            .filter(|m| m["availability"]["id"] == open.as_str())
            .collect();
        if is_success(&booking) {
            assert_eq!(meetings.len(), 1, "round {round}: the meeting is kept");
            assert_eq!(meetings[0]["status"], "CANCELLED");
            let mine = mine.expect("the slot is kept as the meeting's history");
            if is_success(&withdrawal) {
                assert_eq!(mine["status"], "CANCELLED", "round {round}");
            } else {
                withdrawal.assert_error("CONFLICT", None);
                assert_eq!(mine["status"], "SCHEDULED", "round {round}: open again");
            }
        } else {
            assert!(
                ["NOT_FOUND", "CONFLICT"].contains(&booking.code()),
                "round {round}: {:?}",
                booking.body
            );
            assert_eq!(
                withdrawal.data()["deleteAvailability"],
                true,
                "round {round}"
            );
            assert!(mine.is_none(), "round {round}: gone");
            assert!(meetings.is_empty(), "round {round}");
        }
    }
}

async fn open_slots_are_listed_in_their_window_soonest_first(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann").await;
    let ben = app.signup("ben").await;
    let carl = app.signup("carl").await;
    let s5 = id(&slot(&app, &ann, &at(5), &at(6), "Five").await);
    let s1 = id(&slot(&app, &ann, &at(1), &at(2), "One").await);
    let s3 = id(&slot(&app, &ann, &at(3), &at(4), "Three").await);
    let s9 = slot(&app, &ann, &at(9), &at(10), "Nine, booked").await;
    let b2 = id(&slot(&app, &ben, &at(2), &at(3), "Ben at two").await);
    let t7 = id(&slot(&app, &ann, &at(7), &at(8), "Ann at seven").await);
    let u7 = id(&slot(&app, &ben, &at(7), &at(8), "Ben at seven").await);
    booked(&app, &carl, &s9).await;

    assert_eq!(
        open_ids(&app, &carl, &at(1), &at(7), json!({})).await,
        [s1.clone(), b2.clone(), s3.clone(), s5.clone()],
        "from is inclusive, to is not"
    );
    assert_eq!(
        open_ids(
            &app,
            &carl,
            &at_minutes(61),
            &at(24),
            json!({ "owner": "ann" })
        )
        .await,
        [s3.clone(), s5.clone(), t7.clone()],
        "by start time, and booked slots are not open"
    );
    assert_eq!(
        open_ids(&app, &carl, &at(0), &at(24), json!({ "owner": "ben" })).await,
        [b2.clone(), u7.clone()]
    );
    assert!(
        open_ids(&app, &carl, &at(0), &at(24), json!({ "owner": "nobody_x" }))
            .await
            .is_empty()
    );
    let mut tie = vec![t7, u7];
    tie.sort();
    assert_eq!(
        open_ids(&app, &carl, &at(7), &at(8), json!({})).await,
        tie,
        "ties go by id"
    );
    let first_two = open_slots(&app, &carl, &at(0), &at(24), json!({ "first": 2 })).await;
    let page = &first_two.data()["availabilities"];
    assert_eq!(ids(&nodes(page)), [s1, b2]);
    assert_eq!(page["pageInfo"]["hasNextPage"], true);

    for (from, to, more, field) in [
        (at(2), at(2), json!({}), "to"),
        (at(3), at(2), json!({}), "to"),
        (at(0), at(24), json!({ "first": 101 }), "first"),
        (at(0), at(24), json!({ "after": "not-a-cursor" }), "after"),
    ] {
        open_slots(&app, &carl, &from, &to, more)
            .await
            .assert_error("BAD_USER_INPUT", Some(field));
    }
}

/// Moves `slot`'s start (and its meeting's, if booked) to ten minutes ago, as time passing would:
/// the API refuses a start in the past.
async fn start_ten_minutes_ago(app: &TestApp, slot: &str) {
    let slot = uuid::Uuid::parse_str(slot).expect("uuid");
    let started = (Utc::now() - TimeDelta::minutes(10)).trunc_subsecs(0);
    availability::Entity::update_many()
        .col_expr(availability::Column::StartTime, Expr::value(started))
        .filter(availability::Column::Id.eq(slot))
        .exec(&app.state.db)
        .await
        .expect("move the slot");
    meeting::Entity::update_many()
        .col_expr(meeting::Column::StartTime, Expr::value(started))
        .filter(meeting::Column::AvailabilityId.eq(slot))
        .exec(&app.state.db)
        .await
        .expect("move its meeting");
}

/// A slot that has started is not open: no search lists it, whatever `from` says, and booking it
/// is CONFLICT. A meeting cancelled once it has started leaves its slot CANCELLED, not open; one
/// that has ended cannot be cancelled.
async fn a_slot_that_has_started_is_not_open(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann").await;
    let ben = app.signup("ben").await;
    let started = id(&slot(&app, &ann, &at(1), &at(2), "Running late").await);
    let later = id(&slot(&app, &ann, &at(3), &at(4), "Later").await);
    let met = slot(&app, &ann, &at(5), &at(6), "Under way").await;
    let meeting = id(&booked(&app, &ben, &met).await);
    start_ten_minutes_ago(&app, &started).await;
    start_ten_minutes_ago(&app, &id(&met)).await;

    let an_hour_ago = rfc3339(Utc::now() - TimeDelta::hours(1));
    assert_eq!(
        open_ids(&app, &ben, &an_hour_ago, &at(24), json!({})).await,
        [later],
        "only the slot still ahead is open"
    );
    book(&app, &ben, &started)
        .await
        .assert_error("CONFLICT", None);
    assert_eq!(my_meetings(&app, &ben, "").await.len(), 1);

    let cancelled = cancel(&app, &ben, &meeting, None).await;
    assert_eq!(
        cancelled.data()["cancelMeeting"]["availability"]["status"],
        "CANCELLED",
        "a started slot does not open again"
    );
    assert_eq!(
        open_ids(&app, &ben, &an_hour_ago, &at(24), json!({}))
            .await
            .len(),
        1,
        "still only the slot ahead"
    );

    // A meeting that has ended stays as it happened.
    let past = slot(&app, &ann, &at(7), &at(8), "Done").await;
    let done = id(&booked(&app, &ben, &past).await);
    let (start, end) = (
        (Utc::now() - TimeDelta::hours(2)).trunc_subsecs(0),
        (Utc::now() - TimeDelta::hours(1)).trunc_subsecs(0),
    );
    availability::Entity::update_many()
        .col_expr(availability::Column::StartTime, Expr::value(start))
        .col_expr(availability::Column::EndTime, Expr::value(end))
        .filter(availability::Column::Id.eq(uuid::Uuid::parse_str(&id(&past)).expect("uuid")))
        .exec(&app.state.db)
        .await
        .expect("move the slot back");
    meeting::Entity::update_many()
        .col_expr(meeting::Column::StartTime, Expr::value(start))
        .col_expr(meeting::Column::EndTime, Expr::value(end))
        .filter(meeting::Column::Id.eq(uuid::Uuid::parse_str(&done).expect("uuid")))
        .exec(&app.state.db)
        .await
        .expect("move its meeting back");
    cancel(&app, &ann, &done, Some("too late"))
        .await
        .assert_error("CONFLICT", None);
    let kept: Vec<Value> = my_meetings(&app, &ben, "")
        .await
        .into_iter()
        .filter(|m| m["id"] == done.as_str())
        .collect();
    assert_eq!(kept[0]["status"], "CONFIRMED");
    assert_eq!(kept[0]["cancellationReason"], Value::Null);
}

async fn paging_through_open_slots_sees_each_once_while_slots_are_added(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann").await;
    let ben = app.signup("ben").await;
    let mut originals = Vec::new();
    for hour in 0..25 {
        originals.push(id(&slot(
            &app,
            &ann,
            &at_minutes(hour * 60),
            &at_minutes(hour * 60 + 30),
            &format!("Slot {hour}"),
        )
        .await));
    }
    let mut seen: Vec<String> = Vec::new();
    let mut starts = Vec::new();
    let mut after = Value::Null;
    let mut ended = false;
    for page_number in 0..20 {
        let page = open_slots(
            &app,
            &ben,
            &at(0),
            &at(1000),
            json!({ "first": 7, "after": after }),
        )
        .await;
        let connection = &page.data()["availabilities"];
        let page_nodes = nodes(connection);
        assert!(page_nodes.len() <= 7);
        seen.extend(ids(&page_nodes));
        starts.extend(page_nodes.iter().map(|n| time_of(&n["startTime"])));
        // New slots while walking: later than all, between two already passed, and between two ahead.
        slot(
            &app,
            &ann,
            &at(200 + page_number),
            &at_minutes((200 + page_number) * 60 + 30),
            "Later",
        )
        .await;
        slot(
            &app,
            &ann,
            &at_minutes(page_number * 60 + 40),
            &at_minutes(page_number * 60 + 50),
            "Behind",
        )
        .await;
        let ahead = page_number * 7 + 10;
        if ahead < 25 {
            slot(
                &app,
                &ann,
                &at_minutes(ahead * 60 + 35),
                &at_minutes(ahead * 60 + 38),
                "Ahead",
            )
            .await;
        }
        if connection["pageInfo"]["hasNextPage"] == false {
            ended = true;
            break;
        }
        after = connection["pageInfo"]["endCursor"].clone();
        assert!(after.is_string(), "a cursor to go on from: {connection}");
    }
    assert!(ended, "the walk comes to an end");
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no slot twice");
    for original in &originals {
        assert!(seen.contains(original), "every original slot seen");
    }
    assert!(starts.windows(2).all(|w| w[0] <= w[1]), "soonest first");
}

async fn my_availabilities_lists_my_slots_of_any_status(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann").await;
    let ben = app.signup("ben").await;
    let later = slot(&app, &ann, &at(3), &at(4), "Later, booked").await;
    let sooner = slot(&app, &ann, &at(1), &at(2), "Sooner, open").await;
    slot(&app, &ben, &at(2), &at(3), "Ben's").await;
    booked(&app, &ben, &later).await;
    let mine = my_slots(&app, &ann).await;
    assert_eq!(ids(&mine), [id(&sooner), id(&later)]);
    assert_eq!(mine[0]["status"], "SCHEDULED");
    assert_eq!(mine[1]["status"], "BOOKED");

    let query = "query($after: String) { myAvailabilities(first: 1, after: $after) { edges { node { id } } pageInfo { hasNextPage endCursor } } }";
    let first = app.gql_as(&ann, query, json!({ "after": null })).await;
    let first = &first.data()["myAvailabilities"];
    assert_eq!(ids(&nodes(first)), [id(&sooner)]);
    assert_eq!(first["pageInfo"]["hasNextPage"], true);
    let second = app
        .gql_as(
            &ann,
            query,
            json!({ "after": first["pageInfo"]["endCursor"] }),
        )
        .await;
    let second = &second.data()["myAvailabilities"];
    assert_eq!(ids(&nodes(second)), [id(&later)]);
    assert_eq!(second["pageInfo"]["hasNextPage"], false);
}

// ---------------------------------------------------------------- booking

async fn booking_turns_a_slot_into_a_confirmed_meeting(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann").await;
    let ben = app.signup("ben").await;
    let open = slot(&app, &ann, &at(1), &at(2), "Portfolio review").await;
    let meeting = booked(&app, &ben, &open).await;
    assert_eq!(meeting["status"], "CONFIRMED");
    assert_eq!(
        meeting["availability"],
        json!({ "id": open["id"], "status": "BOOKED" })
    );
    assert_eq!(meeting["owner"]["handle"], "ann");
    assert_eq!(meeting["participant"]["handle"], "ben");
    assert_eq!(time_of(&meeting["startTime"]), time(&at(1)));
    assert_eq!(time_of(&meeting["endTime"]), time(&at(2)));
    let created = time_of(&meeting["createdAt"]);
    assert!(created <= Utc::now() && created > Utc::now() - TimeDelta::minutes(5));
    assert_eq!(meeting["cancelledAt"], Value::Null);
    assert_eq!(meeting["cancelledBy"], Value::Null);
    assert_eq!(meeting["cancellationReason"], Value::Null);
    assert!(
        open_ids(&app, &ben, &at(0), &at(24), json!({}))
            .await
            .is_empty(),
        "a booked slot is no longer open"
    );
    assert_eq!(my_slots(&app, &ann).await[0]["status"], "BOOKED");
}

async fn booking_refuses_ones_own_unknown_and_taken_slots(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann").await;
    let ben = app.signup("ben").await;
    let carl = app.signup("carl").await;
    let open = id(&slot(&app, &ann, &at(1), &at(2), "Pick me").await);
    book(&app, &ann, &open)
        .await
        .assert_error("FORBIDDEN", None);
    for missing in ["not-a-uuid", "0193a0b0-0000-7000-8000-000000000000"] {
        book(&app, &ben, missing)
            .await
            .assert_error("NOT_FOUND", None);
    }
    book(&app, &ben, &open).await.data();
    book(&app, &carl, &open)
        .await
        .assert_error("CONFLICT", None);
    book(&app, &ben, &open).await.assert_error("CONFLICT", None);
    assert_eq!(my_meetings(&app, &ann, "").await.len(), 1);
}

async fn exactly_one_of_fifty_concurrent_bookers_wins(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.auth_attempts_per_address = 1000).await;
    let ann = app.signup("ann").await;
    let mut bookers = Vec::new();
    for n in 0..50 {
        bookers.push(app.signup(&format!("booker_{n}")).await);
    }
    for round in 0..2 {
        let open = id(&slot(
            &app,
            &ann,
            &at(1 + 2 * round),
            &at(2 + 2 * round),
            "Office hours",
        )
        .await);
        let results = join_all(bookers.iter().map(|who| book(&app, who, &open))).await;
        let winners: Vec<&Gql> = results.iter().filter(|r| is_success(r)).collect();
        assert_eq!(winners.len(), 1, "round {round}: exactly one booker wins");
        for refused in results.iter().filter(|r| !is_success(r)) {
            refused.assert_error("CONFLICT", None);
        }
        let winner = winners[0].data()["bookAvailability"]["participant"]["handle"].clone();
        let meetings: Vec<Value> = my_meetings(&app, &ann, "(role: OWNER)")
            .await
            .into_iter()
            .filter(|m| m["availability"]["id"] == open.as_str())
            .collect();
        assert_eq!(meetings.len(), 1, "round {round}: one meeting for the slot");
        assert_eq!(meetings[0]["participant"]["handle"], winner);
        assert_eq!(meetings[0]["status"], "CONFIRMED");
    }
}

/// With caps of three upcoming bookings and five slots ahead: a person booking eight slots at once
/// gets exactly three (cancelling one frees a place), and an owner gets five slots, a sixth or a
/// weekly pattern past the cap being refused whole.
async fn one_person_holds_at_most_the_capped_bookings_and_slots(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.max_upcoming_bookings = 3;
        c.max_upcoming_slots = 5;
    })
    .await;
    let owners = [app.signup("ann").await, app.signup("amy").await];
    let ben = app.signup("ben").await;
    let mut open = Vec::new();
    for (n, owner) in owners.iter().enumerate() {
        for hour in 0..4_i64 {
            let start = 1 + 2 * hour + 10 * i64::try_from(n).expect("small");
            open.push(id(
                &slot(&app, owner, &at(start), &at(start + 1), "Open").await
            ));
        }
    }
    let results = join_all(open.iter().map(|slot| book(&app, &ben, slot))).await;
    let won: Vec<&Gql> = results.iter().filter(|r| is_success(r)).collect();
    assert_eq!(won.len(), 3, "exactly the cap");
    for refused in results.iter().filter(|r| !is_success(r)) {
        refused.assert_error("CONFLICT", None);
    }
    assert_eq!(my_meetings(&app, &ben, "").await.len(), 3);
    let first = won[0].data()["bookAvailability"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    cancel(&app, &ben, &first, None).await.data();
    let free: Vec<&String> = open
        .iter()
        .zip(&results)
        .filter(|(_, result)| !is_success(result))
        .map(|(slot, _)| slot)
        .collect();
    assert!(
        is_success(&book(&app, &ben, free[0]).await),
        "a place freed"
    );
    book(&app, &ben, free[1])
        .await
        .assert_error("CONFLICT", None);

    // Ann has four slots ahead: a fifth is taken, a sixth is not, nor a pattern of two.
    let ann = &owners[0];
    slot(&app, ann, &at(30), &at(31), "Fifth").await;
    set_slot(
        &app,
        ann,
        json!({ "startTime": at(32), "endTime": at(33), "title": "Sixth" }),
    )
    .await
    .assert_error("CONFLICT", None);
    weekly(&app, ann, weekly_input(json!({ "weekdays": ["MONDAY", "TUESDAY"], "fromDate": "2055-06-07", "untilDate": "2055-06-08" })))
        .await
        .assert_error("CONFLICT", None);
    assert_eq!(my_slots(&app, ann).await.len(), 5, "nothing more was made");
}

async fn one_of_ten_concurrent_overlapping_slots_is_kept(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann").await;
    let attempts = (0..10).map(|n| {
        set_slot(
            &app,
            &ann,
            json!({ "startTime": at_minutes(60 + n), "endTime": at_minutes(120 + n), "title": format!("Try {n}") }),
        )
    });
    let results = join_all(attempts).await;
    assert_eq!(results.iter().filter(|r| is_success(r)).count(), 1);
    for refused in results.iter().filter(|r| !is_success(r)) {
        refused.assert_error("CONFLICT", Some("input.startTime"));
    }
    assert_eq!(my_slots(&app, &ann).await.len(), 1);
}

// ---------------------------------------------------------------- meetings

async fn either_side_cancels_and_the_slot_opens_again(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann").await;
    let ben = app.signup("ben").await;
    let carl = app.signup("carl").await;
    let dora = app.signup("dora").await;
    let open = slot(&app, &ann, &at(1), &at(2), "Walk and talk").await;
    let first = id(&booked(&app, &ben, &open).await);

    cancel(&app, &dora, &first, None)
        .await
        .assert_error("NOT_FOUND", None);
    // A stranger's bad reason is a stranger's request: the meeting stays hidden.
    cancel(&app, &dora, &first, Some(&"r".repeat(501)))
        .await
        .assert_error("NOT_FOUND", None);
    cancel(&app, &ben, &first, Some(&"r".repeat(501)))
        .await
        .assert_error("BAD_USER_INPUT", Some("reason"));
    let by_ben = cancel(&app, &ben, &first, Some("Something came up")).await;
    let by_ben = by_ben.data()["cancelMeeting"].clone();
    assert_eq!(by_ben["status"], "CANCELLED");
    let cancelled_at = time_of(&by_ben["cancelledAt"]);
    assert!(cancelled_at <= Utc::now() && cancelled_at > Utc::now() - TimeDelta::minutes(5));
    assert_eq!(by_ben["cancelledBy"]["handle"], "ben");
    assert_eq!(by_ben["cancellationReason"], "Something came up");
    assert_eq!(by_ben["availability"]["status"], "SCHEDULED");
    cancel(&app, &ben, &first, None)
        .await
        .assert_error("CONFLICT", None);
    cancel(&app, &ann, &first, None)
        .await
        .assert_error("CONFLICT", None);
    assert_eq!(
        open_ids(&app, &carl, &at(0), &at(24), json!({})).await,
        [id(&open)],
        "open again"
    );

    let second = booked(&app, &carl, &open).await;
    assert_eq!(second["status"], "CONFIRMED");
    assert_ne!(id(&second), first);
    let limit = "r".repeat(500);
    let by_ann = cancel(&app, &ann, &id(&second), Some(&limit)).await;
    let by_ann = &by_ann.data()["cancelMeeting"];
    assert_eq!(by_ann["cancelledBy"]["handle"], "ann");
    assert_eq!(by_ann["cancellationReason"], limit.as_str());
    assert_eq!(by_ann["availability"]["status"], "SCHEDULED");

    let without_reason = booked(&app, &dora, &open).await;
    let plain = cancel(&app, &dora, &id(&without_reason), None).await;
    assert_eq!(
        plain.data()["cancelMeeting"]["cancellationReason"],
        Value::Null
    );
    assert_eq!(
        plain.data()["cancelMeeting"]["cancelledBy"]["handle"],
        "dora"
    );
}

async fn a_meeting_is_seen_by_its_owner_and_participant_only(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann").await;
    let ben = app.signup("ben").await;
    let dora = app.signup("dora").await;
    let open = slot(&app, &ann, &at(1), &at(2), "Private").await;
    let meeting = booked(&app, &ben, &open).await;
    let query = format!("query($id: ID!) {{ meeting(id: $id) {{ {MEETING} }} }}");
    for who in [&ann, &ben] {
        let seen = app
            .gql_as(who, &query, json!({ "id": meeting["id"] }))
            .await;
        assert_eq!(seen.data()["meeting"], meeting, "{}", who.handle);
    }
    let hidden = app
        .gql_as(&dora, &query, json!({ "id": meeting["id"] }))
        .await;
    assert_eq!(
        hidden.body["data"]["meeting"],
        Value::Null,
        "{}",
        hidden.body
    );
    assert_eq!(hidden.code(), "NOT_FOUND");
}

async fn my_meetings_lists_both_roles_soonest_first(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann").await;
    let ben = app.signup("ben").await;
    let carl = app.signup("carl").await;
    let at_five = slot(&app, &ann, &at(5), &at(6), "Ann at five").await;
    let at_three = slot(&app, &ann, &at(3), &at(4), "Ann at three").await;
    let at_four = slot(&app, &ben, &at(4), &at(5), "Ben at four").await;
    let five = id(&booked(&app, &ben, &at_five).await);
    let three = id(&booked(&app, &carl, &at_three).await);
    let four = id(&booked(&app, &ann, &at_four).await);
    cancel(&app, &ben, &five, None).await.data();

    let any = my_meetings(&app, &ann, "").await;
    assert_eq!(
        ids(&any),
        [three.clone(), four.clone(), five.clone()],
        "role ANY by default"
    );
    assert_eq!(any[2]["status"], "CANCELLED", "cancelled ones included");
    assert_eq!(
        ids(&my_meetings(&app, &ann, "(role: ANY)").await),
        ids(&any)
    );
    assert_eq!(
        ids(&my_meetings(&app, &ann, "(role: OWNER)").await),
        [three.clone(), five.clone()]
    );
    assert_eq!(
        ids(&my_meetings(&app, &ann, "(role: PARTICIPANT)").await),
        std::slice::from_ref(&four)
    );
    assert_eq!(
        ids(&my_meetings(&app, &ben, "").await),
        [four.clone(), five.clone()]
    );
    assert_eq!(
        ids(&my_meetings(&app, &carl, "(role: OWNER)").await),
        Vec::<String>::new()
    );

    let query = "query($after: String) { myMeetings(first: 2, after: $after) { edges { node { id } } pageInfo { hasNextPage endCursor } } }";
    let page = app.gql_as(&ann, query, json!({ "after": null })).await;
    let page = &page.data()["myMeetings"];
    assert_eq!(ids(&nodes(page)), [three, four]);
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    let rest = app
        .gql_as(
            &ann,
            query,
            json!({ "after": page["pageInfo"]["endCursor"] }),
        )
        .await;
    let rest = &rest.data()["myMeetings"];
    assert_eq!(ids(&nodes(rest)), [five]);
    assert_eq!(rest["pageInfo"]["hasNextPage"], false);
}

// ---------------------------------------------------------------- the myMeetings stream

async fn the_owner_hears_of_every_booking_and_cancellation(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann").await;
    let ben = app.signup("ben").await;
    let carl = app.signup("carl").await;
    let open = slot(&app, &ann, &at(1), &at(2), "Drop-in").await;
    let mut stream = meetings_stream(&app, &ann).await;

    let first = id(&booked(&app, &ben, &open).await);
    assert_eq!(
        stream.next_data("m").await["myMeetings"],
        json!({ "id": first, "status": "CONFIRMED", "participant": { "handle": "ben" }, "cancelledBy": null })
    );
    cancel(&app, &ben, &first, None).await.data();
    assert_eq!(
        stream.next_data("m").await["myMeetings"],
        json!({ "id": first, "status": "CANCELLED", "participant": { "handle": "ben" }, "cancelledBy": { "handle": "ben" } })
    );
    let second = id(&booked(&app, &carl, &open).await);
    let booked_again = stream.next_data("m").await;
    assert_eq!(booked_again["myMeetings"]["id"], second.as_str());
    assert_eq!(booked_again["myMeetings"]["status"], "CONFIRMED");
    cancel(&app, &ann, &second, None).await.data();
    assert_eq!(
        stream.next_data("m").await["myMeetings"],
        json!({ "id": second, "status": "CANCELLED", "participant": { "handle": "carl" }, "cancelledBy": { "handle": "ann" } })
    );
    stream.assert_quiet(Duration::from_millis(300)).await;
}

/// Streams that fell behind (more messages queued than a subscriber may fall behind by) lost the
/// oldest. They are not left without the changes that were pushed out: each gets the meeting as it
/// is now, once, and none of the skipped messages about what it has already sent.
async fn streams_that_fell_behind_catch_up_on_the_changes_they_missed(backend: Backend) {
    use futures_util::StreamExt;
    use rally::meetings::model::{MEETINGS, MeetingChanged, MeetingEvent, MeetingStatus};
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann").await;
    let ben = app.signup("ben").await;
    let open = slot(&app, &ann, &at(1), &at(2), "Drop-in").await;
    let user = |who: &Session| who.id.parse::<uuid::Uuid>().expect("uuid");
    let mut owner = Box::pin(rally::meetings::service::follow(&app.state, user(&ann)));
    let mut participant = Box::pin(rally::meetings::service::follow(&app.state, user(&ben)));

    // Neither stream is read: ben books, ann cancels, then 150 copies of a message each stream
    // has had (more than the 128 a subscriber may fall behind by) push both changes out.
    let meeting = id(&booked(&app, &ben, &open).await);
    cancel(&app, &ann, &meeting, None).await.data();
    let row = meeting::Entity::find_by_id(meeting.parse::<uuid::Uuid>().expect("uuid"))
        .one(&app.state.db)
        .await
        .expect("read")
        .expect("the meeting");
    let cancellation = MeetingChanged {
        meeting: row.clone().into(),
        kind: MeetingEvent::Cancelled,
    };
    let mut booking = cancellation.clone();
    booking.kind = MeetingEvent::Booked;
    booking.meeting.status = MeetingStatus::Confirmed;
    booking.meeting.cancelled_at = None;
    booking.meeting.cancelled_by = None;
    for _ in 0..150 {
        app.state.live.publish(&MEETINGS.of(user(&ann)), &booking);
        app.state
            .live
            .publish(&MEETINGS.of(user(&ben)), &cancellation);
    }
    for (who, stream) in [("owner", &mut owner), ("participant", &mut participant)] {
        let caught_up = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("the catch-up comes")
            .expect("the stream goes on");
        assert_eq!(
            (caught_up.id.to_string(), caught_up.status),
            (meeting.clone(), MeetingStatus::Cancelled),
            "{who}: the meeting as it is now"
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(300), stream.next())
                .await
                .is_err(),
            "{who}: none of the skipped messages follow"
        );
    }
}

/// A participant hears of every cancellation of their meetings, their own included (their other
/// devices learn it), and of nothing else: not of their own bookings.
async fn a_participant_hears_of_every_cancellation_of_their_meetings(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann").await;
    let ben = app.signup("ben").await;
    let mine_to_drop = slot(&app, &ann, &at(1), &at(2), "Ben cancels").await;
    let theirs_to_drop = slot(&app, &ann, &at(3), &at(4), "Ann cancels").await;
    let mut stream = meetings_stream(&app, &ben).await;

    let own = id(&booked(&app, &ben, &mine_to_drop).await);
    cancel(&app, &ben, &own, Some("Clash")).await.data();
    assert_eq!(
        stream.next_data("m").await["myMeetings"],
        json!({ "id": own, "status": "CANCELLED", "participant": { "handle": "ben" }, "cancelledBy": { "handle": "ben" } }),
        "no frame for the booking, one for the cancellation"
    );

    let dropped = id(&booked(&app, &ben, &theirs_to_drop).await);
    cancel(&app, &ann, &dropped, Some("Ill")).await.data();
    assert_eq!(
        stream.next_data("m").await["myMeetings"],
        json!({ "id": dropped, "status": "CANCELLED", "participant": { "handle": "ben" }, "cancelledBy": { "handle": "ann" } })
    );
    stream.assert_quiet(Duration::from_millis(300)).await;
}

async fn a_stranger_hears_nothing_of_others_meetings(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann").await;
    let ben = app.signup("ben").await;
    let dora = app.signup("dora").await;
    let open = slot(&app, &ann, &at(1), &at(2), "Not Dora's business").await;
    let mut strangers = meetings_stream(&app, &dora).await;
    let mut owners = meetings_stream(&app, &ann).await;
    let meeting = id(&booked(&app, &ben, &open).await);
    cancel(&app, &ann, &meeting, None).await.data();
    // The owner heard both, so both were published before the stranger's stream is checked.
    assert_eq!(
        owners.next_data("m").await["myMeetings"]["status"],
        "CONFIRMED"
    );
    assert_eq!(
        owners.next_data("m").await["myMeetings"]["status"],
        "CANCELLED"
    );
    strangers.assert_quiet(Duration::from_millis(300)).await;
}

// ---------------------------------------------------------------- weekly patterns

async fn weekly_slots_keep_the_wall_clock_across_daylight_saving(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let eva = app.signup("eva").await;
    let paris = chrono_tz::Europe::Paris;
    // EU clocks go forward on 2055-03-28 and back on 2055-10-31.
    for (from, until, title) in [
        ("2055-03-15", "2055-04-12", "Spring mentoring"),
        ("2055-10-18", "2055-11-08", "Autumn mentoring"),
    ] {
        let made = weekly(
            &app,
            &eva,
            json!({
                "timeZone": "Europe/Paris",
                "weekdays": ["MONDAY"],
                "startLocal": "09:00",
                "durationMinutes": 45,
                "fromDate": from,
                "untilDate": until,
                "title": title,
                "description": "Weekly",
            }),
        )
        .await;
        let made = made.data()["setWeeklyAvailability"]
            .as_array()
            .expect("a list")
            .clone();
        let expected = wall_clock_starts(paris, &[Weekday::Mon], "09:00", from, until);
        let starts: Vec<DateTime<Utc>> = made.iter().map(|s| time_of(&s["startTime"])).collect();
        assert_eq!(
            starts, expected,
            "{from}..{until}: 09:00 Paris each Monday, soonest first"
        );
        for each in &made {
            assert_eq!(
                time_of(&each["endTime"]) - time_of(&each["startTime"]),
                TimeDelta::minutes(45)
            );
            assert_eq!(each["status"], "SCHEDULED");
            assert_eq!(each["title"], title);
            assert_eq!(each["description"], "Weekly");
            assert_eq!(each["owner"]["handle"], "eva");
        }
    }
    // The same instants, written out: 08:00Z in winter, 07:00Z in summer.
    let starts: Vec<String> = my_slots(&app, &eva)
        .await
        .iter()
        .map(|s| rfc3339(time_of(&s["startTime"])))
        .collect();
    assert_eq!(
        starts,
        [
            "2055-03-15T08:00:00Z",
            "2055-03-22T08:00:00Z",
            "2055-03-29T07:00:00Z",
            "2055-04-05T07:00:00Z",
            "2055-04-12T07:00:00Z",
            "2055-10-18T07:00:00Z",
            "2055-10-25T07:00:00Z",
            "2055-11-01T08:00:00Z",
            "2055-11-08T08:00:00Z",
        ]
    );

    // Several weekdays: one slot per matching day, soonest first.
    let week = weekly(
        &app,
        &eva,
        weekly_input(json!({
            "timeZone": "Asia/Tokyo",
            "weekdays": [weekday_name(Weekday::Fri), weekday_name(Weekday::Tue)],
            "startLocal": "18:30",
            "fromDate": "2055-06-07",
            "untilDate": "2055-06-13",
        })),
    )
    .await;
    let starts: Vec<DateTime<Utc>> = week.data()["setWeeklyAvailability"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|s| time_of(&s["startTime"]))
        .collect();
    assert_eq!(
        starts,
        wall_clock_starts(
            chrono_tz::Asia::Tokyo,
            &[Weekday::Tue, Weekday::Fri],
            "18:30",
            "2055-06-07",
            "2055-06-13"
        )
    );
    assert_eq!(starts.len(), 2);
}

async fn weekly_slots_move_out_of_gaps_and_take_the_first_of_repeats(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let fay = app.signup("fay").await;
    let new_york = chrono_tz::America::New_York;
    // US clocks go forward at 02:00 on 2055-03-14 (02:30 does not exist) and back at 02:00 on
    // 2055-11-07 (01:30 happens twice).
    for (start, from, until, on_the_day) in [
        ("02:30", "2055-03-07", "2055-03-21", "2055-03-14T07:30:00Z"),
        ("01:30", "2055-10-31", "2055-11-14", "2055-11-07T05:30:00Z"),
    ] {
        let made = weekly(
            &app,
            &fay,
            json!({
                "timeZone": "America/New_York",
                "weekdays": ["SUNDAY"],
                "startLocal": start,
                "durationMinutes": 30,
                "fromDate": from,
                "untilDate": until,
                "title": "Night shift handover",
            }),
        )
        .await;
        let made = made.data()["setWeeklyAvailability"]
            .as_array()
            .expect("a list")
            .clone();
        let starts: Vec<DateTime<Utc>> = made.iter().map(|s| time_of(&s["startTime"])).collect();
        let expected = wall_clock_starts(new_york, &[Weekday::Sun], start, from, until);
        assert_eq!(starts, expected, "{start} each Sunday {from}..{until}");
        assert_eq!(starts.len(), 3);
        assert_eq!(
            rfc3339(starts[1]),
            on_the_day,
            "{start} on the day of the change"
        );
        assert_eq!(
            time_of(&made[1]["endTime"]),
            starts[1] + TimeDelta::minutes(30)
        );
    }
}

async fn set_weekly_availability_names_each_invalid_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let gus = app.signup("gus").await;
    let today = Utc::now().date_naive();
    let days_ago = (today - TimeDelta::days(3)).format("%Y-%m-%d").to_string();
    let soon = (today + TimeDelta::days(10)).format("%Y-%m-%d").to_string();
    let every_day: Vec<&str> = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ]
    .into_iter()
    .map(weekday_name)
    .collect();
    let cases = [
        (json!({ "timeZone": "Mars/Olympus_Mons" }), "input.timeZone"),
        (json!({ "startLocal": "9am" }), "input.startLocal"),
        (json!({ "startLocal": "25:00" }), "input.startLocal"),
        (json!({ "startLocal": "09:60" }), "input.startLocal"),
        (json!({ "fromDate": "2055-02-30" }), "input.fromDate"),
        (json!({ "fromDate": "June 7th" }), "input.fromDate"),
        (json!({ "untilDate": "2055-13-01" }), "input.untilDate"),
        (json!({ "untilDate": "2055-06-06" }), "input.untilDate"),
        (json!({ "untilDate": "2056-06-08" }), "input.untilDate"),
        (json!({ "weekdays": [] }), "input.weekdays"),
        (
            json!({ "weekdays": ["TUESDAY"], "fromDate": "2055-06-07", "untilDate": "2055-06-07" }),
            "input.weekdays",
        ),
        (json!({ "durationMinutes": 0 }), "input.durationMinutes"),
        (json!({ "durationMinutes": 481 }), "input.durationMinutes"),
        (
            json!({ "timeZone": "UTC", "weekdays": every_day, "fromDate": days_ago, "untilDate": soon }),
            "input.fromDate",
        ),
    ];
    for (changes, field) in cases {
        weekly(&app, &gus, weekly_input(changes))
            .await
            .assert_error("BAD_USER_INPUT", Some(field));
    }
    assert!(my_slots(&app, &gus).await.is_empty(), "nothing was made");

    // 366 days apart is still allowed.
    let year = weekly(
        &app,
        &gus,
        weekly_input(json!({ "fromDate": "2055-01-04", "untilDate": "2056-01-05" })),
    )
    .await;
    let expected = wall_clock_starts(
        chrono_tz::Europe::Paris,
        &[Weekday::Mon],
        "09:00",
        "2055-01-04",
        "2056-01-05",
    );
    assert_eq!(
        year.data()["setWeeklyAvailability"]
            .as_array()
            .map(Vec::len),
        Some(expected.len())
    );
}

async fn a_weekly_pattern_is_all_or_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let hal = app.signup("hal").await;
    let ivy = app.signup("ivy").await;
    let paris = chrono_tz::Europe::Paris;
    let local = |date: &str, time: &str| {
        let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").expect("date");
        let time = NaiveTime::parse_from_str(time, "%H:%M").expect("time");
        rfc3339(wall_clock(paris, date.and_time(time)))
    };
    // In the way of the third Monday of the pattern, 09:00-10:00 Paris.
    let blocker = slot(
        &app,
        &hal,
        &local("2055-06-21", "09:30"),
        &local("2055-06-21", "10:15"),
        "Dentist",
    )
    .await;
    weekly(&app, &hal, weekly_input(json!({})))
        .await
        .assert_error("CONFLICT", Some("input.startLocal"));
    assert_eq!(
        ids(&my_slots(&app, &hal).await),
        [id(&blocker)],
        "none of the pattern's slots were made"
    );

    let others = weekly(&app, &ivy, weekly_input(json!({}))).await;
    assert_eq!(
        others.data()["setWeeklyAvailability"]
            .as_array()
            .map(Vec::len),
        Some(4),
        "another owner's slot is never in the way"
    );
    let touching = weekly(
        &app,
        &hal,
        weekly_input(json!({ "startLocal": "08:30", "durationMinutes": 60 })),
    )
    .await;
    assert_eq!(
        touching.data()["setWeeklyAvailability"]
            .as_array()
            .map(Vec::len),
        Some(4),
        "ending as the blocker starts is fine"
    );
    assert_eq!(my_slots(&app, &hal).await.len(), 5);
}

// ---------------------------------------------------------------- the calendar feed

async fn the_calendar_feed_url_is_stable_until_rotated(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann").await;
    let ben = app.signup("ben").await;
    let url = feed_url(&app, &ann).await;
    let token = url
        .strip_prefix("/calendar/")
        .and_then(|rest| rest.strip_suffix(".ics"))
        .unwrap_or_else(|| panic!("a /calendar/{{token}}.ics path: {url}"));
    assert!(!token.is_empty());
    assert_eq!(feed_url(&app, &ann).await, url, "the same on every call");
    let bens = feed_url(&app, &ben).await;
    assert_ne!(bens, url);

    let empty = read_feed(&app, &url).await;
    assert!(empty.events.is_empty(), "no meetings yet");

    let rotated = app
        .gql_as(&ann, "mutation { rotateCalendarFeed }", json!({}))
        .await;
    let rotated = rotated.data()["rotateCalendarFeed"]
        .as_str()
        .expect("a URL")
        .to_owned();
    assert_ne!(rotated, url);
    assert!(
        rotated.starts_with("/calendar/") && rotated.ends_with(".ics"),
        "{rotated}"
    );
    assert_eq!(feed_url(&app, &ann).await, rotated);
    assert_eq!(
        get_feed(&app, &url).await.status(),
        404,
        "the old URL is dead at once"
    );
    read_feed(&app, &rotated).await;
    read_feed(&app, &bens).await;
    assert_eq!(
        get_feed(&app, "/calendar/not-a-token.ics").await.status(),
        404
    );
}

/// Rotating the server's secret retires every feed URL made under the old one, also for a user
/// who never asks for their URL again; asking gives a new one, which works.
async fn a_new_server_secret_retires_every_calendar_feed_url(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann").await;
    let old = feed_url(&app, &ann).await;
    read_feed(&app, &old).await;
    let app = app
        .restart_with(|c| c.jwt_secret = Some("a-new-secret-a-new-secret-a-new-secret-0123".into()))
        .await;
    assert_eq!(
        get_feed(&app, &old).await.status(),
        404,
        "made under the old secret"
    );
    let again = app.login("ann", "password-ann").await;
    let ann = crate::common::gql::session_from(&again.data()["login"]);
    let new = feed_url(&app, &ann).await;
    assert_ne!(new, old);
    read_feed(&app, &new).await;
    assert_eq!(get_feed(&app, &old).await.status(), 404);
}

/// `myCalendarFeedUrl` is a query that writes (the feed is made on first use). Its write goes on
/// when the request is dropped (here by the server's request timeout, while a transaction of the
/// test's holds the feed's row), among the tasks shutdown waits for, and lands: the feed the
/// restarted server serves is the one that write made. Run inline (in the query itself), this test
/// fails on both databases; run in a task outside those shutdown waits for (a bare
/// `tokio::spawn`), it fails on their count.
async fn the_calendar_feeds_first_write_outlives_its_request_among_shutdowns_tasks(
    backend: Backend,
) {
    let app = TestApp::spawn_with(backend, |c| c.request_timeout_seconds = 1).await;
    let ivy = app.signup("ivy").await;
    let user = uuid::Uuid::parse_str(&ivy.id).expect("uuid");
    let held = app.state.begin_write().await.expect("transaction");
    calendar_feed::Entity::insert(calendar_feed::ActiveModel {
        user_id: Set(user),
        token_hash: Set("held by the test".to_owned()),
        nonce: Set("held".to_owned()),
        created_at: Set(Utc::now()),
    })
    .exec_without_returning(&*held)
    .await
    .expect("hold the feed's row");

    let asked = app
        .http
        .post(app.url("/graphql"))
        .bearer_auth(&ivy.access)
        .timeout(Duration::from_secs(10))
        .json(&json!({ "query": "{ myCalendarFeedUrl }" }))
        .send()
        .await
        .expect("an answer");
    assert_eq!(asked.status(), reqwest::StatusCode::REQUEST_TIMEOUT);
    assert_eq!(
        app.state.to_end.len(),
        1,
        "the feed's write is among the tasks shutdown waits for"
    );
    let restarting = tokio::spawn(app.restart());
    drop(held); // rolls back: the server's insert goes ahead
    let app = restarting.await.expect("restarted");

    let feed = calendar_feed::Entity::find_by_id(user)
        .one(&app.state.db)
        .await
        .expect("read")
        .expect("the timed-out request's write made the feed");
    assert_ne!(feed.nonce, "held");
    let url = feed_url(&app, &ivy).await;
    read_feed(&app, &url).await;
    let again = calendar_feed::Entity::find_by_id(user)
        .one(&app.state.db)
        .await
        .expect("read")
        .expect("the feed");
    assert_eq!(again, feed, "the URL served is that of the feed made");
}

async fn the_calendar_feed_url_is_absolute_under_a_public_url(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.public_url = Some("https://rally.example.com".into());
    })
    .await;
    let ann = app.signup("ann").await;
    let first = feed_url(&app, &ann).await;
    assert_absolute_and_served(&app, &first).await;
    let rotated = app
        .gql_as(&ann, "mutation { rotateCalendarFeed }", json!({}))
        .await
        .data()["rotateCalendarFeed"]
        .as_str()
        .expect("a URL")
        .to_owned();
    assert_absolute_and_served(&app, &rotated).await;
}

/// The URL is absolute under the public URL, and this server serves its path.
async fn assert_absolute_and_served(app: &TestApp, url: &str) {
    let path = url
        .strip_prefix("https://rally.example.com")
        .unwrap_or_else(|| panic!("absolute: {url}"));
    assert!(
        path.starts_with("/calendar/") && path.ends_with(".ics"),
        "{url}"
    );
    read_feed(app, path).await;
}

async fn the_calendar_feed_has_one_event_per_meeting(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let olive = app.signup("olive").await;
    let percy = app.signup("percy").await;
    app.gql_as(
        &percy,
        "mutation { updateProfile(input: { displayName: \"Percival\" }) { id } }",
        json!({}),
    )
    .await
    .data();
    // `SUMMARY:` and two escapes make its line 150 octets: 75, then 75 after a fold's space (a
    // 76-octet line) is where a folding off by one shows.
    let title = format!(
        "Design-review,planning;and-then-a-long-walk-through-the-calendar-feed-that-must-fold{}",
        "-".repeat(56)
    );
    assert_eq!(title.len(), 140);
    let title = title.as_str();
    let hosted = slot(&app, &olive, &at(5), &at(6), title).await;
    let visiting = slot(&app, &percy, &at(2), &at(3), "Percy's corner").await;
    slot(&app, &olive, &at(8), &at(9), "Never booked").await;
    let hosted = booked(&app, &percy, &hosted).await;
    let visiting = booked(&app, &olive, &visiting).await;
    // Other people's meeting: never in olive's feed.
    let carl = app.signup("carl").await;
    let dora = app.signup("dora").await;
    let theirs = slot(&app, &carl, &at(4), &at(5), "Carl and Dora").await;
    booked(&app, &dora, &theirs).await;

    let url = feed_url(&app, &olive).await;
    let first = read_feed(&app, &url).await;
    assert!(
        !first.body.contains("Carl and Dora"),
        "only olive's meetings"
    );
    assert!(
        !first.body.contains("@example.com"),
        "no e-mail in the feed"
    );
    for line in first.body.split("\r\n") {
        assert!(!line.contains('\n'), "lines end in CRLF: {line:?}");
        assert!(line.len() <= 75, "folded to 75 octets: {line:?}");
    }
    assert_eq!(
        first.events.len(),
        2,
        "one event per meeting, none for open slots"
    );
    let hosted_event = event_starting(&first.events, &hosted["startTime"]);
    let visiting_event = event_starting(&first.events, &visiting["startTime"]);
    assert_eq!(
        prop(hosted_event, "DTEND"),
        ical_utc(time_of(&hosted["endTime"]))
    );
    assert_eq!(
        prop(visiting_event, "DTEND"),
        ical_utc(time_of(&visiting["endTime"]))
    );
    let summary = prop(hosted_event, "SUMMARY");
    assert!(
        summary.contains("\\,") && summary.contains("\\;"),
        "escaped: {summary}"
    );
    assert_eq!(unescape(summary), title);
    assert_eq!(unescape(prop(visiting_event, "SUMMARY")), "Percy's corner");
    for event in [hosted_event, visiting_event] {
        assert_eq!(prop(event, "STATUS"), "CONFIRMED");
        assert!(
            unescape(prop(event, "DESCRIPTION")).contains("Percival"),
            "names the other person: {event:?}"
        );
    }
    let hosted_uid = prop(hosted_event, "UID").to_owned();
    let visiting_uid = prop(visiting_event, "UID").to_owned();
    assert_ne!(hosted_uid, visiting_uid);
    let hosted_sequence = sequence(hosted_event);

    let percys = read_feed(&app, &feed_url(&app, &percy).await).await;
    assert_eq!(percys.events.len(), 2);
    for event in &percys.events {
        assert!(
            unescape(prop(event, "DESCRIPTION")).contains("olive"),
            "{event:?}"
        );
    }
    assert_eq!(
        prop(event_starting(&percys.events, &hosted["startTime"]), "UID"),
        hosted_uid,
        "one meeting, one UID, whoever reads it"
    );

    let unchanged = app
        .http
        .get(app.url(&url))
        .header("if-none-match", &first.etag)
        .send()
        .await
        .expect("sent");
    assert_eq!(unchanged.status(), 304);
    assert_eq!(unchanged.headers()["etag"], first.etag.as_str());
    assert_eq!(
        unchanged.headers()["cache-control"],
        "private, max-age=300",
        "a 304 carries the caching a 200 would have"
    );

    cancel(&app, &percy, &id(&hosted), Some("Travelling"))
        .await
        .data();
    let changed = app
        .http
        .get(app.url(&url))
        .header("if-none-match", &first.etag)
        .send()
        .await
        .expect("sent");
    assert_eq!(changed.status(), 200, "the feed changed");
    let after = feed_from(changed).await;
    assert_ne!(after.etag, first.etag);
    assert_eq!(after.events.len(), 2, "a cancelled meeting stays, marked");
    let cancelled = event_starting(&after.events, &hosted["startTime"]);
    assert_eq!(prop(cancelled, "UID"), hosted_uid, "UIDs are stable");
    assert_eq!(prop(cancelled, "STATUS"), "CANCELLED");
    assert!(sequence(cancelled) > hosted_sequence);
    let still = event_starting(&after.events, &visiting["startTime"]);
    assert_eq!(prop(still, "UID"), visiting_uid);
    assert_eq!(prop(still, "STATUS"), "CONFIRMED");

    // The cancellation reopened the slot; its owner renames it. The cancelled meeting stays in the
    // feed as it was booked.
    let reopened = id(&hosted["availability"]);
    update_slot(
        &app,
        &olive,
        &reopened,
        json!({
            "startTime": hosted["startTime"],
            "endTime": hosted["endTime"],
            "title": "Yoga, renamed",
            "description": "Bring a mat",
        }),
    )
    .await
    .data();
    let renamed = read_feed(&app, &url).await;
    let cancelled = event_starting(&renamed.events, &hosted["startTime"]);
    assert_eq!(prop(cancelled, "STATUS"), "CANCELLED");
    assert_eq!(
        unescape(prop(cancelled, "SUMMARY")),
        title,
        "the title it was booked under"
    );
    assert!(
        !unescape(prop(cancelled, "DESCRIPTION")).contains("Bring a mat"),
        "{cancelled:?}"
    );
}

/// Meetings booked before a meeting kept its slot's title and description take them from their
/// slot when that migration runs (undone here, then run again, on a database with a meeting).
async fn meetings_booked_before_titles_were_kept_take_their_slots(backend: Backend) {
    use migration::{Migrator, MigratorTrait};
    let app = TestApp::spawn(backend).await;
    let olive = app.signup("olive").await;
    let percy = app.signup("percy").await;
    let pottery = set_slot(
        &app,
        &olive,
        json!({ "startTime": at(5), "endTime": at(6), "title": "Pottery", "description": "Clay provided" }),
    )
    .await
    .data()["setAvailability"]
        .clone();
    let meeting = booked(&app, &percy, &pottery).await;
    let migrations = Migrator::migrations();
    let titles = migrations
        .iter()
        .position(|m| m.name() == "m20261204_000016_meeting_titles")
        .expect("the titles' migration");
    let since = u32::try_from(migrations.len() - titles).expect("a few");
    Migrator::down(&app.state.db, Some(since))
        .await
        .expect("the titles' migration (and any later) undone");
    Migrator::up(&app.state.db, None)
        .await
        .expect("and run again");
    let feed = read_feed(&app, &feed_url(&app, &olive).await).await;
    let event = event_starting(&feed.events, &meeting["startTime"]);
    assert_eq!(unescape(prop(event, "SUMMARY")), "Pottery");
    assert!(
        unescape(prop(event, "DESCRIPTION")).contains("Clay provided"),
        "{event:?}"
    );
}

async fn the_calendar_feed_is_rate_limited_per_feed(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.calendar_feed_per_minute = 3).await;
    let ann = app.signup("ann").await;
    let ben = app.signup("ben").await;
    let url = feed_url(&app, &ann).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(get_feed(&app, &url).await.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    read_feed(&app, &feed_url(&app, &ben).await).await;
}

// ---------------------------------------------------------------- sign-in

async fn every_meetings_operation_needs_sign_in(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann").await;
    let ben = app.signup("ben").await;
    let open = id(&slot(&app, &ann, &at(1), &at(2), "Open").await);
    let taken = slot(&app, &ann, &at(3), &at(4), "Taken").await;
    let meeting = id(&booked(&app, &ben, &taken).await);
    let url = feed_url(&app, &ann).await;
    let valid = json!({ "startTime": at(10), "endTime": at(11), "title": "Anonymous" });
    let operations = [
        (
            "query($f: DateTime!, $t: DateTime!) { availabilities(from: $f, to: $t) { edges { node { id } } } }",
            json!({ "f": at(0), "t": at(24) }),
        ),
        ("{ myAvailabilities { edges { node { id } } } }", json!({})),
        (
            "query($id: ID!) { meeting(id: $id) { id } }",
            json!({ "id": meeting }),
        ),
        ("{ myMeetings { edges { node { id } } } }", json!({})),
        ("{ myCalendarFeedUrl }", json!({})),
        (
            "mutation($i: AvailabilityInput!) { setAvailability(input: $i) { id } }",
            json!({ "i": valid }),
        ),
        (
            "mutation($id: ID!, $i: AvailabilityInput!) { updateAvailability(id: $id, input: $i) { id } }",
            json!({ "id": open, "i": valid }),
        ),
        (
            "mutation($id: ID!) { deleteAvailability(id: $id) }",
            json!({ "id": open }),
        ),
        (
            "mutation($id: ID!) { bookAvailability(id: $id) { id } }",
            json!({ "id": open }),
        ),
        (
            "mutation($id: ID!) { cancelMeeting(id: $id) { id } }",
            json!({ "id": meeting }),
        ),
        (
            "mutation($i: WeeklyAvailabilityInput!) { setWeeklyAvailability(input: $i) { id } }",
            json!({ "i": weekly_input(json!({})) }),
        ),
        ("mutation { rotateCalendarFeed }", json!({})),
    ];
    for (document, variables) in operations {
        let response = app.gql(document, variables).await;
        assert_eq!(
            response.code(),
            "UNAUTHENTICATED",
            "{document}: {}",
            response.body
        );
    }
    let mine = my_slots(&app, &ann).await;
    assert_eq!(ids(&mine), [open.clone(), id(&taken)], "nothing changed");
    assert_eq!(mine[0]["title"], "Open");
    assert_eq!(mine[0]["status"], "SCHEDULED");
    assert_eq!(my_meetings(&app, &ann, "").await[0]["status"], "CONFIRMED");
    assert_eq!(feed_url(&app, &ann).await, url, "not rotated");

    let mut client = app.ws(TRANSPORT_WS).await;
    client.init(json!({})).await;
    client
        .subscribe("m", "subscription { myMeetings { id } }", json!({}))
        .await;
    let refused = client.next_of("m").await;
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{refused}"
    );
}
