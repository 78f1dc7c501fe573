//! Abuse limits: depth, complexity, aliases, body size; the server keeps serving after each.

use serde_json::json;

use crate::common::{Backend, TestApp};
use crate::on_every_backend;

on_every_backend!(
    deep_queries_are_refused,
    alias_batches_are_refused,
    complex_queries_are_refused,
    oversized_bodies_are_refused,
    multipart_requests_get_the_body_limit_beside_their_files,
    fragment_bombs_are_refused_before_they_are_expanded,
    instants_beyond_year_9999_are_refused_naming_the_field,
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
    // Under the default limit: a leaderboard per event counts its entries, as a page does (each
    // is computed apart, so 100 boards of 100 entries are 100 computations of 10,000 rows).
    let app = app.restart_with(|c| c.query_max_complexity = 5_000).await;
    let boards = app
        .gql(
            "{ events(first: 100) { edges { node { leaderboard(first: 100) { entries { rank score user { handle } } } } } } }",
            json!({}),
        )
        .await;
    boards.assert_error("BAD_USER_INPUT", None);
    assert!(
        boards.message().to_lowercase().contains("complex"),
        "{}",
        boards.body
    );
    let one = app
        .gql(
            "{ events(first: 5) { edges { node { leaderboard { entries { rank score user { handle } } } } } } }",
            json!({}),
        )
        .await;
    assert!(one.data()["events"]["edges"].is_array());
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
    // A GET's query string is its body: the same limit.
    let response = app
        .http
        .get(app.url("/graphql"))
        .query(&[("query", format!("{{ __typename }} # {padding}"))])
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 413);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    assert_still_serving(&app).await;
}

/// The parts of a multipart request that are not files (the document and its variables) get the
/// same limit as a JSON body; files get their own.
async fn multipart_requests_get_the_body_limit_beside_their_files(backend: Backend) {
    use reqwest::multipart::{Form, Part};
    let app = TestApp::spawn_with(backend, |c| c.max_body_bytes = 16 * 1024).await;
    let padding = "x".repeat(32 * 1024);
    let padded = json!({ "query": format!("{{ __typename }} # {padding}") }).to_string();
    let form = Form::new().text("operations", padded).text("map", "{}");
    let response = post_multipart(&app, form, None).await;
    assert_eq!(response.status(), 413);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    // The size is judged before the part is parsed: an oversized part that is not even JSON is
    // refused for its size, and so is an oversized map.
    for (operations, map, part) in [
        (format!("{{{padding}"), "{}".to_owned(), "operations"),
        (
            r#"{"query":"{ __typename }"}"#.to_owned(),
            format!(r#"{{"0":["{padding}"]}}"#),
            "map",
        ),
    ] {
        let form = Form::new().text("operations", operations).text("map", map);
        let response = post_multipart(&app, form, None).await;
        assert_eq!(response.status(), 413, "{part}");
        let body: serde_json::Value = response.json().await.expect("json");
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains(&format!("{part} part")), "{body}");
    }
    // One small file mapped to a thousand variables counts once: the document is still too big.
    let paths: Vec<String> = (0..1000).map(|n| format!("variables.f.{n}")).collect();
    let operations = json!({
        "query": format!("query($f: [Upload]) {{ __typename }} # {padding}"),
        "variables": { "f": vec![serde_json::Value::Null; 1000] },
    });
    let form = Form::new()
        .text("operations", operations.to_string())
        .text("map", json!({ "0": paths }).to_string())
        .part("0", Part::bytes(vec![7u8; 16 * 1024]).file_name("f.bin"));
    let response = post_multipart(&app, form, None).await;
    assert_eq!(response.status(), 413);
    // A file larger than the body limit is the upload limit's to judge, not this one's.
    let mut noise = 12345u32;
    let picture = image::RgbImage::from_fn(256, 256, |_, _| {
        noise = noise.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let [a, b, c, _] = noise.to_le_bytes();
        image::Rgb([a, b, c])
    });
    let mut png = std::io::Cursor::new(Vec::new());
    picture
        .write_to(&mut png, image::ImageFormat::Png)
        .expect("png");
    let png = png.into_inner();
    assert!(png.len() > 64 * 1024, "the file is over the body limit");
    let ada = app.signup("ada").await;
    let operations = r#"{"query":"mutation($f: Upload!) { uploadAvatar(file: $f) { avatarUrl } }","variables":{"f":null}}"#;
    let form = Form::new()
        .text("operations", operations)
        .text("map", r#"{"0":["variables.f"]}"#)
        .part("0", Part::bytes(png).file_name("noise.png"));
    let response = post_multipart(&app, form, Some(&ada)).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert!(
        body["data"]["uploadAvatar"]["avatarUrl"].is_string(),
        "{body}"
    );
    assert_still_serving(&app).await;
}

/// POSTs a multipart GraphQL request, as `session` when given.
async fn post_multipart(
    app: &TestApp,
    form: reqwest::multipart::Form,
    session: Option<&crate::common::Session>,
) -> reqwest::Response {
    let mut request = app.http.post(app.url("/graphql")).multipart(form);
    if let Some(session) = session {
        request = request.bearer_auth(&session.access);
    }
    request.send().await.expect("sent")
}

/// A 2 KB document whose fragments each spread the previous one ten times asks for 10^25 fields;
/// one that spreads itself asks for them without end. Both are refused at once (the engine would
/// expand them before refusing them, holding a worker thread), anonymously, and nothing stalls.
async fn fragment_bombs_are_refused_before_they_are_expanded(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut chain = String::from("query { ...F25 } fragment F0 on Query { __typename }");
    for level in 1..=25 {
        let spreads = format!("...F{} ", level - 1).repeat(10);
        chain.push_str(&format!(" fragment F{level} on Query {{ {spreads}}}"));
    }
    let cycle = "query { ...A } fragment A on Query { ...B ...B ...B } fragment B on Query { ...A ...A ...A }";
    // The same chain ending in a fragment nobody defined names no field at all.
    let unknown = chain.replace(
        "fragment F0 on Query { __typename }",
        "fragment F0 on Query { ...Nowhere }",
    );
    // A long chain no operation uses: the engine would follow it link by link, on the stack.
    let mut unused = String::from("{ __typename } fragment L0 on Query { __typename }");
    for level in 1..=5000 {
        unused.push_str(&format!(
            " fragment L{level} on Query {{ ...L{} }}",
            level - 1
        ));
    }
    for (document, says) in [
        (chain.as_str(), "expand"),
        (cycle, "spreads itself"),
        (unknown.as_str(), "does not define"),
        (unused.as_str(), "no operation spreads"),
    ] {
        let response = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            app.gql(document, json!({})),
        )
        .await
        .expect("refused without expanding the fragments");
        response.assert_error("BAD_USER_INPUT", None);
        assert_eq!(response.status, 400);
        assert!(response.message().contains(says), "{}", response.body);
        assert!(response.body["data"].is_null());
    }
    // A fragment spread a few times is an ordinary document.
    let fine = "{ ...T ...T } fragment T on Query { __typename }";
    assert_eq!(app.gql(fine, json!({})).await.data()["__typename"], "Query");
    assert_still_serving(&app).await;
}

