//! Running the jobs: the lease, the ledger, the loop every instance runs, and what each job does.

use std::collections::HashSet;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use futures_util::TryStreamExt;
use sea_orm::prelude::Expr;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, Set, TryInsertResult};
use uuid::Uuid;

use super::schedule::Schedule;
use crate::entity::{job_lease, job_run};
use crate::error::Result;
use crate::runs;
use crate::runs::model::Mining;
use crate::state::AppState;
use crate::{accounts, events, games, proximity};

/// How often an instance looks at its jobs when none is due sooner.
const TICK: StdDuration = StdDuration::from_secs(5);

/// What a job does at each of its moments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    /// Finishes LIVE events that started before the moment, and expires the tickets of every
    /// ended event (those ended by hand since the last finish too).
    FinishEvents,
    /// Adds the held cells' tokens to every holder's claimable tokens.
    AccrueTokens,
    /// Deletes stored photos of blur rounds that are gone, and public pictures no account or
    /// event shows (after the moment is recorded: store I/O, no rows, so it holds no write
    /// transaction).
    SweepPhotos,
    /// Forgets what is kept only for a while: positions not updated for the retention period, the
    /// alert states of activities that ended that long ago, and the refresh tokens of sessions
    /// that are over (after the moment is recorded, in batches of their own write transactions).
    ForgetOldRows,
}

/// A named job with its schedule.
#[derive(Clone, Copy, Debug)]
pub struct Job {
    /// The lease's and the ledger's key.
    pub name: &'static str,
    /// When it is due.
    pub schedule: Schedule,
    /// What it does.
    pub work: Work,
}

/// How old an unreferenced photo or picture must be to be swept: a round's photo, an avatar and an
/// event's image are written just before the transaction that refers to them.
const PHOTO_GRACE: Duration = Duration::hours(1);

/// The jobs this configuration runs.
pub fn jobs(state: &AppState) -> [Job; 4] {
    let config = &state.config;
    [
        Job {
            name: "finish-events",
            schedule: Schedule::Daily {
                at: config.event_finish_time,
                zone: config.time_zone,
            },
            work: Work::FinishEvents,
        },
        Job {
            name: "accrue-tokens",
            schedule: Schedule::Every(Duration::seconds(
                i64::try_from(config.mining_interval_seconds).unwrap_or(3600),
            )),
            work: Work::AccrueTokens,
        },
        Job {
            name: "sweep-photos",
            schedule: Schedule::Every(Duration::hours(1)),
            work: Work::SweepPhotos,
        },
        Job {
            name: "forget-old-rows",
            schedule: Schedule::Every(Duration::hours(1)),
            work: Work::ForgetOldRows,
        },
    ]
}

/// Takes or renews `job`'s lease for `holder` until `now + ttl`: a conditional update succeeds
/// when the lease is this holder's or has expired; a job never leased is inserted. Whether
/// `holder` holds it now.
pub async fn take_lease(
    state: &AppState,
    job: &str,
    holder: &str,
    now: DateTime<Utc>,
    ttl: Duration,
) -> Result<bool> {
    let renewed = job_lease::Entity::update_many()
        .col_expr(job_lease::Column::Holder, Expr::value(holder))
        .col_expr(job_lease::Column::ExpiresAt, Expr::value(now + ttl))
        .filter(job_lease::Column::Job.eq(job))
        .filter(
            Condition::any()
                .add(job_lease::Column::Holder.eq(holder))
                .add(job_lease::Column::ExpiresAt.lt(now)),
        )
        .exec(&*state.one_write().await)
        .await?;
    if renewed.rows_affected == 1 {
        return Ok(true);
    }
    let inserted = job_lease::Entity::insert(job_lease::ActiveModel {
        job: Set(job.to_owned()),
        holder: Set(holder.to_owned()),
        expires_at: Set(now + ttl),
    })
    .on_conflict(OnConflict::new().do_nothing().to_owned())
    .do_nothing()
    .exec(&*state.one_write().await)
    .await?;
    Ok(matches!(inserted, TryInsertResult::Inserted(_)))
}

