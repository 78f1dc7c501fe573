//! The websocket endpoint and live subscriptions, with a real client for both protocols.

use std::time::Duration;

use rally::entity::event;
use sea_orm::EntityTrait;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use crate::common::fixtures::create_event;
use crate::common::{Backend, LEGACY_WS, Session, TRANSPORT_WS, TestApp, WsClient};
use crate::on_every_backend;

on_every_backend!(
    the_protocol_announced_is_the_one_spoken,
    subscriptions_of_ones_own_refuse_an_anonymous_socket,
    event_updated_sends_a_snapshot_then_every_change_on_both_protocols,
    event_status_changed_sends_each_committed_change_once,
    a_client_that_never_initialises_is_closed_with_4408,
    a_bad_token_in_connection_init_is_closed_with_4403,
    every_spelling_of_the_token_is_accepted,
    an_expired_token_closes_the_socket_unless_refreshed_in_a_ping,
    subscriptions_per_connection_are_capped,
    operations_started_in_a_loop_are_rate_limited,
    queries_and_mutations_also_run_over_the_websocket,
    shutdown_closes_sockets_with_a_reconnect_hint,
    metrics_show_live_publishing_and_operations,
    redis_carries_updates_within_one_instance_too,
    a_healthy_redis_subscription_stays_connected,
    a_fresh_token_with_another_role_does_not_extend_the_socket,
    a_mutation_completes_even_when_its_client_leaves_at_once,
    a_mutation_over_http_runs_to_its_end_and_is_announced_when_its_request_is_dropped,
    shutdown_waits_for_mutations_whose_requests_timed_out,
    a_mutation_arriving_after_shutdown_stopped_waiting_is_refused,
    mutations_beyond_the_running_limit_are_refused_at_once,
    a_document_that_fails_validation_gets_the_protocols_error_with_a_code,
    resolver_errors_over_the_websocket_carry_their_code,
    malformed_connection_init_payloads_are_refused,
    an_oversized_frame_closes_with_message_too_big,
    a_client_that_answers_no_ping_is_closed_and_one_that_does_stays,
    the_legacy_protocol_restarts_an_operation_under_its_id_and_says_why_it_refuses,
    completed_mutations_hold_their_place_until_they_finish,
    a_completed_subscription_of_its_own_stops_listening_at_once,
    every_form_of_subscription_gives_its_place_back_when_completed,
);

const EVENT_UPDATED: &str = "subscription($id: ID!) { eventUpdated(eventId: $id) { title status likeCount likedByMe version organizer { handle } } }";

async fn event_updated_sends_a_snapshot_then_every_change_on_both_protocols(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann").await;
    let ben = app.signup("ben").await;
    let id = create_event(&app, &ann, "Open mic", "2030-01-01T20:00:00Z").await["id"].clone();
    for protocol in [TRANSPORT_WS, LEGACY_WS] {
        let mut client = app.ws(protocol).await;
        client
            .init(json!({ "authorization": format!("Bearer {}", ben.access) }))
            .await;
        client
            .subscribe("1", EVENT_UPDATED, json!({ "id": id }))
            .await;
        let snapshot = client.next_data("1").await;
        assert_eq!(snapshot["eventUpdated"]["organizer"]["handle"], "ann");
        assert_eq!(snapshot["eventUpdated"]["likedByMe"], false);
        let title = format!("Open mic ({protocol})");
        app.gql_as(
            &ann,
            "mutation($id: ID!, $t: String!) { updateEvent(id: $id, input: { title: $t }) { id } }",
            json!({ "id": id, "t": title }),
        )
        .await
        .data();
        let renamed = client.next_data("1").await;
        assert_eq!(renamed["eventUpdated"]["title"], title.as_str());
        app.gql_as(
            &ben,
            "mutation($id: ID!) { likeEvent(id: $id) { id } }",
            json!({ "id": id }),
        )
        .await
        .data();
        let liked = client.next_data("1").await;
        assert_eq!(liked["eventUpdated"]["likeCount"], 1);
        assert_eq!(
            liked["eventUpdated"]["likedByMe"], true,
            "the subscriber's own like"
        );
        assert!(
            liked["eventUpdated"]["version"].as_i64() > renamed["eventUpdated"]["version"].as_i64()
        );
        app.gql_as(
            &ben,
            "mutation($id: ID!) { unlikeEvent(id: $id) { id } }",
            json!({ "id": id }),
        )
        .await
        .data();
        let unliked = client.next_data("1").await;
        assert_eq!(unliked["eventUpdated"]["likedByMe"], false);
        // A reconnecting client is whole again from the snapshot alone.
        let mut again = app.ws(protocol).await;
        again.init(json!({})).await;
        again
            .subscribe("9", EVENT_UPDATED, json!({ "id": id }))
            .await;
        assert_eq!(
            again.next_data("9").await["eventUpdated"]["title"],
            title.as_str()
        );
    }
    let mut client = app.ws(TRANSPORT_WS).await;
    client.init(json!({})).await;
    client
        .subscribe(
            "x",
            EVENT_UPDATED,
            json!({ "id": "0193a0b0-0000-7000-8000-000000000000" }),
        )
        .await;
    let missing = client.next_of("x").await;
    assert_eq!(
        missing["payload"]["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{missing}"
    );
}

async fn event_status_changed_sends_each_committed_change_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let cat = app.signup("cat").await;
    let id = create_event(&app, &cat, "Run club", "2030-01-01T07:00:00Z").await["id"].clone();
    let mut client = app.ws(TRANSPORT_WS).await;
    client.init(json!({})).await;
    client
        .subscribe(
            "s",
            "subscription { eventStatusChanged { id status } }",
            json!({}),
        )
        .await;
    // The change must come after the subscription is registered.
    app.listening("events:status-changes", 1).await;
    let update =
        "mutation($id: ID!, $i: UpdateEventInput!) { updateEvent(id: $id, input: $i) { id } }";
    app.gql_as(
        &cat,
        update,
        json!({ "id": id, "i": { "title": "Run club!" } }),
    )
    .await
    .data();
    for status in ["LIVE", "FINISHED"] {
        app.gql_as(&cat, update, json!({ "id": id, "i": { "status": status } }))
            .await
            .data();
        let changed = client.next_data("s").await;
        assert_eq!(
            changed["eventStatusChanged"],
            json!({ "id": id, "status": status })
        );
    }
    client.assert_quiet(Duration::from_millis(300)).await;
}

