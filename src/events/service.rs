//! Event rules with storage: the only code touching the event tables, and the publisher of
//! `event:{id}` and `events:status`.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use futures_util::Stream;
use sea_orm::prelude::Expr;
use sea_orm::sea_query::{Func, LikeExpr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, JoinType,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, RelationTrait, Set,
};
use uuid::Uuid;

use super::model::{
    self as rules, CHANGES, ChangeKind, EventChanged, EventState, Newest, TemplateSpec, can_move,
    check_times, default_end, status_changes, to_second,
};
use crate::accounts;
use crate::accounts::model::Handle;
use crate::auth::Identity;
use crate::db;
use crate::entity::event::{self, Status};
use crate::entity::event_staff::{self, StaffRole};
use crate::entity::{event_like, event_template, user};
use crate::error::{Error, Result};
use crate::live::{self, Change, Missing, Signal};
use crate::media::prepare_picture;
use crate::state::AppState;

/// Longest side of a stored event picture, in pixels.
pub const IMAGE_SIDE: u32 = 1600;

/// A new event, parsed.
#[derive(Debug)]
pub struct NewEvent {
    /// 1-200 characters.
    pub title: String,
    /// Defaults to the template's.
    pub description: Option<String>,
    /// Where.
    pub venue: Option<String>,
    /// When (to the second).
    pub starts_at: DateTime<Utc>,
    /// Defaults to start + the template's duration.
    pub ends_at: Option<DateTime<Utc>>,
    /// The catalogue entry to take defaults from.
    pub template_id: Option<Uuid>,
}

/// Event changes, parsed; `None` keeps a field, `Some(None)` clears a clearable one.
#[derive(Debug, Default)]
pub struct EventChanges {
    /// New title.
    pub title: Option<String>,
    /// New or cleared description.
    pub description: Option<Option<String>>,
    /// New or cleared venue.
    pub venue: Option<Option<String>>,
    /// New start.
    pub starts_at: Option<DateTime<Utc>>,
    /// New or cleared end.
    pub ends_at: Option<Option<DateTime<Utc>>>,
    /// New status (checked against the life-cycle).
    pub status: Option<Status>,
}

/// A listing filter, parsed.
#[derive(Debug, Default)]
pub struct EventQuery {
    /// Only this status.
    pub status: Option<Status>,
    /// Starting at or after.
    pub from: Option<DateTime<Utc>>,
    /// Starting before.
    pub to: Option<DateTime<Utc>>,
    /// In title, venue or description (case-insensitive).
    pub search: Option<String>,
    /// Organized by this handle.
    pub organizer: Option<Handle>,
}

/// The event with this id, if any.
pub async fn find(state: &AppState, id: Uuid) -> Result<Option<event::Model>> {
    Ok(event::Entity::find_by_id(id).one(&state.db).await?)
}

/// The events with these ids (in no particular order).
pub async fn find_many(state: &AppState, ids: &[Uuid]) -> Result<Vec<event::Model>> {
    Ok(db::find_by_keys(&state.db, "events by id", ids, |ids| {
        event::Entity::find().filter(event::Column::Id.is_in(ids.iter().copied()))
    })
    .await?)
}

/// The events with these ids, each with its organizer's account (in no particular order): one
/// query, where asking for the event and then its organizer takes two in turn.
pub async fn find_many_with_organizers(
    state: &AppState,
    ids: &[Uuid],
) -> Result<Vec<(event::Model, user::Model)>> {
    Ok(
        db::find_pairs_by_keys(&state.db, "events with organizers by id", ids, |ids| {
            event::Entity::find()
                .join(JoinType::InnerJoin, event::Relation::Organizer.def())
                .select_also(user::Entity)
                .filter(event::Column::Id.is_in(ids.iter().copied()))
        })
        .await?,
    )
}

async fn find_or_404(db: &impl ConnectionTrait, id: Uuid) -> Result<event::Model> {
    event::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(Error::NotFound("no such event"))
}

