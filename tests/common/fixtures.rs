//! Fixture builders: the few set-ups many tests share (an event, a bar with its staff, a cup),
//! made through the API like any client would.

use serde_json::{Value, json};

use super::{Gql, Session, TestApp};

/// The event fields the fixtures and the events tests read.
pub const EVENT_FIELDS: &str = "id title description venue startsAt endsAt status likeCount likedByMe organizer { handle } template { name } staff { user { handle } role }";

/// Creates an event starting at `starts_at` as `session`; returns its JSON.
pub async fn create_event(app: &TestApp, session: &Session, title: &str, starts_at: &str) -> Value {
    let response = app
        .gql_as(
            session,
            &format!("mutation($input: CreateEventInput!) {{ createEvent(input: $input) {{ {EVENT_FIELDS} }} }}"),
            json!({ "input": { "title": title, "startsAt": starts_at, "venue": "The Anchor" } }),
        )
        .await;
    response.data()["createEvent"].clone()
}

/// `who` deletes `event`.
pub async fn delete_event(app: &TestApp, who: &Session, event: &str) {
    app.gql_as(
        who,
        "mutation($id: ID!) { deleteEvent(id: $id) }",
        json!({ "id": event }),
    )
    .await
    .data();
}

/// An organizer, a bartender and a LIVE event.
pub struct Bar {
    pub organizer: Session,
    pub bartender: Session,
    pub event: String,
}

/// Signs up `boss` (organizer) and `tender` (bartender) and sets a LIVE event up for them.
pub async fn open_bar(app: &TestApp) -> Bar {
    let organizer = app.signup("boss").await;
    let bartender = app.signup("tender").await;
    let event = live_event_tended(app, &organizer, "Bar night").await;
    Bar {
        organizer,
        bartender,
        event,
    }
}

/// A new LIVE event of `organizer` called `title`, with `tender` (signed up by [`open_bar`]) as its
/// bartender; its id.
pub async fn live_event_tended(app: &TestApp, organizer: &Session, title: &str) -> String {
    let event = create_event(app, organizer, title, "2030-01-01T20:00:00Z").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    for step in [
        "mutation($id: ID!) { addEventStaff(eventId: $id, handle: \"tender\", role: BARTENDER) { id } }",
        "mutation($id: ID!) { updateEvent(id: $id, input: { status: LIVE }) { id } }",
    ] {
        app.gql_as(organizer, step, json!({ "id": event }))
            .await
            .data();
    }
    event
}

/// Every field of a cup session the tests read.
pub const SESSION_FIELDS: &str = "id status cheers orders score alcoholGrams estimatedBac bacWarning billCents calories user { handle } drinks { name volumeMl abv priceCents calories }";

/// `guest` asks for a cup at `event`: their new single-use code.
pub async fn cup_code(app: &TestApp, guest: &Session, event: &str) -> String {
    app.gql_as(
        guest,
        "mutation($e: ID!) { requestCupCode(eventId: $e) { code expiresAt } }",
        json!({ "e": event }),
    )
    .await
    .data()["requestCupCode"]["code"]
        .as_str()
        .expect("a code")
        .to_owned()
}

/// `staff` opens (or finds) `guest`'s cup at `event` with a code the guest just asked for; returns
/// the session's JSON.
pub async fn open_cup(app: &TestApp, staff: &Session, event: &str, guest: &Session) -> Value {
    let code = cup_code(app, guest, event).await;
    open_cup_with(app, staff, event, &guest.handle, &code)
        .await
        .data()["openCupSession"]
        .clone()
}

/// `staff` presents `code` for `handle`'s cup at `event`.
pub async fn open_cup_with(
    app: &TestApp,
    staff: &Session,
    event: &str,
    handle: &str,
    code: &str,
) -> Gql {
    app.gql_as(
        staff,
        &format!("mutation($e: ID!, $h: String!, $c: String!) {{ openCupSession(eventId: $e, handle: $h, code: $c) {{ {SESSION_FIELDS} }} }}"),
        json!({ "e": event, "h": handle, "c": code }),
    )
    .await
}

/// Records `count` cheers on `session` as `staff`.
pub async fn cheers(app: &TestApp, staff: &Session, session: &str, count: i32) -> Gql {
    app.gql_as(
        staff,
        "mutation($s: ID!, $n: Int) { recordCheers(sessionId: $s, count: $n) { cheers score } }",
        json!({ "s": session, "n": count }),
    )
    .await
}
