//! Cup rules with storage: the only code touching `cup_sessions`, `cup_codes` and `drink_orders`, the publisher
//! of `event:{id}:sessions` and `event:{id}:scores`, and the live streams built on them.

use std::collections::HashMap;

use chrono::Utc;
use futures_util::{Stream, StreamExt};
use sea_orm::prelude::Expr;
use sea_orm::sea_query::Func;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, Set, TryInsertResult,
};
use uuid::Uuid;

use super::model::{CupCode, CupSessionState, Drink, SCORES, SESSIONS, ScoresChanged};
use crate::accounts;
use crate::accounts::model::Handle;
use crate::auth::Identity;
use crate::db::{self, WriteTxn};
use crate::entity::cup_session::{self, Status};
use crate::entity::event::{self, Status as EventStatus};
use crate::entity::{cup_code, drink_order, user};
use crate::error::{Error, Result};
use crate::events;
use crate::live::{self, Change, Missing, Signal};
use crate::state::AppState;

/// Announces a session changed by a single statement.
fn announce(state: &AppState, session: &cup_session::Model, score_changed: bool) {
    let event = session.event_id;
    state
        .live
        .publish(&SESSIONS.of(event), &session.clone().into());
    if score_changed {
        state
            .live
            .publish(&SCORES.of(event), &ScoresChanged { event_id: event });
    }
}

/// Announces a session changed inside `txn` (sent once it commits).
fn announce_in(txn: &mut WriteTxn, session: &cup_session::Model, score_changed: bool) {
    let event = session.event_id;
    txn.publish(&SESSIONS.of(event), &session.clone().into());
    if score_changed {
        txn.publish(&SCORES.of(event), &ScoresChanged { event_id: event });
    }
}

/// The session with this id, if any.
pub async fn find(state: &AppState, id: Uuid) -> Result<Option<cup_session::Model>> {
    Ok(cup_session::Entity::find_by_id(id).one(&state.db).await?)
}

async fn require(state: &AppState, id: Uuid) -> Result<cup_session::Model> {
    find(state, id)
        .await?
        .ok_or(Error::NotFound("no such cup session"))
}

/// The session and its event, after checking `actor` is staff (any role) or the organizer.
async fn as_crew(
    state: &AppState,
    actor: Identity,
    id: Uuid,
) -> Result<(cup_session::Model, event::Model)> {
    let session = require(state, id).await?;
    let event = events::service::require_crew(
        state,
        actor,
        session.event_id,
        &[],
        "only the event's staff may record on cups",
    )
    .await?;
    Ok((session, event))
}

/// Whether `viewer` may see the private side of `session` (bill, drinks, alcohol): the guest, the
/// event's staff and organizer, admins.
pub async fn can_see(
    state: &AppState,
    viewer: Option<Identity>,
    session: &cup_session::Model,
) -> Result<bool> {
    let Some(viewer) = viewer else {
        return Ok(false);
    };
    if viewer.user_id == session.user_id || viewer.is_admin {
        return Ok(true);
    }
    let event = events::service::require(state, session.event_id).await?;
    events::service::is_crew(state, viewer, &event, &[]).await
}

/// The session, when `viewer` may see it whole (see [`can_see`]); `None` otherwise.
pub async fn visible(
    state: &AppState,
    viewer: Option<Identity>,
    id: Uuid,
) -> Result<Option<cup_session::Model>> {
    let Some(session) = find(state, id).await? else {
        return Ok(None);
    };
    Ok(can_see(state, viewer, &session).await?.then_some(session))
}

/// The guest's OPEN session at the event, if any.
pub async fn open_session_of(
    db: &impl ConnectionTrait,
    event: Uuid,
    user: Uuid,
) -> Result<Option<cup_session::Model>> {
    Ok(cup_session::Entity::find()
        .filter(cup_session::Column::EventId.eq(event))
        .filter(cup_session::Column::UserId.eq(user))
        .filter(cup_session::Column::Status.eq(Status::Open))
        .one(db)
        .await?)
}

