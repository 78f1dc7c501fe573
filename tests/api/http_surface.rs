//! GraphQL over HTTP (methods, media types, status codes), health, metrics, GraphiQL, request ids.

use serde_json::{Value, json};

use crate::common::{Backend, TestApp};
use crate::on_every_backend;

on_every_backend!(
    get_runs_queries_but_not_mutations,
    responses_follow_the_accepted_media_type,
    malformed_requests_get_a_clean_400,
    health_readiness_and_metrics_answer,
    graphiql_is_served_at_the_root,
    every_response_carries_a_request_id,
    every_error_carries_a_contract_code,
    cross_origin_apps_may_send_their_token,
    listed_origins_are_echoed_and_varied_on,
    a_known_document_refuses_bad_variables_as_on_first_sight,
    a_document_is_trusted_only_after_a_request_that_let_validation_check_it_all,
);

async fn get_runs_queries_but_not_mutations(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response = app
        .http
        .get(app.url("/graphql"))
        .query(&[("query", "{ __typename }")])
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["data"]["__typename"], "Query");

    let mutation = app
        .http
        .get(app.url("/graphql"))
        .query(&[("query", "mutation { logout(refreshToken: \"x\") }")])
        .send()
        .await
        .expect("sent");
    assert_eq!(mutation.status(), 405);
    assert_eq!(mutation.headers()["allow"], "POST");

    // HEAD is GET without a body: a mutation in its query string does not run either.
    let ann = app.signup("ann").await;
    let head = app
        .http
        .head(app.url("/graphql"))
        .bearer_auth(&ann.access)
        .query(&[(
            "query",
            "mutation { updateProfile(input: { displayName: \"Headless\" }) { id } }",
        )])
        .send()
        .await
        .expect("sent");
    assert_eq!(head.status(), 405);
    assert_eq!(head.headers()["allow"], "POST");
    let me = app.gql_as(&ann, "{ me { displayName } }", json!({})).await;
    assert_ne!(
        me.data()["me"]["displayName"],
        "Headless",
        "the mutation did not run"
    );
}

async fn responses_follow_the_accepted_media_type(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let send = |accept: &'static str, query: &'static str| {
        app.http
            .post(app.url("/graphql"))
            .header("accept", accept)
            .json(&json!({ "query": query }))
            .send()
    };
    let modern = send("application/graphql-response+json", "{ __typename }")
        .await
        .expect("sent");
    assert_eq!(modern.status(), 200);
    assert_eq!(
        modern.headers()["content-type"],
        "application/graphql-response+json"
    );
    let legacy = send("application/json", "{ __typename }")
        .await
        .expect("sent");
    assert_eq!(legacy.headers()["content-type"], "application/json");
    // A document that fails validation: 400 in the new media type, 200 in the legacy one.
    let invalid_modern = send("application/graphql-response+json", "{ nope }")
        .await
        .expect("sent");
    assert_eq!(invalid_modern.status(), 400);
    let invalid_legacy = send("application/json", "{ nope }").await.expect("sent");
    assert_eq!(invalid_legacy.status(), 200);
    let refused = send("text/html", "{ __typename }").await.expect("sent");
    assert_eq!(refused.status(), 406);
}

async fn malformed_requests_get_a_clean_400(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let bodies = [
        "{not json",
        r#"{"query": 42}"#,
        r#"{"variables": {}}"#,
        r#"{"query": "{ __typename }", "variables": "x"}"#,
    ];
    for body in bodies {
        let response = app
            .http
            .post(app.url("/graphql"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 400, "{body}");
        let json: Value = response.json().await.expect("json");
        assert_eq!(
            json["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{body}"
        );
    }
    let wrong_type = app
        .http
        .post(app.url("/graphql"))
        .header("content-type", "text/plain")
        .body("{ __typename }")
        .send()
        .await
        .expect("sent");
    assert_eq!(wrong_type.status(), 415);
    let syntax = app.gql("{ __typename", json!({})).await;
    assert_eq!(syntax.status, 400);
    syntax.assert_error("BAD_USER_INPUT", None);
}

async fn health_readiness_and_metrics_answer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let health = app
        .http
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("sent");
    assert_eq!(health.status(), 200);
    let ready = app.http.get(app.url("/readyz")).send().await.expect("sent");
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.expect("json");
    assert_eq!(ready["database"], "ok");
    app.gql("query Probe { __typename }", json!({}))
        .await
        .data();
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("rally_http_requests_total"), "{metrics}");
    assert!(metrics.contains("operation=\"Probe\""), "{metrics}");
}

