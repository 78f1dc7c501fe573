//! Abuse limits: depth, complexity, aliases, body size; the server keeps serving after each.

use serde_json::json;

use crate::common::{Backend, TestApp};
use crate::on_every_backend;

on_every_backend!(
    deep_queries_are_refused,
    alias_batches_are_refused,
    complex_queries_are_refused,
    oversized_bodies_are_refused,
    a_real_client_query_passes_every_limit,
);

async fn assert_still_serving(app: &TestApp) {
    let health = app
        .http
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("sent");
    assert_eq!(health.status(), 200);
    assert_eq!(
        app.gql("{ __typename }", json!({})).await.data()["__typename"],
        "Query"
    );
}

async fn deep_queries_are_refused(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.query_max_depth = 5).await;
    let deep = "{ __schema { types { fields { type { ofType { ofType { name } } } } } } }";
    let response = app.gql(deep, json!({})).await;
    response.assert_error("BAD_USER_INPUT", None);
    assert_eq!(response.status, 400);
    assert!(
        response.message().to_lowercase().contains("nested"),
        "{}",
        response.body
    );
    assert_still_serving(&app).await;
}

async fn alias_batches_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let attempts: Vec<String> = (0..60)
        .map(|i| {
            format!("a{i}: login(login: \"victim\", password: \"guess{i}\") {{ accessToken }}")
        })
        .collect();
    let response = app
        .gql(&format!("mutation {{ {} }}", attempts.join(" ")), json!({}))
        .await;
    response.assert_error("BAD_USER_INPUT", None);
    assert!(response.message().contains("aliases"), "{}", response.body);
    assert!(response.body["data"].is_null());
    assert_still_serving(&app).await;
}

async fn complex_queries_are_refused(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.query_max_complexity = 500).await;
    let kai = app.signup("kai").await;
    let response = app
        .gql_as(&kai, "{ users(first: 100) { edges { cursor node { id handle displayName bio avatarUrl } } } }", json!({}))
        .await;
    response.assert_error("BAD_USER_INPUT", None);
    assert!(
        response.message().to_lowercase().contains("complex"),
        "{}",
        response.body
    );
    assert_still_serving(&app).await;
}

async fn oversized_bodies_are_refused(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.max_body_bytes = 16 * 1024).await;
    let padding = "x".repeat(32 * 1024);
    let response = app
        .http
        .post(app.url("/graphql"))
        .json(&json!({ "query": format!("{{ __typename }} # {padding}") }))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 413);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    assert_still_serving(&app).await;
}

async fn a_real_client_query_passes_every_limit(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let lou = app.signup("lou").await;
    let query = "query Dashboard { me { id handle displayName bio avatarUrl role createdAt email }
        a: users(first: 50) { edges { cursor node { id handle displayName avatarUrl } } pageInfo { hasNextPage endCursor } }
        b: users(first: 20, search: \"l\") { edges { node { handle } } } }";
    let response = app.gql_as(&lou, query, json!({})).await;
    assert_eq!(response.data()["me"]["handle"], "lou");
}