/// The guest's newest session at the event (open or closed), if any.
pub async fn latest_session_of(
    db: &impl ConnectionTrait,
    event: Uuid,
    user: Uuid,
) -> Result<Option<cup_session::Model>> {
    Ok(cup_session::Entity::find()
        .filter(cup_session::Column::EventId.eq(event))
        .filter(cup_session::Column::UserId.eq(user))
        .order_by_desc(cup_session::Column::OpenedAt)
        .one(db)
        .await?)
}

/// Staff: who a handle is, and their open session at the event (`None` for a handle that cannot
/// name anyone, and for one that names nobody).
pub async fn event_guest(
    state: &AppState,
    actor: Identity,
    event_id: Uuid,
    handle: Option<Handle>,
) -> Result<Option<(user::Model, Option<cup_session::Model>)>> {
    events::service::require_crew(
        state,
        actor,
        event_id,
        &[],
        "only the event's staff may look guests up",
    )
    .await?;
    let Some(handle) = handle else {
        return Ok(None);
    };
    let Some(guest) = accounts::service::find_by_handle(state, &handle).await? else {
        return Ok(None);
    };
    let open = open_session_of(&state.db, event_id, guest.id).await?;
    Ok(Some((guest, open)))
}

/// The most live (unused, unexpired) codes one guest holds for one event; asking for another
/// retires the oldest.
const LIVE_CODES: usize = 5;

/// A guest's code, as `requestCupCode` returns it.
pub struct IssuedCode {
    /// The code to show at the bar.
    pub code: CupCode,
    /// When it stops working.
    pub expires_at: chrono::DateTime<Utc>,
}

/// The guest asks for a cup: a new single-use code for this event (SCHEDULED or LIVE), valid for
/// `RALLY_CUP_CODE_TTL_SECONDS`. Only its HMAC is stored; used and expired codes of the guest at
/// this event are swept, and at most `LIVE_CODES` stay live.
#[tracing::instrument(skip(state))]
pub async fn request_code(state: &AppState, guest: Identity, event_id: Uuid) -> Result<IssuedCode> {
    let event = events::service::require(state, event_id).await?;
    if !matches!(event.status, EventStatus::Scheduled | EventStatus::Live) {
        return Err(Error::state_conflict(
            "cups are handed out only at SCHEDULED or LIVE events",
        ));
    }
    let code = CupCode::generate();
    let now = Utc::now();
    let ttl = i64::try_from(state.config.cup_code_ttl_seconds).unwrap_or(i64::MAX);
    let expires_at = now + chrono::Duration::seconds(ttl);
    let hash = state
        .tokens
        .derive(CODE_PURPOSE, &code.message(event_id, guest.user_id))?;
    let txn = state.begin_write().await?;
    events::service::hold(&txn, event_id).await?;
    // The guest's codes change one request at a time: two requests counting four live codes at
    // once would otherwise both keep them and make six.
    accounts::service::take_turn(&txn, guest.user_id).await?;
    let of_guest = || {
        cup_code::Entity::find()
            .filter(cup_code::Column::UserId.eq(guest.user_id))
            .filter(cup_code::Column::EventId.eq(event_id))
    };
    let mut retired: Vec<Uuid> = of_guest()
        .filter(
            cup_code::Column::UsedAt
                .is_not_null()
                .or(cup_code::Column::ExpiresAt.lte(now)),
        )
        .select_only()
        .column(cup_code::Column::Id)
        .into_tuple()
        .all(&*txn)
        .await?;
    let live: Vec<Uuid> = of_guest()
        .filter(cup_code::Column::UsedAt.is_null())
        .filter(cup_code::Column::ExpiresAt.gt(now))
        .order_by_desc(cup_code::Column::CreatedAt)
        .order_by_desc(cup_code::Column::Id)
        .select_only()
        .column(cup_code::Column::Id)
        .into_tuple()
        .all(&*txn)
        .await?;
    retired.extend(live.into_iter().skip(LIVE_CODES - 1));
    if !retired.is_empty() {
        cup_code::Entity::delete_many()
            .filter(cup_code::Column::Id.is_in(retired))
            .exec(&*txn)
            .await?;
    }
    cup_code::ActiveModel {
        id: Set(Uuid::now_v7()),
        event_id: Set(event_id),
        user_id: Set(guest.user_id),
        code_hash: Set(hash),
        created_at: Set(now),
        expires_at: Set(expires_at),
        used_at: Set(None),
    }
    .insert(&*txn)
    .await?;
    txn.commit().await?;
    Ok(IssuedCode { code, expires_at })
}

