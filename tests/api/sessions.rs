//! Ending a session (logout, or a replayed refresh token) ends its access tokens at once, not at their
//! `exp`, and closes its open websockets with 4403; other sessions of the same user live on.

use std::time::Duration;

use serde_json::json;

use crate::common::{Backend, Session, TRANSPORT_WS, TestApp};

crate::on_every_backend!(
    logout_ends_the_access_tokens_and_sockets_of_that_session_only,
    a_replayed_refresh_token_ends_every_token_of_its_session,
    a_restarted_instance_still_refuses_an_ended_sessions_tokens,
    refresh_tokens_that_are_not_live_are_refused_without_the_write_turn,
    expired_refresh_tokens_are_forgotten_and_ended_sessions_stay_ended,
    a_socket_extended_with_another_sessions_token_ends_with_either,
);

const ME: &str = "{ me { handle } }";

async fn logout(app: &TestApp, session: &Session) {
    let out = app
        .gql(
            "mutation($t: String!) { logout(refreshToken: $t) }",
            json!({ "t": session.refresh }),
        )
        .await;
    assert_eq!(out.data()["logout"], true);
}

async fn logout_ends_the_access_tokens_and_sockets_of_that_session_only(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let phone = app.signup("ann").await;
    let laptop =
        crate::common::gql::session_from(&app.login("ann", "password-ann").await.data()["login"]);
    let mut phone_socket = app.ws(TRANSPORT_WS).await;
    phone_socket
        .init(json!({ "authorization": format!("Bearer {}", phone.access) }))
        .await;
    let mut laptop_socket = app.ws(TRANSPORT_WS).await;
    laptop_socket
        .init(json!({ "authorization": format!("Bearer {}", laptop.access) }))
        .await;
    assert_eq!(
        app.gql_as(&phone, ME, json!({})).await.data()["me"]["handle"],
        "ann"
    );

    logout(&app, &phone).await;

    app.gql_as(&phone, ME, json!({}))
        .await
        .assert_error("UNAUTHENTICATED", None);
    let closed = phone_socket.closed().await;
    assert_eq!(closed.code, 4403, "{closed:?}");
    assert!(closed.reason.contains("session ended"), "{closed:?}");
    // The other session (another device) is untouched.
    assert_eq!(
        app.gql_as(&laptop, ME, json!({})).await.data()["me"]["handle"],
        "ann"
    );
    laptop_socket.assert_quiet(Duration::from_millis(300)).await;
    // A new socket with the ended session's token is refused at its init.
    let mut again = app.ws(TRANSPORT_WS).await;
    again
        .send(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {}", phone.access) } }))
        .await;
    assert_eq!(again.closed().await.code, 4403);
}

async fn a_replayed_refresh_token_ends_every_token_of_its_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let first = app.signup("ann").await;
    let rotated = crate::common::gql::session_from(
        &app.refresh(&first.refresh).await.data()["refreshSession"],
    );
    assert_eq!(
        app.gql_as(&rotated, ME, json!({})).await.data()["me"]["handle"],
        "ann"
    );
    // A thief replays the spent token: the whole family ends, the fresh access token with it.
    app.refresh(&first.refresh)
        .await
        .assert_error("UNAUTHENTICATED", None);
    for token in [&first, &rotated] {
        app.gql_as(token, ME, json!({}))
            .await
            .assert_error("UNAUTHENTICATED", None);
    }
}

/// The database is the truth: an instance that starts after a logout reads the ended sessions back.
async fn a_restarted_instance_still_refuses_an_ended_sessions_tokens(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann").await;
    logout(&app, &ann).await;
    let restarted = app.restart().await;
    restarted
        .gql_as(&ann, ME, json!({}))
        .await
        .assert_error("UNAUTHENTICATED", None);
}

/// Anyone may send a refresh or a logout with a garbage token. It is refused on a read, without
/// waiting for the write turn: while another write holds it (on SQLite, where every write of the
/// server waits for it, such requests used to queue in front of real writes), garbage is answered
/// at once; a live token's refresh waits its turn, then succeeds.
async fn refresh_tokens_that_are_not_live_are_refused_without_the_write_turn(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann").await;
    let held = app.state.begin_write().await.expect("a write transaction");
    for operation in [
        "mutation($t: String!) { refreshSession(refreshToken: $t) { accessToken } }",
        "mutation($t: String!) { logout(refreshToken: $t) }",
    ] {
        let refused = tokio::time::timeout(
            std::time::Duration::from_secs(3),
            app.gql(operation, json!({ "t": "not-a-refresh-token" })),
        )
        .await
        .unwrap_or_else(|_| panic!("{operation}: answered while a write is held"));
        refused.assert_error("UNAUTHENTICATED", None);
    }
    drop(held);
    let refreshed = app
        .gql(
            "mutation($t: String!) { refreshSession(refreshToken: $t) { accessToken } }",
            json!({ "t": ann.refresh }),
        )
        .await;
    assert!(refreshed.data()["refreshSession"]["accessToken"].is_string());
}

/// The session (refresh-token family) a refresh token belongs to.
async fn family_of(app: &TestApp, refresh: &str) -> uuid::Uuid {
    use rally::entity::refresh_token;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    refresh_token::Entity::find()
        .filter(refresh_token::Column::TokenHash.eq(rally::auth::RefreshToken::hash(refresh)))
        .one(&app.state.db)
        .await
        .expect("read")
        .expect("stored")
        .family_id
}

/// How many refresh tokens of `family` are stored.
async fn tokens_of(app: &TestApp, family: uuid::Uuid) -> u64 {
    use rally::entity::refresh_token;
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    refresh_token::Entity::find()
        .filter(refresh_token::Column::FamilyId.eq(family))
        .count(&app.state.db)
        .await
        .expect("counted")
}

