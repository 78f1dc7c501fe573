//! Proximity rules with storage: the only code touching `monitor_links`, `locations`, `activities`
//! and `proximity_states`, the publisher of `user:{id}:tracking`, `activity:{id}` and
//! `user:{id}:alerts`, and the live streams built on them.

use std::collections::HashMap;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use futures_util::Stream;
use sea_orm::prelude::Expr;
use sea_orm::sea_query::{OnConflict, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Select, Set, TryInsertResult,
};
use uuid::Uuid;

use super::model::{
    ACTIVITY, ALERTS, ActivityTouched, ActivityView, Command, Crossing, Position, ProximityAlert,
    Report, TRACKING, TrackingCommand, crossing, status,
};
use crate::accounts;
use crate::accounts::model::Handle;
use crate::auth::Identity;
use crate::db::WriteTxn;
use crate::entity::activity::{self, Status as ActivityStatus};
use crate::entity::monitor_link::{self, Status as LinkStatus};
use crate::entity::{location, proximity_state, user};
use crate::error::{Error, Result, UniqueKey};
use crate::live::{self, CatchUp, Next, Signal};
use crate::state::AppState;

/// `activities_one_active_key` (see the proximity migration): one ACTIVE activity per owner.
const ONE_ACTIVE_KEY: UniqueKey = UniqueKey {
    name: "activities_one_active_key",
    table: "activities",
    columns: &["owner_id"],
};

/// The user a handle names, or NOT_FOUND.
async fn user_by_handle(state: &AppState, handle: &Handle) -> Result<Uuid> {
    Ok(accounts::service::find_by_handle(state, handle)
        .await?
        .ok_or(Error::NotFound("no user with this handle"))?
        .id)
}

/// Requests one person may have waiting for an answer: asking everyone, or one person's
/// `monitoredBy` filling with strangers' requests, is not what watching friends needs.
pub const MAX_PENDING_REQUESTS: u64 = 50;

/// The caller asks to watch `handle`: a PENDING link (or the existing one, unchanged). At most
/// [`MAX_PENDING_REQUESTS`] of the caller's wait for an answer (then CONFLICT), counted in the
/// caller's turn, so requests at once cannot pass it.
#[tracing::instrument(skip(state))]
pub async fn request_monitor(
    state: &AppState,
    me: Identity,
    handle: &Handle,
) -> Result<monitor_link::Model> {
    let watched = user_by_handle(state, handle).await?;
    if watched == me.user_id {
        return Err(Error::bad_input("handle", "you cannot watch yourself"));
    }
    let txn = watcher_turn(state, me.user_id).await?;
    if let Some(existing) = link(&*txn, me.user_id, watched).await? {
        return Ok(existing);
    }
    let waiting = monitor_link::Entity::find()
        .filter(monitor_link::Column::WatcherId.eq(me.user_id))
        .filter(monitor_link::Column::Status.eq(LinkStatus::Pending))
        .count(&*txn)
        .await?;
    if waiting >= MAX_PENDING_REQUESTS {
        return Err(Error::conflict(
            "handle",
            format!(
                "{waiting} of your requests wait for an answer; withdraw one (removeMonitor) first"
            ),
        ));
    }
    monitor_link::Entity::insert(monitor_link::ActiveModel {
        watcher_id: Set(me.user_id),
        watched_id: Set(watched),
        status: Set(LinkStatus::Pending),
        created_at: Set(Utc::now()),
    })
    .on_conflict(OnConflict::new().do_nothing().to_owned())
    .do_nothing()
    .exec(&*txn)
    .await?;
    let requested = link(&*txn, me.user_id, watched)
        .await?
        .ok_or_else(|| Error::state_conflict("the link changed; try again"))?;
    txn.commit().await?;
    Ok(requested)
}

async fn link(
    db: &impl ConnectionTrait,
    watcher: Uuid,
    watched: Uuid,
) -> Result<Option<monitor_link::Model>> {
    Ok(monitor_link::Entity::find_by_id((watcher, watched))
        .one(db)
        .await?)
}

/// A write transaction holding `watcher`'s turn: their links and activities change one change at
/// a time (on PostgreSQL by a lock on their `users` row; SQLite's write transactions take turns
/// anyway). So each change reads what the one before it wrote, and the START and STOP commands
/// they send leave nobody out: a link removed while the activity ends gets its STOP from one of
/// the two, and a link accepted while the activity starts gets its START from one of them.
async fn watcher_turn(state: &AppState, watcher: Uuid) -> Result<WriteTxn> {
    let txn = state.begin_write().await?;
    txn.locking(user::Entity::find_by_id(watcher))
        .select_only()
        .column(user::Column::Id)
        .into_tuple::<Uuid>()
        .one(&*txn)
        .await?;
    Ok(txn)
}

