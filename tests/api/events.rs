//! Events: creating, finding, listing, changing, liking, staff, pictures and the template catalogue,
//! each with its authorization rule.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::fixtures::{EVENT_FIELDS, create_event};
use crate::common::{Backend, Session, TRANSPORT_WS, TestApp};
use crate::on_every_backend;

on_every_backend!(
    an_event_is_created_and_found_by_anyone,
    racing_staff_additions_stop_at_the_cap,
    create_event_names_each_invalid_field,
    only_the_organizer_or_an_admin_changes_an_event,
    status_follows_the_life_cycle,
    status_streams_that_fell_behind_catch_up_on_the_changes_they_missed,
    deleting_an_event_removes_it,
    likes_are_idempotent_and_counted_exactly,
    concurrent_likes_are_all_counted,
    concurrent_edits_and_likes_lose_nothing,
    changes_racing_a_delete_are_refused_cleanly,
    events_are_filtered_and_paginated,
    organizers_read_with_their_events_are_each_events_own,
    staff_is_kept_by_the_organizer,
    the_catalogue_is_kept_by_admins_and_gives_defaults,
    template_edits_racing_its_deletion_land_or_find_nothing,
    a_list_gives_each_event_its_own_template,
    an_event_picture_is_the_organizers_to_set,
);

async fn update(app: &TestApp, session: &Session, id: &str, input: Value) -> crate::common::Gql {
    app.gql_as(
        session,
        "mutation($id: ID!, $input: UpdateEventInput!) { updateEvent(id: $id, input: $input) { id title status endsAt } }",
        json!({ "id": id, "input": input }),
    )
    .await
}

async fn an_event_is_created_and_found_by_anyone(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let olga = app.signup("olga").await;
    let event = create_event(&app, &olga, " Quiz night ", "2030-05-01T19:00:00.750Z").await;
    assert_eq!(event["title"], "Quiz night");
    assert_eq!(event["status"], "SCHEDULED");
    assert_eq!(
        event["startsAt"], "2030-05-01T19:00:00+00:00",
        "kept to the second"
    );
    assert_eq!(event["organizer"]["handle"], "olga");
    assert_eq!(event["likeCount"], 0);
    let anonymous = app
        .gql(
            &format!("query($id: ID!) {{ event(id: $id) {{ {EVENT_FIELDS} }} }}"),
            json!({ "id": event["id"] }),
        )
        .await;
    assert_eq!(anonymous.data()["event"], event);
    for missing in ["not-a-uuid", "0193a0b0-0000-7000-8000-000000000000"] {
        let response = app
            .gql(
                "query($id: ID!) { event(id: $id) { id } }",
                json!({ "id": missing }),
            )
            .await;
        assert_eq!(response.data()["event"], Value::Null);
    }
    app.gql(
        "mutation { createEvent(input: { title: \"x\", startsAt: \"2030-01-01T00:00:00Z\" }) { id } }",
        json!({}),
    )
    .await
    .assert_error("UNAUTHENTICATED", None);
}

async fn create_event_names_each_invalid_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let pat = app.signup("pat").await;
    let cases = [
        (
            json!({ "title": "  ", "startsAt": "2030-01-01T10:00:00Z" }),
            "input.title",
        ),
        (
            json!({ "title": "x".repeat(201), "startsAt": "2030-01-01T10:00:00Z" }),
            "input.title",
        ),
        (
            json!({ "title": "ok", "startsAt": "2030-01-01T10:00:00Z", "endsAt": "2030-01-01T09:00:00Z" }),
            "input.endsAt",
        ),
        (
            json!({ "title": "ok", "startsAt": "2030-01-01T10:00:00Z", "venue": "v".repeat(201) }),
            "input.venue",
        ),
        (
            json!({ "title": "ok", "startsAt": "2030-01-01T10:00:00Z", "templateId": "0193a0b0-0000-7000-8000-000000000000" }),
            "input.templateId",
        ),
    ];
    for (input, field) in cases {
        app.gql_as(
            &pat,
            "mutation($i: CreateEventInput!) { createEvent(input: $i) { id } }",
            json!({ "i": input }),
        )
        .await
        .assert_error("BAD_USER_INPUT", Some(field));
    }
    let listed = app
        .gql("{ events { edges { node { id } } } }", json!({}))
        .await;
    assert_eq!(
        listed.data()["events"]["edges"],
        json!([]),
        "nothing was created"
    );
}

