//! Run rules with storage: the only code touching `tickets`, `runs`, `territories` and `wallets`,
//! the publisher of `event:{id}:territory`, and the jobs' work for runs (expiring tickets,
//! accruing tokens).

use std::collections::HashSet;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use futures_util::Stream;
use sea_orm::prelude::Expr;
use sea_orm::sea_query::{OnConflict, Query, SelectStatement};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set, Statement,
};
use uuid::Uuid;

use super::gpx;
use super::model::{
    CellCaptured, Limits, MAX_TRACK_POINTS, Mining, Shown, TERRITORY, TrackPoint, Verdict, judge,
    stored,
};
use crate::accounts;
use crate::accounts::model::Handle;
use crate::auth::Identity;
use crate::db::WriteTxn;
use crate::entity::event::{self, Status as EventStatus};
use crate::entity::run::{self, Status as RunStatus};
use crate::entity::ticket::{self, Status as TicketStatus};
use crate::entity::{run_track, territory, wallet};
use crate::error::{Error, Result, UniqueKey};
use crate::events;
use crate::live;
use crate::state::AppState;

/// `runs_one_running_key`: one RUNNING run per runner.
const ONE_RUNNING_KEY: UniqueKey = UniqueKey {
    name: "runs_one_running_key",
    table: "runs",
    columns: &["user_id"],
};

/// `runs_ticket_key`: one run per ticket.
const ONE_RUN_PER_TICKET_KEY: UniqueKey = UniqueKey {
    name: "runs_ticket_key",
    table: "runs",
    columns: &["ticket_id"],
};

/// Why a run left RUNNING at an ended event was rejected when its runner started another.
pub const FORGOTTEN: &str = "not saved before its event ended, and another run was started";

/// Most handles one `issueTickets` call may name.
pub const MAX_HANDLES: usize = 100;

/// Territory rows written per statement (five values each, well under SQLite's variable limit).
const CELLS_PER_STATEMENT: usize = 1_000;

/// The organizer (or an admin) issues one new ACTIVE ticket to each named user, for a SCHEDULED or
/// LIVE event. Every handle is checked before anything is written: an unknown one is
/// BAD_USER_INPUT naming it, and nothing is issued.
#[tracing::instrument(skip(state, handles))]
pub async fn issue_tickets(
    state: &AppState,
    me: Identity,
    event_id: Uuid,
    handles: &[String],
) -> Result<Vec<ticket::Model>> {
    let event = events::service::require(state, event_id).await?;
    if event.organizer_id != me.user_id && !me.is_admin {
        return Err(Error::Forbidden("only the organizer may issue tickets"));
    }
    if !matches!(event.status, EventStatus::Scheduled | EventStatus::Live) {
        return Err(Error::state_conflict(
            "tickets are issued for SCHEDULED or LIVE events only",
        ));
    }
    if handles.is_empty() || handles.len() > MAX_HANDLES {
        return Err(Error::bad_input(
            "handles",
            format!("name 1 to {MAX_HANDLES} users"),
        ));
    }
    let mut runners = Vec::with_capacity(handles.len());
    for (n, raw) in handles.iter().enumerate() {
        let field = format!("handles[{n}]");
        let handle = Handle::parse(raw, &field)?;
        let user = accounts::service::find_by_handle(state, &handle)
            .await?
            .ok_or_else(|| Error::bad_input(&field, format!("no user with the handle {raw:?}")))?;
        if !runners.contains(&user.id) {
            runners.push(user.id);
        }
    }
    let now = Utc::now();
    let tickets: Vec<ticket::Model> = runners
        .into_iter()
        .map(|owner_id| ticket::Model {
            id: Uuid::now_v7(),
            event_id,
            owner_id,
            status: TicketStatus::Active,
            issued_at: now,
            consumed_at: None,
        })
        .collect();
    let txn = state.begin_write().await?;
    // Read again, kept from changing until the tickets are in: the finisher may have ended the
    // event since the check above.
    let event = txn
        .sharing(event::Entity::find_by_id(event_id))
        .one(&*txn)
        .await?
        .ok_or(Error::NotFound("no such event"))?;
    if !matches!(event.status, EventStatus::Scheduled | EventStatus::Live) {
        return Err(Error::state_conflict(
            "tickets are issued for SCHEDULED or LIVE events only",
        ));
    }
    ticket::Entity::insert_many(tickets.iter().cloned().map(ticket::ActiveModel::from))
        .exec(&*txn)
        .await?;
    txn.commit().await?;
    Ok(tickets)
}

