//! Cups by consent: a cup opens only with a fresh code the guest asked for, at that event, once; every
//! other code is refused in the same words; codes are stored as hashes and cannot be found by trying.

use std::time::Duration;

use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect};
use serde_json::{Value, json};

use crate::common::fixtures::{create_event, cup_code, open_bar, open_cup_with};
use crate::common::{Backend, TEST_SECRET, TestApp};

crate::on_every_backend!(
    nobody_gets_a_cup_without_asking_for_it,
    a_code_opens_one_cup_for_its_guest_at_its_event_once,
    an_expired_code_opens_nothing,
    codes_are_stored_only_as_hashes,
    one_code_at_many_gateways_at_once_opens_one_cup,
    guessing_codes_is_rate_limited_per_staff_member,
    a_code_is_asked_for_by_a_signed_in_guest_of_an_open_event,
    a_rush_of_requests_leaves_at_most_five_live_codes,
);

const GUEST_CUP: &str =
    "query($e: ID!, $h: String!) { eventGuest(eventId: $e, handle: $h) { openSession { id } } }";
const BOARD: &str =
    "query($e: ID!) { event(id: $e) { leaderboard { entries { user { handle } } } } }";

/// The finding: an organizer who opens a cup for any handle learns their body weight from one
/// drink's BAC, and puts them on a leaderboard with a bill. Without the victim's code, nothing opens.
async fn nobody_gets_a_cup_without_asking_for_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let victim = app.signup("victim").await;
    app.gql_as(
        &victim,
        "mutation { updateProfile(input: { bodyWeightKg: 70, bodyType: MALE }) { id } }",
        json!({}),
    )
    .await
    .data();
    let attacker = app.signup("attacker").await;
    let event = create_event(&app, &attacker, "Trap", "2030-01-01T20:00:00Z").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    app.gql_as(
        &attacker,
        "mutation($id: ID!) { updateEvent(id: $id, input: { status: LIVE }) { id } }",
        json!({ "id": event }),
    )
    .await
    .data();

    for code in ["", "23456789", "ABCD-EFGH", "not a code at all"] {
        let refused = open_cup_with(&app, &attacker, &event, "victim", code).await;
        refused.assert_error("FORBIDDEN", None);
        assert_eq!(refused.body["data"], Value::Null, "{}", refused.body);
    }
    // The victim's real code for another event opens nothing here either.
    let elsewhere = create_event(&app, &victim, "Own party", "2030-01-02T20:00:00Z").await;
    let their_code = cup_code(&app, &victim, elsewhere["id"].as_str().expect("id")).await;
    open_cup_with(&app, &attacker, &event, "victim", &their_code)
        .await
        .assert_error("FORBIDDEN", None);

    let cup = app
        .gql_as(&attacker, GUEST_CUP, json!({ "e": event, "h": "victim" }))
        .await;
    assert_eq!(cup.data()["eventGuest"]["openSession"], Value::Null);
    let board = app.gql(BOARD, json!({ "e": event })).await;
    assert_eq!(
        board.data()["event"]["leaderboard"]["entries"],
        json!([]),
        "the victim is on no leaderboard"
    );
}

