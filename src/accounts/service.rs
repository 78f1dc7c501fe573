//! Account rules with storage: the only code that touches `users` and `refresh_tokens`.

use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};
use sea_orm::prelude::Expr;
use sea_orm::sea_query::{Alias, Func, LikeExpr, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Set,
};
use uuid::Uuid;

use super::model::{
    Bio, BodyWeightKg, DisplayName, Email, Handle, Login, Password, SessionEnded, sessions_ended,
};
use crate::auth::{AccessToken, RefreshToken};
use crate::db::{self, WriteTxn};
use crate::entity::user::{BodyType, Role};
use crate::entity::{refresh_token, user};
use crate::error::{Error, Result, UniqueKey};
use crate::live::Signal;
use crate::media::prepare_picture;
use crate::state::AppState;

/// Longest side of a stored avatar, in pixels.
pub const AVATAR_SIDE: u32 = 512;

/// A signed-in session: what signup, login and refresh hand back.
pub struct Session {
    /// The short-lived JWT.
    pub access: AccessToken,
    /// The opaque refresh token (shown once).
    pub refresh_token: String,
    /// Who signed in.
    pub user: user::Model,
}

/// A new account, parsed.
#[derive(Debug)]
pub struct NewAccount {
    /// Unique handle.
    pub handle: Handle,
    /// Unique email.
    pub email: Email,
    /// To hash.
    pub password: Password,
    /// Defaults to the handle.
    pub display_name: Option<DisplayName>,
}

/// Profile changes, parsed; `None` keeps a field, `Some(None)` clears a clearable one.
#[derive(Debug, Default)]
pub struct ProfileChanges {
    /// New display name.
    pub display_name: Option<DisplayName>,
    /// New or cleared bio.
    pub bio: Option<Bio>,
    /// New or cleared body weight.
    pub body_weight_kg: Option<Option<BodyWeightKg>>,
    /// New or cleared body type.
    pub body_type: Option<Option<BodyType>>,
}

/// Creates an account and signs it in. Duplicate handle or email: CONFLICT naming the field.
#[tracing::instrument(skip_all, fields(handle = account.handle.as_str()))]
pub async fn signup(
    state: &AppState,
    client: Option<IpAddr>,
    account: NewAccount,
) -> Result<Session> {
    if let Some(address) = client {
        state.auth_limits.check_address(address).await?;
    }
    let taken = user::Entity::find()
        .filter(
            user::Column::Handle
                .eq(account.handle.as_str())
                .or(user::Column::Email.eq(account.email.as_str())),
        )
        .one(&state.db)
        .await?;
    if let Some(existing) = taken {
        return Err(taken_error(existing.handle == account.handle.as_str()));
    }
    let password_hash = state.passwords.hash(account.password.into_inner()).await?;
    let now = Utc::now();
    let role = if state.config.is_admin_handle(account.handle.as_str()) {
        Role::Admin
    } else {
        Role::User
    };
    let display_name = account
        .display_name
        .map(DisplayName::into_inner)
        .unwrap_or_else(|| account.handle.as_str().to_owned());
    let row = user::ActiveModel {
        id: Set(Uuid::now_v7()),
        handle: Set(account.handle.as_str().to_owned()),
        email: Set(account.email.as_str().to_owned()),
        password_hash: Set(password_hash),
        display_name: Set(display_name),
        bio: Set(None),
        avatar_key: Set(None),
        role: Set(role),
        body_weight_kg: Set(None),
        body_type: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    };
    // The check above gives a friendly answer; the unique indexes settle races. The account and
    // its first session commit together: a sign-up that fails leaves no account behind (whose
    // handle a retry would find taken).
    let txn = state.begin_write().await?;
    let created = row.insert(&*txn).await.map_err(|err| {
        Error::on_constraint(
            err,
            &[
                (HANDLE_KEY, || taken_error(true)),
                (EMAIL_KEY, || taken_error(false)),
            ],
        )
    })?;
    let session = issue_session(state, &*txn, created, Family::new()).await?;
    txn.commit().await?;
    Ok(session)
}

/// `users_handle_key` (see the accounts migration).
const HANDLE_KEY: UniqueKey = UniqueKey {
    name: "users_handle_key",
    table: "users",
    columns: &["handle"],
};

/// `users_email_key` (see the accounts migration).
const EMAIL_KEY: UniqueKey = UniqueKey {
    name: "users_email_key",
    table: "users",
    columns: &["email"],
};