async fn a_client_that_never_initialises_is_closed_with_4408(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.ws_init_timeout_seconds = 1).await;
    for protocol in [TRANSPORT_WS, LEGACY_WS] {
        let mut client = app.ws(protocol).await;
        let closed = client.closed().await;
        assert_eq!(closed.code, 4408, "{protocol}: {closed:?}");
    }
}

async fn a_bad_token_in_connection_init_is_closed_with_4403(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for protocol in [TRANSPORT_WS, LEGACY_WS] {
        let mut client = app.ws(protocol).await;
        client
            .send(json!({ "type": "connection_init", "payload": { "authorization": "Bearer not-a-token" } }))
            .await;
        assert_eq!(client.closed().await.code, 4403, "{protocol}");
    }
}

/// A token that is not a string is a bad token (4403), not an anonymous caller; a payload that is
/// not an object cannot be read (4400).
async fn malformed_connection_init_payloads_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for protocol in [TRANSPORT_WS, LEGACY_WS] {
        for (payload, code) in [
            (json!({ "authorization": 42 }), 4403),
            (json!({ "Authorization": { "token": "x" } }), 4403),
            (json!({ "token": ["Bearer x"] }), 4403),
            (json!("Bearer x"), 4400),
            (json!([1, 2]), 4400),
            (json!(7), 4400),
        ] {
            let mut client = app.ws(protocol).await;
            client
                .send(json!({ "type": "connection_init", "payload": payload }))
                .await;
            assert_eq!(client.closed().await.code, code, "{protocol} {payload}");
        }
    }
}

/// A frame over the limit (256 KiB) is answered with 1009 (message too big), not a cut.
async fn an_oversized_frame_closes_with_message_too_big(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut client = app.ws(TRANSPORT_WS).await;
    client.init(json!({})).await;
    let big = "x".repeat(300 * 1024);
    client
        .send(json!({ "type": "ping", "payload": { "padding": big } }))
        .await;
    assert_eq!(client.closed().await.code, 1009);
}

async fn every_spelling_of_the_token_is_accepted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let dan = app.signup("dan").await;
    let payloads = [
        json!({ "authorization": format!("Bearer {}", dan.access) }),
        json!({ "Authorization": format!("bearer {}", dan.access) }),
        json!({ "token": dan.access }),
        json!({ "token": format!("Bearer {}", dan.access) }),
    ];
    for payload in payloads {
        let mut client = app.ws(TRANSPORT_WS).await;
        client.init(payload.clone()).await;
        client.subscribe("me", "{ me { handle } }", json!({})).await;
        assert_eq!(
            client.next_data("me").await["me"]["handle"],
            "dan",
            "{payload}"
        );
    }
}

async fn an_expired_token_closes_the_socket_unless_refreshed_in_a_ping(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.access_token_ttl_seconds = 6).await;
    let eve = app.signup("eve").await;
    let mut client = app.ws(TRANSPORT_WS).await;
    client
        .init(json!({ "authorization": format!("Bearer {}", eve.access) }))
        .await;
    assert_eq!(
        client.closed().await.code,
        4403,
        "closed when the token expired"
    );

    // The same, but the client refreshes its token and sends it in a ping before expiry.
    let login = app.login("eve", "password-eve").await;
    let eve = crate::common::gql::session_from(&login.data()["login"]);
    let expires_at = chrono::DateTime::parse_from_rfc3339(
        login.data()["login"]["accessTokenExpiresAt"]
            .as_str()
            .expect("time"),
    )
    .expect("RFC 3339");
    let until = |offset_ms: i64| {
        let wait = (expires_at + chrono::Duration::milliseconds(offset_ms))
            .signed_duration_since(chrono::Utc::now());
        Duration::from_millis(u64::try_from(wait.num_milliseconds().max(0)).unwrap_or(0))
    };
    let mut client = app.ws(TRANSPORT_WS).await;
    client
        .init(json!({ "authorization": format!("Bearer {}", eve.access) }))
        .await;
    tokio::time::sleep(until(-3000)).await;
    let fresh =
        crate::common::gql::session_from(&app.refresh(&eve.refresh).await.data()["refreshSession"]);
    client.send(json!({ "type": "ping", "payload": { "authorization": format!("Bearer {}", fresh.access) } })).await;
    // Past the first token's expiry the socket is still open and serving.
    tokio::time::sleep(until(500)).await;
    client.subscribe("me", "{ me { handle } }", json!({})).await;
    assert_eq!(client.next_data("me").await["me"]["handle"], "eve");
    assert_eq!(
        client.closed().await.code,
        4403,
        "and closed once the fresh token expires"
    );
}

