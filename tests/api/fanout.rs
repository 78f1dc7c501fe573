//! Shared subscription executions: identical subscriptions run once, whatever the number of
//! subscribers; personal fields never cross between people (not even when an operation only turns
//! out to be personal later); late joiners start from the current state; the last subscriber out
//! stops the execution; protocol violations close with the protocol's codes.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::fixtures::create_event;
use crate::common::{Backend, TRANSPORT_WS, TestApp, WsClient};
use crate::on_every_backend;

on_every_backend!(
    identical_subscriptions_share_one_execution,
    a_named_subscription_shares_one_execution_with_and_without_its_name,
    personal_fields_are_never_shared_between_people,
    an_operation_that_turns_out_personal_moves_signed_in_members_to_their_own_view,
    a_late_joiner_starts_from_the_current_state,
    the_last_subscriber_out_stops_the_execution,
    protocol_violations_close_with_the_protocol_codes,
    streams_that_catch_up_on_what_their_subscriber_missed_run_alone,
);

const PUBLIC: &str =
    "subscription($id: ID!) { eventUpdated(eventId: $id) { title likeCount version } }";
const PERSONAL: &str =
    "subscription($id: ID!) { eventUpdated(eventId: $id) { title likeCount likedByMe version } }";
const STAFF: &str = "subscription($id: ID!) { eventUpdated(eventId: $id) { version staff { user { handle email } } } }";

/// A graphql-transport-ws client subscribed to `query` for event `id` as `token` (or anonymous).
async fn subscribed(app: &TestApp, token: Option<&str>, query: &str, id: &Value) -> WsClient {
    let mut client = app.ws(TRANSPORT_WS).await;
    let init = match token {
        Some(token) => json!({ "authorization": format!("Bearer {token}") }),
        None => json!({}),
    };
    client.init(init).await;
    client.subscribe("s", query, json!({ "id": id })).await;
    client
}

async fn rename(app: &TestApp, session: &crate::common::Session, id: &Value, title: &str) {
    app.gql_as(
        session,
        "mutation($id: ID!, $t: String!) { updateEvent(id: $id, input: { title: $t }) { version } }",
        json!({ "id": id, "t": title }),
    )
    .await
    .data();
}

async fn identical_subscriptions_share_one_execution(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann").await;
    let id = create_event(&app, &ann, "Shared", "2030-01-01T20:00:00Z").await["id"].clone();
    // Fifty anonymous screens, and ann on two devices.
    let mut clients = Vec::new();
    for _ in 0..50 {
        let mut screen = subscribed(&app, None, PUBLIC, &id).await;
        assert_eq!(
            screen.next_data("s").await["eventUpdated"]["title"],
            "Shared"
        );
        clients.push(screen);
    }
    for _ in 0..2 {
        let mut device = subscribed(&app, Some(&ann.access), PUBLIC, &id).await;
        assert_eq!(
            device.next_data("s").await["eventUpdated"]["title"],
            "Shared"
        );
        clients.push(device);
    }
    // The screens share the public execution. Ann's first subscription ran as ann and showed that
    // the operation never asks who is calling, so her second device joined the public one too.
    assert_eq!(app.fanout.executions(), 2, "one public, one of ann's");

    rename(&app, &ann, &id, "Renamed").await;
    let mut seen = Vec::new();
    for client in &mut clients {
        seen.push(client.next_data("s").await);
    }
    assert!(
        seen.iter()
            .all(|data| data["eventUpdated"]["title"] == "Renamed"),
        "every subscriber gets the change"
    );
    assert!(
        seen.windows(2).all(|pair| pair[0] == pair[1]),
        "one payload for all"
    );
}