/// The watched person accepts `watcher`'s request; NOT_FOUND when there is none. A running activity
/// of the watcher starts tracking them at once.
#[tracing::instrument(skip(state))]
pub async fn accept_monitor(
    state: &AppState,
    me: Identity,
    watcher: &Handle,
) -> Result<monitor_link::Model> {
    let watcher = user_by_handle(state, watcher).await?;
    let mut txn = watcher_turn(state, watcher).await?;
    let accepted = monitor_link::Entity::update_many()
        .col_expr(
            monitor_link::Column::Status,
            Expr::value(LinkStatus::Accepted),
        )
        .filter(monitor_link::Column::WatcherId.eq(watcher))
        .filter(monitor_link::Column::WatchedId.eq(me.user_id))
        .filter(monitor_link::Column::Status.eq(LinkStatus::Pending))
        .exec(&*txn)
        .await?;
    let link = link(&*txn, watcher, me.user_id)
        .await?
        .ok_or(Error::NotFound(
            "nobody with this handle asked to watch you",
        ))?;
    if accepted.rows_affected == 1
        && let Some(running) = active_of(&*txn, watcher).await?
    {
        command(&mut txn, me.user_id, Command::Start, &running);
        touch_in(&mut txn, running.id);
    }
    txn.commit().await?;
    Ok(link)
}

/// Either side ends a link; `false` when there was none. A running activity of the watcher stops
/// tracking the watched person.
#[tracing::instrument(skip(state))]
pub async fn remove_monitor(
    state: &AppState,
    me: Identity,
    watcher: &Handle,
    watched: &Handle,
) -> Result<bool> {
    let watcher = user_by_handle(state, watcher).await?;
    let watched = user_by_handle(state, watched).await?;
    if me.user_id != watcher && me.user_id != watched {
        return Err(Error::Forbidden(
            "only the watcher or the watched person may remove a link",
        ));
    }
    let mut txn = watcher_turn(state, watcher).await?;
    let Some(link) = link(&*txn, watcher, watched).await? else {
        return Ok(false);
    };
    monitor_link::Entity::delete_by_id((watcher, watched))
        .exec(&*txn)
        .await?;
    // The running activity is locked (its alert checks' turn, see `check_alerts`), so a check that
    // read the link before it went cannot store the person's state after it is deleted.
    let running = txn.locking(active_query(watcher)).one(&*txn).await?;
    if link.status == LinkStatus::Accepted
        && let Some(running) = running
    {
        // Whether the person was inside the alert radius goes with the link: watched again,
        // they are someone new to the activity, and their entry alerts.
        proximity_state::Entity::delete_many()
            .filter(proximity_state::Column::ActivityId.eq(running.id))
            .filter(proximity_state::Column::UserId.eq(watched))
            .exec(&*txn)
            .await?;
        command(&mut txn, watched, Command::Stop, &running);
        touch_in(&mut txn, running.id);
    }
    txn.commit().await?;
    Ok(true)
}

/// Links where the caller watches (`as_watcher`) or is watched, newest first.
pub async fn links(
    state: &AppState,
    me: Identity,
    as_watcher: bool,
) -> Result<Vec<monitor_link::Model>> {
    let column = if as_watcher {
        monitor_link::Column::WatcherId
    } else {
        monitor_link::Column::WatchedId
    };
    Ok(monitor_link::Entity::find()
        .filter(column.eq(me.user_id))
        .order_by_desc(monitor_link::Column::CreatedAt)
        .all(&state.db)
        .await?)
}

/// Stores the caller's position (`None`: GPS off), at most once per `RALLY_LOCATION_MIN_INTERVAL_MS`
/// (a conditional write: the previous update must be old enough, else RATE_LIMITED and nothing
/// changes). Then every activity that watches the caller, and the caller's own, hears of it, and
/// alerts are checked.
#[tracing::instrument(skip(state, position))]
pub async fn update_location(
    state: &AppState,
    me: Identity,
    position: Option<Position>,
) -> Result<location::Model> {
    let now = Utc::now();
    let interval = Duration::milliseconds(
        i64::try_from(state.config.location_min_interval_ms).unwrap_or(i64::MAX / 2),
    );
    let (latitude, longitude) = match position {
        Some(position) => (Some(position.latitude), Some(position.longitude)),
        None => (None, None),
    };
    let updated = location::Entity::update_many()
        .col_expr(location::Column::Latitude, Expr::value(latitude))
        .col_expr(location::Column::Longitude, Expr::value(longitude))
        .col_expr(location::Column::UpdatedAt, Expr::value(now))
        .filter(location::Column::UserId.eq(me.user_id))
        .filter(location::Column::UpdatedAt.lte(now - interval))
        .exec(&*state.one_write().await)
        .await?;
    if updated.rows_affected == 0 {
        let inserted = location::Entity::insert(location::ActiveModel {
            user_id: Set(me.user_id),
            latitude: Set(latitude),
            longitude: Set(longitude),
            updated_at: Set(now),
        })
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .do_nothing()
        .exec(&*state.one_write().await)
        .await?;
        if !matches!(inserted, TryInsertResult::Inserted(_)) {
            let last = location::Entity::find_by_id(me.user_id)
                .one(&state.db)
                .await?
                .map_or(now, |last| last.updated_at);
            let wait = (last + interval - now).num_milliseconds().max(1);
            return Err(Error::RateLimited {
                what: "location updates come at most once per interval",
                retry_after_seconds: u64::try_from(wait).unwrap_or(1).div_ceil(1000),
            });
        }
    }
    let stored = location::Model {
        user_id: me.user_id,
        latitude,
        longitude,
        updated_at: now,
    };
    // The position is stored, and the answer says so even when what follows fails (an error
    // would make the phone send it again, into the rate limit): see `after_update`.
    after_update(state, me.user_id).await;
    Ok(stored)
}