/// The event, locked until `txn` ends (see [`crate::db::WriteTxn::locking`]), or NOT_FOUND. A
/// transaction that changes an event and rows referring to it locks the event first: on
/// PostgreSQL, one that took the foreign-key check's share lock first and asked for the row's
/// update lock later would deadlock with a deletion waiting between the two.
async fn lock_or_404(txn: &crate::db::WriteTxn, id: Uuid) -> Result<event::Model> {
    txn.locking(event::Entity::find_by_id(id))
        .one(&**txn)
        .await?
        .ok_or(Error::NotFound("no such event"))
}

/// Whether `actor` may change `event`: its organizer, or an admin.
fn ensure_organizer(actor: Identity, event: &event::Model) -> Result<()> {
    if actor.user_id == event.organizer_id || actor.is_admin {
        Ok(())
    } else {
        Err(Error::Forbidden("only the organizer may do this"))
    }
}

/// Announces a committed change.
fn announce(
    state: &AppState,
    event: &event::Model,
    kind: ChangeKind,
    actor: Option<Uuid>,
    status_changed: bool,
) {
    let change = EventChanged {
        event: event.clone().into(),
        kind,
        actor,
    };
    state.live.publish(&CHANGES.of(event.id), &change);
    if status_changed {
        state.live.publish(&status_changes(), &change);
    }
}

/// Creates an event organized by `organizer`; a template fills the description and end.
#[tracing::instrument(skip(state))]
pub async fn create(state: &AppState, organizer: Uuid, new: NewEvent) -> Result<event::Model> {
    let template = match new.template_id {
        Some(id) => Some(
            event_template::Entity::find_by_id(id)
                .one(&state.db)
                .await?
                .ok_or_else(|| Error::bad_input("input.templateId", "no such event template"))?,
        ),
        None => None,
    };
    let starts_at = to_second(new.starts_at);
    let ends_at = new.ends_at.map(to_second).or_else(|| {
        template
            .as_ref()
            .map(|t| default_end(starts_at, t.default_duration_minutes))
    });
    check_times(starts_at, ends_at, "input.endsAt")?;
    let now = Utc::now();
    let row = event::ActiveModel {
        id: Set(Uuid::now_v7()),
        title: Set(new.title),
        description: Set(new
            .description
            .or_else(|| template.as_ref().and_then(|t| t.description.clone()))),
        venue: Set(new.venue),
        starts_at: Set(starts_at),
        ends_at: Set(ends_at),
        status: Set(Status::Scheduled),
        image_key: Set(None),
        organizer_id: Set(organizer),
        template_id: Set(template.map(|t| t.id)),
        like_count: Set(0),
        version: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
    };
    Ok(row.insert(&*state.one_write().await).await?)
}

/// Applies `changes` to an event; organizer (or admin) only; illegal status moves are
/// BAD_USER_INPUT on `input.status`. `changes` as parsed: its error reaches the organizer only.
#[tracing::instrument(skip(state))]
pub async fn update(
    state: &AppState,
    actor: Identity,
    id: Uuid,
    changes: Result<EventChanges>,
) -> Result<event::Model> {
    let txn = state.begin_write().await?;
    // Locked: edits, likes and the finisher take turns, so the version and status this edit writes
    // follow the last committed ones (a lost edit, a reused version or FINISHED -> CANCELLED
    // otherwise, on PostgreSQL).
    let current = lock_or_404(&txn, id).await?;
    ensure_organizer(actor, &current)?;
    let changes = changes?;
    let starts_at = changes
        .starts_at
        .map(to_second)
        .unwrap_or(current.starts_at);
    let ends_at = match changes.ends_at {
        Some(end) => end.map(to_second),
        None => current.ends_at,
    };
    // The field the client moved: the end, or (when only the start moved past the end) the start.
    let moved = if changes.ends_at.is_some() {
        "input.endsAt"
    } else {
        "input.startsAt"
    };
    check_times(starts_at, ends_at, moved)?;
    let mut status_changed = false;
    if let Some(status) = changes.status {
        if !can_move(current.status, status) {
            return Err(Error::bad_input(
                "input.status",
                format!(
                    "an event cannot move from {:?} to {:?}",
                    current.status, status
                )
                .to_uppercase(),
            ));
        }
        status_changed = status != current.status;
    }
    let version = current.version;
    let mut row: event::ActiveModel = current.into();
    if let Some(title) = changes.title {
        row.title = Set(title);
    }
    if let Some(description) = changes.description {
        row.description = Set(description);
    }
    if let Some(venue) = changes.venue {
        row.venue = Set(venue);
    }
    row.starts_at = Set(starts_at);
    row.ends_at = Set(ends_at);
    if let Some(status) = changes.status {
        row.status = Set(status);
    }
    row.version = Set(version + 1);
    row.updated_at = Set(Utc::now());
    let updated = row.update(&*txn).await?;
    if status_changed {
        stamp_status_change(&*txn, id, updated.updated_at).await?;
    }
    txn.commit().await?;
    announce(
        state,
        &updated,
        ChangeKind::Updated,
        Some(actor.user_id),
        status_changed,
    );
    Ok(updated)
}

