//! Sign-up, login, refresh rotation and reuse, logout, token tampering, rate limits.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::common::gql::{AUTH_FIELDS, session_from};
use crate::common::{Backend, TEST_SECRET, TestApp};
use crate::on_every_backend;

on_every_backend!(
    signup_signs_the_new_user_in,
    signup_names_each_invalid_field,
    a_taken_handle_or_email_is_a_conflict_whatever_its_case,
    racing_signups_for_one_handle_or_email_make_one_account,
    login_accepts_a_handle_or_an_email,
    an_unknown_login_and_a_wrong_password_fail_alike,
    repeated_failed_logins_are_rate_limited,
    signups_from_one_address_are_rate_limited,
    behind_a_trusted_proxy_the_limit_follows_the_address_the_proxy_saw,
    refresh_rotates_the_token,
    reusing_a_refresh_token_revokes_the_whole_session,
    a_session_ends_at_its_longest_however_often_it_is_refreshed,
    racing_refreshes_of_one_token_rotate_it_once,
    garbage_refresh_tokens_are_unauthenticated,
    logout_ends_the_session,
    tampered_access_tokens_are_refused,
    an_unreadable_authorization_header_is_refused,
    a_sign_up_whose_session_cannot_be_stored_leaves_no_account,
    refreshes_are_rate_limited_per_user,
    an_expired_access_token_is_refused,
    refresh_tokens_are_stored_only_as_hashes,
    listed_handles_are_admins,
    the_admin_list_is_applied_at_start_up,
);

const ME: &str = "{ me { id handle email role } }";

async fn signup_signs_the_new_user_in(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response = app
        .gql(
            &format!("mutation {{ signup(input: {{ handle: \"Alice\", email: \"Alice@Example.com\", password: \"long enough\", displayName: \"Alice A.\" }}) {{ {AUTH_FIELDS} user {{ displayName email }} }} }}"),
            json!({}),
        )
        .await;
    let payload = &response.data()["signup"];
    assert_eq!(payload["user"]["handle"], "alice");
    assert_eq!(payload["user"]["email"], "alice@example.com");
    assert_eq!(payload["user"]["displayName"], "Alice A.");
    assert_eq!(payload["user"]["role"], "USER");
    let session = session_from(payload);
    let me = app.gql_as(&session, ME, json!({})).await;
    assert_eq!(me.data()["me"]["id"], session.id.as_str());
    assert_eq!(app.gql(ME, json!({})).await.data()["me"], json!(null));
}

async fn signup_names_each_invalid_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let cases = [
        (
            json!({"handle": "ab", "email": "a@b.co", "password": "12345678"}),
            "input.handle",
        ),
        (
            json!({"handle": "no-dashes", "email": "a@b.co", "password": "12345678"}),
            "input.handle",
        ),
        (
            json!({"handle": "good_one", "email": "not-an-email", "password": "12345678"}),
            "input.email",
        ),
        (
            json!({"handle": "good_one", "email": "a@b.co", "password": "short"}),
            "input.password",
        ),
        (
            json!({"handle": "good_one", "email": "a@b.co", "password": "x".repeat(129)}),
            "input.password",
        ),
        (
            json!({"handle": "good_one", "email": "a@b.co", "password": "12345678", "displayName": " "}),
            "input.displayName",
        ),
    ];
    for (input, field) in cases {
        let response = app
            .gql(
                "mutation($input: SignupInput!) { signup(input: $input) { accessToken } }",
                json!({ "input": input }),
            )
            .await;
        response.assert_error("BAD_USER_INPUT", Some(field));
    }
    // Nothing was created by the refused attempts.
    let fine = app.signup("good_one").await;
    assert_eq!(fine.handle, "good_one");
}

