//! Meeting rules with storage: the only code touching `availabilities`, `meetings` and
//! `calendar_feeds`, and the publisher of `user:{id}:meetings`.
//!
//! The guarantees are the database's:
//! - **Exactly one booker.** Booking is one transaction: a conditional update of the slot
//!   (`SCHEDULED -> BOOKED WHERE status = 'SCHEDULED'`), then the insert of a CONFIRMED meeting, which
//!   the partial unique index `meetings_one_confirmed_key` admits once per slot. On PostgreSQL
//!   concurrent bookers queue on the slot's row and re-check the condition after the winner commits;
//!   on SQLite write transactions take turns. Either way one booker wins and the rest get CONFLICT.
//! - **No overlap for one owner.** Publishing or moving a slot checks the owner's SCHEDULED and
//!   BOOKED slots inside a write transaction that first locks the owner's `users` row on PostgreSQL
//!   (`SELECT … FOR NO KEY UPDATE`; portable to PostgreSQL-compatible engines, unlike an exclusion
//!   constraint), so two overlapping slots racing for one owner never both land; SQLite's write
//!   transactions are serialized already.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use futures_util::Stream;
use rand::RngCore;
use sea_orm::prelude::Expr;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Select, Set, UpdateMany,
};
use uuid::Uuid;

use super::model::{
    MEETINGS, MeetingChanged, MeetingEvent, MeetingState, Role, Sent, Slot, SlotRules,
    parse_reason, takes_part, unsent,
};
use crate::accounts;
use crate::accounts::model::Handle;
use crate::auth::{Identity, token_hash};
use crate::config::LONGEST_SLOT_MINUTES;
use crate::db::{self, WriteTxn};
use crate::entity::availability::{self, Status};
use crate::entity::calendar_feed;
use crate::entity::meeting::{self, Status as MeetingStatus};
use crate::error::{Error, Result, UniqueKey};
use crate::live::{CatchUp, Next};
use crate::state::AppState;

/// `meetings_one_confirmed_key` (see the meetings migration): one CONFIRMED meeting per slot.
const ONE_CONFIRMED_KEY: UniqueKey = UniqueKey {
    name: "meetings_one_confirmed_key",
    table: "meetings",
    columns: &["availability_id"],
};

/// What a calendar feed's token is derived for (with the user and the feed's nonce).
const FEED_PURPOSE: &str = "rally calendar feed v1";

/// How far back a calendar feed reaches, and how many meetings it holds at most.
const FEED_PAST_DAYS: i64 = 90;
const FEED_MAX: u64 = 1000;

/// The rules slots are checked against now.
pub fn slot_rules(state: &AppState) -> SlotRules {
    SlotRules {
        now: Utc::now(),
        max_length: Duration::minutes(
            i64::try_from(state.config.max_slot_minutes).unwrap_or(i64::MAX / 60_000),
        ),
    }
}

/// The longest a slot can be under any setting.
fn longest_slot() -> Duration {
    Duration::minutes(i64::try_from(LONGEST_SLOT_MINUTES).unwrap_or(i64::MAX / 60_000))
}

/// The availability with this id, or NOT_FOUND.
async fn require(db: &impl ConnectionTrait, id: Uuid) -> Result<availability::Model> {
    availability::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(Error::NotFound("no such availability"))
}

/// Whether `slot` overlaps one of `owner`'s SCHEDULED or BOOKED slots (other than `except`). No slot
/// is longer than `LONGEST_SLOT_MINUTES` under any setting, so only slots starting that long before
/// `slot` can reach it: the owner's older slots stay out of the index range read.
async fn overlaps(
    db: &impl ConnectionTrait,
    owner: Uuid,
    slot: &Slot,
    except: Option<Uuid>,
) -> Result<bool> {
    let mut query = availability::Entity::find()
        .filter(availability::Column::OwnerId.eq(owner))
        .filter(availability::Column::Status.is_in([Status::Scheduled, Status::Booked]))
        .filter(availability::Column::StartTime.lt(slot.end))
        .filter(availability::Column::StartTime.gt(slot.start - longest_slot()))
        .filter(availability::Column::EndTime.gt(slot.start));
    if let Some(except) = except {
        query = query.filter(availability::Column::Id.ne(except));
    }
    Ok(query.count(db).await? > 0)
}