fn taken_error(handle: bool) -> Error {
    if handle {
        Error::conflict("input.handle", "this handle is taken")
    } else {
        Error::conflict("input.email", "this email is already registered")
    }
}

/// Makes the ADMIN role follow `admins` (`RALLY_ADMINS`) at start-up: listed accounts are
/// promoted, and admins no longer listed are demoted, since the list is the only way to the role
/// (their access tokens keep it until they expire; a refresh issues the new role). A listed handle
/// without an account is logged: whoever signs up with it first becomes admin, so sign it up first.
#[tracing::instrument(skip_all)]
pub async fn apply_admins(db: &impl ConnectionTrait, admins: &[String]) -> Result<()> {
    let listed: Vec<String> = admins
        .iter()
        .map(|admin| admin.trim().to_ascii_lowercase())
        .filter(|admin| !admin.is_empty())
        .collect();
    let promoted = user::Entity::update_many()
        .col_expr(user::Column::Role, Expr::value(Role::Admin))
        .filter(user::Column::Handle.is_in(listed.iter().cloned()))
        .filter(user::Column::Role.ne(Role::Admin))
        .exec(db)
        .await?
        .rows_affected;
    let mut no_longer_listed = user::Entity::update_many()
        .col_expr(user::Column::Role, Expr::value(Role::User))
        .filter(user::Column::Role.eq(Role::Admin));
    if !listed.is_empty() {
        no_longer_listed =
            no_longer_listed.filter(user::Column::Handle.is_not_in(listed.iter().cloned()));
    }
    let demoted = no_longer_listed.exec(db).await?.rows_affected;
    if promoted + demoted > 0 {
        tracing::info!(promoted, demoted, "admin roles follow RALLY_ADMINS");
    }
    let existing: Vec<String> = user::Entity::find()
        .select_only()
        .column(user::Column::Handle)
        .filter(user::Column::Handle.is_in(listed.iter().cloned()))
        .into_tuple()
        .all(db)
        .await?;
    for handle in listed.iter().filter(|handle| !existing.contains(handle)) {
        tracing::warn!(
            handle = handle.as_str(),
            "RALLY_ADMINS lists a handle with no account: whoever signs up with it becomes admin"
        );
    }
    Ok(())
}

/// Signs in with a handle or an email. An unknown login and a wrong password fail alike.
#[tracing::instrument(skip_all)]
pub async fn login(
    state: &AppState,
    client: Option<IpAddr>,
    login: Login,
    password: String,
) -> Result<Session> {
    if let Some(address) = client {
        state.auth_limits.check_address(address).await?;
    }
    state.auth_limits.check_login(login.as_str()).await?;
    let column = match &login {
        Login::Email(_) => user::Column::Email,
        Login::Handle(_) => user::Column::Handle,
    };
    // No account's handle or email holds a control character (and PostgreSQL refuses a NUL in
    // any text): such a login is unknown, and fails like one, after the decoy hash.
    let found = if login.as_str().chars().any(char::is_control) {
        None
    } else {
        user::Entity::find()
            .filter(column.eq(login.as_str()))
            .one(&state.db)
            .await?
    };
    let stored = found.as_ref().map(|u| u.password_hash.clone());
    if !state.passwords.verify(password, stored).await? {
        return Err(Error::Unauthenticated("wrong login or password"));
    }
    let Some(mut found) = found else {
        return Err(Error::Unauthenticated("wrong login or password"));
    };
    if found.role != Role::Admin && state.config.is_admin_handle(&found.handle) {
        let mut promote: user::ActiveModel = found.into();
        promote.role = Set(Role::Admin);
        found = promote.update(&*state.one_write().await).await?;
    }
    start_session(state, found).await
}