async fn a_taken_handle_or_email_is_a_conflict_whatever_its_case(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.signup("carol").await;
    let taken_handle = app
        .gql(
            "mutation { signup(input: { handle: \"CAROL\", email: \"other@example.com\", password: \"12345678\" }) { accessToken } }",
            json!({}),
        )
        .await;
    taken_handle.assert_error("CONFLICT", Some("input.handle"));
    let taken_email = app
        .gql(
            "mutation { signup(input: { handle: \"carol2\", email: \"CAROL@example.com\", password: \"12345678\" }) { accessToken } }",
            json!({}),
        )
        .await;
    taken_email.assert_error("CONFLICT", Some("input.email"));
}

/// Eight sign-ups racing for one handle make one account, the rest CONFLICT on `input.handle`
/// (the unique index decides, never an internal error); the same for one email.
async fn racing_signups_for_one_handle_or_email_make_one_account(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.auth_attempts_per_address = 1000).await;
    let signup = "mutation($input: SignupInput!) { signup(input: $input) { user { handle } } }";
    // The n-th racer for `field`: everything else differs.
    let input = |field: &str, n: usize| {
        if field == "input.handle" {
            json!({ "handle": "zed", "email": format!("zed{n}@example.com"), "password": "long enough" })
        } else {
            json!({ "handle": format!("yan{n}"), "email": "yan@example.com", "password": "long enough" })
        }
    };
    for field in ["input.handle", "input.email"] {
        let racing = (0..8).map(|n| app.gql(signup, json!({ "input": input(field, n) })));
        let answers = futures_util::future::join_all(racing).await;
        let made = answers
            .iter()
            .filter(|answer| answer.body["errors"].is_null())
            .count();
        assert_eq!(made, 1, "one account for {field}");
        for answer in answers
            .iter()
            .filter(|answer| !answer.body["errors"].is_null())
        {
            answer.assert_error("CONFLICT", Some(field));
        }
    }
    let looker = app.signup("looker").await;
    let users = app
        .gql_as(
            &looker,
            "{ users(first: 50) { edges { node { handle } } } }",
            json!({}),
        )
        .await;
    let handles: Vec<&str> = users.data()["users"]["edges"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|edge| edge["node"]["handle"].as_str())
        .collect();
    assert_eq!(handles.iter().filter(|h| **h == "zed").count(), 1);
    assert_eq!(handles.iter().filter(|h| h.starts_with("yan")).count(), 1);
}

async fn login_accepts_a_handle_or_an_email(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let dave = app.signup("dave").await;
    for login in ["dave", "DAVE", "dave@example.com", "Dave@Example.com"] {
        let response = app.login(login, "password-dave").await;
        let session = session_from(&response.data()["login"]);
        assert_eq!(session.id, dave.id);
        assert_ne!(session.refresh, dave.refresh);
    }
}

async fn an_unknown_login_and_a_wrong_password_fail_alike(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.signup("erin").await;
    let wrong_password = app.login("erin", "password-wrong").await;
    let unknown_login = app.login("nobody_here", "password-erin").await;
    wrong_password.assert_error("UNAUTHENTICATED", None);
    unknown_login.assert_error("UNAUTHENTICATED", None);
    assert_eq!(wrong_password.message(), unknown_login.message());
    assert!(wrong_password.body["data"].is_null());
}

async fn repeated_failed_logins_are_rate_limited(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.signup("frank").await;
    let mut limited = None;
    for attempt in 1..=50 {
        let response = app.login("frank", "not-the-password").await;
        if response.code() == "RATE_LIMITED" {
            limited = Some((attempt, response));
            break;
        }
        response.assert_error("UNAUTHENTICATED", None);
    }
    let (attempt, response) = limited.expect("rate limited before 50 attempts");
    assert!(attempt <= 11, "limited only after {attempt} attempts");
    let retry = response.body["errors"][0]["extensions"]["retryAfterSeconds"]
        .as_u64()
        .expect("retryAfterSeconds");
    assert!(retry >= 1);
    // The right password is refused too while the login is limited.
    app.login("frank", "password-frank")
        .await
        .assert_error("RATE_LIMITED", None);
}