/// The caller's tickets, newest first; a ticket whose event finished or was cancelled reads as
/// EXPIRED even before the finisher marks it.
pub async fn my_tickets(
    state: &AppState,
    me: Identity,
    active_only: bool,
) -> Result<Vec<ticket::Model>> {
    let mut query = ticket::Entity::find().filter(ticket::Column::OwnerId.eq(me.user_id));
    if active_only {
        query = query.filter(ticket::Column::Status.eq(TicketStatus::Active));
    }
    let mut tickets = query
        .order_by_desc(ticket::Column::Id)
        .all(&state.db)
        .await?;
    let events: HashSet<Uuid> = tickets.iter().map(|t| t.event_id).collect();
    let events: Vec<Uuid> = events.into_iter().collect();
    let over: HashSet<Uuid> = events::service::find_many(state, &events)
        .await?
        .into_iter()
        .filter(|event| ENDED.contains(&event.status))
        .map(|event| event.id)
        .collect();
    for ticket in &mut tickets {
        if ticket.status == TicketStatus::Active && over.contains(&ticket.event_id) {
            ticket.status = TicketStatus::Expired;
        }
    }
    if active_only {
        tickets.retain(|ticket| ticket.status == TicketStatus::Active);
    }
    Ok(tickets)
}

/// Consumes the caller's ACTIVE ticket of a LIVE event and starts a RUNNING run. Another's ticket
/// is NOT_FOUND; a used or expired ticket, an event not LIVE, or a run already RUNNING at a LIVE
/// event is CONFLICT. A run left RUNNING at an event that has ended (the app never saved it) can
/// capture nothing any more: it ends REJECTED with [`FORGOTTEN`] instead of blocking the runner.
/// Concurrent calls on one ticket make one run: the ticket moves by a conditional update and the
/// run's unique ticket key backs it.
#[tracing::instrument(skip(state))]
pub async fn start_run(state: &AppState, me: Identity, ticket_id: Uuid) -> Result<run::Model> {
    let txn = state.begin_write().await?;
    let ticket = ticket::Entity::find_by_id(ticket_id)
        .one(&*txn)
        .await?
        .filter(|ticket| ticket.owner_id == me.user_id)
        .ok_or(Error::NotFound("no such ticket"))?;
    if ticket.status != TicketStatus::Active {
        return Err(Error::state_conflict(match ticket.status {
            TicketStatus::Expired => "this ticket has expired",
            _ => "this ticket was already used",
        }));
    }
    // Kept from changing until the run is in: a finish committing meanwhile would leave a run
    // started on an ended event, and a deletion cascading to the ticket and the run would deadlock
    // with the ticket's update, then the run's insert.
    let event = txn
        .sharing(event::Entity::find_by_id(ticket.event_id))
        .one(&*txn)
        .await?
        .ok_or(Error::NotFound("no such event"))?;
    if event.status != EventStatus::Live {
        return Err(Error::state_conflict(
            "runs start only while the event is LIVE",
        ));
    }
    let now = Utc::now();
    run::Entity::update_many()
        .col_expr(run::Column::Status, Expr::value(RunStatus::Rejected))
        .col_expr(run::Column::FinishedAt, Expr::value(Some(now)))
        .col_expr(run::Column::RejectionReason, Expr::value(Some(FORGOTTEN)))
        .filter(run::Column::UserId.eq(me.user_id))
        .filter(run::Column::Status.eq(RunStatus::Running))
        .filter(run::Column::EventId.in_subquery(ended_events()))
        .exec(&*txn)
        .await?;
    let consumed = ticket::Entity::update_many()
        .col_expr(ticket::Column::Status, Expr::value(TicketStatus::Consumed))
        .col_expr(ticket::Column::ConsumedAt, Expr::value(Some(now)))
        .filter(ticket::Column::Id.eq(ticket_id))
        .filter(ticket::Column::Status.eq(TicketStatus::Active))
        .exec(&*txn)
        .await?;
    if consumed.rows_affected != 1 {
        return Err(Error::state_conflict("this ticket was already used"));
    }
    let inserted = run::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(me.user_id),
        event_id: Set(ticket.event_id),
        ticket_id: Set(ticket_id),
        status: Set(RunStatus::Running),
        started_at: Set(now),
        finished_at: Set(None),
        distance_meters: Set(0.0),
        duration_seconds: Set(0),
        cells_captured: Set(0),
        rejection_reason: Set(None),
    }
    .insert(&*txn)
    .await;
    let started = match inserted {
        Ok(started) => started,
        Err(err) if ONE_RUNNING_KEY.violated_by(&err) => {
            return Err(Error::state_conflict(
                "you already have a RUNNING run: save it first",
            ));
        }
        Err(err) if ONE_RUN_PER_TICKET_KEY.violated_by(&err) => {
            return Err(Error::state_conflict("this ticket was already used"));
        }
        Err(err) => return Err(err.into()),
    };
    txn.commit().await?;
    Ok(started)
}