/// Finishes, inside `txn`, every LIVE event that started before `moment` and has no end after it
/// (the nightly finisher: an event of several days waits for the first finish at or after its
/// end); each one is announced on `eventUpdated` and `eventStatusChanged` when `txn` commits.
/// Returns the events finished.
pub async fn finish_started_before(
    txn: &mut crate::db::WriteTxn,
    moment: DateTime<Utc>,
) -> Result<Vec<event::Model>> {
    let due: Vec<Uuid> = event::Entity::find()
        .select_only()
        .column(event::Column::Id)
        .filter(event::Column::Status.eq(Status::Live))
        .filter(event::Column::StartsAt.lt(moment))
        .filter(
            Condition::any()
                .add(event::Column::EndsAt.is_null())
                .add(event::Column::EndsAt.lte(moment)),
        )
        .into_tuple()
        .all(&**txn)
        .await?;
    let mut finished = Vec::with_capacity(due.len());
    for id in due {
        let now = Utc::now();
        let moved = event::Entity::update_many()
            .col_expr(event::Column::Status, Expr::value(Status::Finished))
            .col_expr(
                event::Column::Version,
                Expr::col(event::Column::Version).add(1),
            )
            .col_expr(event::Column::UpdatedAt, Expr::value(now))
            .col_expr(StatusChangedAt, Expr::value(now))
            .filter(event::Column::Id.eq(id))
            .filter(event::Column::Status.eq(Status::Live))
            .exec(&**txn)
            .await?;
        if moved.rows_affected == 1 {
            let event = find_or_404(&**txn, id).await?;
            let change = EventChanged {
                event: event.clone().into(),
                kind: ChangeKind::Updated,
                actor: None,
            };
            txn.publish(&CHANGES.of(id), &change);
            txn.publish(&status_changes(), &change);
            finished.push(event);
        }
    }
    Ok(finished)
}

/// Deletes an event with its likes and staff; organizer (or admin) only.
#[tracing::instrument(skip(state))]
pub async fn delete(state: &AppState, actor: Identity, id: Uuid) -> Result<()> {
    // A write transaction like every change to the event: on SQLite it takes its turn with them
    // (a lone statement would retry the write lock against a stream of them, unfairly), on
    // PostgreSQL the row is locked between the organizer's check and the deletion.
    let txn = state.begin_write().await?;
    let current = lock_or_404(&txn, id).await?;
    ensure_organizer(actor, &current)?;
    event::Entity::delete_by_id(id).exec(&*txn).await?;
    txn.commit().await?;
    if let Some(key) = &current.image_key {
        state.media.delete(key).await;
    }
    announce(
        state,
        &current,
        ChangeKind::Deleted,
        Some(actor.user_id),
        false,
    );
    Ok(())
}

/// Which of the stored pictures `keys` (a few hundred at most) are events' images.
#[tracing::instrument(skip_all, fields(keys = keys.len()))]
pub async fn images_among(state: &AppState, keys: &[String]) -> Result<Vec<String>> {
    Ok(event::Entity::find()
        .select_only()
        .column(event::Column::ImageKey)
        .filter(event::Column::ImageKey.is_in(keys.iter().cloned()))
        .into_tuple::<String>()
        .all(&state.db)
        .await?)
}