async fn only_the_organizer_or_an_admin_changes_an_event(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let quentin = app.signup("quentin").await;
    let stranger = app.signup("stranger").await;
    let admin = app.signup("root_admin").await;
    let event = create_event(&app, &quentin, "Darts", "2030-02-01T18:00:00Z").await;
    let id = event["id"].as_str().expect("id");
    update(&app, &stranger, id, json!({ "title": "Mine now" }))
        .await
        .assert_error("FORBIDDEN", None);
    // Bad input from a stranger is refused as a stranger's: what is wrong with it is for the
    // organizer.
    update(&app, &stranger, id, json!({ "title": "" }))
        .await
        .assert_error("FORBIDDEN", None);
    update(&app, &quentin, id, json!({ "title": "" }))
        .await
        .assert_error("BAD_USER_INPUT", Some("input.title"));
    app.gql(
        "mutation($id: ID!) { updateEvent(id: $id, input: { title: \"x\" }) { id } }",
        json!({ "id": id }),
    )
    .await
    .assert_error("UNAUTHENTICATED", None);
    update(
        &app,
        &quentin,
        "0193a0b0-0000-7000-8000-000000000000",
        json!({ "title": "x" }),
    )
    .await
    .assert_error("NOT_FOUND", None);
    let changed = update(
        &app,
        &quentin,
        id,
        json!({ "title": "Darts final", "endsAt": "2030-02-01T22:00:00Z" }),
    )
    .await;
    assert_eq!(changed.data()["updateEvent"]["title"], "Darts final");
    update(
        &app,
        &quentin,
        id,
        json!({ "endsAt": "2030-02-01T17:00:00Z" }),
    )
    .await
    .assert_error("BAD_USER_INPUT", Some("input.endsAt"));
    // Only the start moves, past the end: the start is named, the field the client sent.
    update(
        &app,
        &quentin,
        id,
        json!({ "startsAt": "2030-02-01T23:00:00Z" }),
    )
    .await
    .assert_error("BAD_USER_INPUT", Some("input.startsAt"));
    let by_admin = update(&app, &admin, id, json!({ "endsAt": null })).await;
    assert_eq!(by_admin.data()["updateEvent"]["endsAt"], Value::Null);
    app.gql_as(
        &stranger,
        "mutation($id: ID!) { deleteEvent(id: $id) }",
        json!({ "id": id }),
    )
    .await
    .assert_error("FORBIDDEN", None);
}

async fn status_follows_the_life_cycle(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rosa = app.signup("rosa").await;
    let id = create_event(&app, &rosa, "Karaoke", "2030-03-01T20:00:00Z").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    update(&app, &rosa, &id, json!({ "status": "FINISHED" }))
        .await
        .assert_error("BAD_USER_INPUT", Some("input.status"));
    for status in ["LIVE", "FINISHED"] {
        let moved = update(&app, &rosa, &id, json!({ "status": status })).await;
        assert_eq!(moved.data()["updateEvent"]["status"], status);
    }
    for status in ["LIVE", "SCHEDULED", "CANCELLED"] {
        update(&app, &rosa, &id, json!({ "status": status }))
            .await
            .assert_error("BAD_USER_INPUT", Some("input.status"));
    }
    let other = create_event(&app, &rosa, "Bingo", "2030-03-02T20:00:00Z").await;
    let cancelled = update(
        &app,
        &rosa,
        other["id"].as_str().expect("id"),
        json!({ "status": "CANCELLED" }),
    )
    .await;
    assert_eq!(cancelled.data()["updateEvent"]["status"], "CANCELLED");
}

/// A status stream that fell behind (more messages queued than a subscriber may fall behind by)
/// lost the oldest, the status changes among them. It is not left with stale statuses: it gets
/// each event whose status changed since it began, as it is now (one moved by its organizer, one
/// by the nightly finisher), in the order they changed, and nothing else: not an event that was
/// only renamed, not one whose status changed before the stream began, and none of the skipped
/// messages; nor, at a later catch-up, a status it sent already.
async fn status_streams_that_fell_behind_catch_up_on_the_changes_they_missed(backend: Backend) {
    use chrono::{Duration as Span, Utc};
    use futures_util::StreamExt;
    use rally::entity::event::{self, Status};
    use rally::events::model::{ChangeKind, EventChanged, status_changes};
    use sea_orm::sea_query::{Alias, Expr};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let app = TestApp::spawn(backend).await;
    let rosa = app.signup("rosa").await;
    let mut ids = Vec::new();
    for (title, starts) in [
        ("Moved", "2030-04-01T20:00:00Z"),
        ("Renamed", "2030-03-01T20:00:00Z"),
        ("Finished", "2030-03-01T20:00:00Z"),
        ("Long ago", "2030-04-01T20:00:00Z"),
        ("Just before", "2030-04-01T20:00:00Z"),
    ] {
        let created = create_event(&app, &rosa, title, starts).await;
        ids.push(created["id"].as_str().expect("id").to_owned());
    }
    let [moved, renamed, finished, long_ago, just_before] = ids.as_slice() else {
        unreachable!()
    };
    let key = |id: &str| id.parse::<uuid::Uuid>().expect("uuid");
    let row = |id: uuid::Uuid| {
        let db = app.state.db.clone();
        async move {
            event::Entity::find_by_id(id)
                .one(&db)
                .await
                .expect("read")
                .expect("the event")
        }
    };
    // Three events went LIVE before the stream began: two of them two hours ago, outside any
    // catch-up, one five minutes ago, inside the last hour but before the stream.
    for id in [finished, long_ago, just_before] {
        update(&app, &rosa, id, json!({ "status": "LIVE" }))
            .await
            .data();
    }
    for (ids, ago) in [
        (vec![key(finished), key(long_ago)], Span::hours(2)),
        (vec![key(just_before)], Span::minutes(5)),
    ] {
        event::Entity::update_many()
            .col_expr(
                Alias::new("status_changed_at"),
                Expr::value(Utc::now() - ago),
            )
            .filter(event::Column::Id.is_in(ids))
            .exec(&app.state.db)
            .await
            .expect("backdated");
    }
    let stale = EventChanged {
        event: row(key(moved)).await.into(),
        kind: ChangeKind::Updated,
        actor: None,
    };
    let mut stream = Box::pin(rally::events::service::follow_status(&app.state));

    // Unread: the organizer moves one event and renames another, the finisher ends a third, then
    // 150 copies of a message the stream has not had (more than the 128 a subscriber may fall
    // behind by) push the changes out.
    update(&app, &rosa, moved, json!({ "status": "LIVE" }))
        .await
        .data();
    update(&app, &rosa, renamed, json!({ "title": "Renamed again" }))
        .await
        .data();
    let mut txn = app.state.begin_write().await.expect("a write");
    let ended = rally::events::service::finish_started_before(
        &mut txn,
        "2030-03-05T00:00:00Z".parse().expect("instant"),
    )
    .await
    .expect("the finisher runs");
    txn.commit().await.expect("committed");
    assert_eq!(ended.len(), 1, "only the event that started ends");
    for _ in 0..150 {
        app.state.live.publish(&status_changes(), &stale);
    }

    let mut caught_up = Vec::new();
    for _ in 0..2 {
        let event = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("the catch-up comes")
            .expect("the stream goes on");
        caught_up.push((event.id, event.status, event.version));
    }
    let now = |id: uuid::Uuid| {
        let row = row(id);
        async move {
            let row = row.await;
            (row.id, row.status, row.version)
        }
    };
    assert_eq!(
        caught_up,
        [now(key(moved)).await, now(key(finished)).await],
        "each status change missed, as the event is now, in the order they changed"
    );
    assert_eq!(
        (caught_up[0].1, caught_up[1].1),
        (Status::Live, Status::Finished)
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), stream.next())
            .await
            .is_err(),
        "nothing else follows: no renamed event, no change from before the stream, no skipped message"
    );

    // A like makes a newer version of an event whose status the stream sent: a second catch-up
    // does not send that status again.
    app.gql_as(
        &rosa,
        "mutation($id: ID!) { likeEvent(id: $id) { likeCount } }",
        json!({ "id": moved }),
    )
    .await
    .data();
    for _ in 0..150 {
        app.state.live.publish(&status_changes(), &stale);
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(300), stream.next())
            .await
            .is_err(),
        "a status already sent is not sent again"
    );
}