/// The caller's own run; anyone else's is NOT_FOUND.
pub async fn run(state: &AppState, me: Identity, id: Uuid) -> Result<run::Model> {
    run::Entity::find_by_id(id)
        .one(&state.db)
        .await?
        .filter(|run| run.user_id == me.user_id)
        .ok_or(Error::NotFound("no such run"))
}

/// The caller's runs, newest first, after the run `after` (its id) if given.
pub async fn my_runs(
    state: &AppState,
    me: Identity,
    limit: u64,
    after: Option<Uuid>,
) -> Result<Vec<run::Model>> {
    let mut query = run::Entity::find().filter(run::Column::UserId.eq(me.user_id));
    if let Some(after) = after {
        query = query.filter(run::Column::Id.lt(after));
    }
    Ok(query
        .order_by_desc(run::Column::Id)
        .limit(limit)
        .all(&state.db)
        .await?)
}

/// A RUNNING run of the caller, or why not.
async fn running(state: &AppState, me: Identity, id: Uuid) -> Result<run::Model> {
    let found = run(state, me, id).await?;
    if found.status != RunStatus::Running {
        return Err(Error::state_conflict("this run has already ended"));
    }
    Ok(found)
}

/// Saves the caller's RUNNING run with its track. A plausible track is SAVED with its distance,
/// duration and cells, which the runner captures at the event in one transaction; an implausible
/// one is REJECTED with the reason and kept for review, capturing nothing. Either way the run ends.
/// The map closes with the event: a run saved once its event is no longer LIVE (the finisher ran,
/// or the organizer ended it) is SAVED with its distance and duration but captures no cells.
/// `track` as parsed: its error reaches the runner only.
#[tracing::instrument(skip(state, track), fields(points = tracing::field::Empty))]
pub async fn save_run(
    state: &AppState,
    me: Identity,
    id: Uuid,
    track: Result<Vec<TrackPoint>>,
) -> Result<run::Model> {
    let current = running(state, me, id).await?;
    let track = track?;
    tracing::Span::current().record("points", track.len());
    let saved_at = Utc::now();
    let limits = Limits::new(
        current.started_at,
        saved_at,
        state.config.run_max_speed_kmh,
        state.config.h3_resolution,
    );
    // Judging and encoding a long track are CPU work: off the async workers.
    let (kept, verdict) = tokio::task::spawn_blocking(move || {
        let verdict = judge(&track, limits);
        serde_json::to_string(&track).map(|kept| (kept, verdict))
    })
    .await?
    .map_err(Error::internal)?;

    let mut txn = state.begin_write().await?;
    // Kept from changing until the cells are in: the map closes when the event ends (a finish
    // committing meanwhile waits), and a deletion cascading to the run and the territories would
    // deadlock with the run's update, then the territories' inserts.
    let event = txn
        .sharing(event::Entity::find_by_id(current.event_id))
        .one(&*txn)
        .await?
        .ok_or(Error::NotFound("no such event"))?;
    let map_open = event.status == EventStatus::Live;
    let mut finish = run::Entity::update_many()
        .col_expr(run::Column::FinishedAt, Expr::value(Some(saved_at)))
        .filter(run::Column::Id.eq(id))
        .filter(run::Column::Status.eq(RunStatus::Running));
    let cells: &[h3o::CellIndex] = match &verdict {
        Verdict::Saved(measured) => {
            let captured = if map_open {
                measured.cells.as_slice()
            } else {
                &[]
            };
            finish = finish
                .col_expr(run::Column::Status, Expr::value(RunStatus::Saved))
                .col_expr(
                    run::Column::DistanceMeters,
                    Expr::value(measured.distance_meters),
                )
                .col_expr(
                    run::Column::DurationSeconds,
                    Expr::value(measured.duration_seconds),
                )
                .col_expr(
                    run::Column::CellsCaptured,
                    Expr::value(i32::try_from(captured.len()).unwrap_or(i32::MAX)),
                );
            captured
        }
        Verdict::Rejected(reason) => {
            finish = finish
                .col_expr(run::Column::Status, Expr::value(RunStatus::Rejected))
                .col_expr(
                    run::Column::RejectionReason,
                    Expr::value(Some(reason.clone())),
                );
            &[]
        }
    };
    if finish.exec(&*txn).await?.rows_affected != 1 {
        return Err(Error::state_conflict("this run has already ended"));
    }
    run_track::Entity::insert(run_track::ActiveModel {
        run_id: Set(id),
        points: Set(kept),
    })
    .exec(&*txn)
    .await?;
    // In cell order, so two saves through the same cells lock their rows in the same order
    // (PostgreSQL never deadlocks them).
    let mut cells: Vec<i64> = cells.iter().map(|cell| stored(*cell)).collect();
    cells.sort_unstable();
    // The last save to commit holds a cell. Each capture raises the cell's version (captures of a
    // cell queue behind each other's commits), which orders the pushes whatever the instances'
    // clocks say: the last one a stream shows for a cell names the holder in the table.
    // Truncated to what both databases keep, so a catch-up reads back the instant the message
    // carried.
    let captured_at = Utc::now().trunc_subsecs(6);
    let mut versions: Vec<(i64, i64)> = Vec::with_capacity(cells.len());
    for chunk in cells.chunks(CELLS_PER_STATEMENT) {
        territory::Entity::insert_many(chunk.iter().map(|cell| territory::ActiveModel {
            event_id: Set(current.event_id),
            cell: Set(*cell),
            owner_id: Set(me.user_id),
            run_id: Set(id),
            captured_at: Set(captured_at),
            version: Set(1),
        }))
        .on_conflict(
            OnConflict::columns([territory::Column::EventId, territory::Column::Cell])
                .update_columns([
                    territory::Column::OwnerId,
                    territory::Column::RunId,
                    territory::Column::CapturedAt,
                ])
                .value(
                    territory::Column::Version,
                    Expr::col((territory::Entity, territory::Column::Version)).add(1),
                )
                .to_owned(),
        )
        .exec(&*txn)
        .await?;
        // Read in the save's turn: the rows are this save's until it commits.
        versions.extend(
            territory::Entity::find()
                .select_only()
                .column(territory::Column::Cell)
                .column(territory::Column::Version)
                .filter(territory::Column::EventId.eq(current.event_id))
                .filter(territory::Column::Cell.is_in(chunk.iter().copied()))
                .into_tuple::<(i64, i64)>()
                .all(&*txn)
                .await?,
        );
    }
    for (cell, version) in versions {
        txn.publish(
            &TERRITORY.of(current.event_id),
            &CellCaptured {
                event_id: current.event_id,
                cell: u64::try_from(cell).unwrap_or_default(),
                owner_id: me.user_id,
                captured_at,
                version,
            },
        );
    }
    txn.commit().await?;
    run(state, me, id).await
}