/// The ACTIVE activities whose owners watch `user` with consent.
async fn watching(state: &AppState, user: Uuid) -> Result<Vec<activity::Model>> {
    Ok(watching_query(user).all(&state.db).await?)
}

/// The query behind `watching`: through the watched-person index and the activities' owner
/// index, never a scan of activities (the query-plan test holds it to that).
pub fn watching_query(user: Uuid) -> Select<activity::Entity> {
    let watchers = Query::select()
        .column(monitor_link::Column::WatcherId)
        .from(monitor_link::Entity)
        .and_where(monitor_link::Column::WatchedId.eq(user))
        .and_where(monitor_link::Column::Status.eq(LinkStatus::Accepted))
        .to_owned();
    activity::Entity::find()
        .filter(activity::Column::Status.eq(ActivityStatus::Active))
        .filter(activity::Column::OwnerId.in_subquery(watchers))
}

/// The owner's ACTIVE activity, if any.
async fn active_of(db: &impl ConnectionTrait, owner: Uuid) -> Result<Option<activity::Model>> {
    Ok(active_query(owner).one(db).await?)
}

/// The query behind [`active_of`].
fn active_query(owner: Uuid) -> Select<activity::Entity> {
    activity::Entity::find()
        .filter(activity::Column::OwnerId.eq(owner))
        .filter(activity::Column::Status.eq(ActivityStatus::Active))
}

/// People who accepted `owner` as a watcher.
async fn watched_by(db: &impl ConnectionTrait, owner: Uuid) -> Result<Vec<Uuid>> {
    Ok(monitor_link::Entity::find()
        .select_only()
        .column(monitor_link::Column::WatchedId)
        .filter(monitor_link::Column::WatcherId.eq(owner))
        .filter(monitor_link::Column::Status.eq(LinkStatus::Accepted))
        .order_by_asc(monitor_link::Column::CreatedAt)
        .into_tuple()
        .all(db)
        .await?)
}

async fn locations_of(db: &impl ConnectionTrait, users: &[Uuid]) -> Result<Vec<location::Model>> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    Ok(location::Entity::find()
        .filter(location::Column::UserId.is_in(users.iter().copied()))
        .all(db)
        .await?)
}

fn report(location: &location::Model) -> Report {
    Report {
        user_id: location.user_id,
        position: location
            .latitude
            .zip(location.longitude)
            .map(|(latitude, longitude)| Position {
                latitude,
                longitude,
            }),
        at: location.updated_at,
    }
}

/// Rows (positions, or activities' alert states) forgotten per write transaction: a first run
/// over a long history never holds the write turn for long.
const FORGET_BATCH: u64 = 500;

/// Forgets what proximity keeps of the past, a batch per write transaction: positions last
/// updated before `before`, except those of owners of an ACTIVE activity (an owner standing still
/// stops reporting, and their last position still places them: alerts and `nearest` need it),
/// and the alert states (entry times and distances) of activities that ended before it. A watched
/// person's position that old was stale, and reads as none, which is stale too. Returns how many
/// rows went.
pub async fn forget_before(state: &AppState, before: DateTime<Utc>) -> Result<u64> {
    let running_owners = Query::select()
        .column(activity::Column::OwnerId)
        .from(activity::Entity)
        .and_where(activity::Column::Status.eq(ActivityStatus::Active))
        .to_owned();
    let old = || {
        Condition::all()
            .add(location::Column::UpdatedAt.lt(before))
            .add(location::Column::UserId.not_in_subquery(running_owners.clone()))
    };
    let ended = || {
        Expr::exists(
            Query::select()
                .expr(Expr::val(1))
                .from(activity::Entity)
                .and_where(
                    Expr::col((activity::Entity, activity::Column::Id))
                        .equals((proximity_state::Entity, proximity_state::Column::ActivityId)),
                )
                .and_where(activity::Column::EndedAt.lt(before))
                .to_owned(),
        )
    };
    let mut forgotten = 0;
    loop {
        let txn = state.begin_write().await?;
        let users: Vec<Uuid> = location::Entity::find()
            .select_only()
            .column(location::Column::UserId)
            .filter(old())
            .limit(FORGET_BATCH)
            .into_tuple()
            .all(&*txn)
            .await?;
        let activities: Vec<Uuid> = proximity_state::Entity::find()
            .select_only()
            .column(proximity_state::Column::ActivityId)
            .distinct()
            .filter(ended())
            .limit(FORGET_BATCH)
            .into_tuple()
            .all(&*txn)
            .await?;
        if users.is_empty() && activities.is_empty() {
            return Ok(forgotten);
        }
        // Each condition again: a position updated since the read stays.
        forgotten += location::Entity::delete_many()
            .filter(location::Column::UserId.is_in(users))
            .filter(old())
            .exec(&*txn)
            .await?
            .rows_affected;
        forgotten += proximity_state::Entity::delete_many()
            .filter(proximity_state::Column::ActivityId.is_in(activities))
            .filter(ended())
            .exec(&*txn)
            .await?
            .rows_affected;
        txn.commit().await?;
    }
}