async fn deleting_an_event_removes_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let sid = app.signup("sid").await;
    let fan = app.signup("fan").await;
    let id = create_event(&app, &sid, "Pool", "2030-04-01T20:00:00Z").await["id"].clone();
    app.gql_as(
        &fan,
        "mutation($id: ID!) { likeEvent(id: $id) { id } }",
        json!({ "id": id }),
    )
    .await
    .data();
    let deleted = app
        .gql_as(
            &sid,
            "mutation($id: ID!) { deleteEvent(id: $id) }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(deleted.data()["deleteEvent"], true);
    let gone = app
        .gql(
            "query($id: ID!) { event(id: $id) { id } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(gone.data()["event"], Value::Null);
    app.gql_as(
        &sid,
        "mutation($id: ID!) { deleteEvent(id: $id) }",
        json!({ "id": id }),
    )
    .await
    .assert_error("NOT_FOUND", None);
}

async fn likes_are_idempotent_and_counted_exactly(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tia = app.signup("tia").await;
    let ugo = app.signup("ugo").await;
    let id = create_event(&app, &tia, "Trivia", "2030-06-01T20:00:00Z").await["id"].clone();
    let like = "mutation($id: ID!) { likeEvent(id: $id) { likeCount likedByMe } }";
    let unlike = "mutation($id: ID!) { unlikeEvent(id: $id) { likeCount likedByMe } }";
    for _ in 0..2 {
        let liked = app.gql_as(&ugo, like, json!({ "id": id })).await;
        assert_eq!(
            liked.data()["likeEvent"],
            json!({ "likeCount": 1, "likedByMe": true })
        );
    }
    let seen_by_tia = app
        .gql_as(
            &tia,
            "query($id: ID!) { event(id: $id) { likeCount likedByMe } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        seen_by_tia.data()["event"],
        json!({ "likeCount": 1, "likedByMe": false })
    );
    let seen_by_ugo = app
        .gql_as(
            &ugo,
            "query($id: ID!) { event(id: $id) { likedByMe } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(seen_by_ugo.data()["event"]["likedByMe"], true);
    for _ in 0..2 {
        let unliked = app.gql_as(&ugo, unlike, json!({ "id": id })).await;
        assert_eq!(
            unliked.data()["unlikeEvent"],
            json!({ "likeCount": 0, "likedByMe": false })
        );
    }
    for anonymous in [like, unlike] {
        app.gql(anonymous, json!({ "id": id }))
            .await
            .assert_error("UNAUTHENTICATED", None);
    }
    app.gql_as(
        &ugo,
        like,
        json!({ "id": "0193a0b0-0000-7000-8000-000000000000" }),
    )
    .await
    .assert_error("NOT_FOUND", None);
}

async fn concurrent_likes_are_all_counted(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.auth_attempts_per_address = 1000).await;
    let host = app.signup("host").await;
    let id = create_event(&app, &host, "Crowd", "2030-07-01T20:00:00Z").await["id"].clone();
    let mut fans = Vec::new();
    for n in 0..20 {
        fans.push(app.signup(&format!("fan_{n}")).await);
    }
    let likes = fans.iter().flat_map(|fan| {
        let app = &app;
        let id = id.clone();
        (0..2).map(move |_| {
            let id = id.clone();
            async move {
                app.gql_as(
                    fan,
                    "mutation($id: ID!) { likeEvent(id: $id) { id } }",
                    json!({ "id": id }),
                )
                .await
            }
        })
    });
    for response in futures_util::future::join_all(likes).await {
        response.data();
    }
    let event = app
        .gql(
            "query($id: ID!) { event(id: $id) { likeCount } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(event.data()["event"]["likeCount"], 20);
}

/// Edits of different fields and likes, all at once, five times over: every one lands (the start set
/// by one edit is not written back by another), and the last state `eventUpdated` pushes is the
/// stored one (each change has a version of its own).
async fn concurrent_edits_and_likes_lose_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let olga = app.signup("olga").await;
    let mut fans = Vec::new();
    for n in 0..5 {
        fans.push(app.signup(&format!("fan{n}")).await);
    }
    let id = create_event(&app, &olga, "Race", "2030-05-01T19:00:00Z").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let fields = "title venue startsAt likeCount";
    let mut screen = app.ws(TRANSPORT_WS).await;
    screen.init(json!({})).await;
    screen
        .subscribe(
            "e",
            &format!("subscription($e: ID!) {{ eventUpdated(eventId: $e) {{ {fields} }} }}"),
            json!({ "e": id }),
        )
        .await;
    screen.next_data("e").await;

    for round in 1..=5 {
        let starts_at = format!("2031-06-0{round}T20:00:00");
        let start = update(
            &app,
            &olga,
            &id,
            json!({ "startsAt": format!("{starts_at}Z") }),
        );
        let titles =
            (0..15).map(|n| update(&app, &olga, &id, json!({ "title": format!("Race {n}") })));
        let venues =
            (0..15).map(|n| update(&app, &olga, &id, json!({ "venue": format!("Hall {n}") })));
        let (like, likes) = if round % 2 == 1 {
            ("likeEvent", 5)
        } else {
            ("unlikeEvent", 0)
        };
        let toggle = format!("mutation($id: ID!) {{ {like}(id: $id) {{ id }} }}");
        let toggles = fans
            .iter()
            .map(|fan| app.gql_as(fan, &toggle, json!({ "id": id })));
        let (start, titles, venues, toggles) = tokio::join!(
            start,
            futures_util::future::join_all(titles),
            futures_util::future::join_all(venues),
            futures_util::future::join_all(toggles),
        );
        start.data();
        for response in titles.into_iter().chain(venues).chain(toggles) {
            response.data();
        }

        let stored = app
            .gql(
                &format!("query($id: ID!) {{ event(id: $id) {{ {fields} }} }}"),
                json!({ "id": id }),
            )
            .await;
        let stored = stored.data()["event"].clone();
        assert!(
            stored["startsAt"]
                .as_str()
                .is_some_and(|at| at.starts_with(&starts_at)),
            "round {round}: the new start stays: {stored}"
        );
        assert_eq!(stored["likeCount"], likes, "round {round}");
        let frames = screen.frames_within(Duration::from_millis(1000)).await;
        let last = frames.last().expect("changes pushed");
        assert_eq!(
            last["payload"]["data"]["eventUpdated"], stored,
            "round {round}: the last state pushed is the stored one"
        );
    }
}

async fn events_are_filtered_and_paginated(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let vera = app.signup("vera").await;
    let walt = app.signup("walt").await;
    for (who, title, at) in [
        (&vera, "Salsa class", "2030-01-03T19:00:00Z"),
        (&vera, "Jazz jam", "2030-01-01T19:00:00Z"),
        (&walt, "Board games", "2030-01-02T19:00:00Z"),
        (&walt, "Jazz brunch", "2030-01-05T11:00:00Z"),
        (&vera, "100% pure fun", "2030-01-04T19:00:00Z"),
    ] {
        create_event(&app, who, title, at).await;
    }
    let titles = |response: &crate::common::Gql| -> Vec<String> {
        response.data()["events"]["edges"]
            .as_array()
            .expect("edges")
            .iter()
            .map(|edge| edge["node"]["title"].as_str().expect("title").to_owned())
            .collect()
    };
    let query = "query($f: EventFilter, $first: Int, $after: String) { events(filter: $f, first: $first, after: $after) { edges { node { title } } pageInfo { hasNextPage endCursor } } }";
    let all = app.gql(query, json!({ "f": null })).await;
    assert_eq!(
        titles(&all),
        [
            "Jazz jam",
            "Board games",
            "Salsa class",
            "100% pure fun",
            "Jazz brunch"
        ]
    );
    assert_eq!(
        titles(&app.gql(query, json!({ "f": { "search": "JAZZ" } })).await),
        ["Jazz jam", "Jazz brunch"]
    );
    assert_eq!(
        titles(&app.gql(query, json!({ "f": { "search": "%" } })).await),
        ["100% pure fun"]
    );
    assert_eq!(
        titles(
            &app.gql(query, json!({ "f": { "organizer": "WALT" } }))
                .await
        ),
        ["Board games", "Jazz brunch"]
    );
    assert!(
        titles(
            &app.gql(query, json!({ "f": { "organizer": "nobody_x" } }))
                .await
        )
        .is_empty()
    );
    let window = app
        .gql(
            query,
            json!({ "f": { "from": "2030-01-02T19:00:00Z", "to": "2030-01-04T19:00:00Z" } }),
        )
        .await;
    assert_eq!(titles(&window), ["Board games", "Salsa class"]);
    // Starts are whole seconds: half a second after one, it has started before `from`.
    let later = app
        .gql(
            query,
            json!({ "f": { "from": "2030-01-02T19:00:00.5Z", "to": "2030-01-04T19:00:00.5Z" } }),
        )
        .await;
    assert_eq!(titles(&later), ["Salsa class", "100% pure fun"]);
    let scheduled = app.gql(query, json!({ "f": { "status": "LIVE" } })).await;
    assert!(titles(&scheduled).is_empty());

    let mut seen = Vec::new();
    let mut after = Value::Null;
    loop {
        let page = app.gql(query, json!({ "first": 2, "after": after })).await;
        seen.extend(titles(&page));
        let info = &page.data()["events"]["pageInfo"];
        if info["hasNextPage"] == false {
            break;
        }
        after = info["endCursor"].clone();
    }
    assert_eq!(seen, titles(&all));
    app.gql(query, json!({ "first": 101 }))
        .await
        .assert_error("BAD_USER_INPUT", Some("first"));
}

/// `event(id)` reads the organizer in the same query as the event when the selection asks for it
/// (by name, alias or fragment): each event still gets its own organizer, whose private fields
/// reach only them and admins. Lists give each event its own organizer too, through edges or
/// nodes, filtered and paged.
async fn organizers_read_with_their_events_are_each_events_own(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let vera = app.signup("vera").await;
    let walt = app.signup("walt").await;
    let mut created = Vec::new();
    for (who, handle, title, at) in [
        (&vera, "vera", "Salsa class", "2030-01-03T19:00:00Z"),
        (&walt, "walt", "Jazz jam", "2030-01-01T19:00:00Z"),
        (&walt, "walt", "Board games", "2030-01-02T19:00:00Z"),
        (&vera, "vera", "Jazz brunch", "2030-01-05T11:00:00Z"),
    ] {
        let event = create_event(&app, who, title, at).await;
        created.push((event["id"].clone(), handle, title));
    }

    let sam = app.signup("sam").await;
    let admin = app.signup("root_admin").await;
    let by_alias = "query($id: ID!) { event(id: $id) { title host: organizer { handle email } } }";
    let by_fragment = "query($id: ID!) { event(id: $id) { title ...Host } } \
                       fragment Host on Event { host: organizer { handle email } }";
    for (id, handle, title) in &created {
        let owner = if *handle == "vera" { &vera } else { &walt };
        for document in [by_alias, by_fragment] {
            let callers = [
                (None, false),
                (Some(&sam), false),
                (Some(owner), true),
                (Some(&admin), true),
            ];
            for (caller, sees_email) in callers {
                let token = caller.map(|session| session.access.as_str());
                let response = app.gql_with(token, document, json!({ "id": id })).await;
                let event = &response.data()["event"];
                assert_eq!(event["title"], *title);
                assert_eq!(event["host"]["handle"], *handle);
                let email = sees_email.then(|| format!("{handle}@example.com"));
                assert_eq!(event["host"]["email"], json!(email), "{document}");
            }
        }
    }
    // Four lookups in one request: one batch of keys, each event given back its own organizer.
    let batch = app
        .gql(
            "query($a: ID!, $b: ID!, $c: ID!, $d: ID!) { a: event(id: $a) { title organizer { handle } } \
             b: event(id: $b) { title organizer { handle } } c: event(id: $c) { title organizer { handle } } \
             d: event(id: $d) { title organizer { handle } } }",
            json!({ "a": created[0].0, "b": created[1].0, "c": created[2].0, "d": created[3].0 }),
        )
        .await;
    for (alias, (_, handle, title)) in ["a", "b", "c", "d"].into_iter().zip(&created) {
        assert_eq!(batch.data()[alias]["title"], *title);
        assert_eq!(batch.data()[alias]["organizer"]["handle"], *handle);
    }

    let listed = |response: &crate::common::Gql, nodes: &str| -> Vec<(String, String)> {
        let items = response.data()["events"][nodes]
            .as_array()
            .expect(nodes)
            .clone();
        items
            .iter()
            .map(|item| {
                let node = if nodes == "edges" {
                    &item["node"]
                } else {
                    item
                };
                (
                    node["title"].as_str().expect("title").to_owned(),
                    node["organizer"]["handle"]
                        .as_str()
                        .expect("handle")
                        .to_owned(),
                )
            })
            .collect()
    };
    let pair = |title: &str, handle: &str| (title.to_owned(), handle.to_owned());
    let edges = "query($f: EventFilter, $first: Int, $after: String) { events(filter: $f, first: $first, after: $after) { edges { node { title organizer { handle } } } pageInfo { hasNextPage endCursor } } }";
    let nodes = "query($f: EventFilter) { events(filter: $f) { nodes { title ... on Event { organizer { handle } } } } }";
    let everything = vec![
        pair("Jazz jam", "walt"),
        pair("Board games", "walt"),
        pair("Salsa class", "vera"),
        pair("Jazz brunch", "vera"),
    ];
    assert_eq!(
        listed(&app.gql(edges, json!({})).await, "edges"),
        everything
    );
    assert_eq!(
        listed(&app.gql(nodes, json!({})).await, "nodes"),
        everything
    );
    assert_eq!(
        listed(
            &app.gql(nodes, json!({ "f": { "search": "jazz" } })).await,
            "nodes"
        ),
        [pair("Jazz jam", "walt"), pair("Jazz brunch", "vera")]
    );
    assert_eq!(
        listed(
            &app.gql(
                edges,
                json!({ "f": { "organizer": "vera", "search": "a" } })
            )
            .await,
            "edges"
        ),
        [pair("Salsa class", "vera"), pair("Jazz brunch", "vera")]
    );
    let mut seen = Vec::new();
    let mut after = Value::Null;
    for _ in 0..everything.len() {
        let page = app.gql(edges, json!({ "first": 3, "after": after })).await;
        seen.extend(listed(&page, "edges"));
        let info = &page.data()["events"]["pageInfo"];
        if info["hasNextPage"] == false {
            break;
        }
        after = info["endCursor"].clone();
    }
    assert_eq!(seen, everything);
}

async fn staff_is_kept_by_the_organizer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let xena = app.signup("xena").await;
    let barkeep = app.signup("barkeep").await;
    let stranger = app.signup("stranger").await;
    let id = create_event(&app, &xena, "Cocktails", "2030-08-01T20:00:00Z").await["id"].clone();
    let add = "mutation($id: ID!, $h: String!, $r: StaffRole!) { addEventStaff(eventId: $id, handle: $h, role: $r) { staff { user { handle } role } } }";
    let added = app
        .gql_as(
            &xena,
            add,
            json!({ "id": id, "h": "Barkeep", "r": "BARTENDER" }),
        )
        .await;
    assert_eq!(
        added.data()["addEventStaff"]["staff"],
        json!([{ "user": { "handle": "barkeep" }, "role": "BARTENDER" }])
    );
    let rerole = app
        .gql_as(
            &xena,
            add,
            json!({ "id": id, "h": "barkeep", "r": "GAME_MASTER" }),
        )
        .await;
    assert_eq!(
        rerole.data()["addEventStaff"]["staff"][0]["role"],
        "GAME_MASTER"
    );
    app.gql_as(
        &stranger,
        add,
        json!({ "id": id, "h": "stranger", "r": "BARTENDER" }),
    )
    .await
    .assert_error("FORBIDDEN", None);
    app.gql_as(
        &xena,
        add,
        json!({ "id": id, "h": "nobody_here", "r": "BARTENDER" }),
    )
    .await
    .assert_error("NOT_FOUND", None);
    app.gql_as(
        &stranger,
        add,
        json!({ "id": id, "h": "not a handle!", "r": "BARTENDER" }),
    )
    .await
    .assert_error("FORBIDDEN", None);
    let remove = "mutation($id: ID!, $h: String!) { removeEventStaff(eventId: $id, handle: $h) { staff { user { handle } } } }";
    app.gql_as(&stranger, remove, json!({ "id": id, "h": "barkeep" }))
        .await
        .assert_error("FORBIDDEN", None);
    app.gql_as(&stranger, remove, json!({ "id": id, "h": "not a handle!" }))
        .await
        .assert_error("FORBIDDEN", None);
    // Staff do not keep the staff: a game master can neither add (not even themselves in another
    // role) nor remove anyone.
    app.gql_as(
        &barkeep,
        add,
        json!({ "id": id, "h": "stranger", "r": "BARTENDER" }),
    )
    .await
    .assert_error("FORBIDDEN", None);
    app.gql_as(
        &barkeep,
        add,
        json!({ "id": id, "h": "barkeep", "r": "BARTENDER" }),
    )
    .await
    .assert_error("FORBIDDEN", None);
    app.gql_as(&barkeep, remove, json!({ "id": id, "h": "barkeep" }))
        .await
        .assert_error("FORBIDDEN", None);
    let removed = app
        .gql_as(&xena, remove, json!({ "id": id, "h": "barkeep" }))
        .await;
    assert_eq!(removed.data()["removeEventStaff"]["staff"], json!([]));
}