/// Exchanges a refresh token for a new session in the same family. A used token presented again
/// revokes its whole family: either the client or a thief replayed it, and we cannot tell which.
#[tracing::instrument(skip_all)]
pub async fn refresh(state: &AppState, presented: &str) -> Result<Session> {
    // A token that is not live is refused on a read, before the write turn: anyone may send
    // garbage, and on SQLite every write of the server waits its turn behind the transaction.
    let live = live_token(&state.db, presented).await?;
    // Counted per user before anything changes: a refused refresh leaves its token live.
    state.refreshes.check(live.user_id).await?;
    let txn = state.begin_write().await?;
    let token = live_token(&*txn, presented).await?;
    let now = Utc::now();
    if token.used_at.is_some() {
        end_session(state, txn, token.family_id).await?;
        tracing::warn!(family = %token.family_id, "refresh token reused; family revoked");
        return Err(bad_refresh());
    }
    // A session older than `RALLY_SESSION_MAX_DAYS` ends (its tokens were issued before the limit,
    // or under a longer one): the user signs in again.
    let family = Family::of(&token);
    if family.ends(&state.config) <= now {
        end_session(state, txn, token.family_id).await?;
        return Err(bad_refresh());
    }
    // Conditional update: of two concurrent refreshes with one token, exactly one wins.
    let marked = refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::UsedAt, Expr::value(now))
        .filter(refresh_token::Column::Id.eq(token.id))
        .filter(refresh_token::Column::UsedAt.is_null())
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(&*txn)
        .await?;
    if marked.rows_affected != 1 {
        end_session(state, txn, token.family_id).await?;
        return Err(bad_refresh());
    }
    let owner = user::Entity::find_by_id(token.user_id)
        .one(&*txn)
        .await?
        .ok_or_else(bad_refresh)?;
    let session = issue_session(state, &*txn, owner, family).await?;
    txn.commit().await?;
    Ok(session)
}

/// Ends the session the refresh token belongs to (its whole family).
#[tracing::instrument(skip_all)]
pub async fn logout(state: &AppState, presented: &str) -> Result<()> {
    // As in `refresh`: garbage is refused before the write turn.
    live_token(&state.db, presented).await?;
    let txn = state.begin_write().await?;
    let token = live_token(&*txn, presented).await?;
    end_session(state, txn, token.family_id).await?;
    if token.used_at.is_some() {
        return Err(bad_refresh());
    }
    Ok(())
}

/// The stored token for `presented`, if it is neither revoked nor expired.
async fn live_token(db: &impl ConnectionTrait, presented: &str) -> Result<refresh_token::Model> {
    let hash = RefreshToken::hash(presented.trim());
    let token = refresh_token::Entity::find()
        .filter(refresh_token::Column::TokenHash.eq(hash))
        .one(db)
        .await?
        .ok_or_else(bad_refresh)?;
    if token.revoked_at.is_some() || token.expires_at <= Utc::now() {
        return Err(bad_refresh());
    }
    // A token made by a refresh that raced the family's revocation (on PostgreSQL the revoking
    // update cannot see a row not yet committed) is dead with its family.
    let family_revoked = refresh_token::Entity::find()
        .filter(refresh_token::Column::FamilyId.eq(token.family_id))
        .filter(refresh_token::Column::RevokedAt.is_not_null())
        .one(db)
        .await?
        .is_some();
    if family_revoked {
        return Err(bad_refresh());
    }
    Ok(token)
}

fn bad_refresh() -> Error {
    Error::Unauthenticated("invalid refresh token")
}

/// Revokes the session `family` in `txn` and commits: its refresh tokens are dead in the database,
/// its access tokens are refused on this instance from now on and, through the broker, on every
/// other within moments; open websockets of the session close with 4403.
async fn end_session(state: &AppState, mut txn: WriteTxn, family: Uuid) -> Result<()> {
    refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(Utc::now()))
        .filter(refresh_token::Column::FamilyId.eq(family))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(&*txn)
        .await?;
    txn.publish(&sessions_ended(), &SessionEnded { session: family });
    txn.commit().await?;
    state.tokens.revoke(family);
    Ok(())
}

/// How often the database is read for ended sessions besides the broker: a revocation whose message
/// was lost (Redis away, a full outbox) still ends its tokens here within this time.
const ENDED_SESSIONS_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Keeps this instance's set of ended sessions whole for as long as it runs: the sessions the
/// database says were revoked within a token's lifetime (read before this returns, so an instance
/// never serves without them), then, in the returned task, every session ended on any instance
/// (through the broker, within moments), and the database again every
/// `ENDED_SESSIONS_POLL` (2 s) and whenever the broker may have dropped messages, so a lost message
/// delays an ending by seconds, never until the tokens expire.
pub async fn follow_ended_sessions(state: AppState) -> tokio::task::JoinHandle<()> {
    let mut feed = state.live.subscribe(&sessions_ended());
    load_ended_sessions(&state).await;
    tokio::spawn(async move {
        let mut poll = tokio::time::interval(ENDED_SESSIONS_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                signal = feed.next() => match signal {
                    Some(Signal::Message(ended)) => state.tokens.revoke(ended.session),
                    Some(Signal::Resync) => load_ended_sessions(&state).await,
                    None => break,
                },
                _ = poll.tick() => load_ended_sessions(&state).await,
            }
        }
    })
}