async fn subscriptions_per_connection_are_capped(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.ws_max_subscriptions = 2).await;
    let fay = app.signup("fay").await;
    let id = create_event(&app, &fay, "Cap", "2030-01-01T20:00:00Z").await["id"].clone();
    let mut client = app.ws(TRANSPORT_WS).await;
    client.init(json!({})).await;
    for n in ["1", "2"] {
        client
            .subscribe(n, EVENT_UPDATED, json!({ "id": id }))
            .await;
        client.next_data(n).await;
    }
    client
        .subscribe("3", EVENT_UPDATED, json!({ "id": id }))
        .await;
    let refused = client.next_of("3").await;
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"], "RATE_LIMITED",
        "{refused}"
    );
    assert!(
        refused["payload"]["errors"][0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("subscriptions"),
        "{refused}"
    );
    assert!(
        refused["payload"]["errors"][0].get("locations").is_none(),
        "not an error of the document: {refused}"
    );
    assert_eq!(client.next_of("3").await["type"], "complete");
    // Ending one frees its slot.
    client.unsubscribe("1").await;
    assert_eq!(client.next_of("1").await["type"], "complete");
    client
        .subscribe("4", EVENT_UPDATED, json!({ "id": id }))
        .await;
    client.next_data("4").await;
    // A flood of refused operations is answered, each with its error and its `complete` (they are
    // written at once now; that they hold nothing is not visible from here).
    for n in 0..200 {
        client
            .subscribe(&format!("r{n}"), EVENT_UPDATED, json!({ "id": id }))
            .await;
    }
    for n in 0..200 {
        let refused = client.next_of(&format!("r{n}")).await;
        assert_eq!(
            refused["payload"]["errors"][0]["extensions"]["code"], "RATE_LIMITED",
            "{refused}"
        );
        assert_eq!(client.next_of(&format!("r{n}")).await["type"], "complete");
    }
    // An operation id is a counter or a UUID, not a payload of its own.
    client
        .subscribe(&"x".repeat(129), EVENT_UPDATED, json!({ "id": id }))
        .await;
    let closed = client.closed().await;
    assert_eq!(closed.code, 4400, "{closed:?}");
}

/// However few run at once, a connection starts at most 100 operations in a burst, then 20 a
/// second: each start parses a document and may load a snapshot. Past that, an operation is
/// refused with RATE_LIMITED and `complete`, and the connection goes on.
async fn operations_started_in_a_loop_are_rate_limited(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut client = app.ws(TRANSPORT_WS).await;
    client.init(json!({})).await;
    // Ten at a time (far below the running cap), each ten answered before the next: far faster
    // than 20 a second, however loaded the machine.
    let mut answered = 0;
    let mut refused = false;
    'rounds: for round in 0..50 {
        for n in 0..10 {
            client
                .subscribe(&format!("q{round}-{n}"), "{ __typename }", json!({}))
                .await;
        }
        let mut completed = 0;
        while completed < 10 {
            let frame = client.next_frame().await.expect("open");
            match frame["type"].as_str() {
                Some("complete") => completed += 1,
                Some("next") if frame["payload"]["data"]["__typename"] == "Query" => answered += 1,
                Some("next") => {
                    assert_eq!(
                        frame["payload"]["errors"][0]["extensions"]["code"], "RATE_LIMITED",
                        "{frame}"
                    );
                    refused = true;
                }
                _ => panic!("unexpected {frame}"),
            }
        }
        if refused {
            break 'rounds;
        }
    }
    assert!(refused, "never refused: {answered} answered");
    assert!(answered >= 100, "the burst: {answered} answered");
    tokio::time::sleep(Duration::from_millis(200)).await;
    client.subscribe("later", "{ __typename }", json!({})).await;
    assert_eq!(
        client.next_data("later").await["__typename"],
        "Query",
        "refilled"
    );
}

async fn queries_and_mutations_also_run_over_the_websocket(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let gil = app.signup("gil").await;
    let mut client = app.ws(TRANSPORT_WS).await;
    client
        .init(json!({ "authorization": format!("Bearer {}", gil.access) }))
        .await;
    client
        .subscribe("m", "mutation { createEvent(input: { title: \"Over ws\", startsAt: \"2030-01-01T20:00:00Z\" }) { title organizer { handle } } }", json!({}))
        .await;
    let created = client.next_data("m").await;
    assert_eq!(
        created["createEvent"],
        json!({ "title": "Over ws", "organizer": { "handle": "gil" } })
    );
    let complete = client.next_of("m").await;
    assert_eq!(complete["type"], "complete");
}