/// How long positions and ended activities' alert states are kept.
pub fn retention(state: &AppState) -> Duration {
    Duration::hours(i64::try_from(state.config.location_retention_hours).unwrap_or(24))
}

fn stale_after(state: &AppState) -> Duration {
    Duration::seconds(i64::try_from(state.config.location_stale_seconds).unwrap_or(300))
}

/// Tells every activity touched by `user`'s new position, and checks its alerts: the activities
/// that watch `user` for `user` alone, `user`'s own for everyone it watches (in one pass). Each
/// activity on its own: a failure is logged and the others still hear of it. Screens reload on
/// their next touch, and an entry whose check failed is found by the next report (its state did
/// not flip).
async fn after_update(state: &AppState, user: Uuid) {
    match watching(state, user).await {
        Ok(activities) => {
            for running in activities {
                touch(state, running.id);
                if let Err(err) = check_alerts(state, &running, &[user]).await {
                    err.report();
                }
            }
        }
        Err(err) => err.report(),
    }
    let own = async {
        if let Some(own) = active_of(&state.db, user).await? {
            touch(state, own.id);
            let watched = watched_by(&state.db, user).await?;
            check_alerts(state, &own, &watched).await?;
        }
        Ok::<(), Error>(())
    };
    if let Err(err) = own.await {
        err.report();
    }
}

/// Flips each of `watched`'s inside/outside state for `running` when the distance crosses the
/// radius (in) or the exit distance (out); an entry alerts the owner. A first look outside any
/// transaction finds whether any state would flip (most updates flip none); if one would, the flips
/// are decided again in the activity's turn (a write transaction that, on PostgreSQL, locks the
/// activity's row), from positions, states and links read in that turn, and only while the
/// activity runs. Deciding on positions read before a concurrent update flipped the state would
/// flip it back, and the next report would alert again without the person having left.
async fn check_alerts(state: &AppState, running: &activity::Model, watched: &[Uuid]) -> Result<()> {
    if flips(state, &state.db, running, watched).await?.is_empty() {
        return Ok(());
    }
    let mut txn = state.begin_write().await?;
    // In the turn, the activity must still be running and each person still watched by it.
    let active = txn
        .locking(
            activity::Entity::find_by_id(running.id)
                .filter(activity::Column::Status.eq(ActivityStatus::Active)),
        )
        .select_only()
        .column(activity::Column::Id)
        .into_tuple::<Uuid>()
        .one(&*txn)
        .await?;
    if active.is_none() {
        return Ok(());
    }
    let links = watched_by(&*txn, running.owner_id).await?;
    let watched: Vec<Uuid> = watched
        .iter()
        .copied()
        .filter(|user| links.contains(user))
        .collect();
    // Truncated to what both databases keep, so a catch-up reads back the instant the alert's
    // message carried, and knows it sent that entry.
    let now = Utc::now().trunc_subsecs(6);
    for flip in flips(state, &*txn, running, &watched).await? {
        let entered_at = flip.inside.then_some(now);
        let entered_meters = flip.inside.then_some(flip.distance);
        match flip.was_inside {
            Some(_) => {
                let mut update = proximity_state::Entity::update_many()
                    .col_expr(proximity_state::Column::Inside, Expr::value(flip.inside));
                if flip.inside {
                    update = update
                        .col_expr(proximity_state::Column::EnteredAt, Expr::value(entered_at))
                        .col_expr(
                            proximity_state::Column::EnteredMeters,
                            Expr::value(entered_meters),
                        );
                }
                update
                    .filter(proximity_state::Column::ActivityId.eq(running.id))
                    .filter(proximity_state::Column::UserId.eq(flip.user))
                    .exec(&*txn)
                    .await?;
            }
            None => {
                proximity_state::ActiveModel {
                    activity_id: Set(running.id),
                    user_id: Set(flip.user),
                    inside: Set(true),
                    entered_at: Set(entered_at),
                    entered_meters: Set(entered_meters),
                }
                .insert(&*txn)
                .await?;
            }
        }
        if flip.inside {
            txn.publish(
                &ALERTS.of(running.owner_id),
                &ProximityAlert {
                    activity_id: running.id,
                    user_id: flip.user,
                    distance_meters: flip.distance,
                    entered_at,
                },
            );
        }
    }
    txn.commit().await?;
    Ok(())
}