/// Saves the caller's RUNNING run from a GPX file (see [`gpx::read_track`] for what is read). A
/// file that is not GPX is BAD_USER_INPUT on `file` and leaves the run RUNNING. `file` as read:
/// its error reaches the runner only.
pub async fn import_gpx(
    state: &AppState,
    me: Identity,
    id: Uuid,
    file: Result<Vec<u8>>,
) -> Result<run::Model> {
    running(state, me, id).await?;
    let file = file?;
    let read = tokio::task::spawn_blocking(move || gpx::read_track(file.as_slice())).await?;
    let points = read.map_err(|message| Error::bad_input("file", message))?;
    if points.len() > MAX_TRACK_POINTS {
        return Err(Error::bad_input(
            "file",
            format!("a track holds at most {MAX_TRACK_POINTS} points"),
        ));
    }
    let track = points
        .into_iter()
        .map(|point| TrackPoint {
            latitude: point.latitude,
            longitude: point.longitude,
            at: point.at,
            resumes: point.resumes,
        })
        .collect();
    save_run(state, me, id, Ok(track)).await
}

/// Every held cell of an event.
pub async fn territories(state: &AppState, event_id: Uuid) -> Result<Vec<territory::Model>> {
    events::service::require(state, event_id).await?;
    Ok(territory::Entity::find()
        .filter(territory::Column::EventId.eq(event_id))
        .all(&state.db)
        .await?)
}