async fn graphiql_is_served_at_the_root(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let page = app.http.get(app.url("/")).send().await.expect("sent");
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/html")
    );
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let html = page.text().await.expect("text");
    assert!(html.to_lowercase().contains("graphiql"));
    assert!(html.contains("/graphql"));
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert!(!policy.contains("unsafe-eval"), "{policy}");
    // The page's inline script is allowed by its hash, and nothing else inline runs.
    let script = html
        .split("<script>")
        .nth(1)
        .and_then(|rest| rest.split_once("</script>"))
        .map(|(script, _)| script)
        .expect("an inline script");
    use base64::Engine;
    use sha2::Digest;
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(script));
    assert!(
        policy.contains(&format!("script-src 'self' 'sha256-{hash}'")),
        "{policy}"
    );
}

async fn cross_origin_apps_may_send_their_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let preflight = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/graphql"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .expect("sent");
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let allowed = preflight.headers()["access-control-allow-headers"]
        .to_str()
        .expect("ascii")
        .to_lowercase();
    assert_ne!(
        allowed.trim(),
        "*",
        "the wildcard does not cover Authorization"
    );
    for header in ["authorization", "content-type", "x-request-id"] {
        assert!(
            allowed.split(',').any(|h| h.trim() == header),
            "{header} in {allowed}"
        );
    }
    // Any origin is allowed by default, with the same `*` for all: CORS has nothing to vary on,
    // in an answer or in a preflight (whose lists are fixed, nothing mirrored).
    let answer = cross_origin_post(&app, "https://app.example").await;
    assert_eq!(answer["access-control-allow-origin"], "*");
    assert!(cors_vary(&answer).is_empty(), "{answer:?}");
    assert!(cors_vary(preflight.headers()).is_empty(), "{preflight:?}");
}

/// With a list of origins the allowed one is echoed back, so answers vary by origin (a shared
/// cache must not hand one origin's answer to another), and an origin off the list gets no grant.
async fn listed_origins_are_echoed_and_varied_on(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        config.cors_origins = vec!["https://app.example".into()];
    })
    .await;
    let listed = cross_origin_post(&app, "https://app.example").await;
    assert_eq!(listed["access-control-allow-origin"], "https://app.example");
    assert_eq!(cors_vary(&listed), ["origin"], "{listed:?}");
    let stranger = cross_origin_post(&app, "https://elsewhere.example").await;
    assert!(
        stranger.get("access-control-allow-origin").is_none(),
        "{stranger:?}"
    );
    assert_eq!(cors_vary(&stranger), ["origin"], "{stranger:?}");
    let preflight = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/graphql"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .expect("sent");
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let headers = preflight.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(cors_vary(headers), ["origin"], "{headers:?}");
}

/// The names in `Vary` that CORS is concerned with (compression adds `accept-encoding` to answers
/// it could compress, whatever the origin).
fn cors_vary(headers: &reqwest::header::HeaderMap) -> Vec<String> {
    headers
        .get_all("vary")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|name| name.trim().to_lowercase())
        .filter(|name| name == "origin" || name.starts_with("access-control-request-"))
        .collect()
}

/// The headers of a `{ __typename }` POST sent from `origin`.
async fn cross_origin_post(app: &TestApp, origin: &str) -> reqwest::header::HeaderMap {
    let response = app
        .http
        .post(app.url("/graphql"))
        .header("origin", origin)
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .expect("sent");
    assert!(response.status().is_success(), "{}", response.status());
    response.headers().clone()
}

async fn every_response_carries_a_request_id(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let generated = app
        .http
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("sent");
    let id = generated.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let echoed = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .expect("sent");
    assert_eq!(echoed.headers()["x-request-id"], "trace-me-42");
}

