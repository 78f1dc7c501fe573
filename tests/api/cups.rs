//! Cup sessions at the bar: the gateway's mutations, totals that never lose an update, privacy, and
//! live leaderboards.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::fixtures::{
    SESSION_FIELDS, cheers, create_event, cup_code, delete_event, live_event_tended, open_bar,
    open_cup, open_cup_with,
};
use crate::common::{Backend, TRANSPORT_WS, TestApp};
use crate::on_every_backend;

on_every_backend!(
    a_staff_feed_that_falls_behind_gets_every_session_as_it_is_now,
    a_guest_has_one_open_cup_per_live_event,
    only_staff_hand_out_cups_and_record,
    drinks_add_up_bill_calories_alcohol_and_bac,
    drink_input_names_each_invalid_field,
    concurrent_cheers_are_all_counted,
    a_closed_session_refuses_updates,
    private_fields_stay_private,
    the_leaderboard_ranks_by_score_then_time,
    live_leaderboard_sends_a_snapshot_then_changes,
    cup_session_updates_reach_staff_and_the_guest_only,
    removed_staff_stop_receiving_bills,
    concurrent_cheers_reach_staff_once_each,
    a_thousand_subscribers_share_one_leaderboard_computation,
    cups_opened_while_the_event_is_deleted_are_refused_cleanly,
);

async fn a_guest_has_one_open_cup_per_live_event(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let bar = open_bar(&app).await;
    let guest = app.signup("guest").await;
    let first = open_cup(&app, &bar.bartender, &bar.event, &guest).await;
    // The handle is matched in any case.
    let code = cup_code(&app, &guest, &bar.event).await;
    let again = open_cup_with(&app, &bar.bartender, &bar.event, "GUEST", &code)
        .await
        .data()["openCupSession"]
        .clone();
    assert_eq!(first["id"], again["id"], "idempotent");
    assert_eq!(first["status"], "OPEN");
    // Many gateways at once still make one session, each with its own code (at most 5 stay live).
    let rush = app.signup("rush").await;
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(cup_code(&app, &rush, &bar.event).await);
    }
    let opens = codes
        .iter()
        .map(|code| open_cup_with(&app, &bar.bartender, &bar.event, "rush", code));
    let ids: std::collections::HashSet<String> = futures_util::future::join_all(opens)
        .await
        .iter()
        .map(|r| {
            r.data()["openCupSession"]["id"]
                .as_str()
                .expect("id")
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1);
    // After closing, the next cup is a new session.
    app.gql_as(
        &bar.bartender,
        "mutation($s: ID!) { closeCupSession(sessionId: $s) { id } }",
        json!({ "s": first["id"] }),
    )
    .await
    .data();
    let next = open_cup(&app, &bar.bartender, &bar.event, &guest).await;
    assert_ne!(next["id"], first["id"]);

    // A guest may ask for a code before the event is LIVE; a cup is handed out only while it is.
    let scheduled = create_event(&app, &bar.organizer, "Not yet", "2030-02-01T20:00:00Z").await;
    let early = cup_code(&app, &guest, scheduled["id"].as_str().expect("id")).await;
    app.gql_as(
        &bar.organizer,
        "mutation($e: ID!, $c: String!) { openCupSession(eventId: $e, handle: \"guest\", code: $c) { id } }",
        json!({ "e": scheduled["id"], "c": early }),
    )
    .await
    .assert_error("CONFLICT", None);
    // An unknown handle is refused like a wrong code.
    app.gql_as(
        &bar.bartender,
        "mutation($e: ID!) { openCupSession(eventId: $e, handle: \"nobody_here\", code: \"ABCD2345\") { id } }",
        json!({ "e": bar.event }),
    )
    .await
    .assert_error("FORBIDDEN", None);
}