async fn the_catalogue_is_kept_by_admins_and_gives_defaults(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.signup("root_admin").await;
    let user = app.signup("yuri").await;
    let create = "mutation($i: EventTemplateInput!) { createEventTemplate(input: $i) { id name description defaultDurationMinutes capacity } }";
    let input = json!({ "name": "Beer pong", "description": "Cups and balls", "defaultDurationMinutes": 90, "capacity": 16 });
    app.gql_as(&user, create, json!({ "i": input }))
        .await
        .assert_error("FORBIDDEN", None);
    app.gql(create, json!({ "i": input }))
        .await
        .assert_error("UNAUTHENTICATED", None);
    app.gql_as(
        &admin,
        create,
        json!({ "i": { "name": "x", "defaultDurationMinutes": 0 } }),
    )
    .await
    .assert_error("BAD_USER_INPUT", Some("input.defaultDurationMinutes"));
    let template = app
        .gql_as(&admin, create, json!({ "i": input }))
        .await
        .data()["createEventTemplate"]
        .clone();
    let template_id = template["id"].clone();
    let listed = app
        .gql("{ eventTemplates { name capacity } }", json!({}))
        .await;
    assert_eq!(
        listed.data()["eventTemplates"],
        json!([{ "name": "Beer pong", "capacity": 16 }])
    );

    let event = app
        .gql_as(
            &user,
            "mutation($t: ID!) { createEvent(input: { title: \"Pong night\", startsAt: \"2030-09-01T20:00:00Z\", templateId: $t }) { description endsAt template { name } } }",
            json!({ "t": template_id }),
        )
        .await;
    assert_eq!(
        event.data()["createEvent"],
        json!({ "description": "Cups and balls", "endsAt": "2030-09-01T21:30:00+00:00", "template": { "name": "Beer pong" } })
    );

    let update = "mutation($id: ID!, $i: EventTemplateInput!) { updateEventTemplate(id: $id, input: $i) { name } }";
    app.gql_as(&user, update, json!({ "id": template_id, "i": input }))
        .await
        .assert_error("FORBIDDEN", None);
    let renamed = app
        .gql_as(
            &admin,
            update,
            json!({ "id": template_id, "i": { "name": "Pong", "defaultDurationMinutes": 60 } }),
        )
        .await;
    assert_eq!(renamed.data()["updateEventTemplate"]["name"], "Pong");
    let delete = "mutation($id: ID!) { deleteEventTemplate(id: $id) }";
    app.gql_as(&user, delete, json!({ "id": template_id }))
        .await
        .assert_error("FORBIDDEN", None);
    assert_eq!(
        app.gql_as(&admin, delete, json!({ "id": template_id }))
            .await
            .data()["deleteEventTemplate"],
        true
    );
    app.gql_as(&admin, delete, json!({ "id": template_id }))
        .await
        .assert_error("NOT_FOUND", None);
    let kept = app
        .gql(
            "{ events { edges { node { description template { name } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        kept.data()["events"]["edges"][0]["node"],
        json!({ "description": "Cups and balls", "template": null })
    );
}