async fn a_named_subscription_shares_one_execution_with_and_without_its_name(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann").await;
    let id = create_event(&app, &ann, "Named", "2030-01-01T20:00:00Z").await["id"].clone();
    let named = "subscription Watch($id: ID!) { eventUpdated(eventId: $id) { title version } }";
    // GraphiQL and most clients send the operation's name (Apollo Client always does), others
    // leave it out: the document runs the same operation either way.
    let mut without = subscribed(&app, None, named, &id).await;
    let mut with = app.ws(TRANSPORT_WS).await;
    with.init(json!({})).await;
    with.send(json!({
        "type": "subscribe",
        "id": "s",
        "payload": { "query": named, "operationName": "Watch", "variables": { "id": id } },
    }))
    .await;
    for client in [&mut without, &mut with] {
        assert_eq!(
            client.next_data("s").await["eventUpdated"]["title"],
            "Named"
        );
    }
    assert_eq!(app.fanout.executions(), 1, "one execution for both");

    rename(&app, &ann, &id, "Renamed").await;
    for client in [&mut without, &mut with] {
        assert_eq!(
            client.next_data("s").await["eventUpdated"]["title"],
            "Renamed"
        );
    }
    // A name the document does not hold still picks nothing.
    let mut wrong = app.ws(TRANSPORT_WS).await;
    wrong.init(json!({})).await;
    wrong
        .send(json!({
            "type": "subscribe",
            "id": "w",
            "payload": { "query": named, "operationName": "Other", "variables": { "id": id } },
        }))
        .await;
    let refused = wrong.next_of("w").await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(app.fanout.executions(), 1);
}

async fn personal_fields_are_never_shared_between_people(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann").await;
    let ben = app.signup("ben").await;
    let id = create_event(&app, &ann, "Likes", "2030-01-01T20:00:00Z").await["id"].clone();
    let mut anon = subscribed(&app, None, PERSONAL, &id).await;
    let mut ann_socket = subscribed(&app, Some(&ann.access), PERSONAL, &id).await;
    let mut ben_socket = subscribed(&app, Some(&ben.access), PERSONAL, &id).await;
    for client in [&mut anon, &mut ann_socket, &mut ben_socket] {
        assert_eq!(
            client.next_data("s").await["eventUpdated"]["likedByMe"],
            false
        );
    }
    assert_eq!(
        app.fanout.executions(),
        3,
        "likedByMe depends on the caller: one execution each"
    );

    app.gql_as(
        &ben,
        "mutation($id: ID!) { likeEvent(id: $id) { id } }",
        json!({ "id": id }),
    )
    .await
    .data();
    let ben_sees = ben_socket.next_data("s").await;
    let ann_sees = ann_socket.next_data("s").await;
    let anon_sees = anon.next_data("s").await;
    assert_eq!(ben_sees["eventUpdated"]["likeCount"], 1);
    assert_eq!(ben_sees["eventUpdated"]["likedByMe"], true, "{ben_sees}");
    assert_eq!(ann_sees["eventUpdated"]["likeCount"], 1);
    assert_eq!(ann_sees["eventUpdated"]["likedByMe"], false, "{ann_sees}");
    assert_eq!(anon_sees["eventUpdated"]["likedByMe"], false, "{anon_sees}");
}

async fn an_operation_that_turns_out_personal_moves_signed_in_members_to_their_own_view(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann").await;
    let bob = app.signup("bob").await;
    let id = create_event(&app, &ann, "Staffed", "2030-01-01T20:00:00Z").await["id"].clone();
    // Without staff, nothing in the selection asks who is calling: bob.s first execution teaches
    // that, and bob.s second socket joins the public execution with the anonymous screen.
    let mut screen = subscribed(&app, None, STAFF, &id).await;
    let mut first = subscribed(&app, Some(&bob.access), STAFF, &id).await;
    screen.next_data("s").await;
    first.next_data("s").await;
    let mut second = subscribed(&app, Some(&bob.access), STAFF, &id).await;
    second.next_data("s").await;
    assert_eq!(app.fanout.executions(), 2);

    // Now `email` resolves, and only bob may see his.
    app.gql_as(
        &ann,
        "mutation($id: ID!) { addEventStaff(eventId: $id, handle: \"bob\", role: BARTENDER) { id } }",
        json!({ "id": id }),
    )
    .await
    .data();
    let on_screen = screen.next_data("s").await;
    assert_eq!(
        on_screen["eventUpdated"]["staff"][0]["user"],
        json!({ "handle": "bob", "email": null }),
        "{on_screen}"
    );
    for socket in [&mut first, &mut second] {
        let own = socket.next_data("s").await;
        assert_eq!(
            own["eventUpdated"]["staff"][0]["user"],
            json!({ "handle": "bob", "email": "bob@example.com" }),
            "{own}"
        );
    }
}