/// Each cell captured at an event, as it is captured (after its save committed). When captures may
/// have been missed ([`live::Signal::Resync`]: the execution fell behind its topic, or another
/// instance's messages were lost) it reads the cells captured in the last
/// [`CATCH_UP_WINDOW`](live::CATCH_UP_WINDOW) and sends each whose holder it has not shown, as it
/// is now; it never sends a capture older than the one it showed for that cell ([`Shown`]). A
/// catch-up that cannot read the database is owed and tried again with backoff
/// ([`CatchUp`](live::CatchUp)).
pub async fn follow_territory(
    state: &AppState,
    event_id: Uuid,
) -> Result<impl Stream<Item = CellCaptured> + Send + 'static> {
    let mut feed = state.live.subscribe(&TERRITORY.of(event_id));
    events::service::require(state, event_id).await?;
    let state = state.clone();
    let mut shown = Shown::new(Utc::now());
    Ok(async_stream::stream! {
        let mut catch_up = live::CatchUp::default();
        while let Some(next) = catch_up.next(&mut feed).await {
            match next {
                live::Next::Message(captured) => {
                    if shown.news(&captured) {
                        yield (*captured).clone();
                    }
                }
                live::Next::CatchUp => {
                    let since = shown.since(Utc::now());
                    if let Some(cells) = catch_up.settle(captures_since(&state, event_id, since).await) {
                        for captured in cells {
                            if shown.news(&captured) {
                                yield captured;
                            }
                        }
                    }
                }
            }
        }
    })
}

/// The cells of `event_id` captured from `since`, as their holders now hold them.
async fn captures_since(
    state: &AppState,
    event_id: Uuid,
    since: DateTime<Utc>,
) -> Result<Vec<CellCaptured>> {
    let held = territory::Entity::find()
        .filter(territory::Column::EventId.eq(event_id))
        .filter(territory::Column::CapturedAt.gte(since))
        .order_by_asc(territory::Column::Cell)
        .all(&state.db)
        .await?;
    Ok(held
        .into_iter()
        .filter_map(|cell| {
            Some(CellCaptured {
                event_id,
                cell: u64::try_from(cell.cell).ok()?,
                owner_id: cell.owner_id,
                captured_at: cell.captured_at,
                version: cell.version,
            })
        })
        .collect())
}

/// The caller's wallet (zeros before the first accrual), and how many cells they hold at LIVE
/// events (the ones that mine).
pub async fn wallet(state: &AppState, user: Uuid) -> Result<(wallet::Model, u64)> {
    let live = Query::select()
        .column(event::Column::Id)
        .from(event::Entity)
        .and_where(event::Column::Status.eq(EventStatus::Live))
        .to_owned();
    let held = territory::Entity::find()
        .filter(territory::Column::OwnerId.eq(user))
        .filter(territory::Column::EventId.in_subquery(live))
        .count(&state.db)
        .await?;
    let found = wallet::Entity::find_by_id(user).one(&state.db).await?;
    Ok((
        found.unwrap_or(wallet::Model {
            user_id: user,
            tokens: 0,
            claimable: 0,
            updated_at: Utc::now(),
        }),
        held,
    ))
}

