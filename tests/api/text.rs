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
    a_nul_anywhere_is_a_clean_refusal_never_internal,
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

/// NUL (which PostgreSQL refuses in any text) in the other strings that reach the database, with
/// or without sign-in: a login fails like an unknown one, an email or a search is BAD_USER_INPUT
/// naming its field, a cursor is not a cursor; never INTERNAL. An event cursor past year 9999 is
/// not a cursor either.
async fn a_nul_anywhere_is_a_clean_refusal_never_internal(backend: Backend) {
    use base64::Engine;
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann").await;
    let wrong = app.login("ann", "not her password").await;
    wrong.assert_error("UNAUTHENTICATED", None);
    for login in ["an\u{0}n", "ann@example.com\u{0}"] {
        let refused = app.login(login, "password-ann").await;
        refused.assert_error("UNAUTHENTICATED", None);
        assert_eq!(refused.message(), wrong.message(), "like an unknown login");
    }
    app.gql(
        "mutation($i: SignupInput!) { signup(input: $i) { accessToken } }",
        json!({ "i": { "handle": "bea", "email": "b\u{0}@example.com", "password": "long enough" } }),
    )
    .await
    .assert_error("BAD_USER_INPUT", Some("input.email"));
    app.gql_as(
        &ann,
        "query($s: String) { users(search: $s) { edges { cursor } } }",
        json!({ "s": "a\u{0}" }),
    )
    .await
    .assert_error("BAD_USER_INPUT", Some("search"));
    app.gql(
        "query($s: String) { events(filter: { search: $s }) { edges { cursor } } }",
        json!({ "s": "\u{0}" }),
    )
    .await
    .assert_error("BAD_USER_INPUT", Some("filter.search"));
    let cursor =
        |key: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("v1:{key}"));
    app.gql_as(
        &ann,
        "query($a: String) { users(after: $a) { edges { cursor } } }",
        json!({ "a": cursor("a\u{0}") }),
    )
    .await
    .assert_error("BAD_USER_INPUT", Some("after"));
    app.gql(
        "query($a: String) { events(after: $a) { edges { cursor } } }",
        json!({ "a": cursor("253402300800|0193a0b0-0000-7000-8000-000000000000") }),
    )
    .await
    .assert_error("BAD_USER_INPUT", Some("after"));
    // Still serving, and the account untouched.
    app.login("ann", "password-ann").await.data();
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
        "\u{3164}",
        "\u{2800}\u{2800}\u{2800}",
        "soft\u{AD}hyphen",
        "line\u{2028}separator",
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
    // Real names with accents and a couple of combining marks are fine, and so is a regional
    // flag (a black flag and tag characters).
    let accented =
        "Zoë Ñúñez e\u{301}\u{302} \u{1F3F4}\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}";
    let saved = app
        .gql_as(&ann, PROFILE, json!({ "i": { "displayName": accented } }))
        .await;
    assert_eq!(saved.data()["updateProfile"]["displayName"], accented);
    assert_eq!(
        create_event(&app, &ann, "Zoë's night", "2030-01-01T20:00:00Z").await["title"],
        "Zoë's night"
    );
}