/// Puts the stored picture `key` on the event; the event as it is now and the key it replaced.
/// The old key is read under the row's lock in the write that replaces it, so of two uploads at
/// once each deletes the picture it replaced (no picture is left that nothing shows), and an upload
/// that lost its event to a deletion gets NOT_FOUND.
async fn swap_image(
    state: &AppState,
    actor: Identity,
    id: Uuid,
    key: String,
) -> Result<(event::Model, Option<String>)> {
    let txn = state.begin_write().await?;
    let current = lock_or_404(&txn, id).await?;
    ensure_organizer(actor, &current)?;
    let old = current.image_key.clone();
    let version = current.version + 1;
    let mut row: event::ActiveModel = current.into();
    row.image_key = Set(Some(key));
    row.version = Set(version);
    row.updated_at = Set(Utc::now());
    let event = row.update(&*txn).await?;
    txn.commit().await?;
    Ok((event, old))
}

/// Stores a new picture for an event; organizer (or admin) only. `bytes` as read: its error reaches
/// the organizer only.
#[tracing::instrument(skip(state, bytes), fields(bytes = tracing::field::Empty))]
pub async fn set_image(
    state: &AppState,
    actor: Identity,
    id: Uuid,
    bytes: Result<Vec<u8>>,
) -> Result<event::Model> {
    let current = find_or_404(&state.db, id).await?;
    ensure_organizer(actor, &current)?;
    let bytes = bytes?;
    tracing::Span::current().record("bytes", bytes.len());
    state.uploads.check(actor.user_id).await?;
    let picture = prepare_picture(bytes, state.image_limits(), IMAGE_SIDE, "file").await?;
    let event = state
        .media
        .replace_picture(picture, |key| swap_image(state, actor, id, key))
        .await?;
    announce(
        state,
        &event,
        ChangeKind::Updated,
        Some(actor.user_id),
        false,
    );
    Ok(event)
}

/// Likes an event (idempotent: a second like changes nothing).
#[tracing::instrument(skip(state))]
pub async fn like(state: &AppState, user: Uuid, id: Uuid) -> Result<event::Model> {
    let txn = state.begin_write().await?;
    lock_or_404(&txn, id).await?;
    let inserted = event_like::Entity::insert(event_like::ActiveModel {
        event_id: Set(id),
        user_id: Set(user),
        created_at: Set(Utc::now()),
    })
    .on_conflict(
        OnConflict::columns([event_like::Column::EventId, event_like::Column::UserId])
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(&*txn)
    .await?;
    if inserted == 0 {
        let event = find_or_404(&*txn, id).await?;
        txn.commit().await?;
        return Ok(event);
    }
    let event = bump_likes(&*txn, id, 1).await?;
    txn.commit().await?;
    announce(state, &event, ChangeKind::Liked, Some(user), false);
    Ok(event)
}

/// Takes a like back (idempotent).
#[tracing::instrument(skip(state))]
pub async fn unlike(state: &AppState, user: Uuid, id: Uuid) -> Result<event::Model> {
    let txn = state.begin_write().await?;
    lock_or_404(&txn, id).await?;
    let removed = event_like::Entity::delete_many()
        .filter(event_like::Column::EventId.eq(id))
        .filter(event_like::Column::UserId.eq(user))
        .exec(&*txn)
        .await?;
    if removed.rows_affected == 0 {
        let event = find_or_404(&*txn, id).await?;
        txn.commit().await?;
        return Ok(event);
    }
    let event = bump_likes(&*txn, id, -1).await?;
    txn.commit().await?;
    announce(state, &event, ChangeKind::Unliked, Some(user), false);
    Ok(event)
}

/// Atomically moves the like counter (and the version) and reads the event back.
async fn bump_likes(db: &impl ConnectionTrait, id: Uuid, by: i32) -> Result<event::Model> {
    event::Entity::update_many()
        .col_expr(
            event::Column::LikeCount,
            Expr::col(event::Column::LikeCount).add(by),
        )
        .col_expr(
            event::Column::Version,
            Expr::col(event::Column::Version).add(1),
        )
        .filter(event::Column::Id.eq(id))
        .exec(db)
        .await?;
    find_or_404(db, id).await
}

/// Which of `pairs` (event, user) are likes.
pub async fn likes_among(
    state: &AppState,
    pairs: &[(Uuid, Uuid)],
) -> Result<HashSet<(Uuid, Uuid)>> {
    if pairs.is_empty() {
        return Ok(HashSet::new());
    }
    let users: HashSet<Uuid> = pairs.iter().map(|(_, u)| *u).collect();
    let events: HashSet<Uuid> = pairs.iter().map(|(e, _)| *e).collect();
    let rows = event_like::Entity::find()
        .filter(event_like::Column::UserId.is_in(users))
        .filter(event_like::Column::EventId.is_in(events))
        .all(&state.db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.event_id, row.user_id))
        .collect())
}