async fn every_error_carries_a_contract_code(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let codes = [
        "UNAUTHENTICATED",
        "FORBIDDEN",
        "NOT_FOUND",
        "BAD_USER_INPUT",
        "CONFLICT",
        "RATE_LIMITED",
        "INTERNAL",
    ];
    let documents = [
        "{ nope }",
        "query($n: Int!) { users(first: $n) { edges { cursor } } }",
        "{ users(first: \"ten\") { edges { cursor } } }",
        "mutation { signup(input: { handle: \"x\" }) { accessToken } }",
        "{ me { id } } { me { id } }",
    ];
    for document in documents {
        let response = app.gql(document, json!({ "n": "not a number" })).await;
        let errors = response.body["errors"].as_array().expect("errors");
        for error in errors {
            let code = error["extensions"]["code"].as_str().unwrap_or("");
            assert!(codes.contains(&code), "{document}: {error}");
        }
    }
}

/// A query whose document was validated before runs without the engine's full validation; a
/// variable value that validation would refuse must still be the same request error.
async fn a_known_document_refuses_bad_variables_as_on_first_sight(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let query = "query($first: Int) { events(first: $first) { edges { node { id } } } }";
    let bad = json!({ "first": "twenty" });
    let refused = app.gql(query, bad.clone()).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body.get("data").is_none(), "{}", refused.body);
    assert_eq!(
        refused.body["errors"][0]["extensions"]["code"],
        "BAD_USER_INPUT"
    );
    for _ in 0..2 {
        let fine = app.gql(query, json!({ "first": 2 })).await;
        assert_eq!(fine.status, 200, "{}", fine.body);
        assert!(fine.body["data"]["events"]["edges"].is_array());
    }
    let again = app.gql(query, bad).await;
    assert_eq!(again.status, refused.status);
    assert_eq!(
        again.body, refused.body,
        "the same refusal as the first time"
    );
}

/// A document runs without the engine's full validation only after a request that let the rules
/// check every argument of it. One that left a variable out, or selected another operation of the
/// document, skipped the arguments holding it: a literal the rules refuse must still refuse the
/// next request, before anything is written.
async fn a_document_is_trusted_only_after_a_request_that_let_validation_check_it_all(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let organizer = app.signup("ada").await;
    // `colour` is no field of CreateEventInput.
    let create = r#"mutation Create($t: String!) {
        createEvent(input: { title: $t, startsAt: "2030-01-01T20:00:00Z", colour: "red" }) { id }
    }"#;
    let post = |query: String, operation: Option<&str>, variables: Value| {
        let mut body = json!({ "query": query, "variables": variables });
        if let Some(operation) = operation {
            body["operationName"] = json!(operation);
        }
        let request = app
            .http
            .post(app.url("/graphql"))
            .header("accept", "application/graphql-response+json")
            .bearer_auth(&organizer.access)
            .json(&body);
        async move {
            let response = request.send().await.expect("request sent");
            let status = response.status();
            (status, response.json::<Value>().await.expect("JSON body"))
        }
    };
    let refused = |(status, body): (reqwest::StatusCode, Value)| {
        assert_eq!(status, 400, "{body}");
        assert!(body.get("data").is_none(), "{body}");
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{body}"
        );
    };

    // Without `$t` the engine could not check `input`: the request fails, but not in validation.
    let (_, left_out) = post(create.to_owned(), None, json!({})).await;
    assert!(left_out["errors"].is_array(), "{left_out}");
    refused(post(create.to_owned(), None, json!({ "t": "Quiz" })).await);

    // Selecting the other operation left this one's arguments unchecked.
    let two = format!("query Ping {{ __typename }}\n{create}");
    let (status, ping) = post(two.clone(), Some("Ping"), json!({})).await;
    assert_eq!(status, 200, "{ping}");
    assert_eq!(ping["data"]["__typename"], "Query");
    refused(post(two.clone(), Some("Create"), json!({ "t": "Quiz" })).await);
    refused(post(two, Some("Create"), json!({ "t": "Quiz" })).await);

    let events = app
        .gql("{ events(first: 50) { edges { node { id } } } }", json!({}))
        .await;
    assert_eq!(
        events.data()["events"]["edges"],
        json!([]),
        "no refused request created an event"
    );
}