/// Moves everything claimable into the caller's tokens, in one conditional statement: of any
/// number of concurrent claims, one moves it and the others find nothing to move.
#[tracing::instrument(skip(state))]
pub async fn claim_tokens(state: &AppState, me: Identity) -> Result<(wallet::Model, u64)> {
    wallet::Entity::update_many()
        .col_expr(
            wallet::Column::Tokens,
            Expr::col(wallet::Column::Tokens).add(Expr::col(wallet::Column::Claimable)),
        )
        .col_expr(wallet::Column::Claimable, Expr::value(0_i64))
        .col_expr(wallet::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(wallet::Column::UserId.eq(me.user_id))
        .filter(wallet::Column::Claimable.gt(0))
        .exec(&*state.one_write().await)
        .await?;
    wallet(state, me.user_id).await
}

/// The statuses of an event that has ended: neither ever changes again, and its tickets and runs
/// are over.
const ENDED: [EventStatus; 2] = [EventStatus::Finished, EventStatus::Cancelled];

/// The ids of the events that have ended.
fn ended_events() -> SelectStatement {
    Query::select()
        .column(event::Column::Id)
        .from(event::Entity)
        .and_where(event::Column::Status.is_in(ENDED))
        .to_owned()
}

/// Expires, inside `txn`, the ACTIVE tickets of every event that has ended (the finisher's part
/// for runs): those it has just finished, and those finished or cancelled by hand since it last
/// ran (which `myTickets` already shows EXPIRED).
pub async fn expire_tickets(txn: &WriteTxn) -> Result<u64> {
    Ok(ticket::Entity::update_many()
        .col_expr(ticket::Column::Status, Expr::value(TicketStatus::Expired))
        .filter(ticket::Column::Status.eq(TicketStatus::Active))
        .filter(ticket::Column::EventId.in_subquery(ended_events()))
        .exec(&**txn)
        .await?
        .rows_affected)
}

/// Adds, inside `txn`, `accruals` accruals to the claimable tokens of every user holding cells at a
/// LIVE event, at `moment`: `claimable` grows by those cells × tokens per cell × accruals, up to
/// the cap, and never drops. (Territory of finished events stays on the map but mines no more.)
/// Two statements whatever the number of users, each atomic, so a claim racing them never loses
/// or doubles tokens. Returns the wallets accrued.
pub async fn accrue(
    txn: &WriteTxn,
    mining: Mining,
    accruals: i64,
    moment: DateTime<Utc>,
) -> Result<u64> {
    let backend = txn.get_database_backend();
    let (insert, update) = match backend {
        DatabaseBackend::Postgres => (
            "INSERT INTO wallets (user_id, tokens, claimable, updated_at) \
             SELECT t.owner_id, 0, 0, $1 FROM territories t JOIN events e ON e.id = t.event_id \
             WHERE e.status = 'LIVE' GROUP BY t.owner_id \
             ON CONFLICT (user_id) DO NOTHING",
            "UPDATE wallets SET claimable = GREATEST(wallets.claimable, \
             LEAST($1, wallets.claimable + $2 * held.cells)), updated_at = $3 \
             FROM (SELECT t.owner_id, COUNT(*) AS cells FROM territories t \
             JOIN events e ON e.id = t.event_id WHERE e.status = 'LIVE' GROUP BY t.owner_id) AS held \
             WHERE wallets.user_id = held.owner_id",
        ),
        _ => (
            "INSERT INTO wallets (user_id, tokens, claimable, updated_at) \
             SELECT t.owner_id, 0, 0, ? FROM territories t JOIN events e ON e.id = t.event_id \
             WHERE e.status = 'LIVE' GROUP BY t.owner_id \
             ON CONFLICT (user_id) DO NOTHING",
            "UPDATE wallets SET claimable = MAX(wallets.claimable, \
             MIN(?, wallets.claimable + ? * held.cells)), updated_at = ? \
             FROM (SELECT t.owner_id, COUNT(*) AS cells FROM territories t \
             JOIN events e ON e.id = t.event_id WHERE e.status = 'LIVE' GROUP BY t.owner_id) AS held \
             WHERE wallets.user_id = held.owner_id",
        ),
    };
    txn.execute(Statement::from_sql_and_values(
        backend,
        insert,
        [moment.into()],
    ))
    .await?;
    // Never more than the cap per cell, so `cells × this` cannot overflow in SQL (a failed
    // statement would fail every accrual from then on).
    let per_accrual = mining.per_cell.saturating_mul(accruals).min(mining.cap);
    let accrued = txn
        .execute(Statement::from_sql_and_values(
            backend,
            update,
            [mining.cap.into(), per_accrual.into(), moment.into()],
        ))
        .await?;
    Ok(accrued.rows_affected())
}

/// The next accrual moment after `now` for `interval` (moments are whole multiples of it since
/// the Unix epoch).
pub fn next_accrual(now: DateTime<Utc>, interval: Duration) -> Option<DateTime<Utc>> {
    let step = interval.num_seconds().max(1);
    let next = (now.timestamp().div_euclid(step) + 1) * step;
    DateTime::from_timestamp(next, 0)
}