async fn a_code_opens_one_cup_for_its_guest_at_its_event_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let bar = open_bar(&app).await;
    let ann = app.signup("ann").await;
    let bob = app.signup("bob").await;
    let other = create_event(&app, &bar.organizer, "Other", "2030-03-01T20:00:00Z").await;
    let other_event = other["id"].as_str().expect("id");
    app.gql_as(
        &bar.organizer,
        "mutation($id: ID!) { updateEvent(id: $id, input: { status: LIVE }) { id } }",
        json!({ "id": other_event }),
    )
    .await
    .data();

    let code = cup_code(&app, &ann, &bar.event).await;
    // Every wrong use of a real code gets the same answer as a made-up one.
    let made_up = open_cup_with(&app, &bar.bartender, &bar.event, "ann", "22222222").await;
    made_up.assert_error("FORBIDDEN", None);
    let refusals = [
        open_cup_with(&app, &bar.bartender, &bar.event, "bob", &code).await,
        open_cup_with(&app, &bar.organizer, other_event, "ann", &code).await,
        open_cup_with(&app, &bar.bartender, &bar.event, "nobody_here", &code).await,
    ];
    for refused in &refusals {
        refused.assert_error("FORBIDDEN", None);
        assert_eq!(
            refused.message(),
            made_up.message(),
            "one message for every reason"
        );
    }
    let bob_cup = app
        .gql_as(
            &bar.bartender,
            GUEST_CUP,
            json!({ "e": bar.event, "h": "bob" }),
        )
        .await;
    assert_eq!(bob_cup.data()["eventGuest"]["openSession"], Value::Null);

    // Typed by hand: lower case, a dash.
    let typed = format!("{}-{}", code[..4].to_lowercase(), &code[4..]);
    let opened = open_cup_with(&app, &bar.bartender, &bar.event, "ann", &typed).await;
    let session = opened.data()["openCupSession"].clone();
    assert_eq!(session["status"], "OPEN");
    assert_eq!(session["user"]["handle"], "ann");

    let again = open_cup_with(&app, &bar.bartender, &bar.event, "ann", &code).await;
    again.assert_error("FORBIDDEN", None);
    assert_eq!(
        again.message(),
        made_up.message(),
        "a used code is refused alike"
    );

    // A new code finds the open cup instead of opening a second one.
    let next = cup_code(&app, &ann, &bar.event).await;
    let found = open_cup_with(&app, &bar.bartender, &bar.event, "ann", &next).await;
    assert_eq!(found.data()["openCupSession"]["id"], session["id"]);
    // Bob's own code opens Bob's cup.
    let bobs = cup_code(&app, &bob, &bar.event).await;
    let bob_session = open_cup_with(&app, &bar.bartender, &bar.event, "bob", &bobs).await;
    assert_eq!(
        bob_session.data()["openCupSession"]["user"]["handle"],
        "bob"
    );
}

async fn an_expired_code_opens_nothing(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.cup_code_ttl_seconds = 1).await;
    let bar = open_bar(&app).await;
    let ann = app.signup("ann").await;
    let issued = app
        .gql_as(
            &ann,
            "mutation($e: ID!) { requestCupCode(eventId: $e) { code expiresAt } }",
            json!({ "e": bar.event }),
        )
        .await;
    let issued = issued.data()["requestCupCode"].clone();
    let expires: chrono::DateTime<chrono::Utc> = issued["expiresAt"]
        .as_str()
        .expect("expiresAt")
        .parse()
        .expect("RFC 3339");
    let left = expires - chrono::Utc::now();
    assert!(
        left <= chrono::Duration::seconds(1) && left > chrono::Duration::seconds(-1),
        "the code lives RALLY_CUP_CODE_TTL_SECONDS: {left}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let code = issued["code"].as_str().expect("code");
    open_cup_with(&app, &bar.bartender, &bar.event, "ann", code)
        .await
        .assert_error("FORBIDDEN", None);
}

async fn codes_are_stored_only_as_hashes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let bar = open_bar(&app).await;
    let ann = app.signup("ann").await;
    let code = cup_code(&app, &ann, &bar.event).await;
    let stored: Vec<String> = rally::entity::cup_code::Entity::find()
        .select_only()
        .column(rally::entity::cup_code::Column::CodeHash)
        .into_tuple()
        .all(&app.state.db)
        .await
        .expect("read codes");
    assert_eq!(stored.len(), 1);
    assert!(
        !stored[0].contains(&code),
        "the code itself is never stored"
    );
    // Not a plain digest anyone could brute-force over 31^8 codes: keyed with the server's secret.
    let unkeyed = rally::auth::token_hash(&code);
    assert_ne!(stored[0], unkeyed);
    let other_keys = rally::auth::TokenKeys::new(&[9u8; 32], Duration::from_secs(60));
    let guest: uuid::Uuid = ann.id.parse().expect("uuid");
    let event: uuid::Uuid = bar.event.parse().expect("uuid");
    let message = format!("{event}:{guest}:{code}");
    assert_ne!(
        stored[0],
        other_keys.derive("cup-code", &message).expect("derive"),
        "another secret gives another hash"
    );
    // HMAC-SHA256 with the server's secret over "cup-code", a NUL and the message, base64url:
    // computed here from the test's secret, not by the server's code.
    let expected = {
        use base64::Engine;
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(TEST_SECRET.as_bytes()).expect("a key");
        mac.update(format!("cup-code\0{message}").as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    };
    assert_eq!(
        stored[0], expected,
        "an HMAC of the code bound to its guest and event"
    );
}