async fn signups_from_one_address_are_rate_limited(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| config.auth_attempts_per_address = 3).await;
    for handle in ["ann", "bob", "cyd"] {
        app.signup(handle).await;
    }
    let response = app
        .gql(
            "mutation { signup(input: { handle: \"dan\", email: \"dan@example.com\", password: \"12345678\" }) { accessToken } }",
            json!({}),
        )
        .await;
    response.assert_error("RATE_LIMITED", None);
}

/// Behind a trusted proxy the per-address limit counts the hop the proxy added, in the last
/// `X-Forwarded-For` line (a proxy may add its own line after the client's), not one the client
/// wrote: changing its own line does not give a client a fresh limit.
async fn behind_a_trusted_proxy_the_limit_follows_the_address_the_proxy_saw(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        config.trust_proxy_headers = true;
        config.auth_attempts_per_address = 3;
    })
    .await;
    let attempt = |n: usize, client_line: String, proxy_line: &'static str| {
        app.http
            .post(app.url("/graphql"))
            .header("x-forwarded-for", client_line)
            .header("x-forwarded-for", proxy_line)
            .json(&json!({
                "query": "mutation($l: String!) { login(login: $l, password: \"wrong password\") { accessToken } }",
                "variables": { "l": format!("nobody{n}") },
            }))
            .send()
    };
    let code = |body: serde_json::Value| {
        body["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("a failed login: {body}"))
            .to_owned()
    };
    for n in 0..3 {
        let answer = attempt(n, format!("6.6.6.{n}"), "10.0.0.9")
            .await
            .expect("sent");
        assert_eq!(code(answer.json().await.expect("json")), "UNAUTHENTICATED");
    }
    let answer = attempt(3, "7.7.7.7".to_owned(), "10.0.0.9")
        .await
        .expect("sent");
    assert_eq!(
        code(answer.json().await.expect("json")),
        "RATE_LIMITED",
        "the same hop"
    );
    let answer = attempt(4, "6.6.6.0".to_owned(), "10.0.0.10")
        .await
        .expect("sent");
    assert_eq!(
        code(answer.json().await.expect("json")),
        "UNAUTHENTICATED",
        "another hop"
    );
    // A home's IPv6 /64 is one client, whichever of its addresses it tries from; a proxy that
    // writes the hop with its port names the same address.
    for n in 0..3 {
        let hop = [
            "2001:db8:1:2::1",
            "[2001:db8:1:2::2]:4000",
            "2001:db8:1:2:ffff::3",
        ][n];
        let answer = attempt(10 + n, "6.6.6.6".to_owned(), hop)
            .await
            .expect("sent");
        assert_eq!(
            code(answer.json().await.expect("json")),
            "UNAUTHENTICATED",
            "{hop}"
        );
    }
    let answer = attempt(13, "6.6.6.6".to_owned(), "2001:db8:1:2:abcd:ef01:2345:6789")
        .await
        .expect("sent");
    assert_eq!(
        code(answer.json().await.expect("json")),
        "RATE_LIMITED",
        "the same /64"
    );
    let answer = attempt(14, "6.6.6.6".to_owned(), "2001:db8:1:3::1")
        .await
        .expect("sent");
    assert_eq!(
        code(answer.json().await.expect("json")),
        "UNAUTHENTICATED",
        "the next /64"
    );
}

async fn refresh_rotates_the_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let gina = app.signup("gina").await;
    let rotated = session_from(&app.refresh(&gina.refresh).await.data()["refreshSession"]);
    assert_eq!(rotated.id, gina.id);
    assert_ne!(rotated.refresh, gina.refresh);
    let me = app.gql_as(&rotated, ME, json!({})).await;
    assert_eq!(me.data()["me"]["handle"], "gina");
    // The new token rotates again.
    let again = session_from(&app.refresh(&rotated.refresh).await.data()["refreshSession"]);
    assert_ne!(again.refresh, rotated.refresh);
}