/// What the HMAC of cup codes is derived for (see [`crate::auth::TokenKeys::derive`]).
const CODE_PURPOSE: &str = "cup-code";

/// The one refusal of a code, whatever the reason (wrong, used, expired, another guest's or another
/// event's, an unknown handle): the gateway learns nothing it could try again with.
pub fn bad_code() -> Error {
    Error::Forbidden("this code does not open a cup for this guest at this event")
}

/// Staff: a guest shows their code; returns their OPEN session at a LIVE event, opening one if
/// there is none. The code is spent by a conditional update in the same transaction, so it opens
/// at most once; the partial unique index settles two gateways opening at once (the loser reads
/// the winner's session). Attempts are counted per staff member (`RALLY_CUP_CODE_ATTEMPTS_PER_MINUTE`)
/// before anything else, so codes cannot be found by trying.
#[tracing::instrument(skip(state, code))]
pub async fn open(
    state: &AppState,
    actor: Identity,
    event_id: Uuid,
    handle: &Handle,
    code: &str,
) -> Result<cup_session::Model> {
    state.cup_code_attempts.check(actor.user_id).await?;
    let event = events::service::require_crew(
        state,
        actor,
        event_id,
        &[],
        "only the event's staff may hand out cups",
    )
    .await?;
    if event.status != EventStatus::Live {
        return Err(Error::state_conflict(
            "cups are handed out only while the event is LIVE",
        ));
    }
    let guest = accounts::service::find_by_handle(state, handle)
        .await?
        .ok_or_else(bad_code)?;
    let code = CupCode::parse(code).ok_or_else(bad_code)?;
    let hash = state
        .tokens
        .derive(CODE_PURPOSE, &code.message(event_id, guest.id))?;
    let now = Utc::now();
    let mut txn = state.begin_write().await?;
    // Still LIVE, and kept so until the cup is in (a finish or a deletion waits, or came first).
    if events::service::hold_as_is(&txn, event_id).await?.status != EventStatus::Live {
        return Err(Error::state_conflict(
            "cups are handed out only while the event is LIVE",
        ));
    }
    let spent = cup_code::Entity::update_many()
        .col_expr(cup_code::Column::UsedAt, Expr::value(now))
        .filter(cup_code::Column::UserId.eq(guest.id))
        .filter(cup_code::Column::EventId.eq(event_id))
        .filter(cup_code::Column::CodeHash.eq(hash))
        .filter(cup_code::Column::UsedAt.is_null())
        .filter(cup_code::Column::ExpiresAt.gt(now))
        .exec(&*txn)
        .await?;
    if spent.rows_affected != 1 {
        return Err(bad_code());
    }
    if let Some(open) = open_session_of(&*txn, event_id, guest.id).await? {
        txn.commit().await?;
        return Ok(open);
    }
    let id = Uuid::now_v7();
    // ON CONFLICT DO NOTHING: a concurrent opening's session wins (one OPEN per guest and event),
    // without aborting this transaction on PostgreSQL.
    let inserted = cup_session::Entity::insert(cup_session::ActiveModel {
        id: Set(id),
        event_id: Set(event_id),
        user_id: Set(guest.id),
        status: Set(Status::Open),
        cheers: Set(0),
        orders: Set(0),
        game_points: Set(0),
        score: Set(0),
        score_reached_at: Set(now),
        alcohol_grams: Set(0.0),
        bill_cents: Set(0),
        calories: Set(0),
        first_drink_at: Set(None),
        opened_at: Set(now),
        closed_at: Set(None),
        version: Set(1),
    })
    .on_conflict(OnConflict::new().do_nothing().to_owned())
    .do_nothing()
    .exec(&*txn)
    .await?;
    let session = open_session_of(&*txn, event_id, guest.id)
        .await?
        .ok_or_else(|| Error::state_conflict("the session changed; try again"))?;
    if matches!(inserted, TryInsertResult::Inserted(_)) {
        announce_in(&mut txn, &session, true);
    }
    txn.commit().await?;
    Ok(session)
}