/// The templates of a page of events are read together (one batch of keys): each event gets its
/// own, and an event without one gets null.
async fn a_list_gives_each_event_its_own_template(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.signup("root_admin").await;
    let create = "mutation($n: String!) { createEventTemplate(input: { name: $n, defaultDurationMinutes: 60 }) { id } }";
    let mut templates = Vec::new();
    for name in ["Quiz", "Karaoke"] {
        let made = app.gql_as(&admin, create, json!({ "n": name })).await;
        templates.push(made.data()["createEventTemplate"]["id"].clone());
    }
    let planned = [
        ("Quiz one", Some(0)),
        ("Karaoke one", Some(1)),
        ("Quiz two", Some(0)),
        ("Plain", None),
    ];
    for (title, template) in planned {
        app.gql_as(
            &admin,
            "mutation($t: String!, $tpl: ID) { createEvent(input: { title: $t, startsAt: \"2030-01-01T20:00:00Z\", templateId: $tpl }) { id } }",
            json!({ "t": title, "tpl": template.map(|i: usize| templates[i].clone()) }),
        )
        .await
        .data();
    }
    let listed = app
        .gql(
            "{ events(first: 10) { edges { node { title template { name } } } } }",
            json!({}),
        )
        .await;
    let mut seen: Vec<(String, Value)> = listed.data()["events"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|edge| {
            let node = &edge["node"];
            (
                node["title"].as_str().expect("title").to_owned(),
                node["template"]["name"].clone(),
            )
        })
        .collect();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        seen,
        [
            ("Karaoke one".to_owned(), json!("Karaoke")),
            ("Plain".to_owned(), Value::Null),
            ("Quiz one".to_owned(), json!("Quiz")),
            ("Quiz two".to_owned(), json!("Quiz")),
        ]
    );
}