/// Each refresh stores a token row: a user gets `RALLY_REFRESHES_PER_MINUTE` of them a minute. The
/// refused one changes nothing (the session and its tokens live on); other users are not counted.
async fn refreshes_are_rate_limited_per_user(backend: Backend) {
    use sea_orm::{EntityTrait, PaginatorTrait};
    let app = TestApp::spawn_with(backend, |c| c.refreshes_per_minute = 2).await;
    let lena = app.signup("lena").await;
    let mut current = lena.clone();
    for _ in 0..2 {
        current = session_from(&app.refresh(&current.refresh).await.data()["refreshSession"]);
    }
    let refused = app.refresh(&current.refresh).await;
    refused.assert_error("RATE_LIMITED", None);
    assert!(
        refused.body["errors"][0]["extensions"]["retryAfterSeconds"].as_i64() > Some(0),
        "{}",
        refused.body
    );
    assert_eq!(
        app.gql_as(&current, ME, json!({})).await.data()["me"]["handle"],
        "lena",
        "the session lives on"
    );
    let stored = rally::entity::refresh_token::Entity::find()
        .count(&app.state.db)
        .await
        .expect("counted");
    assert_eq!(stored, 3, "a sign-up and two refreshes");
    let mona = app.signup("mona").await;
    app.refresh(&mona.refresh).await.data();
}

async fn reusing_a_refresh_token_revokes_the_whole_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let hank = app.signup("hank").await;
    let rotated = session_from(&app.refresh(&hank.refresh).await.data()["refreshSession"]);
    // Someone replays the first token: refused, and the family is revoked...
    app.refresh(&hank.refresh)
        .await
        .assert_error("UNAUTHENTICATED", None);
    // ...so the token the legitimate client holds stops working too.
    app.refresh(&rotated.refresh)
        .await
        .assert_error("UNAUTHENTICATED", None);
    // Another login is a separate family and keeps working.
    let other = session_from(&app.login("hank", "password-hank").await.data()["login"]);
    app.refresh(&other.refresh).await.data();
}

/// Ten refreshes racing with one token: exactly one gets a new session, the rest are refused as a
/// reuse, and a reuse ends the session, so the winner's new token is refused too.
async fn racing_refreshes_of_one_token_rotate_it_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let joe = app.signup("joe").await;
    let racing = (0..10).map(|_| app.refresh(&joe.refresh));
    let answers = futures_util::future::join_all(racing).await;
    let won: Vec<_> = answers
        .iter()
        .filter(|answer| answer.body["errors"].is_null())
        .collect();
    assert_eq!(won.len(), 1, "one rotation");
    for answer in answers
        .iter()
        .filter(|answer| !answer.body["errors"].is_null())
    {
        answer.assert_error("UNAUTHENTICATED", None);
    }
    let winner = session_from(&won[0].data()["refreshSession"]);
    app.refresh(&winner.refresh)
        .await
        .assert_error("UNAUTHENTICATED", None);
}

async fn garbage_refresh_tokens_are_unauthenticated(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for token in ["", "garbage", &"x".repeat(5000)] {
        app.refresh(token)
            .await
            .assert_error("UNAUTHENTICATED", None);
        app.gql(
            "mutation($t: String!) { logout(refreshToken: $t) }",
            json!({ "t": token }),
        )
        .await
        .assert_error("UNAUTHENTICATED", None);
    }
}

async fn logout_ends_the_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ivy = app.signup("ivy").await;
    let response = app
        .gql(
            "mutation($t: String!) { logout(refreshToken: $t) }",
            json!({ "t": ivy.refresh }),
        )
        .await;
    assert_eq!(response.data()["logout"], true);
    app.refresh(&ivy.refresh)
        .await
        .assert_error("UNAUTHENTICATED", None);
    app.gql(
        "mutation($t: String!) { logout(refreshToken: $t) }",
        json!({ "t": ivy.refresh }),
    )
    .await
    .assert_error("UNAUTHENTICATED", None);
}