/// Events matching `query` in start order, after the `(starts_at, id)` key `after`; at most `limit`,
/// plus whether more follow.
#[tracing::instrument(skip(state))]
pub async fn list(
    state: &AppState,
    query: EventQuery,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: u64,
) -> Result<(Vec<event::Model>, bool)> {
    let mut select = event::Entity::find()
        .order_by_asc(event::Column::StartsAt)
        .order_by_asc(event::Column::Id);
    if let Some(status) = query.status {
        select = select.filter(event::Column::Status.eq(status));
    }
    // Starts are whole seconds: each bound becomes the first whole second not before it (an event
    // at 19:00:00 starts before `from` 19:00:00.5, and before `to` 19:00:00.5).
    if let Some(from) = query.from {
        select = select.filter(event::Column::StartsAt.gte(second_not_before(from)));
    }
    if let Some(to) = query.to {
        select = select.filter(event::Column::StartsAt.lt(second_not_before(to)));
    }
    if let Some(handle) = &query.organizer {
        match accounts::service::find_by_handle(state, handle).await? {
            Some(user) => select = select.filter(event::Column::OrganizerId.eq(user.id)),
            None => return Ok((Vec::new(), false)),
        }
    }
    if let Some(search) = query
        .search
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let pattern = format!(
            "%{}%",
            crate::accounts::service::escape_like(&search.to_lowercase())
        );
        let mut any = Condition::any();
        for column in [
            event::Column::Title,
            event::Column::Venue,
            event::Column::Description,
        ] {
            any = any.add(
                Expr::expr(Func::lower(Expr::col(column)))
                    .like(LikeExpr::new(pattern.clone()).escape('\\')),
            );
        }
        select = select.filter(any);
    }
    if let Some((starts_at, id)) = after {
        select = select.filter(
            Condition::any()
                .add(event::Column::StartsAt.gt(starts_at))
                .add(
                    Condition::all()
                        .add(event::Column::StartsAt.eq(starts_at))
                        .add(event::Column::Id.gt(id)),
                ),
        );
    }
    Ok(crate::db::page(&state.db, select, limit).await?)
}

/// The staff of each of `events`.
pub async fn staff_of(state: &AppState, events: &[Uuid]) -> Result<Vec<event_staff::Model>> {
    Ok(
        db::find_by_keys(&state.db, "staff by event", events, |events| {
            event_staff::Entity::find()
                .filter(event_staff::Column::EventId.is_in(events.iter().copied()))
                .order_by_asc(event_staff::Column::CreatedAt)
        })
        .await?,
    )
}

/// The role of `user` at `event`, if they are staff.
pub async fn staff_role(state: &AppState, event: Uuid, user: Uuid) -> Result<Option<StaffRole>> {
    Ok(event_staff::Entity::find_by_id((event, user))
        .one(&state.db)
        .await?
        .map(|row| row.role))
}

/// Whether `actor` runs `event` (the crew rule, [`rules::is_crew`]): its organizer, an admin, or a
/// staff member with one of `roles` (any role when `roles` is empty).
pub async fn is_crew(
    state: &AppState,
    actor: Identity,
    event: &event::Model,
    roles: &[StaffRole],
) -> Result<bool> {
    let role = if rules::is_crew(actor, event.organizer_id, None, roles) {
        None
    } else {
        staff_role(state, event.id, actor.user_id).await?
    };
    Ok(rules::is_crew(actor, event.organizer_id, role, roles))
}

/// The event, after checking `actor` is its crew (see [`is_crew`]); NOT_FOUND when there is no such
/// event, FORBIDDEN with `refusal` when they are not crew.
pub async fn require_crew(
    state: &AppState,
    actor: Identity,
    id: Uuid,
    roles: &[StaffRole],
    refusal: &'static str,
) -> Result<event::Model> {
    let event = require(state, id).await?;
    if is_crew(state, actor, &event, roles).await? {
        Ok(event)
    } else {
        Err(Error::Forbidden(refusal))
    }
}