async fn only_staff_hand_out_cups_and_record(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let bar = open_bar(&app).await;
    let guest = app.signup("guest").await;
    let stranger = app.signup("stranger").await;
    // A real code, so the refusals are about who presents it.
    let code = cup_code(&app, &guest, &bar.event).await;
    let open = "mutation($e: ID!, $c: String!) { openCupSession(eventId: $e, handle: \"guest\", code: $c) { id } }";
    app.gql_as(&stranger, open, json!({ "e": bar.event, "c": code }))
        .await
        .assert_error("FORBIDDEN", None);
    app.gql_as(&guest, open, json!({ "e": bar.event, "c": code }))
        .await
        .assert_error("FORBIDDEN", None);
    app.gql(open, json!({ "e": bar.event, "c": code }))
        .await
        .assert_error("UNAUTHENTICATED", None);
    let session = open_cup(&app, &bar.organizer, &bar.event, &guest).await;
    let id = session["id"].as_str().expect("id");
    cheers(&app, &stranger, id, 1)
        .await
        .assert_error("FORBIDDEN", None);
    cheers(&app, &guest, id, 1)
        .await
        .assert_error("FORBIDDEN", None);
    let drink = "mutation($s: ID!) { recordDrink(sessionId: $s, drink: { name: \"Beer\", volumeMl: 500, abv: 5, priceCents: 600 }) { orders } }";
    app.gql_as(&stranger, drink, json!({ "s": id }))
        .await
        .assert_error("FORBIDDEN", None);
    let guest_lookup = "query($e: ID!) { eventGuest(eventId: $e, handle: \"guest\") { user { handle } openSession { id } } }";
    app.gql_as(&stranger, guest_lookup, json!({ "e": bar.event }))
        .await
        .assert_error("FORBIDDEN", None);
    // Bad input from a stranger is refused as a stranger's: what is wrong with it is for staff.
    cheers(&app, &stranger, id, 0)
        .await
        .assert_error("FORBIDDEN", None);
    let bad_drink = "mutation($s: ID!) { recordDrink(sessionId: $s, drink: { name: \"\", volumeMl: -5, abv: 500, priceCents: -1 }) { orders } }";
    app.gql_as(&stranger, bad_drink, json!({ "s": id }))
        .await
        .assert_error("FORBIDDEN", None);
    app.gql_as(
        &stranger,
        "query($e: ID!) { eventGuest(eventId: $e, handle: \"not a handle!\") { user { handle } } }",
        json!({ "e": bar.event }),
    )
    .await
    .assert_error("FORBIDDEN", None);
    app.gql_as(&bar.bartender, bad_drink, json!({ "s": id }))
        .await
        .assert_error("BAD_USER_INPUT", None);
    let seen = app
        .gql_as(&bar.bartender, guest_lookup, json!({ "e": bar.event }))
        .await;
    assert_eq!(
        seen.data()["eventGuest"],
        json!({ "user": { "handle": "guest" }, "openSession": { "id": id } })
    );
    let nobody = app.gql_as(&bar.bartender, "query($e: ID!) { eventGuest(eventId: $e, handle: \"nobody_here\") { user { handle } } }", json!({ "e": bar.event })).await;
    assert_eq!(nobody.data()["eventGuest"], Value::Null);
    app.gql_as(
        &stranger,
        "mutation($s: ID!) { closeCupSession(sessionId: $s) { id } }",
        json!({ "s": id }),
    )
    .await
    .assert_error("FORBIDDEN", None);
    let closed = app
        .gql_as(
            &guest,
            "mutation($s: ID!) { closeCupSession(sessionId: $s) { status } }",
            json!({ "s": id }),
        )
        .await;
    assert_eq!(
        closed.data()["closeCupSession"]["status"],
        "CLOSED",
        "the guest closes their own cup"
    );
}