fn forge(claims: serde_json::Value, secret: &[u8], alg: Algorithm) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("token")
}

fn claims_for(id: &str, offset_seconds: i64) -> serde_json::Value {
    let now = chrono::Utc::now().timestamp();
    json!({ "sub": id, "role": "ADMIN", "iss": "rally", "aud": "rally-api", "iat": now, "exp": now + offset_seconds })
}

async fn tampered_access_tokens_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let jack = app.signup("jack").await;
    let valid = forge(
        claims_for(&jack.id, 600),
        TEST_SECRET.as_bytes(),
        Algorithm::HS256,
    );
    assert_eq!(
        app.gql_with(Some(&valid), ME, json!({})).await.data()["me"]["handle"],
        "jack"
    );

    let mut wrong_audience = claims_for(&jack.id, 600);
    wrong_audience["aud"] = json!("someone-else");
    let mut wrong_issuer = claims_for(&jack.id, 600);
    wrong_issuer["iss"] = json!("evil");
    let mut no_expiry = claims_for(&jack.id, 600);
    no_expiry.as_object_mut().expect("object").remove("exp");
    let header_none = base64_url(r#"{"alg":"none","typ":"JWT"}"#);
    let body = base64_url(&claims_for(&jack.id, 600).to_string());
    let mut flipped = jack.access.clone().into_bytes();
    let last = flipped.len() - 2;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };

    let tokens = [
        (
            "bad signature",
            forge(
                claims_for(&jack.id, 600),
                b"another-secret-another-secret-0123456789",
                Algorithm::HS256,
            ),
        ),
        (
            "altered signature",
            String::from_utf8(flipped).expect("ascii"),
        ),
        ("alg none", format!("{header_none}.{body}.")),
        (
            "HS512",
            forge(
                claims_for(&jack.id, 600),
                TEST_SECRET.as_bytes(),
                Algorithm::HS512,
            ),
        ),
        (
            "wrong audience",
            forge(wrong_audience, TEST_SECRET.as_bytes(), Algorithm::HS256),
        ),
        (
            "wrong issuer",
            forge(wrong_issuer, TEST_SECRET.as_bytes(), Algorithm::HS256),
        ),
        (
            "no expiry",
            forge(no_expiry, TEST_SECRET.as_bytes(), Algorithm::HS256),
        ),
        ("garbage", "not.a.token".to_owned()),
    ];
    for (what, token) in tokens {
        let response = app.gql_with(Some(&token), ME, json!({})).await;
        assert_eq!(
            response.code(),
            "UNAUTHENTICATED",
            "{what}: {}",
            response.body
        );
        let response = app
            .gql_with(
                Some(&token),
                "mutation { updateProfile(input: { bio: \"x\" }) { id } }",
                json!({}),
            )
            .await;
        assert_eq!(
            response.code(),
            "UNAUTHENTICATED",
            "{what}: {}",
            response.body
        );
    }
}

/// An `Authorization` header that is not even text was sent: refused, never read as no header.
async fn an_unreadable_authorization_header_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let header = reqwest::header::HeaderValue::from_bytes(b"Bearer \xff\xfe").expect("obs-text");
    let answer: serde_json::Value = app
        .http
        .post(app.url("/graphql"))
        .header("authorization", header)
        .json(&json!({ "query": ME }))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(
        answer["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{answer}"
    );
}