/// A document that fails to parse or validate never runs: graphql-transport-ws answers with its
/// `error` message (an array of GraphQL errors, then nothing for that id), the legacy protocol with
/// its `error` type; every error carries BAD_USER_INPUT as it does over HTTP.
async fn a_document_that_fails_validation_gets_the_protocols_error_with_a_code(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let invalid = [
        "subscription { eventUpdated(eventId: \"x\") { id nosuchfield } }",
        "subscription { eventUpdated(eventId: ",
        "{ nosuchroot }",
    ];
    let over_http = app.gql(invalid[0], json!({})).await;
    over_http.assert_error("BAD_USER_INPUT", None);
    let mut client = app.ws(TRANSPORT_WS).await;
    client.init(json!({})).await;
    for (n, query) in invalid.iter().enumerate() {
        let id = format!("bad{n}");
        client.subscribe(&id, query, json!({})).await;
        let frame = client.next_of(&id).await;
        assert_eq!(frame["type"], "error", "{frame}");
        let errors = frame["payload"].as_array().expect("an array of errors");
        assert!(!errors.is_empty(), "{frame}");
        for error in errors {
            assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{frame}");
            assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
    }
    // Nothing follows an `error` (no `complete`): the next frame is a new operation's.
    client.subscribe("ok", "{ __typename }", json!({})).await;
    assert_eq!(client.next_data("ok").await["__typename"], "Query");

    let mut legacy = app.ws(LEGACY_WS).await;
    legacy.init(json!({})).await;
    legacy.subscribe("bad", invalid[0], json!({})).await;
    let frame = legacy.next_of("bad").await;
    assert_eq!(frame["type"], "error", "{frame}");
    assert_eq!(
        frame["payload"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{frame}"
    );
    assert!(
        frame["payload"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("nosuchfield"))
    );
}

/// Errors raised while a document runs come in `next`, each with its contract code.
async fn resolver_errors_over_the_websocket_carry_their_code(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut client = app.ws(TRANSPORT_WS).await;
    client.init(json!({})).await;
    client
        .subscribe("me", "mutation { createEvent(input: { title: \"x\", startsAt: \"2030-01-01T20:00:00Z\" }) { id } }", json!({}))
        .await;
    let frame = client.next_of("me").await;
    assert_eq!(frame["type"], "next", "{frame}");
    assert_eq!(
        frame["payload"]["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{frame}"
    );
    assert_eq!(client.next_of("me").await["type"], "complete");
    client
        .subscribe("gone", "subscription { eventUpdated(eventId: \"00000000-0000-7000-8000-000000000000\") { id } }", json!({}))
        .await;
    let frame = client.next_of("gone").await;
    assert_eq!(frame["type"], "next", "{frame}");
    assert_eq!(
        frame["payload"]["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{frame}"
    );
}

async fn shutdown_closes_sockets_with_a_reconnect_hint(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut client = app.ws(TRANSPORT_WS).await;
    client.init(json!({})).await;
    client
        .subscribe("s", "subscription { eventStatusChanged { id } }", json!({}))
        .await;
    app.listening("events:status-changes", 1).await;
    let closing = tokio::spawn(async move { client.closed().await });
    app.stop().await;
    let closed = closing.await.expect("client task");
    assert_eq!(closed.code, 1012, "{closed:?}");
    assert!(closed.reason.contains("reconnect"), "{closed:?}");
}

fn gauge(metrics: &str, name: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(name) && line.contains(label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A published change shows in the live metrics. (The socket and subscription gauges are counted
/// in a process of their own, in `cli.rs`: the recorder is shared by every test of this process.)
async fn metrics_show_live_publishing_and_operations(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let hal = app.signup("hal").await;
    let id = create_event(&app, &hal, "Metrics", "2030-01-01T20:00:00Z").await["id"].clone();
    let mut client = app.ws(TRANSPORT_WS).await;
    client.init(json!({})).await;
    client
        .subscribe("1", EVENT_UPDATED, json!({ "id": id }))
        .await;
    client.next_data("1").await;
    app.gql_as(
        &hal,
        "mutation($id: ID!) { likeEvent(id: $id) { id } }",
        json!({ "id": id }),
    )
    .await
    .data();
    assert_eq!(client.next_data("1").await["eventUpdated"]["likeCount"], 1);
    let text = app.metrics().await;
    for name in [
        "rally_live_published_total",
        "rally_live_delivery_latency_seconds",
        "rally_graphql_operations_total",
    ] {
        assert!(text.contains(name), "{name} missing");
    }
}

async fn redis_carries_updates_within_one_instance_too(backend: Backend) {
    let Some(redis) =
        crate::common::redis_url_or_skip("redis_carries_updates_within_one_instance_too")
    else {
        return;
    };
    let app = TestApp::spawn_with(backend, |c| c.redis_url = Some(redis)).await;
    let ida = app.signup("ida").await;
    let id = create_event(&app, &ida, "Via Redis", "2030-01-01T20:00:00Z").await["id"].clone();
    let ready: Value = app
        .http
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(ready["broker"]["kind"], "redis");
    let mut client = app.ws(TRANSPORT_WS).await;
    client.init(json!({})).await;
    client
        .subscribe("1", EVENT_UPDATED, json!({ "id": id }))
        .await;
    client.next_data("1").await;
    app.gql_as(
        &ida,
        "mutation($id: ID!) { updateEvent(id: $id, input: { title: \"Renamed\" }) { id } }",
        json!({ "id": id }),
    )
    .await
    .data();
    assert_eq!(
        client.next_data("1").await["eventUpdated"]["title"],
        "Renamed"
    );
    // Its own message comes back from Redis too, and is not delivered twice.
    client.assert_quiet(Duration::from_millis(300)).await;
}

async fn a_healthy_redis_subscription_stays_connected(backend: Backend) {
    let Some(redis) =
        crate::common::redis_url_or_skip("a_healthy_redis_subscription_stays_connected")
    else {
        return;
    };
    let app = TestApp::spawn_with(backend, |c| c.redis_url = Some(redis)).await;
    // Past the 5 s health ping: its answer (`["pong", ""]` in pub/sub mode) must count as healthy,
    // not cut the connection and resynchronise every subscriber. The counter is shared by every app
    // of this test process; none of them loses Redis, so it must stay at zero.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let metrics = app.metrics().await;
    let reconnects = gauge(&metrics, "rally_redis_reconnects_total", "");
    assert_eq!(reconnects, 0.0, "{metrics}");
    let ready: Value = app
        .http
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    assert_eq!(ready["broker"]["state"], "connected", "{ready}");
}

async fn a_fresh_token_with_another_role_does_not_extend_the_socket(backend: Backend) {
    use jsonwebtoken::{EncodingKey, Header, encode};
    let app = TestApp::spawn(backend).await;
    let kim = app.signup("kim").await;
    let token = |role: &str, ttl: i64| {
        let now = chrono::Utc::now().timestamp();
        let claims = json!({ "sub": kim.id, "role": role, "iss": "rally", "aud": "rally-api", "iat": now, "exp": now + ttl });
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(crate::common::TEST_SECRET.as_bytes()),
        )
        .expect("token")
    };
    let mut client = app.ws(TRANSPORT_WS).await;
    client
        .init(json!({ "authorization": format!("Bearer {}", token("ADMIN", 3)) }))
        .await;
    // A demoted admin's fresh token must not keep the admin connection alive.
    client
        .send(json!({ "type": "ping", "payload": { "authorization": format!("Bearer {}", token("USER", 600)) } }))
        .await;
    assert_eq!(
        client.closed().await.code,
        4403,
        "closed when the admin token expired"
    );
}

async fn a_mutation_completes_even_when_its_client_leaves_at_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let lou = app.signup("lou").await;
    let mut client = app.ws(TRANSPORT_WS).await;
    client
        .init(json!({ "authorization": format!("Bearer {}", lou.access) }))
        .await;
    client
        .subscribe(
            "m",
            "mutation { createEvent(input: { title: \"Left behind\", startsAt: \"2030-01-01T20:00:00Z\" }) { id } }",
            json!({}),
        )
        .await;
    drop(client);
    let mut created = false;
    for _ in 0..100 {
        let events = app
            .gql(
                "{ events(first: 50) { edges { node { title } } } }",
                json!({}),
            )
            .await;
        if events.data()["events"]["edges"]
            .as_array()
            .is_some_and(|edges| edges.iter().any(|e| e["node"]["title"] == "Left behind"))
        {
            created = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(created, "the mutation ran to its end without its client");
}

const RENAME: &str =
    "mutation($id: ID!, $t: String!) { updateEvent(id: $id, input: { title: $t }) { version } }";

/// The test's own write transaction holding `event`'s row (on SQLite, the write turn): writes of
/// the event wait until it ends.
async fn hold_event(app: &TestApp, event: &Value) -> rally::db::WriteTxn {
    let held = app.state.begin_write().await.expect("transaction");
    let row = Uuid::parse_str(event.as_str().expect("id")).expect("uuid");
    held.locking(event::Entity::find_by_id(row))
        .one(&*held)
        .await
        .expect("lock the row");
    held
}

/// `event`'s title and version, as anyone reads them.
async fn read_event(app: &TestApp, event: &Value) -> Value {
    app.gql(
        "query($id: ID!) { event(id: $id) { title version } }",
        json!({ "id": event }),
    )
    .await
    .data()["event"]
        .clone()
}

/// Sends `RENAME` of `event` to `title` as `session`, giving up after `patience`: `None` when the
/// client gave up, else the response's status.
async fn rename_over_http(
    app: &TestApp,
    session: &Session,
    event: &Value,
    title: &str,
    patience: Duration,
) -> Option<reqwest::StatusCode> {
    let sent = app
        .http
        .post(app.url("/graphql"))
        .bearer_auth(&session.access)
        .timeout(patience)
        .json(&json!({ "query": RENAME, "variables": { "id": event, "t": title } }))
        .send()
        .await;
    match sent {
        Ok(response) => Some(response.status()),
        Err(err) if err.is_timeout() => None,
        Err(err) => panic!("request failed: {err}"),
    }
}

/// Over HTTP, a mutation that has started runs to its end when its request is dropped, by a client
/// that stops waiting or by the server's request timeout: the change is made and announced, as a
/// completed mutation over the websocket is. (Cancelled at an `.await`, a mutation could commit
/// without its announcement.) Both renames wait on a lock the test holds, then go through once it
/// is released. (The server may not notice the first client leave, as HTTP/1 does not read while a
/// request runs; then its request ends at the timeout too.)
async fn a_mutation_over_http_runs_to_its_end_and_is_announced_when_its_request_is_dropped(
    backend: Backend,
) {
    let app = TestApp::spawn_with(backend, |c| c.request_timeout_seconds = 1).await;
    let ada = app.signup("ada").await;
    let id = create_event(&app, &ada, "Held", "2030-01-01T20:00:00Z").await["id"].clone();
    let mut watcher = app.ws(TRANSPORT_WS).await;
    watcher.init(json!({})).await;
    watcher
        .subscribe("1", EVENT_UPDATED, json!({ "id": id }))
        .await;
    let before = watcher.next_data("1").await["eventUpdated"].clone();
    assert_eq!(before["title"], "Held");

    let held = hold_event(&app, &id).await;
    let left = rename_over_http(&app, &ada, &id, "Left", Duration::from_millis(300)).await;
    assert_eq!(left, None, "the client stopped waiting");
    let timed_out = rename_over_http(&app, &ada, &id, "Timed out", Duration::from_secs(10)).await;
    assert_eq!(timed_out, Some(reqwest::StatusCode::REQUEST_TIMEOUT));
    held.commit().await.expect("release the row");

    let mut announced = Vec::new();
    for _ in 0..2 {
        let change = watcher.next_data("1").await["eventUpdated"].clone();
        announced.push(change["title"].as_str().expect("title").to_owned());
    }
    announced.sort();
    assert_eq!(announced, ["Left", "Timed out"]);
    let now = read_event(&app, &id).await;
    assert_eq!(
        now["version"].as_i64(),
        before["version"].as_i64().map(|v| v + 2),
        "{now}"
    );
    assert!(
        ["Left", "Timed out"].contains(&now["title"].as_str().expect("title")),
        "{now}"
    );
}

/// Shutdown waits for the mutations still running whose requests timed out before the database
/// closes: the rename lands, and the restarted server serves it. (On SQLite the rename would also
/// land without that wait, being ahead of shutdown's own last write in the line for the write
/// turn; PostgreSQL has no such line.)
async fn shutdown_waits_for_mutations_whose_requests_timed_out(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.request_timeout_seconds = 1).await;
    let eve = app.signup("eve").await;
    let id = create_event(&app, &eve, "Held", "2030-01-01T20:00:00Z").await["id"].clone();
    let held = hold_event(&app, &id).await;
    let timed_out = rename_over_http(&app, &eve, &id, "Landed", Duration::from_secs(10)).await;
    assert_eq!(timed_out, Some(reqwest::StatusCode::REQUEST_TIMEOUT));
    let restarting = tokio::spawn(app.restart());
    // The shutdown has no request or socket left to drain; it waits for the rename.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !restarting.is_finished(),
        "the shutdown did not wait for the rename"
    );
    held.commit().await.expect("release the row");
    let app = restarting.await.expect("restarted");
    let now = read_event(&app, &id).await;
    assert_eq!(now["title"], "Landed", "{now}");
}

/// A request whose body is still arriving when shutdown has stopped waiting (its connection
/// outlived the grace period) does not start its mutation once the database is closing: 503 with
/// `Retry-After` and `RATE_LIMITED`, so the client retries elsewhere, and nothing changed. (It
/// used to run among tasks nobody waited for any more, against a closed pool: an internal error,
/// or work cut off halfway.)
async fn a_mutation_arriving_after_shutdown_stopped_waiting_is_refused(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.shutdown_grace_seconds = 1).await;
    let gil = app.signup("gil").await;
    let id = create_event(&app, &gil, "Before", "2030-01-01T20:00:00Z").await["id"].clone();
    let body = json!({ "query": RENAME, "variables": { "id": id, "t": "After" } }).to_string();
    let (head, tail) = body.as_bytes().split_at(body.len() / 2);
    let host = app.address.trim_start_matches("http://").to_owned();
    let mut late = tokio::net::TcpStream::connect(&host)
        .await
        .expect("connect");
    let request = format!(
        "POST /graphql HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\naccept: application/graphql-response+json\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n",
        gil.access,
        body.len()
    );
    late.write_all(request.as_bytes()).await.expect("head");
    late.write_all(head).await.expect("first half");
    // Time for the server to accept the connection and start on the request: a shutdown that
    // begins while the connection still waits in the listen queue resets it instead.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The whole shutdown, past its grace period, while the body is half sent.
    let app = app.restart().await;
    late.write_all(tail).await.expect("second half");
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), late.read_to_string(&mut answer))
        .await
        .expect("answered in time")
        .expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 503"), "{answer}");
    assert!(head.contains("\r\nretry-after: 1"), "{answer}");
    let body: Value = serde_json::from_str(body).expect("json");
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "RATE_LIMITED",
        "{body}"
    );
    assert_eq!(
        body["errors"][0]["extensions"]["retryAfterSeconds"], 1,
        "{body}"
    );
    let now = read_event(&app, &id).await;
    assert_eq!(now["title"], "Before", "{now}");
}

/// At most `RALLY_MAX_RUNNING_MUTATIONS` mutations run at once (they outlive their requests, so an
/// overloaded server must not pile them up): past it a mutation is refused at once, over HTTP with
/// 429, `Retry-After` and `RATE_LIMITED`, over a websocket with `RATE_LIMITED`, and changes
/// nothing; once the running one ends, the next goes through.
async fn mutations_beyond_the_running_limit_are_refused_at_once(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.max_running_mutations = 1).await;
    let fay = app.signup("fay").await;
    // A subscription that runs alone takes no mutation's place (it did, for its whole life).
    let mut phone = app.ws(TRANSPORT_WS).await;
    phone
        .init(json!({ "authorization": format!("Bearer {}", fay.access) }))
        .await;
    phone
        .subscribe(
            "t",
            "subscription { trackingCommands { command } }",
            json!({}),
        )
        .await;
    app.listening(&format!("user:{}:tracking", fay.id), 1).await;
    let id = create_event(&app, &fay, "Held", "2030-01-01T20:00:00Z").await["id"].clone();
    let read = || read_event(&app, &id);
    let first = read().await["version"].as_i64().expect("version");
    let held = hold_event(&app, &id).await;
    let waiting = rename_over_http(&app, &fay, &id, "First", Duration::from_secs(20));
    let refused = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let response = app
            .http
            .post(app.url("/graphql"))
            .bearer_auth(&fay.access)
            .header("accept", "application/graphql-response+json")
            .json(&json!({ "query": RENAME, "variables": { "id": id, "t": "Refused" } }))
            .send()
            .await
            .expect("sent");
        let status = response.status();
        let retry_after = response.headers().get("retry-after").cloned();
        let body: Value = response.json().await.expect("json");
        // The same place counts a mutation sent over a websocket.
        let mut socket = app.ws(TRANSPORT_WS).await;
        socket
            .init(json!({ "authorization": format!("Bearer {}", fay.access) }))
            .await;
        socket
            .subscribe("m", RENAME, json!({ "id": id, "t": "Over the socket" }))
            .await;
        let over_the_socket = socket.next_of("m").await;
        assert_eq!(
            over_the_socket["payload"]["errors"][0]["extensions"]["code"], "RATE_LIMITED",
            "{over_the_socket}"
        );
        held.commit().await.expect("release the row");
        (status, retry_after, body)
    };
    let (waited, (status, retry_after, body)) = tokio::join!(waiting, refused);
    assert_eq!(status, reqwest::StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(
        retry_after.as_ref().and_then(|v| v.to_str().ok()),
        Some("1")
    );
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "RATE_LIMITED",
        "{body}"
    );
    assert_eq!(
        body["errors"][0]["extensions"]["retryAfterSeconds"], 1,
        "{body}"
    );
    assert_eq!(waited, Some(reqwest::StatusCode::OK));
    let now = read().await;
    assert_eq!(now["title"], "First", "{now}");
    assert_eq!(
        now["version"].as_i64(),
        Some(first + 1),
        "the refused rename changed nothing"
    );
    // The place is free again once the first has ended.
    let next = rename_over_http(&app, &fay, &id, "Next", Duration::from_secs(10)).await;
    assert_eq!(next, Some(reqwest::StatusCode::OK));
    assert_eq!(read().await["title"], "Next");
}