/// The event, or NOT_FOUND.
pub async fn require(state: &AppState, id: Uuid) -> Result<event::Model> {
    find_or_404(&state.db, id).await
}

/// Adds (or re-roles) a staff member by handle; organizer (or admin) only. `handle` as parsed: its
/// error reaches the organizer only. An event has at most `RALLY_MAX_STAFF_PER_EVENT` staff
/// members (then CONFLICT), counted with the event's row locked, so additions at once take turns.
#[tracing::instrument(skip(state))]
pub async fn add_staff(
    state: &AppState,
    actor: Identity,
    id: Uuid,
    handle: Result<Handle>,
    role: StaffRole,
) -> Result<event::Model> {
    let current = find_or_404(&state.db, id).await?;
    ensure_organizer(actor, &current)?;
    let member = accounts::service::find_by_handle(state, &handle?)
        .await?
        .ok_or(Error::NotFound("no user with this handle"))?;
    let txn = state.begin_write().await?;
    lock_or_404(&txn, id).await?;
    let staff = event_staff::Entity::find().filter(event_staff::Column::EventId.eq(id));
    let already = staff
        .clone()
        .filter(event_staff::Column::UserId.eq(member.id))
        .one(&*txn)
        .await?
        .is_some();
    let most = state.config.max_staff_per_event;
    if !already && staff.count(&*txn).await? >= most {
        return Err(Error::conflict(
            "handle",
            format!("an event has at most {most} staff members"),
        ));
    }
    event_staff::Entity::insert(event_staff::ActiveModel {
        event_id: Set(id),
        user_id: Set(member.id),
        role: Set(role),
        created_at: Set(Utc::now()),
    })
    .on_conflict(
        OnConflict::columns([event_staff::Column::EventId, event_staff::Column::UserId])
            .update_column(event_staff::Column::Role)
            .to_owned(),
    )
    .exec_without_returning(&*txn)
    .await?;
    txn.commit().await?;
    touch(state, actor, id).await
}

/// Removes a staff member by handle (a no-op when they are not staff); organizer (or admin) only.
/// `handle` as parsed: its error reaches the organizer only.
#[tracing::instrument(skip(state))]
pub async fn remove_staff(
    state: &AppState,
    actor: Identity,
    id: Uuid,
    handle: Result<Handle>,
) -> Result<event::Model> {
    let current = find_or_404(&state.db, id).await?;
    ensure_organizer(actor, &current)?;
    let member = accounts::service::find_by_handle(state, &handle?)
        .await?
        .ok_or(Error::NotFound("no user with this handle"))?;
    event_staff::Entity::delete_by_id((id, member.id))
        .exec(&*state.one_write().await)
        .await?;
    touch(state, actor, id).await
}

/// Bumps the version of an event whose related rows changed, and announces it.
async fn touch(state: &AppState, actor: Identity, id: Uuid) -> Result<event::Model> {
    event::Entity::update_many()
        .col_expr(
            event::Column::Version,
            Expr::col(event::Column::Version).add(1),
        )
        .col_expr(event::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(event::Column::Id.eq(id))
        .exec(&*state.one_write().await)
        .await?;
    let event = find_or_404(&state.db, id).await?;
    announce(
        state,
        &event,
        ChangeKind::Updated,
        Some(actor.user_id),
        false,
    );
    Ok(event)
}

/// The event's state: now, then after every committed change; completes when it is deleted.
/// NOT_FOUND when there is no such event.
pub async fn follow(
    state: &AppState,
    id: Uuid,
) -> Result<impl Stream<Item = EventState> + Send + 'static> {
    let feed = state.live.subscribe(&CHANGES.of(id));
    let state = state.clone();
    live::follow(
        feed,
        Missing::NotFound("no such event"),
        move || {
            let state = state.clone();
            async move { Ok(find(&state, id).await?.map(EventState::from)) }
        },
        |change: &EventChanged| match change.kind {
            ChangeKind::Deleted => Change::End,
            _ => Change::State(change.event.clone()),
        },
    )
    .await
}