/// The account and its first session commit together: when the session cannot be stored (its
/// table is gone here), the sign-up fails whole, and the handle is still free once it can.
async fn a_sign_up_whose_session_cannot_be_stored_leaves_no_account(backend: Backend) {
    use sea_orm::{ConnectionTrait, EntityTrait, PaginatorTrait};
    let app = TestApp::spawn(backend).await;
    let db = &app.state.db;
    db.execute_unprepared("ALTER TABLE refresh_tokens RENAME TO refresh_tokens_away")
        .await
        .expect("renamed");
    let signup = "mutation { signup(input: { handle: \"ann\", email: \"ann@example.com\", password: \"password-ann\" }) { accessToken } }";
    app.gql(signup, json!({}))
        .await
        .assert_error("INTERNAL", None);
    let accounts = rally::entity::user::Entity::find()
        .count(db)
        .await
        .expect("counted");
    assert_eq!(accounts, 0, "no account without its session");
    db.execute_unprepared("ALTER TABLE refresh_tokens_away RENAME TO refresh_tokens")
        .await
        .expect("renamed back");
    assert!(app.gql(signup, json!({})).await.data()["signup"]["accessToken"].is_string());
}

fn base64_url(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

async fn an_expired_access_token_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let kim = app.signup("kim").await;
    let mut claims = claims_for(&kim.id, -3600);
    claims["iat"] = json!(chrono::Utc::now().timestamp() - 7200);
    let expired = forge(claims, TEST_SECRET.as_bytes(), Algorithm::HS256);
    app.gql_with(Some(&expired), ME, json!({}))
        .await
        .assert_error("UNAUTHENTICATED", None);
    // The refresh token still gets a new access token.
    let fresh = session_from(&app.refresh(&kim.refresh).await.data()["refreshSession"]);
    assert_eq!(
        app.gql_as(&fresh, ME, json!({})).await.data()["me"]["handle"],
        "kim"
    );
}

async fn refresh_tokens_are_stored_only_as_hashes(backend: Backend) {
    use rally::entity::refresh_token;
    use sea_orm::EntityTrait;
    let app = TestApp::spawn(backend).await;
    let lea = app.signup("lea").await;
    let stored = refresh_token::Entity::find()
        .all(&app.state.db)
        .await
        .expect("rows");
    // SHA-256 in hex, computed here with the sha2 crate, not by the server's helper.
    let sha256 = |token: &str| -> String {
        use sha2::Digest;
        sha2::Sha256::digest(token.as_bytes())
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    };
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].token_hash, sha256(&lea.refresh));
    // The rotated token is stored the same way, and no row holds a token itself.
    let refreshed = app
        .gql(
            "mutation($t: String!) { refreshSession(refreshToken: $t) { refreshToken } }",
            json!({ "t": lea.refresh }),
        )
        .await;
    let next = refreshed.data()["refreshSession"]["refreshToken"]
        .as_str()
        .expect("a token")
        .to_owned();
    let stored = refresh_token::Entity::find()
        .all(&app.state.db)
        .await
        .expect("rows");
    let mut hashes: Vec<&str> = stored.iter().map(|row| row.token_hash.as_str()).collect();
    hashes.sort_unstable();
    let mut expected = [sha256(&lea.refresh), sha256(&next)];
    expected.sort_unstable();
    assert_eq!(hashes, expected);
    assert!(
        stored
            .iter()
            .all(|row| !row.token_hash.contains(&lea.refresh) && !row.token_hash.contains(&next))
    );
}

