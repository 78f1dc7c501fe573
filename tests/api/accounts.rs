//! Profiles, lookups, the users connection, and who may see what.

use serde_json::json;

use crate::common::{Backend, TestApp};
use crate::on_every_backend;

on_every_backend!(
    strangers_are_refused_every_signed_in_operation,
    email_and_body_data_are_visible_to_the_user_themself_only,
    admins_see_emails,
    user_finds_a_handle_whatever_its_case,
    users_pages_through_everyone_in_handle_order,
    users_searches_handles_and_display_names,
    users_refuses_pages_over_one_hundred,
    update_profile_changes_and_clears_fields,
    update_profile_names_each_invalid_field,
);

async fn strangers_are_refused_every_signed_in_operation(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.signup("mona").await;
    let operations = [
        "{ user(handle: \"mona\") { id } }",
        "{ users { edges { node { id } } } }",
        "mutation { updateProfile(input: { bio: \"hi\" }) { id } }",
    ];
    for operation in operations {
        app.gql(operation, json!({}))
            .await
            .assert_error("UNAUTHENTICATED", None);
    }
    // uploadAvatar is refused before the file is even looked at.
    let form = reqwest::multipart::Form::new()
        .text("operations", r#"{"query":"mutation($f: Upload!) { uploadAvatar(file: $f) { id } }","variables":{"f":null}}"#)
        .text("map", r#"{"0":["variables.f"]}"#)
        .part("0", reqwest::multipart::Part::bytes(vec![1, 2, 3]).file_name("a.png"));
    let response = app
        .http
        .post(app.url("/graphql"))
        .multipart(form)
        .send()
        .await
        .expect("sent");
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{body}"
    );
}

async fn email_and_body_data_are_visible_to_the_user_themself_only(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let nina = app.signup("nina").await;
    let omar = app.signup("omar").await;
    app.gql_as(
        &nina,
        "mutation { updateProfile(input: { bodyWeightKg: 61.5, bodyType: FEMALE }) { id } }",
        json!({}),
    )
    .await
    .data();
    let query = "{ user(handle: \"nina\") { handle email bodyWeightKg bodyType wallet { tokens claimable } } }";
    let own = app.gql_as(&nina, query, json!({})).await;
    assert_eq!(
        own.data()["user"],
        json!({ "handle": "nina", "email": "nina@example.com", "bodyWeightKg": 61.5, "bodyType": "FEMALE", "wallet": { "tokens": 0, "claimable": 0 } })
    );
    let other = app.gql_as(&omar, query, json!({})).await;
    assert_eq!(
        other.data()["user"],
        json!({ "handle": "nina", "email": null, "bodyWeightKg": null, "bodyType": null, "wallet": null })
    );
    // An admin reads emails (below), never a wallet or body data.
    let admin = app.signup("root_admin").await;
    let seen = app.gql_as(&admin, query, json!({})).await;
    assert_eq!(
        seen.data()["user"],
        json!({ "handle": "nina", "email": "nina@example.com", "bodyWeightKg": null, "bodyType": null, "wallet": null })
    );
    let listed = app
        .gql_as(
            &omar,
            "{ users(search: \"nina\") { edges { node { email } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        listed.data()["users"]["edges"][0]["node"]["email"],
        json!(null)
    );
}

async fn admins_see_emails(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.signup("pia").await;
    let admin = app.signup("root_admin").await;
    let response = app
        .gql_as(&admin, "{ user(handle: \"pia\") { email } }", json!({}))
        .await;
    assert_eq!(response.data()["user"]["email"], "pia@example.com");
}

async fn user_finds_a_handle_whatever_its_case(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let quinn = app.signup("quinn").await;
    let found = app
        .gql_as(&quinn, "{ user(handle: \"QuInN\") { id } }", json!({}))
        .await;
    assert_eq!(found.data()["user"]["id"], quinn.id.as_str());
    for missing in ["nobody_at_all", "x", "not a handle!"] {
        let response = app
            .gql_as(
                &quinn,
                "query($h: String!) { user(handle: $h) { id } }",
                json!({ "h": missing }),
            )
            .await;
        assert_eq!(response.data()["user"], json!(null));
    }
}

async fn users_pages_through_everyone_in_handle_order(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.auth_attempts_per_address = 100).await;
    let handles = ["u_e", "u_b", "u_a", "u_d", "u_c"];
    let mut sessions = Vec::new();
    for handle in handles {
        sessions.push(app.signup(handle).await);
    }
    let query = "query($after: String) { users(first: 2, after: $after) { edges { cursor node { handle } } pageInfo { hasNextPage hasPreviousPage endCursor } } }";
    let mut seen = Vec::new();
    let mut after = serde_json::Value::Null;
    let mut pages = 0;
    loop {
        let response = app
            .gql_as(&sessions[0], query, json!({ "after": after }))
            .await;
        let users = &response.data()["users"];
        for edge in users["edges"].as_array().expect("edges") {
            seen.push(edge["node"]["handle"].as_str().expect("handle").to_owned());
        }
        assert_eq!(users["pageInfo"]["hasPreviousPage"], pages > 0);
        pages += 1;
        if users["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = users["pageInfo"]["endCursor"].clone();
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(seen, ["u_a", "u_b", "u_c", "u_d", "u_e"]);
    assert_eq!(pages, 3);
    let bad = app
        .gql_as(
            &sessions[0],
            "{ users(after: \"not-a-cursor\") { edges { cursor } } }",
            json!({}),
        )
        .await;
    bad.assert_error("BAD_USER_INPUT", Some("after"));
}

async fn users_searches_handles_and_display_names(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rita = app.signup("rita").await;
    app.signup("sam").await;
    app.gql_as(
        &rita,
        "mutation { updateProfile(input: { displayName: \"Samantha Fox\" }) { id } }",
        json!({}),
    )
    .await
    .data();
    let query = "query($s: String) { users(search: $s) { edges { node { handle } } } }";
    let handles = |response: &crate::common::Gql| -> Vec<String> {
        response.data()["users"]["edges"]
            .as_array()
            .expect("edges")
            .iter()
            .map(|e| e["node"]["handle"].as_str().expect("handle").to_owned())
            .collect()
    };
    assert_eq!(
        handles(&app.gql_as(&rita, query, json!({ "s": "SAM" })).await),
        ["rita", "sam"]
    );
    assert_eq!(
        handles(&app.gql_as(&rita, query, json!({ "s": "fox" })).await),
        ["rita"]
    );
    // Wildcards are literal.
    assert!(handles(&app.gql_as(&rita, query, json!({ "s": "%" })).await).is_empty());
    assert!(handles(&app.gql_as(&rita, query, json!({ "s": "_" })).await).is_empty());
}

async fn users_refuses_pages_over_one_hundred(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tom = app.signup("tom").await;
    app.gql_as(
        &tom,
        "{ users(first: 101) { edges { cursor } } }",
        json!({}),
    )
    .await
    .assert_error("BAD_USER_INPUT", Some("first"));
    app.gql_as(&tom, "{ users(first: -1) { edges { cursor } } }", json!({}))
        .await
        .assert_error("BAD_USER_INPUT", Some("first"));
    let page = app
        .gql_as(
            &tom,
            "{ users(first: 100) { edges { cursor } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        page.data()["users"]["edges"]
            .as_array()
            .expect("edges")
            .len(),
        1
    );
}

async fn update_profile_changes_and_clears_fields(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let uma = app.signup("uma").await;
    let fields = "{ displayName bio bodyWeightKg bodyType }";
    let set = app
        .gql_as(&uma, &format!("mutation {{ updateProfile(input: {{ displayName: \" Uma T. \", bio: \"Drummer\", bodyWeightKg: 70, bodyType: UNSPECIFIED }}) {fields} }}"), json!({}))
        .await;
    assert_eq!(
        set.data()["updateProfile"],
        json!({ "displayName": "Uma T.", "bio": "Drummer", "bodyWeightKg": 70.0, "bodyType": "UNSPECIFIED" })
    );
    // Absent fields are kept; null clears.
    let cleared = app
        .gql_as(
            &uma,
            &format!(
                "mutation {{ updateProfile(input: {{ bio: null, bodyWeightKg: null }}) {fields} }}"
            ),
            json!({}),
        )
        .await;
    assert_eq!(
        cleared.data()["updateProfile"],
        json!({ "displayName": "Uma T.", "bio": null, "bodyWeightKg": null, "bodyType": "UNSPECIFIED" })
    );
    let me = app
        .gql_as(&uma, &format!("{{ me {fields} }}"), json!({}))
        .await;
    assert_eq!(me.data()["me"], cleared.data()["updateProfile"]);
}

async fn update_profile_names_each_invalid_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let vic = app.signup("vic").await;
    let cases = [
        (json!({ "displayName": "" }), "input.displayName"),
        (json!({ "bio": "b".repeat(501) }), "input.bio"),
        (json!({ "bodyWeightKg": 5 }), "input.bodyWeightKg"),
        (json!({ "bodyWeightKg": 1000 }), "input.bodyWeightKg"),
    ];
    for (input, field) in cases {
        app.gql_as(
            &vic,
            "mutation($i: UpdateProfileInput!) { updateProfile(input: $i) { id } }",
            json!({ "i": input }),
        )
        .await
        .assert_error("BAD_USER_INPUT", Some(field));
    }
    let me = app
        .gql_as(&vic, "{ me { displayName bio bodyWeightKg } }", json!({}))
        .await;
    assert_eq!(
        me.data()["me"],
        json!({ "displayName": "vic", "bio": null, "bodyWeightKg": null })
    );
}