/// Publishes `slots` for `owner`, all or none: any slot that overlaps one of the owner's (or
/// another of `slots`) refuses every one with CONFLICT on `overlap_field`.
#[tracing::instrument(skip(state, slots), fields(slots = slots.len()))]
pub async fn publish(
    state: &AppState,
    owner: Identity,
    slots: Vec<Slot>,
    overlap_field: &str,
) -> Result<Vec<availability::Model>> {
    let taken = || Error::conflict(overlap_field, "this overlaps one of your availabilities");
    for (i, slot) in slots.iter().enumerate() {
        if slots[..i].iter().any(|earlier| earlier.overlaps(slot)) {
            return Err(taken());
        }
    }
    let txn = state.begin_write().await?;
    accounts::service::take_turn(&txn, owner.user_id).await?;
    let now = Utc::now();
    // Counted in the owner's turn: two publications at once cannot both pass.
    let ahead = availability::Entity::find()
        .filter(availability::Column::OwnerId.eq(owner.user_id))
        .filter(availability::Column::Status.is_in([Status::Scheduled, Status::Booked]))
        .filter(availability::Column::EndTime.gt(now))
        .count(&*txn)
        .await?;
    let most = state.config.max_upcoming_slots;
    if ahead + slots.len() as u64 > most {
        return Err(Error::state_conflict(format!(
            "you have {ahead} availabilities ahead; one person may have {most}"
        )));
    }
    let mut created = Vec::with_capacity(slots.len());
    for slot in slots {
        if overlaps(&*txn, owner.user_id, &slot, None).await? {
            return Err(taken());
        }
        let row = availability::ActiveModel {
            id: Set(Uuid::now_v7()),
            owner_id: Set(owner.user_id),
            start_time: Set(slot.start),
            end_time: Set(slot.end),
            title: Set(slot.title),
            description: Set(slot.description),
            status: Set(Status::Scheduled),
            version: Set(1),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&*txn)
        .await?;
        created.push(row);
    }
    txn.commit().await?;
    Ok(created)
}

/// The owner moves or renames a SCHEDULED slot (the same rules as publishing it). `slot` as
/// parsed: its error reaches the owner only.
#[tracing::instrument(skip(state, slot))]
pub async fn update(
    state: &AppState,
    actor: Identity,
    id: Uuid,
    slot: Result<Slot>,
) -> Result<availability::Model> {
    let txn = state.begin_write().await?;
    let current = require(&*txn, id).await?;
    if current.owner_id != actor.user_id {
        return Err(Error::Forbidden("only its owner changes an availability"));
    }
    let slot = slot?;
    accounts::service::take_turn(&txn, actor.user_id).await?;
    if overlaps(&*txn, actor.user_id, &slot, Some(id)).await? {
        return Err(Error::conflict(
            "input.startTime",
            "this overlaps one of your availabilities",
        ));
    }
    let changed = changed_slots()
        .col_expr(availability::Column::StartTime, Expr::value(slot.start))
        .col_expr(availability::Column::EndTime, Expr::value(slot.end))
        .col_expr(availability::Column::Title, Expr::value(slot.title))
        .col_expr(
            availability::Column::Description,
            Expr::value(slot.description),
        )
        .filter(availability::Column::Id.eq(id))
        .filter(availability::Column::Status.eq(Status::Scheduled))
        .exec(&*txn)
        .await?;
    if changed.rows_affected == 0 {
        return Err(not_open(current.status));
    }
    let updated = require(&*txn, id).await?;
    txn.commit().await?;
    Ok(updated)
}

fn not_open(status: Status) -> Error {
    Error::state_conflict(match status {
        Status::Booked => "this availability is booked",
        _ => "this availability is cancelled",
    })
}