/// A session lives `RALLY_SESSION_MAX_DAYS` (90 by default) however often its refresh token is
/// exchanged: a refreshed token expires with the session, not a full refresh lifetime later, and a
/// refresh past the end is refused and ends the session. A session began when its family's UUID v7
/// id was made at sign-in; the test gives the family an older id.
async fn a_session_ends_at_its_longest_however_often_it_is_refreshed(backend: Backend) {
    use chrono::{Duration, Utc};
    use rally::entity::refresh_token;
    use sea_orm::prelude::Expr;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
    let app = TestApp::spawn(backend).await;
    let kim = app.signup("kim").await;
    let began_at = |began: chrono::DateTime<Utc>| {
        let stamp = uuid::Timestamp::from_unix(
            uuid::NoContext,
            u64::try_from(began.timestamp()).expect("after 1970"),
            began.timestamp_subsec_nanos(),
        );
        refresh_token::Entity::update_many()
            .col_expr(
                refresh_token::Column::FamilyId,
                Expr::value(uuid::Uuid::new_v7(stamp)),
            )
            .exec(&app.state.db)
    };
    let began = Utc::now() - Duration::days(80);
    began_at(began).await.expect("an older session");
    let rotated = session_from(&app.refresh(&kim.refresh).await.data()["refreshSession"]);
    let newest = refresh_token::Entity::find()
        .filter(refresh_token::Column::UsedAt.is_null())
        .order_by_desc(refresh_token::Column::CreatedAt)
        .one(&app.state.db)
        .await
        .expect("read")
        .expect("the new token");
    let ends = began + Duration::days(90);
    assert!(
        (newest.expires_at - ends).num_seconds().abs() <= 1,
        "expires with the session at {ends}, not 30 days on: {}",
        newest.expires_at
    );
    let me = app.gql_as(&rotated, ME, json!({})).await;
    assert_eq!(me.data()["me"]["handle"], "kim");

    // The session began 91 days ago, and its token (as an older release issued it) has not
    // expired: the refresh is refused, and the session ends.
    began_at(began - Duration::days(11))
        .await
        .expect("an older session");
    refresh_token::Entity::update_many()
        .col_expr(
            refresh_token::Column::ExpiresAt,
            Expr::value(Utc::now() + Duration::days(30)),
        )
        .exec(&app.state.db)
        .await
        .expect("an older release's expiry");
    app.refresh(&rotated.refresh)
        .await
        .assert_error("UNAUTHENTICATED", None);
    let revoked = refresh_token::Entity::find()
        .filter(refresh_token::Column::RevokedAt.is_null())
        .all(&app.state.db)
        .await
        .expect("read");
    assert!(revoked.is_empty(), "the session ended: {revoked:?}");
}

/// `RALLY_ADMINS` is the one way to the ADMIN role, and it is applied at start-up both ways: after a
/// restart with another list, an admin no longer listed is a user, and a listed account is an
/// admin before it signs in again. Roles are read as others see them, and the demoted admin's
/// refreshed session carries the new role.
async fn the_admin_list_is_applied_at_start_up(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.admins = vec!["boss".into()]).await;
    let boss = app.signup("boss").await;
    let deputy = app.signup("deputy").await;
    assert_eq!(role_of(&app, &deputy, "boss").await, "ADMIN");
    assert_eq!(role_of(&app, &deputy, "deputy").await, "USER");
    let app = app
        .restart_with(|c| c.admins = vec![" Deputy ".into()])
        .await;
    assert_eq!(
        role_of(&app, &deputy, "boss").await,
        "USER",
        "no longer listed"
    );
    assert_eq!(role_of(&app, &deputy, "deputy").await, "ADMIN", "listed");
    let refreshed = session_from(&app.refresh(&boss.refresh).await.data()["refreshSession"]);
    app.gql_as(
        &refreshed,
        "mutation { createEventTemplate(input: { name: \"Quiz\", defaultDurationMinutes: 60 }) { id } }",
        json!({}),
    )
    .await
    .assert_error("FORBIDDEN", None);
}

/// The role of the account `handle`, as `viewer` sees it.
async fn role_of(
    app: &TestApp,
    viewer: &crate::common::Session,
    handle: &str,
) -> serde_json::Value {
    let found = app
        .gql_as(
            viewer,
            "query($h: String!) { user(handle: $h) { role } }",
            json!({ "h": handle }),
        )
        .await;
    found.data()["user"]["role"].clone()
}

async fn listed_handles_are_admins(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let root = app.signup("root_admin").await;
    let me = app.gql_as(&root, ME, json!({})).await;
    assert_eq!(me.data()["me"]["role"], "ADMIN");
    let user = app.signup("plain_user").await;
    assert_eq!(
        app.gql_as(&user, ME, json!({})).await.data()["me"]["role"],
        "USER"
    );
}