async fn a_late_joiner_starts_from_the_current_state(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann").await;
    let id = create_event(&app, &ann, "Early", "2030-01-01T20:00:00Z").await["id"].clone();
    let mut early = subscribed(&app, None, PUBLIC, &id).await;
    let first = early.next_data("s").await;
    rename(&app, &ann, &id, "Later").await;
    let changed = early.next_data("s").await;
    assert_eq!(changed["eventUpdated"]["title"], "Later");

    let mut late = subscribed(&app, None, PUBLIC, &id).await;
    assert_eq!(
        late.next_data("s").await,
        changed,
        "the running execution's latest state, not the first snapshot {first}"
    );
    assert_eq!(app.fanout.executions(), 1);
    late.assert_quiet(Duration::from_millis(300)).await;
}

async fn the_last_subscriber_out_stops_the_execution(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann").await;
    let id = create_event(&app, &ann, "Leaving", "2030-01-01T20:00:00Z").await["id"].clone();
    let mut a = subscribed(&app, None, PUBLIC, &id).await;
    let mut b = subscribed(&app, None, PUBLIC, &id).await;
    a.next_data("s").await;
    b.next_data("s").await;
    a.unsubscribe("s").await;
    assert_eq!(a.next_of("s").await["type"], "complete");
    assert_eq!(app.fanout.executions(), 1, "b still follows it");
    rename(&app, &ann, &id, "Still here").await;
    assert_eq!(
        b.next_data("s").await["eventUpdated"]["title"],
        "Still here"
    );
    drop(b);
    let mut stopped = false;
    for _ in 0..100 {
        if app.fanout.executions() == 0 {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stopped, "the execution ends with its last subscriber");
}

async fn protocol_violations_close_with_the_protocol_codes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann").await;
    let id = create_event(&app, &ann, "Rules", "2030-01-01T20:00:00Z").await["id"].clone();

    let mut early = app.ws(TRANSPORT_WS).await;
    early.subscribe("s", PUBLIC, json!({ "id": id })).await;
    assert_eq!(early.closed().await.code, 4401, "subscribe before the ack");

    let mut twice = app.ws(TRANSPORT_WS).await;
    twice.init(json!({})).await;
    twice.send(json!({ "type": "connection_init" })).await;
    assert_eq!(twice.closed().await.code, 4429, "a second connection_init");

    let mut duplicate = subscribed(&app, None, PUBLIC, &id).await;
    duplicate.next_data("s").await;
    duplicate.subscribe("s", PUBLIC, json!({ "id": id })).await;
    let closed = duplicate.closed().await;
    assert_eq!(closed.code, 4409, "an id already running: {closed:?}");

    let mut garbage = app.ws(TRANSPORT_WS).await;
    garbage.init(json!({})).await;
    garbage.send(json!({ "type": "subscribe", "id": 7 })).await;
    assert_eq!(garbage.closed().await.code, 4400, "an unreadable frame");
}

/// A staff feed (`cupSessionUpdated`) catches up on what its subscriber missed, which only works
/// when its execution waits for its own client: two tablets of the same organizer run two
/// executions, never a shared one, and each gets every change.
async fn streams_that_catch_up_on_what_their_subscriber_missed_run_alone(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let bar = crate::common::fixtures::open_bar(&app).await;
    let guest = app.signup("guest").await;
    let cup =
        crate::common::fixtures::open_cup(&app, &bar.bartender, &bar.event, &guest).await["id"]
            .clone();
    let query = "subscription($id: ID!) { cupSessionUpdated(eventId: $id) { cheers } }";
    let mut tablets = Vec::new();
    for _ in 0..2 {
        tablets.push(subscribed(&app, Some(&bar.organizer.access), query, &json!(bar.event)).await);
    }
    app.listening(&format!("event:{}:sessions", bar.event), 2)
        .await;
    assert_eq!(app.fanout.executions(), 0, "no shared execution");
    crate::common::fixtures::cheers(&app, &bar.bartender, cup.as_str().expect("id"), 2)
        .await
        .data();
    for tablet in &mut tablets {
        assert_eq!(
            tablet.next_data("s").await["cupSessionUpdated"]["cheers"],
            2
        );
    }
}