/// The owner withdraws a SCHEDULED slot: gone, or CANCELLED when cancelled meetings keep it as
/// their history.
#[tracing::instrument(skip(state))]
pub async fn delete(state: &AppState, actor: Identity, id: Uuid) -> Result<()> {
    let txn = state.begin_write().await?;
    // Locked until the end: a booking or a cancellation of it (which both change the row) waits,
    // so the status and the history read here are what the withdrawal acts on.
    let current = txn
        .locking(availability::Entity::find_by_id(id))
        .one(&*txn)
        .await?
        .ok_or(Error::NotFound("no such availability"))?;
    if current.owner_id != actor.user_id {
        return Err(Error::Forbidden("only its owner deletes an availability"));
    }
    if current.status != Status::Scheduled {
        return Err(not_open(current.status));
    }
    let booked_before = meeting::Entity::find()
        .filter(meeting::Column::AvailabilityId.eq(id))
        .count(&*txn)
        .await?
        > 0;
    if booked_before {
        changed_slots()
            .col_expr(availability::Column::Status, Expr::value(Status::Cancelled))
            .filter(availability::Column::Id.eq(id))
            .exec(&*txn)
            .await?;
    } else {
        availability::Entity::delete_by_id(id).exec(&*txn).await?;
    }
    txn.commit().await?;
    Ok(())
}

/// The availabilities with these ids (for the loader).
pub async fn find_many(state: &AppState, ids: &[Uuid]) -> Result<Vec<availability::Model>> {
    Ok(
        db::find_by_keys(&state.db, "availabilities by id", ids, |ids| {
            availability::Entity::find().filter(availability::Column::Id.is_in(ids.iter().copied()))
        })
        .await?,
    )
}

/// An update of slots that counts as a change: the version grows, `updated_at` moves.
fn changed_slots() -> UpdateMany<availability::Entity> {
    availability::Entity::update_many()
        .col_expr(
            availability::Column::Version,
            Expr::col(availability::Column::Version).add(1),
        )
        .col_expr(availability::Column::UpdatedAt, Expr::value(Utc::now()))
}

/// A `(start, id)` position in a list ordered by start.
pub type Position = (DateTime<Utc>, Uuid);

/// Rows after `after` in (start, id) order.
fn after_position<C: ColumnTrait>(start: C, id: C, after: Option<Position>) -> Condition {
    match after {
        None => Condition::all(),
        Some((at, last)) => Condition::any()
            .add(start.gt(at))
            .add(Condition::all().add(start.eq(at)).add(id.gt(last))),
    }
}

/// The first whole second at or after `time` (an exclusive bound on whole-second times).
fn ceil_second(time: DateTime<Utc>) -> DateTime<Utc> {
    let floor = time.trunc_subsecs(0);
    if floor == time {
        time
    } else {
        floor + Duration::seconds(1)
    }
}

/// Open (SCHEDULED) slots starting in [from, to), soonest first, optionally of one owner. A slot
/// that has started is not open any more (booking it is CONFLICT), so `from` is at least now.
#[tracing::instrument(skip(state))]
pub async fn search(
    state: &AppState,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    owner: Option<&Handle>,
    after: Option<Position>,
    limit: u64,
) -> Result<(Vec<availability::Model>, bool)> {
    let owner = match owner {
        Some(handle) => match accounts::service::find_by_handle(state, handle).await? {
            Some(owner) => Some(owner.id),
            None => return Ok((Vec::new(), false)),
        },
        None => None,
    };
    let query = search_query(from.max(Utc::now()), to, owner, after);
    Ok(crate::db::page(&state.db, query, limit).await?)
}

/// The query of [`search`] (public so a test can show its plan uses the index).
pub fn search_query(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    owner: Option<Uuid>,
    after: Option<Position>,
) -> Select<availability::Entity> {
    let mut query = availability::Entity::find()
        .filter(availability::Column::Status.eq(Status::Scheduled))
        .filter(availability::Column::StartTime.gte(ceil_second(from)))
        .filter(availability::Column::StartTime.lt(ceil_second(to)))
        .filter(after_position(
            availability::Column::StartTime,
            availability::Column::Id,
            after,
        ))
        .order_by_asc(availability::Column::StartTime)
        .order_by_asc(availability::Column::Id);
    if let Some(owner) = owner {
        query = query.filter(availability::Column::OwnerId.eq(owner));
    }
    query
}