/// The `DateTime` scalar reads six-digit years; arithmetic on one overflows. Each is refused, naming
/// the field, and nothing is created.
async fn instants_beyond_year_9999_are_refused_naming_the_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ivy = app.signup("ivy").await;
    let far = "+262142-12-31T23:59:59.5Z";
    let response = app
        .gql(
            "query($to: DateTime) { events(filter: { to: $to }) { edges { cursor } } }",
            json!({ "to": far }),
        )
        .await;
    response.assert_error("BAD_USER_INPUT", Some("filter.to"));
    let response = app
        .gql_as(
            &ivy,
            "mutation($at: DateTime!) { createEvent(input: { title: \"Far\", startsAt: $at }) { id } }",
            json!({ "at": "-262143-01-01T00:00:00Z" }),
        )
        .await;
    response.assert_error("BAD_USER_INPUT", Some("input.startsAt"));
    let response = app
        .gql_as(
            &ivy,
            "query($to: DateTime!) { availabilities(from: \"2027-01-01T00:00:00Z\", to: $to) { edges { cursor } } }",
            json!({ "to": far }),
        )
        .await;
    response.assert_error("BAD_USER_INPUT", Some("to"));
    let weekly = "mutation($input: WeeklyAvailabilityInput!) { setWeeklyAvailability(input: $input) { id } }";
    let response = app
        .gql_as(
            &ivy,
            weekly,
            json!({ "input": {
                "timeZone": "America/New_York", "startLocal": "23:30", "durationMinutes": 60,
                "fromDate": "+262142-12-31", "untilDate": "+262142-12-31",
                "weekdays": ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"],
                "title": "Far",
            }}),
        )
        .await;
    response.assert_error("BAD_USER_INPUT", Some("input.fromDate"));
    // Time-zone rules are known up to 2099: its last day is taken, the next is not.
    let late = |day: &str| {
        json!({ "input": {
            "timeZone": "America/New_York", "startLocal": "23:30", "durationMinutes": 60,
            "fromDate": day, "untilDate": day,
            "weekdays": ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"],
            "title": "Late",
        }})
    };
    let last = app
        .gql_as(
            &ivy,
            "mutation($input: WeeklyAvailabilityInput!) { setWeeklyAvailability(input: $input) { startTime } }",
            late("2099-12-31"),
        )
        .await;
    // 23:30 in New York in winter (UTC-5) is 04:30 the next day in UTC.
    assert_eq!(
        last.data()["setWeeklyAvailability"],
        json!([{ "startTime": "2100-01-01T04:30:00+00:00" }])
    );
    app.gql_as(&ivy, weekly, late("2100-01-01"))
        .await
        .assert_error("BAD_USER_INPUT", Some("input.untilDate"));
    let mine = app
        .gql_as(
            &ivy,
            "{ events(filter: { organizer: \"ivy\" }) { edges { cursor } } }",
            json!({}),
        )
        .await;
    assert_eq!(mine.data()["events"]["edges"], json!([]), "nothing created");
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