/// The event, read in `txn` and kept from deletion until it ends ([`db::WriteTxn::keeping`]: its
/// details may still change, likes and all); NOT_FOUND when it is gone. A transaction that writes
/// rows the event's deletion cascades to (cup codes and sessions, games and their players, rounds
/// and guesses: `requestCupCode`, `setGamePlayers`, `awardPoints`, `startBlurRound`,
/// `revealBlurRound`, `guessBlurRound`) reads it first: the deletion then waits for it, or it for the deletion (and
/// finds no event), instead of each holding a row the other waits for (on PostgreSQL a deadlock,
/// which one of them would get as an error). [`hold_as_is`] also keeps what it says.
pub async fn hold(txn: &db::WriteTxn, id: Uuid) -> Result<event::Model> {
    txn.keeping(event::Entity::find_by_id(id))
        .one(&**txn)
        .await?
        .ok_or(Error::NotFound("no such event"))
}

/// [`hold`], also keeping the event from any change until `txn` ends ([`db::WriteTxn::sharing`]),
/// for a decision on what it says: `openCupSession` opens a cup only while the event is LIVE.
pub async fn hold_as_is(txn: &db::WriteTxn, id: Uuid) -> Result<event::Model> {
    txn.sharing(event::Entity::find_by_id(id))
        .one(&**txn)
        .await?
        .ok_or(Error::NotFound("no such event"))
}

/// Resolves once the event is deleted (announced after this call; a deletion before it is the
/// caller's to check after calling): streams about what the event holds end with it.
pub fn deleted(state: &AppState, id: Uuid) -> impl Future<Output = ()> + Send + 'static {
    let mut changes = state.live.subscribe(&CHANGES.of(id));
    let state = state.clone();
    async move {
        while let Some(signal) = changes.next().await {
            if gone(&state, id, &signal).await {
                return;
            }
        }
        std::future::pending::<()>().await;
    }
}

/// Whether `signal`, heard on the event's changes ([`CHANGES`]), means the event is gone: its
/// deletion, or a resync after which it cannot be found (the deletion may be among the messages
/// missed, and nothing else would announce it). A lookup that fails is tried again with backoff
/// (100 ms doubling to 5 s) until it answers: resyncs come in crowds, when the database is
/// busiest, and a stream that guessed "still there" would stay open and silent for ever.
pub async fn gone(state: &AppState, id: Uuid, signal: &Signal<EventChanged>) -> bool {
    match signal {
        Signal::Message(change) => change.kind == ChangeKind::Deleted,
        Signal::Resync => {
            let mut pause = std::time::Duration::from_millis(100);
            loop {
                match find(state, id).await {
                    Ok(found) => return found.is_none(),
                    Err(err) => {
                        err.report();
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(std::time::Duration::from_secs(5));
                    }
                }
            }
        }
    }
}

/// `events.status_changed_at`, which the entity leaves out (see [`event::Model`]).
#[derive(sea_orm::DeriveIden, Clone, Copy)]
struct StatusChangedAt;

/// The most events one catch-up of [`follow_status`] sends (the latest changed).
const MOST_CAUGHT_UP: u64 = Newest::MOST as u64;