/// Lists the sessions revoked within a token's lifetime, retrying (with backoff) until the database
/// answers.
async fn load_ended_sessions(state: &AppState) {
    let mut backoff = std::time::Duration::from_millis(100);
    loop {
        match recently_ended(state).await {
            Ok(ended) => {
                let horizon = state.tokens.revocation_horizon().as_secs();
                let horizon = i64::try_from(horizon).unwrap_or(i64::MAX / 2);
                state.tokens.revocations().revoke_many(
                    ended
                        .into_iter()
                        .map(|(family, revoked_at)| (family, revoked_at.timestamp() + horizon)),
                );
                return;
            }
            Err(err) => {
                err.report();
                tracing::warn!("cannot read ended sessions; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
            }
        }
    }
}

/// How long after its revocation a session's access tokens may still be presented.
fn revocation_horizon(state: &AppState) -> Result<Duration> {
    Duration::from_std(state.tokens.revocation_horizon()).map_err(Error::internal)
}

/// Sessions revoked within a token's lifetime, with when (an index on `revoked_at` serves it):
/// one row per session and revocation time, not one per token (a long session that refreshed
/// every few minutes has thousands, all revoked by one update, so all with one time).
async fn recently_ended(state: &AppState) -> Result<Vec<(Uuid, chrono::DateTime<Utc>)>> {
    let horizon = revocation_horizon(state)?;
    let rows: Vec<(Uuid, Option<chrono::DateTime<Utc>>)> = refresh_token::Entity::find()
        .select_only()
        .column(refresh_token::Column::FamilyId)
        .column(refresh_token::Column::RevokedAt)
        .distinct()
        .filter(refresh_token::Column::RevokedAt.gt(Utc::now() - horizon))
        .into_tuple()
        .all(&state.db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(family, revoked_at)| Some((family, revoked_at?)))
        .collect())
}

/// Sessions whose refresh tokens are forgotten per write transaction.
const FORGET_SESSIONS: u64 = 100;

/// Deletes, a batch of sessions per write transaction, the refresh tokens of sessions that are
/// over: every token of the session expired, and none was revoked, a token's lifetime before
/// `moment`. A whole session or nothing: a session's revoked tokens are what refuses a token its
/// refresh made while a logout ran, for as long as that one lives, and an ending within an access
/// token's lifetime is read from them (see `recently_ended`). A session whose tokens all expired
/// can be neither refreshed nor ended, so nothing is lost. Returns how many tokens went.
pub async fn forget_expired_tokens(state: &AppState, moment: DateTime<Utc>) -> Result<u64> {
    let before = moment - revocation_horizon(state)?;
    let others = Alias::new("others");
    let over = || {
        Expr::exists(
            Query::select()
                .expr(Expr::val(1))
                .from_as(refresh_token::Entity, others.clone())
                .and_where(
                    Expr::col((others.clone(), refresh_token::Column::FamilyId))
                        .equals((refresh_token::Entity, refresh_token::Column::FamilyId)),
                )
                .cond_where(
                    Condition::any()
                        .add(
                            Expr::col((others.clone(), refresh_token::Column::ExpiresAt))
                                .gte(before),
                        )
                        .add(
                            Expr::col((others.clone(), refresh_token::Column::RevokedAt))
                                .gte(before),
                        ),
                )
                .to_owned(),
        )
        .not()
    };
    let mut forgotten = 0;
    loop {
        let txn = state.begin_write().await?;
        let sessions: Vec<Uuid> = refresh_token::Entity::find()
            .select_only()
            .column(refresh_token::Column::FamilyId)
            .distinct()
            .filter(refresh_token::Column::ExpiresAt.lt(before))
            .filter(over())
            .limit(FORGET_SESSIONS)
            .into_tuple()
            .all(&*txn)
            .await?;
        if sessions.is_empty() {
            return Ok(forgotten);
        }
        forgotten += refresh_token::Entity::delete_many()
            .filter(refresh_token::Column::FamilyId.is_in(sessions))
            .filter(over())
            .exec(&*txn)
            .await?
            .rows_affected;
        txn.commit().await?;
    }
}