/// Edits racing the deletion of their template either land before it or find nothing: NOT_FOUND,
/// never INTERNAL.
async fn template_edits_racing_its_deletion_land_or_find_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.signup("root_admin").await;
    let create = "mutation { createEventTemplate(input: { name: \"Quiz\", defaultDurationMinutes: 60 }) { id } }";
    let update = "mutation($id: ID!) { updateEventTemplate(id: $id, input: { name: \"Quiz night\", defaultDurationMinutes: 90 }) { name } }";
    let delete = "mutation($id: ID!) { deleteEventTemplate(id: $id) }";
    let (mut landed, mut found_nothing) = (0, 0);
    for _ in 0..20 {
        let id =
            app.gql_as(&admin, create, json!({})).await.data()["createEventTemplate"]["id"].clone();
        let updates = futures_util::future::join_all(
            (0..4).map(|_| app.gql_as(&admin, update, json!({ "id": id }))),
        );
        let (updates, deleted) =
            tokio::join!(updates, app.gql_as(&admin, delete, json!({ "id": id })));
        assert_eq!(deleted.data()["deleteEventTemplate"], true);
        for answer in updates {
            match answer.body["errors"][0]["extensions"]["code"].as_str() {
                None => landed += 1,
                Some("NOT_FOUND") => found_nothing += 1,
                Some(_) => panic!("an edit racing a deletion: {}", answer.body),
            }
        }
    }
    assert!(
        landed > 0 && found_nothing > 0,
        "the edits raced: {landed} landed, {found_nothing} found nothing"
    );
}

