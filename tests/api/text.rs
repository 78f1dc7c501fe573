//! The text rule, end to end: free text refuses control characters (NUL, which PostgreSQL cannot
//! store, is a clean BAD_USER_INPUT there, not INTERNAL); names and titles also refuse
//! direction-changing and invisible characters and stacks of combining marks. Refused input
//! changes nothing.

use serde_json::json;

use crate::common::fixtures::create_event;
use crate::common::{Backend, TestApp};
use crate::on_every_backend;

on_every_backend!(
    a_bio_with_a_nul_is_refused_on_every_database,
    names_and_titles_that_disguise_themselves_are_refused,
);

const PROFILE: &str =
    "mutation($i: UpdateProfileInput!) { updateProfile(input: $i) { displayName bio } }";

async fn a_bio_with_a_nul_is_refused_on_every_database(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann").await;
    app.gql_as(&ann, PROFILE, json!({ "i": { "bio": "before" } }))
        .await
        .data();
    app.gql_as(&ann, PROFILE, json!({ "i": { "bio": "bad\u{0}byte" } }))
        .await
        .assert_error("BAD_USER_INPUT", Some("input.bio"));
    let me = app.gql_as(&ann, "{ me { bio } }", json!({})).await;
    assert_eq!(me.data()["me"]["bio"], "before", "nothing changed");
    // Free text may hold newlines and quote any printable character.
    let bio = "line one\nline two, \u{202E} quoted";
    let saved = app
        .gql_as(&ann, PROFILE, json!({ "i": { "bio": bio } }))
        .await;
    assert_eq!(saved.data()["updateProfile"]["bio"], bio);
}

async fn names_and_titles_that_disguise_themselves_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann").await;
    for name in [
        "evil\u{202E}gpj.exe",
        "ad\u{200B}min",
        "\u{2066}isolated",
        "z\u{301}\u{302}\u{303}\u{304}\u{305}",
        "two\nlines",
    ] {
        app.gql_as(&ann, PROFILE, json!({ "i": { "displayName": name } }))
            .await
            .assert_error("BAD_USER_INPUT", Some("input.displayName"));
        app.gql_as(
            &ann,
            "mutation($t: String!) { createEvent(input: { title: $t, startsAt: \"2030-01-01T20:00:00Z\" }) { id } }",
            json!({ "t": name }),
        )
        .await
        .assert_error("BAD_USER_INPUT", Some("input.title"));
    }
    let me = app.gql_as(&ann, "{ me { displayName } }", json!({})).await;
    assert_eq!(me.data()["me"]["displayName"], "ann", "nothing changed");
    // Real names with accents and a couple of combining marks are fine.
    let accented = "Zoë Ñúñez e\u{301}\u{302}";
    let saved = app
        .gql_as(&ann, PROFILE, json!({ "i": { "displayName": accented } }))
        .await;
    assert_eq!(saved.data()["updateProfile"]["displayName"], accented);
    assert_eq!(
        create_event(&app, &ann, "Zoë's night", "2030-01-01T20:00:00Z").await["title"],
        "Zoë's night"
    );
}