/// An atomic update adding `by` to `counter` (cheers or game points) and to the score, which is
/// reached now (the leaderboard's tie-break).
fn add_to_score(counter: cup_session::Column, by: i32) -> sea_orm::UpdateMany<cup_session::Entity> {
    cup_session::Entity::update_many()
        .col_expr(counter, Expr::col(counter).add(by))
        .col_expr(
            cup_session::Column::Score,
            Expr::col(cup_session::Column::Score).add(by),
        )
        .col_expr(cup_session::Column::ScoreReachedAt, Expr::value(Utc::now()))
        .col_expr(
            cup_session::Column::Version,
            Expr::col(cup_session::Column::Version).add(1),
        )
}

/// Whether a conditional update of an OPEN session missed because it is closed (CONFLICT).
fn closed() -> Error {
    Error::state_conflict("this cup session is closed")
}

/// Staff: counts cheers, atomically. `count` as parsed: its error reaches staff only.
#[tracing::instrument(skip(state))]
pub async fn record_cheers(
    state: &AppState,
    actor: Identity,
    id: Uuid,
    count: Result<i32>,
) -> Result<cup_session::Model> {
    as_crew(state, actor, id).await?;
    let count = count?;
    let cheer = add_to_score(cup_session::Column::Cheers, count);
    update_open(state, id, cheer, true).await
}

/// Runs `update` of (at most) one session and returns the row as it left it. SeaORM's own
/// `exec_with_returning` needs a crate feature for SQLite that changes every insert; the clause
/// itself is in SQLite since 3.35 and in sea-query's builders.
async fn update_returning(
    db: &impl ConnectionTrait,
    update: sea_orm::UpdateMany<cup_session::Entity>,
) -> Result<Option<cup_session::Model>> {
    let mut statement = update.into_query();
    statement.returning_all();
    Ok(cup_session::Entity::find()
        .from_raw_sql(db.get_database_backend().build(&statement))
        .one(db)
        .await?)
}

/// Applies `update` to the session if it is still OPEN (else CONFLICT), then announces the row as
/// that update left it (`RETURNING`: a re-read could see a concurrent update's row too, and the
/// staff's feed would get one state twice and miss the other).
async fn update_open(
    state: &AppState,
    id: Uuid,
    update: sea_orm::UpdateMany<cup_session::Entity>,
    score_changed: bool,
) -> Result<cup_session::Model> {
    let update = update
        .filter(cup_session::Column::Id.eq(id))
        .filter(cup_session::Column::Status.eq(Status::Open));
    let session = update_returning(&*state.one_write().await, update)
        .await?
        .ok_or_else(closed)?;
    announce(state, &session, score_changed);
    Ok(session)
}