async fn an_event_picture_is_the_organizers_to_set(backend: Backend) {
    use reqwest::multipart::{Form, Part};
    let app = TestApp::spawn(backend).await;
    let zoe = app.signup("zoe").await;
    let stranger = app.signup("stranger").await;
    let id = create_event(&app, &zoe, "Gallery", "2030-10-01T20:00:00Z").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let mut png = std::io::Cursor::new(Vec::new());
    image::DynamicImage::new_rgb8(40, 30)
        .write_to(&mut png, image::ImageFormat::Png)
        .expect("png");
    let png = png.into_inner();
    let send = |who: &Session| {
        let form = Form::new()
            .text("operations", json!({ "query": "mutation($id: ID!, $f: Upload!) { uploadEventImage(id: $id, file: $f) { imageUrl } }", "variables": { "id": id, "f": null } }).to_string())
            .text("map", r#"{"0":["variables.f"]}"#)
            .part("0", Part::bytes(png.clone()).file_name("e.png"));
        app.http
            .post(app.url("/graphql"))
            .bearer_auth(&who.access)
            .multipart(form)
            .send()
    };
    let refused: Value = send(&stranger)
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{refused}"
    );
    let done: Value = send(&zoe).await.expect("sent").json().await.expect("json");
    let url = done["data"]["uploadEventImage"]["imageUrl"]
        .as_str()
        .expect("imageUrl");
    let served = app.http.get(app.url(url)).send().await.expect("sent");
    assert_eq!(served.status(), 200);
    assert_eq!(served.headers()["content-type"], "image/jpeg");
}

