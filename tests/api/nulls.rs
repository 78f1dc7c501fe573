//! A field that fails is `null` with its error, or makes its nearest nullable parent `null`, as the
//! GraphQL spec says; never a missing key (which Apollo Client's cache takes for a broken response).
//! Every response of the HTTP helpers is also checked for missing keys (`assert_no_omitted_field`).

use serde_json::{Value, json};

use crate::common::fixtures::{cheers, open_bar, open_cup};
use crate::common::{Backend, TestApp};

crate::on_every_backend!(
    a_private_cup_field_is_null_with_forbidden_at_its_path,
    a_failing_non_null_field_nulls_its_nearest_nullable_parent,
    a_lone_field_that_fails_leaves_its_parent_standing,
);

const BOARD: &str = "query($e: ID!) { event(id: $e) { leaderboard { entries { score session { id billCents orders alcoholGrams estimatedBac calories drinks { name } } } } } }";

/// The finding: an anonymous leaderboard came back with `session: { id }`, `billCents` left out.
async fn a_private_cup_field_is_null_with_forbidden_at_its_path(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let bar = open_bar(&app).await;
    let guest = app.signup("guest").await;
    let cup = open_cup(&app, &bar.bartender, &bar.event, &guest).await;
    let id = cup["id"].as_str().expect("id");
    cheers(&app, &bar.bartender, id, 3).await.data();

    let stranger = app.signup("stranger").await;
    for response in [
        app.gql(BOARD, json!({ "e": bar.event })).await,
        app.gql_as(&stranger, BOARD, json!({ "e": bar.event }))
            .await,
    ] {
        let session = &response.body["data"]["event"]["leaderboard"]["entries"][0]["session"];
        assert_eq!(session["id"], cup["id"], "{}", response.body);
        for field in [
            "billCents",
            "orders",
            "alcoholGrams",
            "estimatedBac",
            "calories",
            "drinks",
        ] {
            assert_eq!(
                session.get(field),
                Some(&Value::Null),
                "{field} is null, not missing: {}",
                response.body
            );
            let error = response.body["errors"]
                .as_array()
                .expect("errors")
                .iter()
                .find(|error| {
                    error["path"].as_array().and_then(|p| p.last()) == Some(&json!(field))
                })
                .unwrap_or_else(|| panic!("an error at {field}: {}", response.body));
            assert_eq!(error["extensions"]["code"], "FORBIDDEN");
            assert_eq!(
                error["path"],
                json!(["event", "leaderboard", "entries", 0, "session", field])
            );
        }
        assert_eq!(
            response.body["data"]["event"]["leaderboard"]["entries"][0]["score"], 3,
            "the public part is still there"
        );
    }

    let crew = app
        .gql_as(&bar.bartender, BOARD, json!({ "e": bar.event }))
        .await;
    let session = &crew.data()["event"]["leaderboard"]["entries"][0]["session"];
    assert_eq!(session["billCents"], 0);
    assert_eq!(session["drinks"], json!([]));
}

async fn a_failing_non_null_field_nulls_its_nearest_nullable_parent(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let bar = open_bar(&app).await;
    // `Event.leaderboard` is non-null; its refusal makes the nullable `event` null, and the sibling
    // root field stays.
    let nested = app
        .gql(
            "query($e: ID!) { eventTemplates { name } event(id: $e) { title leaderboard(first: 500) { updatedAt } } }",
            json!({ "e": bar.event }),
        )
        .await;
    assert_eq!(
        nested.body["data"],
        json!({ "eventTemplates": [], "event": null }),
        "{}",
        nested.body
    );
    nested.assert_error("BAD_USER_INPUT", Some("first"));
    assert_eq!(
        nested.body["errors"][0]["path"],
        json!(["event", "leaderboard"])
    );
    assert_eq!(nested.body["errors"].as_array().map(Vec::len), Some(1));

    // A non-null root field (`users` needs sign-in) nulls `data` itself: the spec's rule, not a
    // response with the `users` key left out.
    let root = app
        .gql(
            "{ eventTemplates { name } users { edges { node { handle } } } }",
            json!({}),
        )
        .await;
    assert_eq!(root.body["data"], Value::Null, "{}", root.body);
    root.assert_error("UNAUTHENTICATED", None);
    assert_eq!(root.body["errors"][0]["path"], json!(["users"]));

    // A field selected twice (as Apollo Client's fragments do) is merged first: whichever copy
    // finishes first, the failure nulls the merged `event`, never leaves `leaderboard` out.
    for document in [
        "query($e: ID!) { event(id: $e) { id } event(id: $e) { leaderboard(first: 500) { updatedAt } } }",
        "query Q($e: ID!) { ...Both } fragment Both on Query { event(id: $e) { id title } event(id: $e) { leaderboard(first: 500) { updatedAt } } }",
    ] {
        let merged = app.gql(document, json!({ "e": bar.event })).await;
        assert_eq!(
            merged.body["data"],
            json!({ "event": null }),
            "{}",
            merged.body
        );
        merged.assert_error("BAD_USER_INPUT", Some("first"));
    }
}

/// The engine answers `null` for an object whose every selected field failed, and `data: null`
/// when every root field did; the spec wants the failed fields null inside them.
async fn a_lone_field_that_fails_leaves_its_parent_standing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let bar = open_bar(&app).await;
    // The only root field, nullable, refused: `data` is an object with that field null.
    let root = app
        .gql(
            "query($e: ID!) { event(id: $e) { leaderboard(first: 500) { updatedAt } } }",
            json!({ "e": bar.event }),
        )
        .await;
    assert_eq!(root.body["data"], json!({ "event": null }), "{}", root.body);
    // The only selected field of an object, nullable and refused (a stranger's bill): the object
    // stays, with the field null.
    let guest = app.signup("guest").await;
    let cup = open_cup(&app, &bar.bartender, &bar.event, &guest).await;
    cheers(&app, &bar.bartender, cup["id"].as_str().expect("id"), 1)
        .await
        .data();
    let lone = app
        .gql(
            "query($e: ID!) { event(id: $e) { leaderboard { entries { session { billCents } } } } }",
            json!({ "e": bar.event }),
        )
        .await;
    assert_eq!(
        lone.body["data"]["event"]["leaderboard"]["entries"][0]["session"],
        json!({ "billCents": null }),
        "{}",
        lone.body
    );
    lone.assert_error("FORBIDDEN", None);
}