/// A mutation the client completes still runs to its end, so it keeps its place among the
/// connection's running operations until it has finished: completing and starting again cannot
/// pile work up. Three renames held up by a lock on the event's row fill a connection of three; a
/// fourth is refused and changes nothing; once the three finish, the connection takes operations
/// again.
async fn completed_mutations_hold_their_place_until_they_finish(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.ws_max_subscriptions = 3).await;
    let hal = app.signup("hal").await;
    let id = create_event(&app, &hal, "Held", "2030-01-01T20:00:00Z").await["id"].clone();
    let read = || read_event(&app, &id);
    let first = read().await["version"].as_i64().expect("version");
    let mut client = app.ws(TRANSPORT_WS).await;
    client
        .init(json!({ "authorization": format!("Bearer {}", hal.access) }))
        .await;
    let held = hold_event(&app, &id).await;
    for n in 0..3 {
        let op = format!("m{n}");
        client
            .subscribe(&op, RENAME, json!({ "id": id, "t": format!("Held {n}") }))
            .await;
        client.unsubscribe(&op).await;
        assert_eq!(client.next_of(&op).await["type"], "complete");
    }
    client
        .subscribe("m3", RENAME, json!({ "id": id, "t": "Refused" }))
        .await;
    let refused = client.next_of("m3").await;
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"], "RATE_LIMITED",
        "{refused}"
    );
    assert_eq!(client.next_of("m3").await["type"], "complete");
    held.commit().await.expect("release the row");

    // The three completed renames finish; the refused one never ran.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let renamed = loop {
        let now = read().await;
        if now["version"].as_i64() == Some(first + 3) {
            break now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the completed renames never finished: {now}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let title = renamed["title"].as_str().expect("title");
    assert!(["Held 0", "Held 1", "Held 2"].contains(&title), "{renamed}");
    // Their places free up as they end (moments after they commit).
    for attempt in 0.. {
        let op = format!("q{attempt}");
        client.subscribe(&op, "{ __typename }", json!({})).await;
        let frame = client.next_of(&op).await;
        assert_eq!(client.next_of(&op).await["type"], "complete");
        if frame["payload"]["errors"].is_null() {
            assert_eq!(frame["payload"]["data"]["__typename"], "Query", "{frame}");
            break;
        }
        assert_eq!(
            frame["payload"]["errors"][0]["extensions"]["code"], "RATE_LIMITED",
            "{frame}"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "the connection never took operations again"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(read().await["version"].as_i64(), Some(first + 3));
}

/// `trackingCommands` runs per subscriber, not shared: when the client completes it, its work stops
/// at once (not at the next command, which may never come), and its place on the connection is
/// free again: subscribing and completing it more times than the connection's limit goes on working.
async fn a_completed_subscription_of_its_own_stops_listening_at_once(backend: Backend) {
    const COMMANDS: &str = "subscription { trackingCommands { command } }";
    let app = TestApp::spawn_with(backend, |c| c.ws_max_subscriptions = 2).await;
    let ivy = app.signup("ivy").await;
    let topic = format!("user:{}:tracking", ivy.id);
    let mut client = app.ws(TRANSPORT_WS).await;
    client
        .init(json!({ "authorization": format!("Bearer {}", ivy.access) }))
        .await;
    for round in 0..4 {
        let op = format!("t{round}");
        client.subscribe(&op, COMMANDS, json!({})).await;
        completed_and_gone(&app, &mut client, &op, &topic).await;
    }
}

/// A subscription is known as one however it is written: a named operation sent without its name
/// (it is the document's only one, so it runs), or one with two root fields. Completed, each gives
/// its place on the connection back: a connection of two takes six in turn.
async fn every_form_of_subscription_gives_its_place_back_when_completed(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.ws_max_subscriptions = 2).await;
    let joy = app.signup("joy").await;
    let id = create_event(&app, &joy, "Named", "2030-01-01T20:00:00Z").await["id"].clone();
    let topic = format!("user:{}:tracking", joy.id);
    let mut client = app.ws(TRANSPORT_WS).await;
    client
        .init(json!({ "authorization": format!("Bearer {}", joy.access) }))
        .await;
    for round in 0..3 {
        let named = format!("n{round}");
        client
            .subscribe(
                &named,
                "subscription Watch($id: ID!) { eventUpdated(eventId: $id) { title } }",
                json!({ "id": id }),
            )
            .await;
        assert_eq!(
            client.next_data(&named).await["eventUpdated"]["title"],
            "Named",
            "round {round}"
        );
        client.unsubscribe(&named).await;
        assert_eq!(client.next_of(&named).await["type"], "complete");

        let twice = format!("t{round}");
        client
            .subscribe(
                &twice,
                "subscription { a: trackingCommands { command } b: trackingCommands { command } }",
                json!({}),
            )
            .await;
        completed_and_gone(&app, &mut client, &twice, &topic).await;
    }
}

/// Once operation `op` listens on `topic`, completes it and waits (5 s at most) until nothing
/// listens there any more: its work stopped with it.
async fn completed_and_gone(app: &TestApp, client: &mut WsClient, op: &str, topic: &str) {
    app.listening(topic, 1).await;
    client.unsubscribe(op).await;
    assert_eq!(client.next_of(op).await["type"], "complete");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while app.state.live.subscribers(topic) > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{op}: still listening after the client completed it"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The subscriptions about the caller's own things need sign-in: on a socket initialised without a
/// token, each is refused with UNAUTHENTICATED and sends no data.
async fn subscriptions_of_ones_own_refuse_an_anonymous_socket(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let eve = app.signup("eve").await;
    let event =
        create_event(&app, &eve, "Private matters", "2030-01-01T20:00:00Z").await["id"].clone();
    let mut client = app.ws(TRANSPORT_WS).await;
    client.init(json!({})).await;
    let operations = [
        (
            "subscription($e: ID!) { myCupSession(eventId: $e) { id } }",
            json!({ "e": event }),
        ),
        (
            "subscription($e: ID!) { cupSessionUpdated(eventId: $e) { id } }",
            json!({ "e": event }),
        ),
        ("subscription { trackingCommands { command } }", json!({})),
        (
            "subscription { proximityAlerts { distanceMeters } }",
            json!({}),
        ),
        (
            "subscription($a: ID!) { activityUpdated(activityId: $a) { id } }",
            json!({ "a": "0193a0b0-0000-7000-8000-000000000000" }),
        ),
        ("subscription { myMeetings { id } }", json!({})),
    ];
    for (n, (query, variables)) in operations.into_iter().enumerate() {
        let op = format!("s{n}");
        client.subscribe(&op, query, variables).await;
        let refused = client.next_of(&op).await;
        assert_eq!(
            refused["payload"]["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
            "{query}: {refused}"
        );
        assert!(
            refused["payload"]["data"].is_null(),
            "{query}: no data: {refused}"
        );
        assert_eq!(client.next_of(&op).await["type"], "complete", "{query}");
    }
}

/// A client offering both protocols gets the first of its list, announced in the handshake and
/// spoken on the socket: `next` frames for graphql-transport-ws, `data` for the legacy graphql-ws.
/// (The handshake used to announce graphql-transport-ws whenever it was offered, while the socket
/// spoke the legacy protocol if the client listed it first.)
async fn the_protocol_announced_is_the_one_spoken(backend: Backend) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let app = TestApp::spawn(backend).await;
    let url = format!("{}/graphql/ws", app.address.replace("http://", "ws://"));
    for (offered, spoken, data) in [
        ("graphql-ws, graphql-transport-ws", LEGACY_WS, "data"),
        ("graphql-transport-ws, graphql-ws", TRANSPORT_WS, "next"),
    ] {
        let mut request = url.as_str().into_client_request().expect("ws request");
        request
            .headers_mut()
            .insert("sec-websocket-protocol", offered.parse().expect("header"));
        let (mut socket, response) = tokio_tungstenite::connect_async(request)
            .await
            .expect("ws connects");
        assert_eq!(response.headers()["sec-websocket-protocol"], spoken);
        let subscribe = if spoken == LEGACY_WS {
            "start"
        } else {
            "subscribe"
        };
        for frame in [
            json!({ "type": "connection_init", "payload": {} }),
            json!({ "id": "1", "type": subscribe, "payload": { "query": "{ __typename }" } }),
        ] {
            socket
                .send(Message::Text(frame.to_string().into()))
                .await
                .expect("sent");
        }
        let mut types = Vec::new();
        while !types.contains(&"complete".to_owned()) {
            let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
                .await
                .expect("a frame in time")
                .expect("open")
                .expect("a frame");
            if let Message::Text(text) = message {
                let frame: Value = serde_json::from_str(&text).expect("json");
                let kind = frame["type"].as_str().expect("type").to_owned();
                if kind != "ka" {
                    types.push(kind);
                }
            }
        }
        assert_eq!(types, ["connection_ack", data, "complete"], "{offered}");
    }
}

/// A client that answers no ping for `RALLY_WS_SILENT_PERIODS` (2) keep-alive periods (a phone
/// that dropped off the network leaves such a connection, which accepts writes for minutes) is
/// closed with 1001. One that reads, and so answers the websocket pings, stays, even on the legacy
/// protocol, whose keep-alive (`ka`) has no answer.
async fn a_client_that_answers_no_ping_is_closed_and_one_that_does_stays(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.ws_keepalive_seconds = 2).await;
    let mut awake = app.ws(LEGACY_WS).await;
    awake.init(json!({})).await;
    let (silent, read) = tokio::join!(
        silent_client_close_code(&app, Duration::from_secs(10)),
        // The awake client reads all along (its pongs answer each ping).
        tokio::time::timeout(Duration::from_secs(10), awake.next_frame()),
    );
    assert_eq!(silent, Some(1001), "the silent client was closed as gone");
    assert!(
        read.is_err(),
        "the awake client is still connected: {read:?}"
    );
    awake
        .subscribe("q", "query { __typename }", json!({}))
        .await;
    assert_eq!(awake.next_data("q").await["__typename"], "Query");
}

/// Opens a graphql-transport-ws socket by hand, initialises it, then reads nothing (so answers no
/// ping) for `wait`; the close code in the frames the server sent meanwhile, if it closed.
async fn silent_client_close_code(app: &TestApp, wait: Duration) -> Option<u16> {
    let host = app.address.trim_start_matches("http://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&host)
        .await
        .expect("connects");
    let upgrade = format!(
        "GET /graphql/ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
    );
    tcp.write_all(upgrade.as_bytes())
        .await
        .expect("upgrade sent");
    // A client's frame: FIN and text, masked with a fixed key.
    let init = br#"{"type":"connection_init"}"#;
    let mask = [7u8, 1, 9, 3];
    let mut frame = vec![0x81, 0x80 | u8::try_from(init.len()).expect("short")];
    frame.extend_from_slice(&mask);
    frame.extend(init.iter().enumerate().map(|(i, byte)| byte ^ mask[i % 4]));
    tcp.write_all(&frame).await.expect("init sent");
    tokio::time::sleep(wait).await;
    let mut bytes = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), tcp.read_to_end(&mut bytes)).await;
    let head = bytes
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("the upgrade answered");
    assert!(bytes.starts_with(b"HTTP/1.1 101"), "upgraded");
    // The server's frames are not masked: opcode, length (7 bits, or 16 or 64 more), payload.
    let mut at = head + 4;
    while at + 2 <= bytes.len() {
        let opcode = bytes[at] & 0x0F;
        let (length, start) = match bytes[at + 1] & 0x7F {
            126 => (
                usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]])),
                at + 4,
            ),
            127 => panic!("no frame here is that long"),
            short => (usize::from(short), at + 2),
        };
        if opcode == 0x8 {
            return Some(u16::from_be_bytes([bytes[start], bytes[start + 1]]));
        }
        at = start + length;
    }
    None
}