/// Changes racing the event's deletion: twelve fans like and unlike the event over and over, and
/// its organizer adds and removes a staff member, while the organizer deletes it; every change
/// lands before the deletion (and goes with the event) or is refused as NOT_FOUND or CONFLICT (the
/// event vanished under it); none fails inside. Five rounds.
async fn changes_racing_a_delete_are_refused_cleanly(backend: Backend) {
    const LIKE: &str = "mutation($id: ID!) { likeEvent(id: $id) { likeCount } }";
    const UNLIKE: &str = "mutation($id: ID!) { unlikeEvent(id: $id) { likeCount } }";
    const DELETE: &str = "mutation($id: ID!) { deleteEvent(id: $id) }";
    const ADD: &str = "mutation($id: ID!) { addEventStaff(eventId: $id, handle: \"fan0\", role: BARTENDER) { id } }";
    const REMOVE: &str =
        "mutation($id: ID!) { removeEventStaff(eventId: $id, handle: \"fan0\") { id } }";
    let app = TestApp::spawn(backend).await;
    let org = app.signup("org").await;
    let mut fans = Vec::new();
    for n in 0..12 {
        fans.push(app.signup(&format!("fan{n}")).await);
    }
    for round in 0..5 {
        let id = create_event(
            &app,
            &org,
            &format!("Doomed {round}"),
            "2030-01-01T20:00:00Z",
        )
        .await["id"]
            .clone();
        let changer = |who: &'_ Session, changes: [&'static str; 2]| {
            let (app, id) = (&app, &id);
            let who = who.clone();
            async move {
                // Until the event is gone (a bound in case the deletion fails).
                for n in 0..500 {
                    let answer = app.gql_as(&who, changes[n % 2], json!({ "id": id })).await;
                    if !answer.body["errors"].is_null() {
                        return Some(answer);
                    }
                }
                None
            }
        };
        let changes = futures_util::future::join_all(
            fans.iter()
                .map(|fan| changer(fan, [LIKE, UNLIKE]))
                .chain([changer(&org, [ADD, REMOVE])]),
        );
        let delete = async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            app.gql_as(&org, DELETE, json!({ "id": id })).await
        };
        let (refusals, deleted) = futures_util::join!(changes, delete);
        assert_eq!(deleted.data()["deleteEvent"], true, "round {round}");
        for refused in &refusals {
            let refused = refused
                .as_ref()
                .unwrap_or_else(|| panic!("round {round}: the event outlived 500 changes"));
            assert!(
                ["NOT_FOUND", "CONFLICT"].contains(&refused.code()),
                "round {round}: {}",
                refused.body
            );
        }
        let gone = app
            .gql(
                "query($id: ID!) { event(id: $id) { id } }",
                json!({ "id": id }),
            )
            .await;
        assert_eq!(gone.body["data"]["event"], Value::Null, "{}", gone.body);
    }
}

/// An event has at most `RALLY_MAX_STAFF_PER_EVENT` staff members: eight additions at once against
/// a cap of three make three (the rest CONFLICT on `handle`); changing a member's role still works
/// at the cap.
async fn racing_staff_additions_stop_at_the_cap(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.max_staff_per_event = 3;
        c.auth_attempts_per_address = 100;
    })
    .await;
    let xena = app.signup("xena").await;
    let id = create_event(&app, &xena, "Cocktails", "2030-08-01T20:00:00Z").await["id"].clone();
    let handles: Vec<String> = (0..8).map(|n| format!("keep{n}")).collect();
    for handle in &handles {
        app.signup(handle).await;
    }
    let add = "mutation($id: ID!, $h: String!, $r: StaffRole!) { addEventStaff(eventId: $id, handle: $h, role: $r) { staff { user { handle } role } } }";
    let answers = futures_util::future::join_all(handles.iter().map(|handle| {
        app.gql_as(
            &xena,
            add,
            json!({ "id": id, "h": handle, "r": "BARTENDER" }),
        )
    }))
    .await;
    let mut added = Vec::new();
    for (handle, answer) in handles.iter().zip(&answers) {
        if answer.body.get("errors").is_some() {
            answer.assert_error("CONFLICT", Some("handle"));
        } else {
            added.push(handle.as_str());
        }
    }
    assert_eq!(added.len(), 3, "{added:?}");
    let staff = app
        .gql_as(
            &xena,
            "query($id: ID!) { event(id: $id) { staff { user { handle } } } }",
            json!({ "id": id }),
        )
        .await;
    let mut listed: Vec<&str> = staff.data()["event"]["staff"]
        .as_array()
        .expect("staff")
        .iter()
        .map(|member| member["user"]["handle"].as_str().expect("handle"))
        .collect();
    listed.sort_unstable();
    added.sort_unstable();
    assert_eq!(listed, added);
    let rerole = app
        .gql_as(
            &xena,
            add,
            json!({ "id": id, "h": added[0], "r": "GAME_MASTER" }),
        )
        .await;
    assert_eq!(
        rerole.data()["addEventStaff"]["staff"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
}