/// The owner's slots of every status, soonest first.
pub async fn mine(
    state: &AppState,
    owner: Uuid,
    after: Option<Position>,
    limit: u64,
) -> Result<(Vec<availability::Model>, bool)> {
    let query = availability::Entity::find()
        .filter(availability::Column::OwnerId.eq(owner))
        .filter(after_position(
            availability::Column::StartTime,
            availability::Column::Id,
            after,
        ))
        .order_by_asc(availability::Column::StartTime)
        .order_by_asc(availability::Column::Id);
    Ok(crate::db::page(&state.db, query, limit).await?)
}

/// Books a slot for `actor`: exactly one booker wins (see the module docs); the others get
/// CONFLICT. Nobody books their own slot, nor one that has started.
#[tracing::instrument(skip(state))]
pub async fn book(state: &AppState, actor: Identity, id: Uuid) -> Result<meeting::Model> {
    let mut txn = state.begin_write().await?;
    let slot = require(&*txn, id).await?;
    if slot.owner_id == actor.user_id {
        return Err(Error::Forbidden("you cannot book your own availability"));
    }
    let now = Utc::now();
    // Counted in the booker's turn: two bookings at once cannot both pass.
    accounts::service::take_turn(&txn, actor.user_id).await?;
    let upcoming = meeting::Entity::find()
        .filter(meeting::Column::ParticipantId.eq(actor.user_id))
        .filter(meeting::Column::Status.eq(MeetingStatus::Confirmed))
        .filter(meeting::Column::EndTime.gt(now))
        .count(&*txn)
        .await?;
    let most = state.config.max_upcoming_bookings;
    if upcoming >= most {
        return Err(Error::state_conflict(format!(
            "you hold {upcoming} upcoming meetings; one person may hold {most}: cancel one first"
        )));
    }
    let taken = changed_slots()
        .col_expr(availability::Column::Status, Expr::value(Status::Booked))
        .filter(availability::Column::Id.eq(id))
        .filter(availability::Column::Status.eq(Status::Scheduled))
        .filter(availability::Column::StartTime.gt(now))
        .exec(&*txn)
        .await?;
    if taken.rows_affected == 0 {
        let current = require(&*txn, id).await?;
        return Err(Error::state_conflict(match current.status {
            Status::Booked => "this availability is already booked",
            Status::Cancelled => "this availability is cancelled",
            Status::Scheduled => "this availability has started",
        }));
    }
    // The slot as it was taken (an update may have committed since it was read above).
    let slot = require(&*txn, id).await?;
    let meeting = meeting::ActiveModel {
        id: Set(Uuid::now_v7()),
        availability_id: Set(id),
        owner_id: Set(slot.owner_id),
        participant_id: Set(actor.user_id),
        start_time: Set(slot.start_time),
        end_time: Set(slot.end_time),
        status: Set(MeetingStatus::Confirmed),
        sequence: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
        cancelled_at: Set(None),
        cancelled_by: Set(None),
        cancellation_reason: Set(None),
        title: Set(slot.title),
        description: Set(slot.description),
    }
    .insert(&*txn)
    .await
    .map_err(|err| {
        Error::on_constraint(
            err,
            &[(ONE_CONFIRMED_KEY, || {
                Error::state_conflict("this availability is already booked")
            })],
        )
    })?;
    announce(
        &mut txn,
        &meeting,
        MeetingEvent::Booked,
        &[meeting.owner_id],
    );
    txn.commit().await?;
    Ok(meeting)
}

/// Announces a meeting change to `users` once the transaction commits.
fn announce(txn: &mut WriteTxn, meeting: &meeting::Model, kind: MeetingEvent, users: &[Uuid]) {
    let change = MeetingChanged {
        meeting: meeting.clone().into(),
        kind,
    };
    for user in users {
        txn.publish(&MEETINGS.of(*user), &change);
    }
}