/// Makes every refresh token of `family` expire two hours ago.
async fn expire(app: &TestApp, family: uuid::Uuid) {
    use rally::entity::refresh_token;
    use sea_orm::prelude::Expr;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    refresh_token::Entity::update_many()
        .col_expr(
            refresh_token::Column::ExpiresAt,
            Expr::value(chrono::Utc::now() - chrono::Duration::hours(2)),
        )
        .filter(refresh_token::Column::FamilyId.eq(family))
        .exec(&app.state.db)
        .await
        .expect("expired");
}

/// Revokes the refresh token `refresh` (only that one) three hours ago, and makes it expire two
/// hours ago.
async fn revoke_long_ago(app: &TestApp, refresh: &str) {
    use rally::entity::refresh_token;
    use sea_orm::prelude::Expr;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let now = chrono::Utc::now();
    refresh_token::Entity::update_many()
        .col_expr(
            refresh_token::Column::RevokedAt,
            Expr::value(now - chrono::Duration::hours(3)),
        )
        .col_expr(
            refresh_token::Column::ExpiresAt,
            Expr::value(now - chrono::Duration::hours(2)),
        )
        .filter(refresh_token::Column::TokenHash.eq(rally::auth::RefreshToken::hash(refresh)))
        .exec(&app.state.db)
        .await
        .expect("revoked");
}

/// Every login and refresh stores a token; the hourly `forget-old-rows` job deletes the tokens of
/// sessions that are over (every token expired, none revoked, more than an access token's lifetime
/// ago), a whole session at a time. It keeps a session ended within that time (an instance learns
/// ended sessions from its tokens, after a restart too), and a session with a token still valid
/// whose older token was revoked (a refresh that raced a logout made it; the revoked one is what
/// refuses it). An expired token is refused before and after, and live sessions go on.
async fn expired_refresh_tokens_are_forgotten_and_ended_sessions_stay_ended(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let old = app.signup("ann").await;
    let mut latest = old.refresh.clone();
    for _ in 0..2 {
        latest = app.refresh(&latest).await.data()["refreshSession"]["refreshToken"]
            .as_str()
            .expect("a refresh token")
            .to_owned();
    }
    let login = || async {
        crate::common::gql::session_from(&app.login("ann", "password-ann").await.data()["login"])
    };
    let (ended, live, raced) = (login().await, login().await, login().await);
    logout(&app, &ended).await;
    let (old_family, ended_family, raced_family) = (
        family_of(&app, &latest).await,
        family_of(&app, &ended.refresh).await,
        family_of(&app, &raced.refresh).await,
    );
    assert_eq!(
        tokens_of(&app, old_family).await,
        3,
        "a login and two refreshes"
    );
    // From here the server's own run of the job may come first (it leaves the same).
    expire(&app, old_family).await;
    expire(&app, ended_family).await;
    // The raced session: its first token revoked and expired hours ago, its refresh's still valid
    // and never revoked (the logout's update could not see it).
    let made_in_the_race = crate::common::gql::session_from(
        &app.refresh(&raced.refresh).await.data()["refreshSession"],
    );
    revoke_long_ago(&app, &raced.refresh).await;
    // Refused before the job and after it.
    let both_refused = || async {
        for dead in [&latest, &made_in_the_race.refresh] {
            app.refresh(dead)
                .await
                .assert_error("UNAUTHENTICATED", None);
        }
    };
    both_refused().await;

    app.run_hourly(
        "forget-test",
        rally::jobs::service::Work::ForgetOldRows,
        chrono::Utc::now(),
    )
    .await;
    assert_eq!(
        tokens_of(&app, old_family).await,
        0,
        "a session that is over"
    );
    assert_eq!(
        tokens_of(&app, ended_family).await,
        1,
        "a session ended just now stays"
    );
    assert_eq!(
        tokens_of(&app, raced_family).await,
        2,
        "a session with a valid token stays whole"
    );
    both_refused().await;

    let restarted = app.restart().await;
    restarted
        .gql_as(&ended, ME, json!({}))
        .await
        .assert_error("UNAUTHENTICATED", None);
    assert_eq!(
        restarted.gql_as(&live, ME, json!({})).await.data()["me"]["handle"],
        "ann"
    );
    let refreshed = restarted.refresh(&live.refresh).await;
    assert!(refreshed.data()["refreshSession"]["accessToken"].is_string());
}

/// A socket opened with one session's token and kept alive with a fresh token of another session
/// (a ping's payload) belongs to both: the end of either closes it with 4403.
async fn a_socket_extended_with_another_sessions_token_ends_with_either(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let first = app.signup("ann").await;
    for ended_first in [false, true] {
        let opened = crate::common::gql::session_from(
            &app.login("ann", "password-ann").await.data()["login"],
        );
        let fresh = crate::common::gql::session_from(
            &app.login("ann", "password-ann").await.data()["login"],
        );
        let mut socket = app.ws(TRANSPORT_WS).await;
        socket
            .init(json!({ "authorization": format!("Bearer {}", opened.access) }))
            .await;
        socket
            .send(json!({ "type": "ping", "payload": { "authorization": format!("Bearer {}", fresh.access) } }))
            .await;
        // Frames are handled in order: once this answers, the ping's token was taken.
        socket.subscribe("me", ME, json!({})).await;
        assert_eq!(socket.next_data("me").await["me"]["handle"], "ann");
        socket.until_complete("me").await;
        logout(&app, if ended_first { &opened } else { &fresh }).await;
        let closed = socket.closed().await;
        assert_eq!(closed.code, 4403, "ended first: {ended_first}, {closed:?}");
    }
    assert_eq!(
        app.gql_as(&first, ME, json!({})).await.data()["me"]["handle"],
        "ann",
        "the first session lives on"
    );
}