/// Signs `user` in: a new session (refresh-token family, whose UUID v7 id says when it began).
async fn start_session(state: &AppState, user: user::Model) -> Result<Session> {
    issue_session(state, &*state.one_write().await, user, Family::new()).await
}

/// A session: the refresh-token family of one sign-in, and when it began.
struct Family {
    id: Uuid,
    began: DateTime<Utc>,
}

impl Family {
    /// A new session, beginning now.
    fn new() -> Self {
        Self {
            id: Uuid::now_v7(),
            began: Utc::now(),
        }
    }

    /// The family of `token`. Its id is the UUID v7 made at sign-in ([`start_session`]), so the id
    /// tells when the session began, with no query (a family id of another version, which Rally
    /// does not make, counts from this token's issue).
    fn of(token: &refresh_token::Model) -> Self {
        let began = token
            .family_id
            .get_timestamp()
            .and_then(|stamp| {
                let (seconds, nanos) = stamp.to_unix();
                DateTime::from_timestamp(i64::try_from(seconds).ok()?, nanos)
            })
            .unwrap_or(token.created_at);
        Self {
            id: token.family_id,
            began,
        }
    }

    /// When the session ends however often its token is exchanged (`RALLY_SESSION_MAX_DAYS`
    /// after it began).
    fn ends(&self, config: &crate::config::Config) -> DateTime<Utc> {
        self.began + config.session_max_age()
    }
}

/// Stores a new refresh token in `family` and signs an access token. The refresh token lives
/// `RALLY_REFRESH_TOKEN_TTL_DAYS`, and never past the end of its session.
async fn issue_session(
    state: &AppState,
    db: &impl ConnectionTrait,
    user: user::Model,
    family: Family,
) -> Result<Session> {
    let refresh = RefreshToken::generate();
    let now = Utc::now();
    let ttl_days =
        i64::try_from(state.config.refresh_token_ttl_days).unwrap_or(i64::MAX / 86_400_000);
    let expires_at = (now + Duration::days(ttl_days)).min(family.ends(&state.config));
    refresh_token::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user.id),
        family_id: Set(family.id),
        token_hash: Set(refresh.hash),
        created_at: Set(now),
        expires_at: Set(expires_at),
        used_at: Set(None),
        revoked_at: Set(None),
    }
    .insert(db)
    .await?;
    let access = state.tokens.issue(user.id, user.role, family.id)?;
    Ok(Session {
        access,
        refresh_token: refresh.token,
        user,
    })
}

/// The user with this id, if any.
pub async fn find_by_id(state: &AppState, id: Uuid) -> Result<Option<user::Model>> {
    Ok(user::Entity::find_by_id(id).one(&state.db).await?)
}

/// The users with these ids (in no particular order).
pub async fn find_many(state: &AppState, ids: &[Uuid]) -> Result<Vec<user::Model>> {
    Ok(db::find_by_keys(&state.db, "users by id", ids, |ids| {
        user::Entity::find().filter(user::Column::Id.is_in(ids.iter().copied()))
    })
    .await?)
}

/// Takes `user`'s turn for changes that must see each other (their availabilities, their live cup
/// codes): on PostgreSQL a lock on their `users` row, held until `txn` ends (SQLite's write
/// transactions take turns already). FOR NO KEY UPDATE (see [`WriteTxn::locking`]) lets the
/// foreign-key checks of rows referencing the user (a booking of their slot) through, so the two
/// cannot deadlock.
#[tracing::instrument(skip(txn))]
pub async fn take_turn(txn: &WriteTxn, user: Uuid) -> Result<()> {
    if txn.get_database_backend() == DatabaseBackend::Postgres {
        txn.locking(user::Entity::find_by_id(user))
            .select_only()
            .column(user::Column::Id)
            .into_tuple::<Uuid>()
            .one(&**txn)
            .await?;
    }
    Ok(())
}

/// The user with this handle, if any.
pub async fn find_by_handle(state: &AppState, handle: &Handle) -> Result<Option<user::Model>> {
    Ok(user::Entity::find()
        .filter(user::Column::Handle.eq(handle.as_str()))
        .one(&state.db)
        .await?)
}