/// The owner or the participant cancels; the slot goes back to SCHEDULED if it still lies in the
/// future, else CANCELLED. Both hear of it (the contract: the owner of what happens to their slots,
/// participants of cancellations), whoever cancelled: the canceller's other devices learn it too.
#[tracing::instrument(skip(state, reason))]
pub async fn cancel(
    state: &AppState,
    actor: Identity,
    id: Uuid,
    reason: Option<&str>,
) -> Result<meeting::Model> {
    let mut txn = state.begin_write().await?;
    let current = visible_meeting(&*txn, actor.user_id, id).await?;
    let reason = parse_reason(reason)?;
    let now = Utc::now();
    // What is over stays as it happened (a booked slot cannot move, so the end is fixed).
    if current.status == MeetingStatus::Confirmed && current.end_time <= now {
        return Err(Error::state_conflict("this meeting has ended"));
    }
    let cancelled = meeting::Entity::update_many()
        .col_expr(
            meeting::Column::Status,
            Expr::value(MeetingStatus::Cancelled),
        )
        .col_expr(meeting::Column::CancelledAt, Expr::value(now))
        .col_expr(meeting::Column::CancelledBy, Expr::value(actor.user_id))
        .col_expr(meeting::Column::CancellationReason, Expr::value(reason))
        .col_expr(
            meeting::Column::Sequence,
            Expr::col(meeting::Column::Sequence).add(1),
        )
        .col_expr(meeting::Column::UpdatedAt, Expr::value(now))
        .filter(meeting::Column::Id.eq(id))
        .filter(meeting::Column::Status.eq(MeetingStatus::Confirmed))
        .exec(&*txn)
        .await?;
    if cancelled.rows_affected == 0 {
        return Err(Error::state_conflict("this meeting is already cancelled"));
    }
    // A booked slot cannot move, so the meeting's start is the slot's.
    let reopened = if current.start_time > now {
        Status::Scheduled
    } else {
        Status::Cancelled
    };
    changed_slots()
        .col_expr(availability::Column::Status, Expr::value(reopened))
        .filter(availability::Column::Id.eq(current.availability_id))
        .filter(availability::Column::Status.eq(Status::Booked))
        .exec(&*txn)
        .await?;
    let meeting = meeting::Entity::find_by_id(id)
        .one(&*txn)
        .await?
        .ok_or(Error::NotFound("no such meeting"))?;
    let told = [meeting.owner_id, meeting.participant_id];
    announce(&mut txn, &meeting, MeetingEvent::Cancelled, &told);
    txn.commit().await?;
    Ok(meeting)
}

async fn visible_meeting(
    db: &impl ConnectionTrait,
    viewer: Uuid,
    id: Uuid,
) -> Result<meeting::Model> {
    meeting::Entity::find_by_id(id)
        .one(db)
        .await?
        .filter(|m| takes_part(viewer, m.owner_id, m.participant_id))
        .ok_or(Error::NotFound("no such meeting"))
}

/// A meeting its owner or participant asks for; NOT_FOUND for anyone else.
pub async fn meeting(state: &AppState, viewer: Identity, id: Uuid) -> Result<meeting::Model> {
    visible_meeting(&state.db, viewer.user_id, id).await
}

/// The user's meetings in `role`, soonest first (cancelled ones too): one index range scan per
/// role, both merged for [`Role::Any`].
#[tracing::instrument(skip(state))]
pub async fn meetings_of(
    state: &AppState,
    user: Uuid,
    role: Role,
    after: Option<Position>,
    limit: u64,
) -> Result<(Vec<meeting::Model>, bool)> {
    Ok(crate::db::page(&state.db, meetings_query(user, role, after), limit).await?)
}

/// The query of [`meetings_of`] (public so a test can show its plan uses the indexes).
pub fn meetings_query(user: Uuid, role: Role, after: Option<Position>) -> Select<meeting::Entity> {
    let whose = match role {
        Role::Owner => Condition::all().add(meeting::Column::OwnerId.eq(user)),
        Role::Participant => Condition::all().add(meeting::Column::ParticipantId.eq(user)),
        Role::Any => Condition::any()
            .add(meeting::Column::OwnerId.eq(user))
            .add(meeting::Column::ParticipantId.eq(user)),
    };
    meeting::Entity::find()
        .filter(whose)
        .filter(after_position(
            meeting::Column::StartTime,
            meeting::Column::Id,
            after,
        ))
        .order_by_asc(meeting::Column::StartTime)
        .order_by_asc(meeting::Column::Id)
}