/// A change of one watched person's state for an activity.
struct Flip {
    user: Uuid,
    distance: f64,
    /// The new state.
    inside: bool,
    /// The stored state (`None`: never inside, so no row).
    was_inside: Option<bool>,
}

/// The states of `watched` for `running` that their positions now flip, read from `db`. Positions
/// and states are read in two queries whatever the number of people.
async fn flips(
    state: &AppState,
    db: &impl ConnectionTrait,
    running: &activity::Model,
    watched: &[Uuid],
) -> Result<Vec<Flip>> {
    let now = Utc::now();
    let mut users = watched.to_vec();
    users.push(running.owner_id);
    let reports = locations_of(db, &users).await?;
    // As on the owner's screen: a watched person's position counts while fresh; the owner's own
    // latest position counts however old (an owner standing still stops reporting).
    let report_of = |user: Uuid| {
        reports
            .iter()
            .find(|location| location.user_id == user)
            .map(report)
    };
    let position_of = |user: Uuid| {
        report_of(user)
            .filter(|report| now - report.at <= stale_after(state))
            .and_then(|report| report.position)
    };
    let Some(owner) = report_of(running.owner_id).and_then(|report| report.position) else {
        return Ok(Vec::new());
    };
    let crossings: Vec<(Uuid, f64, Crossing)> = watched
        .iter()
        .filter_map(|&user| {
            let distance = owner.distance_to(position_of(user)?);
            Some((
                user,
                distance,
                crossing(distance, running.alert_radius_meters),
            ))
        })
        .filter(|(_, _, crossed)| *crossed != Crossing::Edge)
        .collect();
    if crossings.is_empty() {
        return Ok(Vec::new());
    }
    let stored: Vec<(Uuid, bool)> = proximity_state::Entity::find()
        .select_only()
        .column(proximity_state::Column::UserId)
        .column(proximity_state::Column::Inside)
        .filter(proximity_state::Column::ActivityId.eq(running.id))
        .filter(proximity_state::Column::UserId.is_in(crossings.iter().map(|(user, ..)| *user)))
        .into_tuple()
        .all(db)
        .await?;
    Ok(crossings
        .into_iter()
        .filter_map(|(user, distance, crossed)| {
            let inside = crossed == Crossing::Inside;
            let was_inside = stored
                .iter()
                .find(|(them, _)| *them == user)
                .map(|(_, inside)| *inside);
            // Never inside and still outside: nothing to remember.
            let flips = match was_inside {
                Some(was) => was != inside,
                None => inside,
            };
            flips.then_some(Flip {
                user,
                distance,
                inside,
                was_inside,
            })
        })
        .collect())
}

/// Tells `activity`'s followers a position changed (they recompute its status; [`touch_in`] when
/// the activity or its links changed).
fn touch(state: &AppState, activity: Uuid) {
    state.live.publish(
        &ACTIVITY.of(activity),
        &ActivityTouched {
            activity_id: activity,
            reload: false,
        },
    );
}

/// Inside `txn`: the activity or its links changed (followers reload it once `txn` commits).
fn touch_in(txn: &mut WriteTxn, activity: Uuid) {
    txn.publish(
        &ACTIVITY.of(activity),
        &ActivityTouched {
            activity_id: activity,
            reload: true,
        },
    );
}

/// Inside `txn`: tells `watched`'s devices to `command` for `running`, once `txn` commits.
fn command(txn: &mut WriteTxn, watched: Uuid, command: Command, running: &activity::Model) {
    txn.publish(
        &TRACKING.of(watched),
        &TrackingCommand {
            command,
            activity_id: running.id,
            requested_by: running.owner_id,
        },
    );
}

/// Starts the caller's activity (one ACTIVE per owner, by the database: a second is CONFLICT) and
/// tells every consenting watched person's devices to START.
#[tracing::instrument(skip(state))]
pub async fn start_activity(state: &AppState, me: Identity, radius: f64) -> Result<ActivityView> {
    let mut txn = watcher_turn(state, me.user_id).await?;
    let inserted = activity::ActiveModel {
        id: Set(Uuid::now_v7()),
        owner_id: Set(me.user_id),
        status: Set(ActivityStatus::Active),
        alert_radius_meters: Set(radius),
        started_at: Set(Utc::now()),
        ended_at: Set(None),
        version: Set(1),
    }
    .insert(&*txn)
    .await;
    let started = match inserted {
        Ok(started) => started,
        Err(err) if ONE_ACTIVE_KEY.violated_by(&err) => {
            return Err(Error::state_conflict("you already have an ACTIVE activity"));
        }
        Err(err) => return Err(err.into()),
    };
    for watched in watched_by(&*txn, me.user_id).await? {
        command(&mut txn, watched, Command::Start, &started);
    }
    txn.commit().await?;
    view(state, started).await
}