/// Staff: records a drink; the totals move atomically with the order row. `drink` as parsed: its
/// error reaches staff only.
#[tracing::instrument(skip(state))]
pub async fn record_drink(
    state: &AppState,
    actor: Identity,
    id: Uuid,
    drink: Result<Drink>,
) -> Result<cup_session::Model> {
    as_crew(state, actor, id).await?;
    let drink = drink?;
    let now = Utc::now();
    let grams = drink.alcohol_grams();
    let mut txn = state.begin_write().await?;
    // The update first: it locks the row and checks the session is still OPEN.
    let updated = cup_session::Entity::update_many()
        .col_expr(
            cup_session::Column::Orders,
            Expr::col(cup_session::Column::Orders).add(1),
        )
        .col_expr(
            cup_session::Column::BillCents,
            Expr::col(cup_session::Column::BillCents).add(drink.price_cents),
        )
        .col_expr(
            cup_session::Column::Calories,
            Expr::col(cup_session::Column::Calories).add(drink.calories),
        )
        .col_expr(
            cup_session::Column::AlcoholGrams,
            Expr::col(cup_session::Column::AlcoholGrams).add(grams),
        )
        .col_expr(
            cup_session::Column::FirstDrinkAt,
            Func::coalesce([
                Expr::col(cup_session::Column::FirstDrinkAt).into(),
                Expr::value(now),
            ])
            .into(),
        )
        .col_expr(
            cup_session::Column::Version,
            Expr::col(cup_session::Column::Version).add(1),
        )
        .filter(cup_session::Column::Id.eq(id))
        .filter(cup_session::Column::Status.eq(Status::Open))
        .exec(&*txn)
        .await?;
    if updated.rows_affected == 0 {
        return Err(closed());
    }
    drink_order::ActiveModel {
        id: Set(Uuid::now_v7()),
        session_id: Set(id),
        name: Set(drink.name),
        volume_ml: Set(drink.volume_ml),
        abv: Set(drink.abv),
        price_cents: Set(drink.price_cents),
        calories: Set(drink.calories),
        alcohol_grams: Set(grams),
        ordered_at: Set(now),
    }
    .insert(&*txn)
    .await?;
    let session = cup_session::Entity::find_by_id(id)
        .one(&*txn)
        .await?
        .ok_or(Error::NotFound("no such cup session"))?;
    announce_in(&mut txn, &session, false);
    txn.commit().await?;
    Ok(session)
}

/// Staff or the guest: closes the session; later updates get CONFLICT.
#[tracing::instrument(skip(state))]
pub async fn close(state: &AppState, actor: Identity, id: Uuid) -> Result<cup_session::Model> {
    let session = require(state, id).await?;
    if session.user_id != actor.user_id {
        as_crew(state, actor, id).await?;
    }
    let closing = cup_session::Entity::update_many()
        .col_expr(cup_session::Column::Status, Expr::value(Status::Closed))
        .col_expr(cup_session::Column::ClosedAt, Expr::value(Utc::now()))
        .col_expr(
            cup_session::Column::Version,
            Expr::col(cup_session::Column::Version).add(1),
        );
    // The board shows each entry's session (its status and close time): it is computed anew.
    update_open(state, id, closing, true).await
}

/// Adds game points to the player's OPEN session at the event inside the caller's transaction,
/// and announces the new score once it commits. A closed cup takes no more updates (as
/// `closeCupSession` promises), so a player without an open one scores in the game only. The
/// session is chosen by the update itself (a guest has at most one OPEN session per event), so a
/// cup closed or opened meanwhile is never missed nor written after its close.
pub async fn add_game_points(
    txn: &mut WriteTxn,
    event: Uuid,
    user: Uuid,
    points: i32,
) -> Result<()> {
    let update = add_to_score(cup_session::Column::GamePoints, points)
        .filter(cup_session::Column::EventId.eq(event))
        .filter(cup_session::Column::UserId.eq(user))
        .filter(cup_session::Column::Status.eq(Status::Open));
    let scored = update_returning(&**txn, update).await?;
    if let Some(session) = scored {
        announce_in(txn, &session, true);
    }
    Ok(())
}