/// The legacy protocol (subscriptions-transport-ws) as its own server speaks it: a `start` with the
/// id of a running operation stops that one and starts the new one (graphql-transport-ws closes
/// with 4409 instead), and a refused `connection_init` first gets a `connection_error` saying why,
/// which is what its clients hand to the application, then the close.
async fn the_legacy_protocol_restarts_an_operation_under_its_id_and_says_why_it_refuses(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann").await;
    let id = create_event(&app, &ann, "Legacy", "2030-01-01T20:00:00Z").await["id"].clone();
    let mut client = app.ws(LEGACY_WS).await;
    client.init(json!({})).await;
    client
        .subscribe("1", EVENT_UPDATED, json!({ "id": id }))
        .await;
    assert_eq!(
        client.next_data("1").await["eventUpdated"]["title"],
        "Legacy"
    );
    client
        .subscribe("1", "query { __typename }", json!({}))
        .await;
    assert_eq!(client.next_data("1").await["__typename"], "Query");
    let complete = client.next_frame().await.expect("open");
    assert_eq!(complete, json!({ "type": "complete", "id": "1" }));
    // The subscription that ran under the id is gone.
    app.gql_as(
        &ann,
        "mutation($id: ID!) { updateEvent(id: $id, input: { title: \"Renamed\" }) { id } }",
        json!({ "id": id }),
    )
    .await
    .data();
    client.assert_quiet(Duration::from_millis(300)).await;

    let mut refused = app.ws(LEGACY_WS).await;
    refused
        .send(json!({ "type": "connection_init", "payload": { "authorization": "Bearer not-a-token" } }))
        .await;
    let error = refused.next_frame().await.expect("connection_error first");
    assert_eq!(
        error,
        json!({ "type": "connection_error", "payload": { "message": "Forbidden: invalid access token" } })
    );
    assert_eq!(refused.closed().await.code, 4403);
}