/// Does `job`'s latest moment at or before `now` unless the ledger says it is done: in one write
/// transaction, the moment's ledger row (its key refuses a second one), then the work. Returns the
/// number of rows the work changed, or `None` when the moment was already done.
///
/// The caller holds `job`'s lease ([`take_lease`]). A holder whose lease ran out while it worked
/// may still be running an earlier moment when the next holder runs a later one: moments of one
/// job take turns on the lease's row, and each reads the ledger inside its turn, so a moment
/// already covered by a later one is skipped and missed moments are paid once.
pub async fn run_due(
    state: &AppState,
    job: &Job,
    holder: &str,
    now: DateTime<Utc>,
) -> Result<Option<u64>> {
    let moment = job.schedule.latest(now);
    // Most rounds find their moment done: they answer without taking a turn to write.
    let done = job_run::Entity::find_by_id((job.name.to_owned(), moment))
        .one(&state.db)
        .await?;
    if done.is_some() {
        return Ok(None);
    }
    let mut txn = state.begin_write().await?;
    // The turn: the lease's row, which `take_lease` made (without it, as in a test that races
    // moments with no lease, the ledger's key is the only arbiter). Another instance's
    // `take_lease` waits meanwhile, and its loop with it, for as long as the moment's work runs.
    txn.locking(job_lease::Entity::find_by_id(job.name))
        .one(&*txn)
        .await?;
    let latest = job_run::Entity::find()
        .filter(job_run::Column::Job.eq(job.name))
        .order_by_desc(job_run::Column::Moment)
        .one(&*txn)
        .await?
        .map(|run| run.moment);
    if latest.is_some_and(|latest| latest >= moment) {
        return Ok(None);
    }
    let previous = latest;
    let claimed = job_run::Entity::insert(job_run::ActiveModel {
        job: Set(job.name.to_owned()),
        moment: Set(moment),
        holder: Set(holder.to_owned()),
        ran_at: Set(Utc::now()),
        changed: Set(0),
    })
    .on_conflict(OnConflict::new().do_nothing().to_owned())
    .do_nothing()
    .exec(&*txn)
    .await?;
    if !matches!(claimed, TryInsertResult::Inserted(_)) {
        return Ok(None);
    }
    let changed = match job.work {
        Work::FinishEvents => {
            let finished = events::service::finish_started_before(&mut txn, moment).await?;
            let ids: Vec<Uuid> = finished.iter().map(|event| event.id).collect();
            let expired = runs::service::expire_tickets(&txn).await?;
            tracing::info!(%moment, events = ids.len(), tickets = expired, "events finished");
            u64::try_from(ids.len()).unwrap_or(u64::MAX)
        }
        Work::AccrueTokens => {
            // Moments missed while no instance ran are paid now, at most up to the cap.
            let accruals = match (previous, job.schedule) {
                (Some(previous), Schedule::Every(interval)) => {
                    ((moment - previous).num_milliseconds() / interval.num_milliseconds().max(1))
                        .max(1)
                }
                _ => 1,
            };
            let mining = Mining {
                per_cell: i64::from(state.config.mining_tokens_per_cell),
                cap: i64::from(state.config.wallet_cap),
            };
            runs::service::accrue(&txn, mining, accruals, moment).await?
        }
        Work::SweepPhotos | Work::ForgetOldRows => 0,
    };
    job_run::Entity::update_many()
        .col_expr(
            job_run::Column::Changed,
            Expr::value(i32::try_from(changed).unwrap_or(i32::MAX)),
        )
        .filter(job_run::Column::Job.eq(job.name))
        .filter(job_run::Column::Moment.eq(moment))
        .exec(&*txn)
        .await?;
    txn.commit().await?;
    if job.work == Work::SweepPhotos {
        // Idempotent: what a failed sweep leaves, the next one takes.
        let before = moment - PHOTO_GRACE;
        let rounds = games::service::sweep_photos(state, before).await?;
        return Ok(Some(rounds + sweep_pictures(state, before).await?));
    }
    if job.work == Work::ForgetOldRows {
        // In batches of their own (a first run may meet a long history), after the moment is
        // recorded; idempotent, so what a failed run leaves goes at the next one.
        let retention = proximity::service::retention(state);
        let positions = proximity::service::forget_before(state, moment - retention).await?;
        let tokens = accounts::service::forget_expired_tokens(state, moment).await?;
        tracing::info!(%moment, positions, tokens, "old rows forgotten");
        return Ok(Some(positions + tokens));
    }
    Ok(Some(changed))
}