/// Records, inside the transaction that moves it, that event `id`'s status changed at `at`.
async fn stamp_status_change(db: &impl ConnectionTrait, id: Uuid, at: DateTime<Utc>) -> Result<()> {
    event::Entity::update_many()
        .col_expr(StatusChangedAt, Expr::value(at))
        .filter(event::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// Every event status change from now on, each once it is committed, and never one older than a
/// change of the same event already sent ([`Newest`]). When messages may have been missed (a
/// resync: the stream fell behind, or another instance's messages were lost while Redis was away)
/// it reads the events whose status changed in the last
/// [`CATCH_UP_WINDOW`](live::CATCH_UP_WINDOW), not before the stream began (less
/// [`CLOCK_LEEWAY`](live::CLOCK_LEEWAY)), and sends each, as it is now, whose status it has not
/// sent ([`Newest::admits_found`]): at most `MOST_CAUGHT_UP` (1,000), the latest. A catch-up that
/// fails is owed (see [`CatchUp`](live::CatchUp)).
pub fn follow_status(state: &AppState) -> impl Stream<Item = EventState> + Send + 'static {
    let mut feed = state.live.subscribe(&status_changes());
    let state = state.clone();
    let began = Utc::now() - live::CLOCK_LEEWAY;
    async_stream::stream! {
        let mut newest = Newest::default();
        let mut catch_up = live::CatchUp::default();
        while let Some(next) = catch_up.next(&mut feed).await {
            match next {
                live::Next::Message(change) => {
                    if newest.admits(&change.event) {
                        yield change.event.clone();
                    }
                }
                live::Next::CatchUp => {
                    let since = began.max(Utc::now() - live::CATCH_UP_WINDOW);
                    if let Some(rows) = catch_up.settle(status_changed_since(&state, since).await) {
                        for row in rows {
                            let event = EventState::from(row);
                            if newest.admits_found(&event) {
                                yield event;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The events whose status changed from `since`, in the order they changed (the latest
/// [`MOST_CAUGHT_UP`]).
async fn status_changed_since(state: &AppState, since: DateTime<Utc>) -> Result<Vec<event::Model>> {
    let changed_at = || Expr::col((event::Entity, StatusChangedAt));
    let mut rows = event::Entity::find()
        .filter(changed_at().gte(since))
        .order_by_desc(changed_at())
        .order_by_desc(event::Column::Id)
        .limit(MOST_CAUGHT_UP)
        .all(&state.db)
        .await?;
    rows.reverse();
    Ok(rows)
}

/// The catalogue, by name.
pub async fn templates(state: &AppState) -> Result<Vec<event_template::Model>> {
    Ok(event_template::Entity::find()
        .order_by_asc(event_template::Column::Name)
        .order_by_asc(event_template::Column::Id)
        .all(&state.db)
        .await?)
}

/// The catalogue entries with these ids (in no particular order).
pub async fn templates_by_id(state: &AppState, ids: &[Uuid]) -> Result<Vec<event_template::Model>> {
    Ok(
        db::find_by_keys(&state.db, "event templates by id", ids, |ids| {
            event_template::Entity::find()
                .filter(event_template::Column::Id.is_in(ids.iter().copied()))
        })
        .await?,
    )
}

/// Adds a catalogue entry (the guard checks the admin role).
pub async fn create_template(
    state: &AppState,
    spec: TemplateSpec,
) -> Result<event_template::Model> {
    let now = Utc::now();
    Ok(event_template::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(spec.name),
        description: Set(spec.description),
        default_duration_minutes: Set(spec.default_duration_minutes),
        capacity: Set(spec.capacity),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&*state.one_write().await)
    .await?)
}

/// Replaces a catalogue entry.
pub async fn update_template(
    state: &AppState,
    id: Uuid,
    spec: TemplateSpec,
) -> Result<event_template::Model> {
    let current = event_template::Entity::find_by_id(id)
        .one(&state.db)
        .await?
        .ok_or(Error::NotFound("no such event template"))?;
    let mut row: event_template::ActiveModel = current.into();
    row.name = Set(spec.name);
    row.description = Set(spec.description);
    row.default_duration_minutes = Set(spec.default_duration_minutes);
    row.capacity = Set(spec.capacity);
    row.updated_at = Set(Utc::now());
    match row.update(&*state.one_write().await).await {
        Ok(updated) => Ok(updated),
        // Deleted between the read and the write.
        Err(sea_orm::DbErr::RecordNotUpdated) => Err(Error::NotFound("no such event template")),
        Err(err) => Err(err.into()),
    }
}

/// Removes a catalogue entry; events made from it keep their values and lose the link.
pub async fn delete_template(state: &AppState, id: Uuid) -> Result<()> {
    let deleted = event_template::Entity::delete_by_id(id)
        .exec(&*state.one_write().await)
        .await?;
    if deleted.rows_affected == 0 {
        return Err(Error::NotFound("no such event template"));
    }
    Ok(())
}

/// The first whole second not before `time`.
fn second_not_before(time: DateTime<Utc>) -> DateTime<Utc> {
    let second = to_second(time);
    if second == time {
        second
    } else {
        second + chrono::Duration::seconds(1)
    }
}