async fn drinks_add_up_bill_calories_alcohol_and_bac(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let bar = open_bar(&app).await;
    let guest = app.signup("guest").await;
    app.gql_as(
        &guest,
        "mutation { updateProfile(input: { bodyWeightKg: 60, bodyType: FEMALE }) { id } }",
        json!({}),
    )
    .await
    .data();
    let id = open_cup(&app, &bar.bartender, &bar.event, &guest).await["id"].clone();
    let record = format!(
        "mutation($s: ID!, $d: DrinkInput!) {{ recordDrink(sessionId: $s, drink: $d) {{ {SESSION_FIELDS} }} }}"
    );
    app.gql_as(
        &bar.bartender,
        &record,
        json!({ "s": id, "d": { "name": "IPA", "volumeMl": 500, "abv": 6.0, "priceCents": 700 } }),
    )
    .await
    .data();
    let after = app
        .gql_as(&bar.bartender, &record, json!({ "s": id, "d": { "name": "Water", "volumeMl": 300, "abv": 0, "priceCents": 0, "calories": 0 } }))
        .await;
    let session = &after.data()["recordDrink"];
    let grams = 500.0 * 0.06 * 0.789;
    assert_eq!(session["orders"], 2);
    assert_eq!(session["billCents"], 700);
    assert_eq!(session["calories"], (grams * 7.0_f64).round() as i64);
    assert!((session["alcoholGrams"].as_f64().expect("grams") - grams).abs() < 1e-9);
    let bac = session["estimatedBac"]
        .as_f64()
        .expect("bac with body weight");
    let peak = grams / (0.55 * 60_000.0) * 100.0;
    assert!(
        bac <= peak && bac > peak - 0.001,
        "bac {bac} vs peak {peak}"
    );
    assert_eq!(
        session["bacWarning"], false,
        "0.07 is under the 0.08 threshold"
    );
    assert_eq!(session["drinks"].as_array().expect("drinks").len(), 2);
    assert_eq!(session["drinks"][0]["name"], "IPA");
    // One more strong drink passes the threshold.
    let strong = app
        .gql_as(&bar.bartender, &record, json!({ "s": id, "d": { "name": "Double gin", "volumeMl": 50, "abv": 40, "priceCents": 900 } }))
        .await;
    assert_eq!(strong.data()["recordDrink"]["bacWarning"], true);
    // Without body weight there is no estimate.
    let light = app.signup("light").await;
    let other = open_cup(&app, &bar.bartender, &bar.event, &light).await;
    assert_eq!(other["estimatedBac"], Value::Null);
}

async fn drink_input_names_each_invalid_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let bar = open_bar(&app).await;
    let guest = app.signup("guest").await;
    let id = open_cup(&app, &bar.bartender, &bar.event, &guest).await["id"].clone();
    let cases = [
        (
            json!({ "name": "", "volumeMl": 500, "abv": 5, "priceCents": 1 }),
            "drink.name",
        ),
        (
            json!({ "name": "x", "volumeMl": 0, "abv": 5, "priceCents": 1 }),
            "drink.volumeMl",
        ),
        (
            json!({ "name": "x", "volumeMl": 500, "abv": 120, "priceCents": 1 }),
            "drink.abv",
        ),
        (
            json!({ "name": "x", "volumeMl": 500, "abv": 5, "priceCents": -1 }),
            "drink.priceCents",
        ),
    ];
    for (drink, field) in cases {
        app.gql_as(
            &bar.bartender,
            "mutation($s: ID!, $d: DrinkInput!) { recordDrink(sessionId: $s, drink: $d) { id } }",
            json!({ "s": id, "d": drink }),
        )
        .await
        .assert_error("BAD_USER_INPUT", Some(field));
    }
    cheers(&app, &bar.bartender, id.as_str().expect("id"), 0)
        .await
        .assert_error("BAD_USER_INPUT", Some("count"));
    let session = app
        .gql_as(
            &bar.bartender,
            "query($s: ID!) { cupSession(id: $s) { orders cheers billCents } }",
            json!({ "s": id }),
        )
        .await;
    assert_eq!(
        session.data()["cupSession"],
        json!({ "orders": 0, "cheers": 0, "billCents": 0 }),
        "nothing was lost or added"
    );
}

async fn concurrent_cheers_are_all_counted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let bar = open_bar(&app).await;
    let guest = app.signup("guest").await;
    let id = open_cup(&app, &bar.bartender, &bar.event, &guest).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let calls = (0..200).map(|_| cheers(&app, &bar.bartender, &id, 1));
    for response in futures_util::future::join_all(calls).await {
        response.data();
    }
    let session = app
        .gql_as(
            &bar.bartender,
            "query($s: ID!) { cupSession(id: $s) { cheers score } }",
            json!({ "s": id }),
        )
        .await;
    assert_eq!(
        session.data()["cupSession"],
        json!({ "cheers": 200, "score": 200 })
    );
}