/// One code shown to several gateways at once (two staff members, four requests each): one opens
/// the guest's cup, the rest are refused as a used code is, and the guest has one session.
async fn one_code_at_many_gateways_at_once_opens_one_cup(backend: Backend) {
    use rally::entity::cup_session;
    let app = TestApp::spawn_with(backend, |c| c.cup_code_attempts_per_minute = 100).await;
    let bar = open_bar(&app).await;
    let ann = app.signup("ann").await;
    let code = cup_code(&app, &ann, &bar.event).await;
    let racing = (0..8).map(|n| {
        let staff = if n % 2 == 0 {
            &bar.organizer
        } else {
            &bar.bartender
        };
        open_cup_with(&app, staff, &bar.event, "ann", &code)
    });
    let answers = futures_util::future::join_all(racing).await;
    let opened = answers
        .iter()
        .filter(|answer| answer.body["errors"].is_null())
        .count();
    assert_eq!(opened, 1, "one cup");
    for answer in answers
        .iter()
        .filter(|answer| !answer.body["errors"].is_null())
    {
        answer.assert_error("FORBIDDEN", None);
    }
    let guest: uuid::Uuid = ann.id.parse().expect("uuid");
    let sessions = cup_session::Entity::find()
        .filter(cup_session::Column::UserId.eq(guest))
        .count(&app.state.db)
        .await
        .expect("count sessions");
    assert_eq!(sessions, 1);
}

async fn guessing_codes_is_rate_limited_per_staff_member(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.cup_code_attempts_per_minute = 5).await;
    let bar = open_bar(&app).await;
    let ann = app.signup("ann").await;
    let code = cup_code(&app, &ann, &bar.event).await;
    for guess in 0..5 {
        open_cup_with(
            &app,
            &bar.bartender,
            &bar.event,
            "ann",
            &format!("2222222{}", guess + 2),
        )
        .await
        .assert_error("FORBIDDEN", None);
    }
    let limited = open_cup_with(&app, &bar.bartender, &bar.event, "ann", &code).await;
    limited.assert_error("RATE_LIMITED", None);
    assert!(
        limited.body["errors"][0]["extensions"]["retryAfterSeconds"]
            .as_u64()
            .is_some_and(|seconds| seconds >= 1),
        "{}",
        limited.body
    );
    // The limit is the staff member's: the organizer still opens with the unspent code.
    let opened = open_cup_with(&app, &bar.organizer, &bar.event, "ann", &code).await;
    assert_eq!(opened.data()["openCupSession"]["status"], "OPEN");
}

async fn a_code_is_asked_for_by_a_signed_in_guest_of_an_open_event(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let bar = open_bar(&app).await;
    let ann = app.signup("ann").await;
    let ask = "mutation($e: ID!) { requestCupCode(eventId: $e) { code } }";
    app.gql(ask, json!({ "e": bar.event }))
        .await
        .assert_error("UNAUTHENTICATED", None);
    app.gql_as(
        &ann,
        ask,
        json!({ "e": "00000000-0000-7000-8000-000000000000" }),
    )
    .await
    .assert_error("NOT_FOUND", None);
    app.gql_as(
        &bar.organizer,
        "mutation($id: ID!) { updateEvent(id: $id, input: { status: FINISHED }) { id } }",
        json!({ "id": bar.event }),
    )
    .await
    .data();
    app.gql_as(&ann, ask, json!({ "e": bar.event }))
        .await
        .assert_error("CONFLICT", None);
}

/// Twenty requests of one guest at once: each asks for a code, and the guest holds at most five live
/// ones at the end (each request retires the oldest beyond four before adding its own, in turn).
async fn a_rush_of_requests_leaves_at_most_five_live_codes(backend: Backend) {
    use rally::entity::cup_code;
    let app = TestApp::spawn(backend).await;
    let bar = open_bar(&app).await;
    let ann = app.signup("ann").await;
    let requests = (0..20).map(|_| {
        app.gql_as(
            &ann,
            "mutation($e: ID!) { requestCupCode(eventId: $e) { code } }",
            json!({ "e": bar.event }),
        )
    });
    for response in futures_util::future::join_all(requests).await {
        response.data();
    }
    let live = cup_code::Entity::find()
        .filter(cup_code::Column::UsedAt.is_null())
        .filter(cup_code::Column::ExpiresAt.gt(chrono::Utc::now()))
        .count(&app.state.db)
        .await
        .expect("count codes");
    assert_eq!(live, 5, "five live codes, the newest");
}