/// Ends the caller's ACTIVE activity as `ending` (DISRUPTED or STOPPED) and tells the watched
/// people's devices to STOP. Someone else's activity is NOT_FOUND; an ended one CONFLICT.
#[tracing::instrument(skip(state))]
pub async fn end_activity(
    state: &AppState,
    me: Identity,
    id: Uuid,
    ending: ActivityStatus,
) -> Result<ActivityView> {
    let mut txn = watcher_turn(state, me.user_id).await?;
    let ended = activity::Entity::update_many()
        .col_expr(activity::Column::Status, Expr::value(ending))
        .col_expr(activity::Column::EndedAt, Expr::value(Some(Utc::now())))
        .col_expr(
            activity::Column::Version,
            Expr::col(activity::Column::Version).add(1),
        )
        .filter(activity::Column::Id.eq(id))
        .filter(activity::Column::OwnerId.eq(me.user_id))
        .filter(activity::Column::Status.eq(ActivityStatus::Active))
        .exec(&*txn)
        .await?;
    let current = own(&*txn, me, id).await?;
    if ended.rows_affected != 1 {
        return Err(Error::state_conflict("this activity has already ended"));
    }
    for watched in watched_by(&*txn, me.user_id).await? {
        command(&mut txn, watched, Command::Stop, &current);
    }
    touch_in(&mut txn, id);
    txn.commit().await?;
    view(state, current).await
}

/// The caller's own activity, or NOT_FOUND (anyone else's too).
async fn own(db: &impl ConnectionTrait, me: Identity, id: Uuid) -> Result<activity::Model> {
    activity::Entity::find_by_id(id)
        .one(db)
        .await?
        .filter(|found| found.owner_id == me.user_id)
        .ok_or(Error::NotFound("no such activity"))
}

/// The caller's activity with its status now; NOT_FOUND for anyone else's.
pub async fn activity(state: &AppState, me: Identity, id: Uuid) -> Result<ActivityView> {
    let found = own(&state.db, me, id).await?;
    view(state, found).await
}

/// `found` with its status computed now (the owner's latest position, the consenting watched
/// people's latest reports). An ended activity shows nobody: the people it watched were told to
/// stop sharing for it, and may still share for someone else's, which its owner must not read
/// through it.
async fn view(state: &AppState, found: activity::Model) -> Result<ActivityView> {
    let watched = if found.status == ActivityStatus::Active {
        watched_by(&state.db, found.owner_id).await?
    } else {
        Vec::new()
    };
    view_of(state, found, &watched).await
}

/// `found`'s status now, for the people it watches (`watched`, as [`watched_by`] lists them): one
/// read of positions.
async fn view_of(
    state: &AppState,
    found: activity::Model,
    watched: &[Uuid],
) -> Result<ActivityView> {
    let mut users = watched.to_vec();
    users.push(found.owner_id);
    let reports = locations_of(&state.db, &users).await?;
    let report_of = |user: Uuid| {
        reports
            .iter()
            .find(|location| location.user_id == user)
            .map(report)
    };
    let owner = report_of(found.owner_id).and_then(|report| report.position);
    let watched: Vec<(Uuid, Option<Report>)> = watched
        .iter()
        .map(|&user| (user, report_of(user)))
        .collect();
    let now = Utc::now();
    Ok(ActivityView {
        status: status(owner, &watched, now, stale_after(state)),
        activity: found,
    })
}