async fn a_closed_session_refuses_updates(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let bar = open_bar(&app).await;
    let guest = app.signup("guest").await;
    let id = open_cup(&app, &bar.bartender, &bar.event, &guest).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    cheers(&app, &bar.bartender, &id, 3).await.data();
    app.gql_as(
        &bar.bartender,
        "mutation($s: ID!) { closeCupSession(sessionId: $s) { id } }",
        json!({ "s": id }),
    )
    .await
    .data();
    cheers(&app, &bar.bartender, &id, 1)
        .await
        .assert_error("CONFLICT", None);
    app.gql_as(&bar.bartender, "mutation($s: ID!) { recordDrink(sessionId: $s, drink: { name: \"x\", volumeMl: 1, abv: 1, priceCents: 1 }) { id } }", json!({ "s": id }))
        .await
        .assert_error("CONFLICT", None);
    app.gql_as(
        &bar.bartender,
        "mutation($s: ID!) { closeCupSession(sessionId: $s) { id } }",
        json!({ "s": id }),
    )
    .await
    .assert_error("CONFLICT", None);
    let session = app
        .gql_as(
            &bar.bartender,
            "query($s: ID!) { cupSession(id: $s) { cheers orders status } }",
            json!({ "s": id }),
        )
        .await;
    assert_eq!(
        session.data()["cupSession"],
        json!({ "cheers": 3, "orders": 0, "status": "CLOSED" })
    );
}