/// Public pictures checked against the accounts and events per query.
const PICTURES_PER_QUERY: usize = 500;

/// More pictures than this shown by nothing, and more than half of those listed, is not what
/// crashes leave: the store is more likely shared with another database (a staging set-up pointed
/// at production's bucket), whose pictures this one does not know. Nothing is swept then.
const MOST_UNSHOWN: usize = 20;

/// Deletes the public pictures that no account or event shows, among those written before
/// `before`: one whose upload stopped between storing it and the write that puts it on its row
/// (the instance died), or a replaced one whose deletion failed. Returns how many went.
#[tracing::instrument(skip(state))]
async fn sweep_pictures(state: &AppState, before: DateTime<Utc>) -> Result<u64> {
    let mut listed = 0;
    let mut unshown = Vec::new();
    let mut pictures = state
        .media
        .pictures_written_before(before)
        .try_chunks(PICTURES_PER_QUERY);
    while let Some(chunk) = pictures.try_next().await.map_err(|partial| partial.1)? {
        listed += chunk.len();
        let mut shown: HashSet<String> = accounts::service::avatars_among(state, &chunk)
            .await?
            .into_iter()
            .collect();
        shown.extend(events::service::images_among(state, &chunk).await?);
        unshown.extend(chunk.into_iter().filter(|key| !shown.contains(key)));
    }
    if unshown.len() > MOST_UNSHOWN && unshown.len() * 2 > listed {
        tracing::warn!(
            listed,
            unshown = unshown.len(),
            "most pictures in the media store are shown by nothing here: is the store shared \
             with another database? none swept"
        );
        return Ok(0);
    }
    for key in &unshown {
        state.media.delete(key).await;
    }
    if !unshown.is_empty() {
        tracing::info!(swept = unshown.len(), "pictures nothing shows swept");
    }
    Ok(u64::try_from(unshown.len()).unwrap_or(u64::MAX))
}

/// A name for this instance as a lease holder, unique among instances.
pub fn holder_name() -> String {
    format!("rally-{}", Uuid::now_v7())
}

/// Gives up `holder`'s leases (at shutdown), so another instance takes the jobs at once rather
/// than when the leases expire.
pub async fn release_leases(state: &AppState, holder: &str) -> Result<u64> {
    Ok(job_lease::Entity::delete_many()
        .filter(job_lease::Column::Holder.eq(holder))
        .exec(&*state.one_write().await)
        .await?
        .rows_affected)
}

/// Every instance runs this until shut down: for each job whose lease it holds (or can take), the
/// latest due moment if not done yet — so a moment missed while no instance ran is caught up once
/// at start — then it sleeps until the next moment or `TICK`, whichever is sooner.
pub async fn run_forever(state: AppState, holder: String) {
    let ttl = Duration::seconds(i64::try_from(state.config.job_lease_seconds).unwrap_or(30));
    let jobs = jobs(&state);
    loop {
        let now = Utc::now();
        for job in &jobs {
            let outcome = match take_lease(&state, job.name, &holder, now, ttl).await {
                Ok(true) => run_due(&state, job, &holder, now).await.map(|_| ()),
                Ok(false) => Ok(()),
                Err(err) => Err(err),
            };
            if let Err(err) = outcome {
                tracing::warn!(job = job.name, "a scheduled job failed; it is retried");
                err.report();
            }
        }
        let next = jobs
            .iter()
            .map(|job| job.schedule.next(now))
            .min()
            .unwrap_or(now);
        // A moment past the next one, so the clock has surely reached it on waking.
        let wait = (next - Utc::now()).to_std().unwrap_or_default().min(TICK)
            + StdDuration::from_millis(2);
        tokio::time::sleep(wait).await;
    }
}