/// The user's meeting changes from now on: as owner every booking and cancellation, as participant
/// every cancellation, each once. When messages may have been missed (a resync: the client fell
/// behind, or another instance's messages were lost) it reads the changes of the last
/// [`CATCH_UP_WINDOW`](crate::live::CATCH_UP_WINDOW) and sends each meeting it has not sent a
/// change of, as the meeting is now (a catch-up that fails is owed, see [`CatchUp`]).
pub fn follow(state: &AppState, user: Uuid) -> impl Stream<Item = MeetingState> + Send + 'static {
    let mut feed = state.live.subscribe(&MEETINGS.of(user));
    let state = state.clone();
    let mut sent = Sent::new(Utc::now());
    async_stream::stream! {
        let mut catch_up = CatchUp::default();
        while let Some(next) = catch_up.next(&mut feed).await {
            match next {
                Next::Message(change) => {
                    if sent.first((change.meeting.id, change.kind), Utc::now()) {
                        yield change.meeting.clone();
                    }
                }
                Next::CatchUp => {
                    let since = sent.since(Utc::now());
                    if let Some(rows) = catch_up.settle(changes_since(&state, user, since).await) {
                        for row in rows {
                            if unsent(&mut sent, user, &row, Utc::now()) {
                                yield row.into();
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The meetings `user` hears of that changed from `since`: booked on their slots, or cancelled
/// on either side, in the order they changed.
async fn changes_since(
    state: &AppState,
    user: Uuid,
    since: DateTime<Utc>,
) -> Result<Vec<meeting::Model>> {
    let booked = Condition::all()
        .add(meeting::Column::OwnerId.eq(user))
        .add(meeting::Column::CreatedAt.gte(since));
    let cancelled = Condition::all()
        .add(
            Condition::any()
                .add(meeting::Column::OwnerId.eq(user))
                .add(meeting::Column::ParticipantId.eq(user)),
        )
        .add(meeting::Column::CancelledAt.gte(since));
    Ok(meeting::Entity::find()
        .filter(Condition::any().add(booked).add(cancelled))
        .order_by_asc(meeting::Column::UpdatedAt)
        .order_by_asc(meeting::Column::Id)
        .all(&state.db)
        .await?)
}

/// The token of the user's calendar feed (made on first use). The feed's writes run to their end
/// ([`AppState::run_to_end`]): `myCalendarFeedUrl` is a query, and a query stops when its client
/// leaves, which must not cut a write off mid-statement.
pub async fn feed_token(state: &AppState, user: Uuid) -> Result<String> {
    state.run_to_end(make_feed_token(state.clone(), user)).await
}

async fn make_feed_token(state: AppState, user: Uuid) -> Result<String> {
    let state = &state;
    if let Some(feed) = calendar_feed::Entity::find_by_id(user)
        .one(&state.db)
        .await?
    {
        let token = derive_token(state, user, &feed.nonce)?;
        if token_hash(&token) == feed.token_hash {
            return Ok(token);
        }
        // The server's secret changed since the feed was made: its old URL opens nothing any more
        // (see `feed_owner`).
        return store_feed(state, user, true).await;
    }
    store_feed(state, user, false).await?;
    // Two first calls racing: whichever nonce landed is the feed's.
    let feed = calendar_feed::Entity::find_by_id(user)
        .one(&state.db)
        .await?
        .ok_or_else(|| Error::internal(anyhow::anyhow!("calendar feed vanished")))?;
    derive_token(state, user, &feed.nonce)
}

/// Replaces the user's calendar feed token; the old one stops working at once.
pub async fn rotate_feed(state: &AppState, user: Uuid) -> Result<String> {
    store_feed(state, user, true).await
}

/// Stores a feed with a new random nonce (replacing the user's, or only when they have none) and
/// returns its token.
async fn store_feed(state: &AppState, user: Uuid, replace: bool) -> Result<String> {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let nonce: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let token = derive_token(state, user, &nonce)?;
    let mut on_conflict = OnConflict::column(calendar_feed::Column::UserId);
    if replace {
        on_conflict.update_columns([
            calendar_feed::Column::TokenHash,
            calendar_feed::Column::Nonce,
            calendar_feed::Column::CreatedAt,
        ]);
    } else {
        on_conflict.do_nothing();
    }
    calendar_feed::Entity::insert(calendar_feed::ActiveModel {
        user_id: Set(user),
        token_hash: Set(token_hash(&token)),
        nonce: Set(nonce),
        created_at: Set(Utc::now()),
    })
    .on_conflict(on_conflict)
    .exec_without_returning(&*state.one_write().await)
    .await?;
    Ok(token)
}

fn derive_token(state: &AppState, user: Uuid, nonce: &str) -> Result<String> {
    state
        .tokens
        .derive(FEED_PURPOSE, &format!("{user}:{nonce}"))
}

/// One entry of a calendar feed: a meeting (with its title and description at booking) and the
/// other person.
pub struct FeedEntry {
    /// The meeting.
    pub meeting: meeting::Model,
    /// The other person's display name.
    pub with: String,
}

/// Whose calendar feed `token` opens: `None` for no feed, and for a feed made under another secret
/// (a rotated server secret kills every URL made with the old one, as a rotated feed's).
#[tracing::instrument(skip_all)]
pub async fn feed_owner(state: &AppState, token: &str) -> Result<Option<Uuid>> {
    let Some(feed) = calendar_feed::Entity::find()
        .filter(calendar_feed::Column::TokenHash.eq(token_hash(token)))
        .one(&state.db)
        .await?
    else {
        return Ok(None);
    };
    let made_here = token_hash(&derive_token(state, feed.user_id, &feed.nonce)?) == feed.token_hash;
    Ok(made_here.then_some(feed.user_id))
}

/// The entries of `user`'s calendar feed, soonest first: their meetings as owner and participant
/// from the last 90 days on, at most 1000: past the cap, the soonest upcoming ones first, then the
/// latest past ones (calendars care about what is coming).
#[tracing::instrument(skip(state))]
pub async fn feed(state: &AppState, user: Uuid) -> Result<Vec<FeedEntry>> {
    let now = Utc::now();
    let theirs = || {
        meeting::Entity::find().filter(
            Condition::any()
                .add(meeting::Column::OwnerId.eq(user))
                .add(meeting::Column::ParticipantId.eq(user)),
        )
    };
    let upcoming = theirs()
        .filter(meeting::Column::EndTime.gt(now))
        .order_by_asc(meeting::Column::StartTime)
        .order_by_asc(meeting::Column::Id)
        .limit(FEED_MAX)
        .all(&state.db)
        .await?;
    let room = FEED_MAX.saturating_sub(u64::try_from(upcoming.len()).unwrap_or(FEED_MAX));
    let mut meetings = if room == 0 {
        Vec::new()
    } else {
        theirs()
            .filter(meeting::Column::EndTime.lte(now))
            .filter(meeting::Column::EndTime.gt(now - Duration::days(FEED_PAST_DAYS)))
            .order_by_desc(meeting::Column::StartTime)
            .order_by_desc(meeting::Column::Id)
            .limit(room)
            .all(&state.db)
            .await?
    };
    meetings.extend(upcoming);
    meetings.sort_by_key(|meeting| (meeting.start_time, meeting.id));
    let others: Vec<Uuid> = meetings
        .iter()
        .map(|m| {
            if m.owner_id == user {
                m.participant_id
            } else {
                m.owner_id
            }
        })
        .collect();
    let people = accounts::service::find_many(state, &others).await?;
    Ok(meetings
        .into_iter()
        .filter_map(|meeting| {
            let other = if meeting.owner_id == user {
                meeting.participant_id
            } else {
                meeting.owner_id
            };
            let with = people.iter().find(|p| p.id == other)?.display_name.clone();
            Some(FeedEntry { meeting, with })
        })
        .collect())
}