async fn private_fields_stay_private(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let bar = open_bar(&app).await;
    let guest = app.signup("guest").await;
    let stranger = app.signup("stranger").await;
    let id = open_cup(&app, &bar.bartender, &bar.event, &guest).await["id"].clone();
    let query = "query($s: ID!) { cupSession(id: $s) { billCents } }";
    assert_eq!(
        app.gql_as(&stranger, query, json!({ "s": id }))
            .await
            .data()["cupSession"],
        Value::Null
    );
    assert_eq!(
        app.gql(query, json!({ "s": id })).await.data()["cupSession"],
        Value::Null
    );
    assert_eq!(
        app.gql_as(&guest, query, json!({ "s": id })).await.data()["cupSession"]["billCents"],
        0
    );
    assert_eq!(
        app.gql_as(&bar.organizer, query, json!({ "s": id }))
            .await
            .data()["cupSession"]["billCents"],
        0
    );
    // The public leaderboard shows scores, not bills.
    let board = "query($e: ID!) { event(id: $e) { leaderboard { entries { score session { billCents } } } } }";
    let refused = app
        .gql_as(&stranger, board, json!({ "e": bar.event }))
        .await;
    assert_eq!(refused.code(), "FORBIDDEN", "{}", refused.body);
    let public = app.gql("query($e: ID!) { event(id: $e) { leaderboard { entries { score user { handle } } } } }", json!({ "e": bar.event })).await;
    assert_eq!(
        public.data()["event"]["leaderboard"]["entries"],
        json!([{ "score": 0, "user": { "handle": "guest" } }])
    );

    // Another guest with a cup at the same event, the realistic viewer: on the board, every private
    // field of the guest's cup is there and null (never an omitted key), each refused by name,
    // while their own cup shows them.
    let rival = app.signup("rival").await;
    open_cup(&app, &bar.bartender, &bar.event, &rival).await;
    let private = [
        "orders",
        "alcoholGrams",
        "estimatedBac",
        "billCents",
        "calories",
        "version",
        "drinks",
    ];
    let board = format!(
        "query($e: ID!) {{ event(id: $e) {{ leaderboard {{ entries {{ user {{ handle }} score session {{ cheers {} {{ name }} }} }} }} }} }}",
        private.join(" ")
    );
    let seen = app.gql_as(&rival, &board, json!({ "e": bar.event })).await;
    let entries = seen.body["data"]["event"]["leaderboard"]["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("the board: {}", seen.body))
        .clone();
    assert_eq!(entries.len(), 2, "{}", seen.body);
    for entry in &entries {
        let session = entry["session"].as_object().expect("the session");
        let own = entry["user"]["handle"] == "rival";
        assert_eq!(session["cheers"], 0, "public: {entry}");
        for field in private {
            assert!(session.contains_key(field), "{field} is there: {entry}");
            assert_eq!(
                session[field].is_null(),
                !own || field == "estimatedBac",
                "{field} of {}: {entry}",
                entry["user"]["handle"]
            );
        }
    }
    let refused: Vec<String> = seen.body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .inspect(|error| assert_eq!(error["extensions"]["code"], "FORBIDDEN", "{error}"))
        .map(|error| {
            error["path"]
                .as_array()
                .expect("path")
                .last()
                .expect("field")
                .to_string()
        })
        .collect();
    for field in private {
        assert!(
            refused.contains(&format!("\"{field}\"")),
            "{field} refused by name: {refused:?}"
        );
    }

    // Staff of another event are strangers here: the bartender of a second bar reads no bill.
    let other = app.signup("other_boss").await;
    let elsewhere = app.signup("elsewhere").await;
    let second =
        create_event(&app, &other, "Other bar", "2030-01-01T20:00:00Z").await["id"].clone();
    app.gql_as(
        &other,
        "mutation($id: ID!) { addEventStaff(eventId: $id, handle: \"elsewhere\", role: BARTENDER) { id } }",
        json!({ "id": second }),
    )
    .await
    .data();
    assert_eq!(
        app.gql_as(&elsewhere, query, json!({ "s": id }))
            .await
            .data()["cupSession"],
        Value::Null
    );
}

async fn the_leaderboard_ranks_by_score_then_time(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.auth_attempts_per_address = 100).await;
    let bar = open_bar(&app).await;
    let mut sessions = Vec::new();
    for handle in ["amy", "bob", "cal", "dee"] {
        let guest = app.signup(handle).await;
        sessions.push(
            open_cup(&app, &bar.bartender, &bar.event, &guest).await["id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    // bob reaches 5 before amy does; cal has 7; dee 0.
    cheers(&app, &bar.bartender, &sessions[1], 5).await.data();
    tokio::time::sleep(Duration::from_millis(20)).await;
    cheers(&app, &bar.bartender, &sessions[0], 5).await.data();
    cheers(&app, &bar.bartender, &sessions[2], 7).await.data();
    let board = app
        .gql("query($e: ID!) { event(id: $e) { leaderboard(first: 3) { entries { rank score user { handle } } } } }", json!({ "e": bar.event }))
        .await;
    assert_eq!(
        board.data()["event"]["leaderboard"]["entries"],
        json!([
            { "rank": 1, "score": 7, "user": { "handle": "cal" } },
            { "rank": 2, "score": 5, "user": { "handle": "bob" } },
            { "rank": 3, "score": 5, "user": { "handle": "amy" } },
        ])
    );
    app.gql(
        "query($e: ID!) { event(id: $e) { leaderboard(first: 0) { updatedAt } } }",
        json!({ "e": bar.event }),
    )
    .await
    .assert_error("BAD_USER_INPUT", Some("first"));
}

const LIVE_BOARD: &str = "subscription($e: ID!) { leaderboard(eventId: $e, first: 5) { entries { rank score user { handle } } updatedAt } }";

async fn live_leaderboard_sends_a_snapshot_then_changes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let bar = open_bar(&app).await;
    let eli = app.signup("eli").await;
    let id = open_cup(&app, &bar.bartender, &bar.event, &eli).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let mut phone = app.ws(TRANSPORT_WS).await;
    phone.init(json!({})).await;
    phone
        .subscribe("b", LIVE_BOARD, json!({ "e": bar.event }))
        .await;
    let snapshot = phone.next_data("b").await;
    assert_eq!(
        snapshot["leaderboard"]["entries"],
        json!([{ "rank": 1, "score": 0, "user": { "handle": "eli" } }])
    );
    cheers(&app, &bar.bartender, &id, 4).await.data();
    let mut board = phone.next_data("b").await;
    // Bursts may coalesce, but the board only ever moves forward and ends at the truth.
    while board["leaderboard"]["entries"][0]["score"] != 4 {
        assert!(board["leaderboard"]["entries"][0]["score"].as_i64() < Some(4));
        board = phone.next_data("b").await;
    }
    for _ in 0..10 {
        cheers(&app, &bar.bartender, &id, 1).await.data();
    }
    let mut last = 4;
    while last < 14 {
        let board = phone.next_data("b").await;
        let score = board["leaderboard"]["entries"][0]["score"]
            .as_i64()
            .expect("score");
        assert!(score >= last, "went back from {last} to {score}");
        last = score;
    }
    // The cup is closed: the board shows it closed (each entry carries its session).
    let mut closing = app.ws(TRANSPORT_WS).await;
    closing.init(json!({})).await;
    closing
        .subscribe(
            "c",
            "subscription($e: ID!) { leaderboard(eventId: $e) { entries { session { status } } } }",
            json!({ "e": bar.event }),
        )
        .await;
    assert_eq!(
        closing.next_data("c").await["leaderboard"]["entries"][0]["session"]["status"],
        "OPEN"
    );
    app.gql_as(
        &bar.bartender,
        "mutation($id: ID!) { closeCupSession(sessionId: $id) { status } }",
        json!({ "id": id }),
    )
    .await
    .data();
    // A board computed again for the last cheer may come first, still OPEN; then the closed one.
    loop {
        let status =
            closing.next_data("c").await["leaderboard"]["entries"][0]["session"]["status"].clone();
        if status == "CLOSED" {
            break;
        }
        assert_eq!(status, "OPEN");
    }
    // The event is deleted: the board's stream ends (it used to stay open, silent, for ever).
    delete_event(&app, &bar.organizer, &bar.event).await;
    phone.until_complete("b").await;
}

async fn cup_session_updates_reach_staff_and_the_guest_only(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let bar = open_bar(&app).await;
    let fin = app.signup("fin").await;
    let gus = app.signup("gus").await;
    let stranger = app.signup("stranger").await;
    let fin_cup = open_cup(&app, &bar.bartender, &bar.event, &fin).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let gus_cup = open_cup(&app, &bar.bartender, &bar.event, &gus).await["id"]
        .as_str()
        .expect("id")
        .to_owned();

    let mut refused = app.ws(TRANSPORT_WS).await;
    refused
        .init(json!({ "authorization": format!("Bearer {}", stranger.access) }))
        .await;
    refused
        .subscribe(
            "x",
            "subscription($e: ID!) { cupSessionUpdated(eventId: $e) { id } }",
            json!({ "e": bar.event }),
        )
        .await;
    let frame = refused.next_of("x").await;
    assert_eq!(
        frame["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{frame}"
    );

    let mut screen = app.ws(TRANSPORT_WS).await;
    screen
        .init(json!({ "authorization": format!("Bearer {}", bar.organizer.access) }))
        .await;
    screen.subscribe("all", "subscription($e: ID!) { cupSessionUpdated(eventId: $e) { user { handle } cheers billCents } }", json!({ "e": bar.event })).await;
    let mut phone = app.ws(TRANSPORT_WS).await;
    phone
        .init(json!({ "authorization": format!("Bearer {}", fin.access) }))
        .await;
    phone.subscribe("mine", "subscription($e: ID!) { myCupSession(eventId: $e) { user { handle } cheers billCents } }", json!({ "e": bar.event })).await;
    let current = phone.next_data("mine").await;
    assert_eq!(
        current["myCupSession"],
        json!({ "user": { "handle": "fin" }, "cheers": 0, "billCents": 0 })
    );
    // The screen's and the phone's subscriptions both listen before the bartender records.
    app.listening(&format!("event:{}:sessions", bar.event), 2)
        .await;

    cheers(&app, &bar.bartender, &gus_cup, 2).await.data();
    cheers(&app, &bar.bartender, &fin_cup, 1).await.data();
    let first = screen.next_data("all").await;
    let second = screen.next_data("all").await;
    assert_eq!(
        first["cupSessionUpdated"],
        json!({ "user": { "handle": "gus" }, "cheers": 2, "billCents": 0 })
    );
    assert_eq!(second["cupSessionUpdated"]["user"]["handle"], "fin");
    let mine = phone.next_data("mine").await;
    assert_eq!(
        mine["myCupSession"],
        json!({ "user": { "handle": "fin" }, "cheers": 1, "billCents": 0 }),
        "only fin's own cup"
    );
    // The event is deleted, its cups with it: both streams end.
    delete_event(&app, &bar.organizer, &bar.event).await;
    phone.until_complete("mine").await;
    screen.until_complete("all").await;
}

/// A bartender following every cup loses the feed (and the bills in it) the moment the organizer
/// removes them from the staff: the next change reaches them as FORBIDDEN, then the stream ends.
async fn removed_staff_stop_receiving_bills(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let bar = open_bar(&app).await;
    let gwen = app.signup("gwen").await;
    let cup = open_cup(&app, &bar.bartender, &bar.event, &gwen).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let mut till = app.ws(TRANSPORT_WS).await;
    till.init(json!({ "authorization": format!("Bearer {}", bar.bartender.access) }))
        .await;
    till.subscribe(
        "all",
        "subscription($e: ID!) { cupSessionUpdated(eventId: $e) { user { handle } cheers billCents } }",
        json!({ "e": bar.event }),
    )
    .await;
    app.listening(&format!("event:{}:sessions", bar.event), 1)
        .await;
    cheers(&app, &bar.organizer, &cup, 1).await.data();
    assert_eq!(
        till.next_data("all").await["cupSessionUpdated"],
        json!({ "user": { "handle": "gwen" }, "cheers": 1, "billCents": 0 })
    );

    app.gql_as(
        &bar.organizer,
        "mutation($e: ID!) { removeEventStaff(eventId: $e, handle: \"tender\") { id } }",
        json!({ "e": bar.event }),
    )
    .await
    .data();
    cheers(&app, &bar.organizer, &cup, 1).await.data();
    let refused = till.next_of("all").await;
    assert_eq!(refused["type"], "next", "{refused}");
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{refused}"
    );
    assert!(
        !refused.to_string().contains("billCents\":"),
        "no bill in the refusal: {refused}"
    );
    assert_eq!(till.next_of("all").await["type"], "complete");
    cheers(&app, &bar.organizer, &cup, 1).await.data();
    till.assert_quiet(Duration::from_millis(300)).await;
}

/// Twenty cheers at once: the staff's feed gets each committed change once, the session as that
/// change left it (cheers 1 to 20, each once, in any order).
async fn concurrent_cheers_reach_staff_once_each(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let bar = open_bar(&app).await;
    let hal = app.signup("hal").await;
    let cup = open_cup(&app, &bar.bartender, &bar.event, &hal).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let mut screen = app.ws(TRANSPORT_WS).await;
    screen
        .init(json!({ "authorization": format!("Bearer {}", bar.organizer.access) }))
        .await;
    screen
        .subscribe(
            "all",
            "subscription($e: ID!) { cupSessionUpdated(eventId: $e) { cheers } }",
            json!({ "e": bar.event }),
        )
        .await;
    app.listening(&format!("event:{}:sessions", bar.event), 1)
        .await;
    let calls = (0..20).map(|_| cheers(&app, &bar.bartender, &cup, 1));
    for response in futures_util::future::join_all(calls).await {
        response.data();
    }
    let mut seen: Vec<i64> = Vec::new();
    for _ in 0..20 {
        let frame = screen.next_data("all").await;
        seen.push(
            frame["cupSessionUpdated"]["cheers"]
                .as_i64()
                .expect("cheers"),
        );
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=20).collect::<Vec<i64>>());
    screen.assert_quiet(Duration::from_millis(300)).await;
}

async fn a_thousand_subscribers_share_one_leaderboard_computation(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let bar = open_bar(&app).await;
    let star = app.signup("star").await;
    let id = open_cup(&app, &bar.bartender, &bar.event, &star).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let mut phones = Vec::new();
    for _ in 0..1000 {
        let mut phone = app.ws(TRANSPORT_WS).await;
        phone.init(json!({})).await;
        phone
            .subscribe("b", LIVE_BOARD, json!({ "e": bar.event }))
            .await;
        phones.push(phone);
    }
    for phone in &mut phones {
        assert_eq!(
            phone.next_data("b").await["leaderboard"]["entries"][0]["score"],
            0
        );
    }
    let before = app.leaderboards.computations();
    cheers(&app, &bar.bartender, &id, 3).await.data();
    for phone in &mut phones {
        let board = phone.next_data("b").await;
        assert_eq!(board["leaderboard"]["entries"][0]["score"], 3);
    }
    let per_change = app.leaderboards.computations() - before;
    assert_eq!(
        per_change, 1,
        "one leaderboard computation for 1,000 subscribers"
    );
}

/// A staff feed that falls behind (more changes than the broker keeps for a subscriber arrive while
/// it is not read) is not left stale: it gets every session of the event as it is now, then only
/// changes newer than that, never the older ones it skipped to.
async fn a_staff_feed_that_falls_behind_gets_every_session_as_it_is_now(backend: Backend) {
    use futures_util::StreamExt;
    let app = TestApp::spawn(backend).await;
    let bar = open_bar(&app).await;
    let ann = app.signup("ann").await;
    let bea = app.signup("bea").await;
    let ann_cup = open_cup(&app, &bar.bartender, &bar.event, &ann).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let bea_cup = open_cup(&app, &bar.bartender, &bar.event, &bea).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let organizer = rally::auth::Identity {
        user_id: bar.organizer.id.parse().expect("uuid"),
        is_admin: false,
        expires_at: i64::MAX,
        session_id: None,
    };
    let event = bar.event.parse().expect("uuid");
    let feed = rally::cups::service::follow_sessions(&app.state, organizer, event)
        .await
        .expect("staff may follow");
    let mut feed = Box::pin(feed);
    // 150 changes while nobody reads the feed: more than the 128 a subscriber may fall behind by.
    for _ in 0..150 {
        cheers(&app, &bar.bartender, &ann_cup, 1).await.data();
    }
    let mut now = Vec::new();
    for _ in 0..2 {
        let session = tokio::time::timeout(Duration::from_secs(5), feed.next())
            .await
            .expect("the resync comes")
            .expect("the feed goes on")
            .expect("a session");
        now.push((session.id.to_string(), session.cheers));
    }
    now.sort();
    let mut expected = vec![(ann_cup.clone(), 150), (bea_cup, 0)];
    expected.sort();
    assert_eq!(now, expected, "every session as it is now");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), feed.next())
            .await
            .is_err(),
        "none of the older changes follow"
    );
    cheers(&app, &bar.bartender, &ann_cup, 1).await.data();
    let next = tokio::time::timeout(Duration::from_secs(5), feed.next())
        .await
        .expect("the next change")
        .expect("the feed goes on")
        .expect("a session");
    assert_eq!(next.cheers, 151);
}