/// The owner follows an activity: its status now, then again after every change that touches it
/// (a watched person's report, a link accepted or removed, the activity ending) and whenever a
/// watched person goes stale with no update (a timer). A position change re-reads the positions
/// and who is watched (a removal's own message may come after it: messages of two instances are
/// not ordered, and a person who took their consent back must be off the next status); a change
/// of the activity or its links (or a resync) reloads the activity too. Ends after the activity
/// ended.
pub async fn follow_activity(
    state: &AppState,
    me: Identity,
    id: Uuid,
) -> Result<impl Stream<Item = ActivityView> + Send + 'static> {
    let mut feed = state.live.subscribe(&ACTIVITY.of(id));
    let (first, mut watched) = reload(state, me, id).await?;
    let state = state.clone();
    Ok(async_stream::stream! {
        let mut next_stale = first.status.next_stale_at;
        let mut running = first.activity.status == ActivityStatus::Active;
        let mut found = first.activity.clone();
        let mut reload_owed = false;
        yield first;
        while running {
            let timer = async {
                match next_stale {
                    Some(at) => {
                        let wait = (at - Utc::now()).to_std().unwrap_or_default();
                        // A moment past the threshold, so the report is stale when read.
                        tokio::time::sleep(wait + StdDuration::from_millis(5)).await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let mut reloading = tokio::select! {
                signal = feed.next() => match signal {
                    None => break,
                    Some(Signal::Message(touched)) => touched.reload,
                    Some(Signal::Resync) => true,
                },
                () = timer => false,
            } || reload_owed;
            while let Some(queued) = feed.try_next() {
                reloading |= match queued {
                    Signal::Message(touched) => touched.reload,
                    Signal::Resync => true,
                };
            }
            let now = if reloading {
                reload(&state, me, id).await.map(|(now, links)| {
                    watched = links;
                    now
                })
            } else {
                match watched_by(&state.db, found.owner_id).await {
                    Ok(links) => {
                        watched = links;
                        view_of(&state, found.clone(), &watched).await
                    }
                    Err(err) => Err(err),
                }
            };
            // A reload that failed is owed until one succeeds.
            reload_owed = reloading && now.is_err();
            match now {
                Ok(now) => {
                    next_stale = now.status.next_stale_at;
                    running = now.activity.status == ActivityStatus::Active;
                    found = now.activity.clone();
                    yield now;
                }
                Err(err) => {
                    err.report();
                    tokio::time::sleep(StdDuration::from_millis(500)).await;
                }
            }
        }
    })
}

/// The caller's activity with its status, and the people it watches, read afresh: nobody once it
/// has ended, as in [`view`].
async fn reload(state: &AppState, me: Identity, id: Uuid) -> Result<(ActivityView, Vec<Uuid>)> {
    let found = own(&state.db, me, id).await?;
    let watched = if found.status == ActivityStatus::Active {
        watched_by(&state.db, found.owner_id).await?
    } else {
        Vec::new()
    };
    Ok((view_of(state, found, &watched).await?, watched))
}

/// A watched person's devices: START for every ACTIVE activity that watches them now (a phone that
/// was offline still learns it must share), then every command as it happens that still holds when
/// it is delivered (`still_holds`) and is news to the device (a START it already has is not sent
/// again). When commands may have been missed ([`Signal::Resync`]: the device's connection fell
/// behind, or another instance's commands were lost between instances), the stream compares what it
/// told the device with what the state says now and sends the difference: STOP for every activity
/// it started that no longer watches them (a missed STOP would leave a phone sharing without
/// consent), START for every one it has not started. A catch-up that cannot read the state is owed
/// and tried again with backoff ([`CatchUp`]), while commands go on being delivered meanwhile.
pub async fn tracking_commands(
    state: &AppState,
    me: Identity,
) -> Result<impl Stream<Item = TrackingCommand> + Send + 'static> {
    // Subscribed before the snapshot is read, so a command between the two is not lost.
    let mut feed = state.live.subscribe(&TRACKING.of(me.user_id));
    let mut told = Told::default();
    let snapshot = told.catch_up(watching(state, me.user_id).await?);
    let state = state.clone();
    Ok(async_stream::stream! {
        for command in snapshot {
            yield command;
        }
        let mut catch_up = CatchUp::default();
        while let Some(next) = catch_up.next(&mut feed).await {
            match next {
                Next::Message(command) => {
                    if told.is_news(&command) && still_holds(&state, me.user_id, &command).await {
                        told.note(&command);
                        yield (*command).clone();
                    }
                }
                Next::CatchUp => {
                    if let Some(now) = catch_up.settle(watching(&state, me.user_id).await) {
                        for command in told.catch_up(now) {
                            yield command;
                        }
                    }
                }
            }
        }
    })
}

/// The activities one tracking stream has told its device to share with (id and owner): what it
/// compares with the state after a resync.
#[derive(Default)]
struct Told(HashMap<Uuid, Uuid>);

impl Told {
    /// Whether `command` would change what the device was told: a STOP always may (the device can
    /// hold a START from an earlier connection), a START only for an activity not started yet.
    fn is_news(&self, command: &TrackingCommand) -> bool {
        command.command == Command::Stop || !self.0.contains_key(&command.activity_id)
    }

    /// Records a command the device was sent.
    fn note(&mut self, command: &TrackingCommand) {
        match command.command {
            Command::Start => self.0.insert(command.activity_id, command.requested_by),
            Command::Stop => self.0.remove(&command.activity_id),
        };
    }

    /// The commands that bring the device from what it was told to `watching` (the ACTIVE
    /// activities that watch it now): STOPs first, then STARTs.
    fn catch_up(&mut self, watching: Vec<activity::Model>) -> Vec<TrackingCommand> {
        let now: HashMap<Uuid, Uuid> = watching
            .into_iter()
            .map(|running| (running.id, running.owner_id))
            .collect();
        let stops = self.0.iter().filter(|(id, _)| !now.contains_key(id)).map(
            |(&activity_id, &requested_by)| TrackingCommand {
                command: Command::Stop,
                activity_id,
                requested_by,
            },
        );
        let starts = now.iter().filter(|(id, _)| !self.0.contains_key(id)).map(
            |(&activity_id, &requested_by)| TrackingCommand {
                command: Command::Start,
                activity_id,
                requested_by,
            },
        );
        let commands = stops.chain(starts).collect();
        self.0 = now;
        commands
    }
}

/// Whether `command` still says what `watched`'s devices must do: START while its activity is
/// ACTIVE and watches them with consent, STOP otherwise. Each change sends its command after it
/// commits, from its own task, so the commands of two changes that follow each other closely (a
/// link accepted while the activity ends, an activity started while the link is removed) can
/// arrive in the other order: a START after the STOP that ended it. The one that no longer holds
/// is dropped, so the last command a device gets is what the state says now. A failed read is
/// tried again twice; if the state still cannot be read, only a STOP goes through: a device never
/// starts sharing without consent seen.
async fn still_holds(state: &AppState, watched: Uuid, command: &TrackingCommand) -> bool {
    let mut pauses = [50, 250].into_iter().map(StdDuration::from_millis);
    loop {
        let sharing = watching_query(watched)
            .filter(activity::Column::Id.eq(command.activity_id))
            .select_only()
            .column(activity::Column::Id)
            .into_tuple::<Uuid>()
            .one(&state.db)
            .await;
        match sharing {
            Ok(sharing) => return sharing.is_some() == (command.command == Command::Start),
            Err(err) => match pauses.next() {
                Some(pause) => tokio::time::sleep(pause).await,
                None => {
                    tracing::warn!(error = %err, "cannot check a tracking command against the state");
                    return command.command == Command::Stop;
                }
            },
        }
    }
}

/// The owner's proximity alerts, as they happen, each once. When alerts may have been missed
/// ([`Signal::Resync`]: the owner's connection fell behind, or another instance's messages were
/// lost) it reads the entries of the last [`CATCH_UP_WINDOW`](live::CATCH_UP_WINDOW) into the
/// radius of the owner's activities and sends those it has not sent (a person who entered twice
/// while the stream was behind is sent once, with their last entry). A catch-up that cannot read
/// the database is owed and tried again with backoff ([`CatchUp`]).
pub fn alerts(
    state: &AppState,
    me: Identity,
) -> impl Stream<Item = ProximityAlert> + Send + 'static {
    let mut feed = state.live.subscribe(&ALERTS.of(me.user_id));
    let state = state.clone();
    let mut sent = AlertsSent::new(Utc::now());
    async_stream::stream! {
        let mut catch_up = CatchUp::default();
        while let Some(next) = catch_up.next(&mut feed).await {
            match next {
                Next::Message(alert) => {
                    // A message of an older release has no entry time: sent as it comes.
                    let first = alert
                        .entry()
                        .is_none_or(|entry| sent.first(entry, Utc::now()));
                    if first {
                        yield (*alert).clone();
                    }
                }
                Next::CatchUp => {
                    let since = sent.since(Utc::now());
                    if let Some(missed) = catch_up.settle(entries_since(&state, me.user_id, since).await) {
                        for alert in missed {
                            if alert.entry().is_some_and(|entry| sent.first(entry, Utc::now())) {
                                yield alert;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// What one `proximityAlerts` stream has sent: each entry (activity, person, when) once.
type AlertsSent = live::Sent<(Uuid, Uuid, DateTime<Utc>)>;

/// The entries from `since` into the radius of `owner`'s activities by people they still watch,
/// as alerts, oldest first.
async fn entries_since(
    state: &AppState,
    owner: Uuid,
    since: DateTime<Utc>,
) -> Result<Vec<ProximityAlert>> {
    let owned = Query::select()
        .column(activity::Column::Id)
        .from(activity::Entity)
        .and_where(activity::Column::OwnerId.eq(owner))
        .to_owned();
    let entries = proximity_state::Entity::find()
        .filter(proximity_state::Column::ActivityId.in_subquery(owned))
        .filter(proximity_state::Column::EnteredAt.gte(since))
        .order_by_asc(proximity_state::Column::EnteredAt)
        .all(&state.db)
        .await?;
    // Only of people the owner still watches: whoever took their consent back meanwhile is not
    // reported to them any more.
    let watched = watched_by(&state.db, owner).await?;
    Ok(entries
        .into_iter()
        .filter(|entry| watched.contains(&entry.user_id))
        .map(|entry| ProximityAlert {
            activity_id: entry.activity_id,
            user_id: entry.user_id,
            distance_meters: entry.entered_meters.unwrap_or_default(),
            entered_at: entry.entered_at,
        })
        .collect())
}