/// Crew: every change of every cup session at the event, from now on. Bills are private, so
/// membership is checked again whenever the event changes (removing a staff member changes it) or
/// its changes may have been missed (a resync): a staff member removed from the event gets one
/// FORBIDDEN and the stream ends; the stream also ends when the event is deleted. Both topics are
/// subscribed before the first check, and the event's changes are read first when both are waiting;
/// no query runs per session change. A session change committed while a removal is being announced
/// can still reach the removed member (the removal deletes the row, then announces the event).
/// When session changes may have been missed (the subscriber fell behind, or the broker
/// reconnected), every session of the event is sent as it is now, and the messages that resync
/// already covered (by each session's version) are not sent again.
pub async fn follow_sessions(
    state: &AppState,
    actor: Identity,
    event_id: Uuid,
) -> Result<impl Stream<Item = Result<CupSessionState>> + Send + 'static> {
    const REFUSAL: &str = "only the event's staff and organizer follow its cups";
    let mut event_changes = state.live.subscribe(&events::model::CHANGES.of(event_id));
    let mut sessions = state.live.subscribe(&SESSIONS.of(event_id));
    let event = events::service::require_crew(state, actor, event_id, &[], REFUSAL).await?;
    let state = state.clone();
    Ok(async_stream::stream! {
        // The versions sent by the last resync: messages it already covered are not sent again.
        let mut resynced: HashMap<Uuid, i64> = HashMap::new();
        loop {
            tokio::select! {
                biased;
                Some(signal) = event_changes.next() => {
                    if events::service::gone(&state, event_id, &signal).await {
                        break;
                    }
                    match events::service::is_crew(&state, actor, &event, &[]).await {
                        Ok(true) => {}
                        Ok(false) => {
                            yield Err(Error::Forbidden(REFUSAL));
                            break;
                        }
                        Err(error) => {
                            yield Err(error);
                            break;
                        }
                    }
                }
                Some(signal) = sessions.next() => match signal {
                    Signal::Message(session) => {
                        if resynced.get(&session.id).is_none_or(|sent| session.version > *sent) {
                            yield Ok((*session).clone());
                        }
                    }
                    // Changes may have been missed (this subscriber fell behind, or the broker
                    // reconnected): every session of the event as it is now, so none stays stale.
                    Signal::Resync => match sessions_at(&state, event_id).await {
                        Ok(all) => {
                            resynced = all.iter().map(|s| (s.id, s.version)).collect();
                            for session in all {
                                yield Ok(session);
                            }
                        }
                        Err(error) => {
                            yield Err(error);
                            break;
                        }
                    },
                },
                else => break,
            }
        }
    })
}

/// Every session at the event as it is now, in the order they opened.
async fn sessions_at(state: &AppState, event_id: Uuid) -> Result<Vec<CupSessionState>> {
    Ok(cup_session::Entity::find()
        .filter(cup_session::Column::EventId.eq(event_id))
        .order_by_asc(cup_session::Column::OpenedAt)
        .order_by_asc(cup_session::Column::Id)
        .all(&state.db)
        .await?
        .into_iter()
        .map(CupSessionState::from)
        .collect())
}

/// The guest's own session at the event: the newest one first (when there is one), then every
/// change, and a new session when one opens; completes when the event is deleted.
pub async fn follow_mine(
    state: &AppState,
    me: Identity,
    event_id: Uuid,
) -> Result<impl Stream<Item = CupSessionState> + Send + 'static> {
    let deleted = events::service::deleted(state, event_id);
    events::service::require(state, event_id).await?;
    let feed = state.live.subscribe(&SESSIONS.of(event_id));
    let state = state.clone();
    let sessions = live::follow(
        feed,
        Missing::Wait,
        move || {
            let state = state.clone();
            async move {
                Ok(latest_session_of(&state.db, event_id, me.user_id)
                    .await?
                    .map(CupSessionState::from))
            }
        },
        move |session: &CupSessionState| {
            if session.user_id == me.user_id {
                Change::State(session.clone())
            } else {
                Change::Skip
            }
        },
    )
    .await?;
    Ok(sessions.take_until(deleted))
}

/// The drinks of these sessions, oldest first.
pub async fn drinks_of(state: &AppState, sessions: &[Uuid]) -> Result<Vec<drink_order::Model>> {
    Ok(
        db::find_by_keys(&state.db, "drinks by session", sessions, |sessions| {
            drink_order::Entity::find()
                .filter(drink_order::Column::SessionId.is_in(sessions.iter().copied()))
                .order_by_asc(drink_order::Column::OrderedAt)
                .order_by_asc(drink_order::Column::Id)
        })
        .await?,
    )
}

/// The top `limit` sessions of an event: score, then who reached it first.
pub async fn top_sessions(
    state: &AppState,
    event: Uuid,
    limit: u64,
) -> Result<Vec<cup_session::Model>> {
    Ok(cup_session::Entity::find()
        .filter(cup_session::Column::EventId.eq(event))
        .order_by_desc(cup_session::Column::Score)
        .order_by_asc(cup_session::Column::ScoreReachedAt)
        .order_by_asc(cup_session::Column::Id)
        .limit(limit)
        .all(&state.db)
        .await?)
}