/// Cups opened at the gateway while the organizer deletes the event: each opening lands (and goes
/// with the event) or is refused cleanly (NOT_FOUND, CONFLICT, or FORBIDDEN for a code the deletion
/// took with it), never INTERNAL. An opening reads the event first and keeps it until its cup is
/// in, so the deletion's cascade never waits on a spent code while the opening waits on the event
/// (on PostgreSQL, a deadlock that aborted one of them).
async fn cups_opened_while_the_event_is_deleted_are_refused_cleanly(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.cup_code_attempts_per_minute = 1_000).await;
    let bar = open_bar(&app).await;
    let mut guests = Vec::new();
    for n in 0..10 {
        guests.push(app.signup(&format!("guest{n}")).await);
    }
    let (mut opened, mut refused) = (0, 0);
    // Rounds go on until the deletion has met openings on both sides of it (at most 24): how the
    // requests interleave depends on the machine's load, so each round spreads them wider.
    let mut round = 0_u64;
    while round < 10 || (round < 24 && (opened == 0 || refused == 0)) {
        let event = live_event_tended(&app, &bar.organizer, "Last call").await;
        let mut codes = Vec::new();
        for guest in &guests {
            codes.push(cup_code(&app, guest, &event).await);
        }
        let openings = guests
            .iter()
            .zip(&codes)
            .zip(0_u64..)
            .map(|((guest, code), k)| {
                let (app, event, bartender) = (&app, &event, &bar.bartender);
                async move {
                    tokio::time::sleep(Duration::from_millis(k * (1 + round))).await;
                    open_cup_with(app, bartender, event, &guest.handle, code).await
                }
            });
        let delete = async {
            // From at once to after most cups are open, so the deletion meets every step.
            tokio::time::sleep(Duration::from_millis(
                [0, 2, 5, 10, 20, 40][usize::try_from(round % 6).expect("round")],
            ))
            .await;
            delete_event(&app, &bar.organizer, &event).await;
        };
        // The deletion is sent first: at no delay it is in the queue before the openings.
        let ((), answers) = futures_util::join!(delete, futures_util::future::join_all(openings));
        for answer in answers {
            if answer.body["errors"].is_null() {
                opened += 1;
            } else {
                assert!(
                    ["NOT_FOUND", "CONFLICT", "FORBIDDEN"].contains(&answer.code()),
                    "round {round}: {}",
                    answer.body
                );
                refused += 1;
            }
        }
        round += 1;
    }
    assert!(
        opened > 0 && refused > 0,
        "the deletion never met openings at work: {opened} opened, {refused} refused"
    );
}