/// Users by handle, optionally matching `search` in handle or display name (case-insensitive),
/// after the handle `after`; at most `limit`, plus whether more follow.
#[tracing::instrument(skip(state))]
pub async fn list(
    state: &AppState,
    search: Option<&str>,
    after: Option<&str>,
    limit: u64,
) -> Result<(Vec<user::Model>, bool)> {
    let mut query = user::Entity::find().order_by_asc(user::Column::Handle);
    if let Some(search) = search.map(str::trim).filter(|s| !s.is_empty()) {
        let pattern = format!("%{}%", escape_like(&search.to_lowercase()));
        query = query.filter(
            Expr::expr(Func::lower(Expr::col(user::Column::Handle)))
                .like(LikeExpr::new(pattern.clone()).escape('\\'))
                .or(
                    Expr::expr(Func::lower(Expr::col(user::Column::DisplayName)))
                        .like(LikeExpr::new(pattern).escape('\\')),
                ),
        );
    }
    if let Some(after) = after {
        query = query.filter(user::Column::Handle.gt(after));
    }
    Ok(crate::db::page(&state.db, query, limit).await?)
}

/// Escapes `%`, `_` and `\` for a LIKE pattern with `\` as the escape character.
pub fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Applies profile changes and returns the updated user. (The changes stay out of the trace: body
/// weight and type are private.)
#[tracing::instrument(skip(state, changes))]
pub async fn update_profile(
    state: &AppState,
    user_id: Uuid,
    changes: ProfileChanges,
) -> Result<user::Model> {
    let current = user::Entity::find_by_id(user_id)
        .one(&state.db)
        .await?
        .ok_or(Error::Unauthenticated("this account no longer exists"))?;
    let mut row: user::ActiveModel = current.into();
    if let Some(name) = changes.display_name {
        row.display_name = Set(name.into_inner());
    }
    if let Some(bio) = changes.bio {
        row.bio = Set(bio.into_inner());
    }
    if let Some(weight) = changes.body_weight_kg {
        row.body_weight_kg = Set(weight.map(BodyWeightKg::get));
    }
    if let Some(body_type) = changes.body_type {
        row.body_type = Set(body_type);
    }
    row.updated_at = Set(Utc::now());
    Ok(row.update(&*state.one_write().await).await?)
}

/// Which of the stored pictures `keys` (a few hundred at most) are accounts' avatars.
#[tracing::instrument(skip_all, fields(keys = keys.len()))]
pub async fn avatars_among(state: &AppState, keys: &[String]) -> Result<Vec<String>> {
    Ok(user::Entity::find()
        .select_only()
        .column(user::Column::AvatarKey)
        .filter(user::Column::AvatarKey.is_in(keys.iter().cloned()))
        .into_tuple::<String>()
        .all(&state.db)
        .await?)
}

/// Checks, re-encodes and stores a new avatar; the old picture is deleted afterwards.
#[tracing::instrument(skip(state, bytes), fields(bytes = bytes.len()))]
pub async fn set_avatar(state: &AppState, user_id: Uuid, bytes: Vec<u8>) -> Result<user::Model> {
    state.uploads.check(user_id).await?;
    let picture = prepare_picture(bytes, state.image_limits(), AVATAR_SIDE, "file").await?;
    state
        .media
        .replace_picture(picture, |key| swap_avatar(state, user_id, key))
        .await
}

/// Puts the stored picture `key` on the account; the account as it is now and the key it
/// replaced, read under the row's lock in the write that replaces it (of two uploads at once, each
/// deletes the picture it replaced).
async fn swap_avatar(
    state: &AppState,
    user_id: Uuid,
    key: String,
) -> Result<(user::Model, Option<String>)> {
    let txn = state.begin_write().await?;
    let current = txn
        .locking(user::Entity::find_by_id(user_id))
        .one(&*txn)
        .await?
        .ok_or(Error::Unauthenticated("this account no longer exists"))?;
    let old = current.avatar_key.clone();
    let mut row: user::ActiveModel = current.into();
    row.avatar_key = Set(Some(key));
    row.updated_at = Set(Utc::now());
    let updated = row.update(&*txn).await?;
    txn.commit().await?;
    Ok((updated, old))
}

#[cfg(test)]
mod tests {
    use super::escape_like;

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(escape_like("50%_a\\b"), "50\\%\\_a\\\\b");
    }
}
