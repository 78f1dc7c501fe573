//! Runs GraphQL: tickets, runs, territory, the wallet. Tickets, runs and wallets are their owner's
//! only; territory is public like the event it belongs to.

use async_graphql::{Context, Enum, ID, InputObject, Object, Subscription, Upload};
use chrono::{DateTime, Duration, Utc};
use futures_util::{Stream, StreamExt};
use uuid::Uuid;

use super::model::{self, TrackPoint, boundary, parse_track, unstored};
use super::service;
use crate::accounts::graphql::{User, UserLoader};
use crate::entity::{run, territory, ticket, wallet};
use crate::error::{Error, Result};
use crate::events::graphql::{Event, EventLoader};
use crate::graphql::loaders::loader;
use crate::graphql::pagination::PageRequest;
use crate::graphql::{ContextExt, SignedIn, ids, upload};
use std::collections::HashMap;
use std::sync::Arc;
async fn event(ctx: &Context<'_>, id: Uuid) -> Result<Event> {
    loader::<EventLoader>(ctx)?
        .load_one(id)
        .await?
        .map(Event::from)
        .ok_or(Error::NotFound("no such event"))
}

/// Where a ticket stands.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "ticket::Status")]
pub enum TicketStatus {
    /// Can start a run while its event is LIVE.
    Active,
    /// A run started with it.
    Consumed,
    /// Its event finished first.
    Expired,
}

/// Where a run stands.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "run::Status")]
pub enum RunStatus {
    /// Started, not saved yet.
    Running,
    /// Saved; its cells were captured.
    Saved,
    /// Its track was implausible: kept for review, captured nothing.
    Rejected,
}

/// A runner's ticket to an event.
pub struct Ticket(ticket::Model);

#[Object]
impl Ticket {
    /// Stable id (UUID).
    async fn id(&self) -> ID {
        ids::to_id(self.0.id)
    }

    /// The event it admits to.
    async fn event(&self, ctx: &Context<'_>) -> Result<Event> {
        event(ctx, self.0.event_id).await
    }

    /// The runner.
    async fn owner(&self, ctx: &Context<'_>) -> Result<User> {
        User::load(ctx, self.0.owner_id).await
    }

    /// ACTIVE, CONSUMED or EXPIRED.
    async fn status(&self) -> TicketStatus {
        self.0.status.into()
    }

    /// When the organizer issued it.
    async fn issued_at(&self) -> DateTime<Utc> {
        self.0.issued_at
    }

    /// When a run consumed it.
    async fn consumed_at(&self) -> Option<DateTime<Utc>> {
        self.0.consumed_at
    }
}

/// One run at an event.
pub struct Run(run::Model);

#[Object]
impl Run {
    /// Stable id (UUID).
    async fn id(&self) -> ID {
        ids::to_id(self.0.id)
    }

    /// The runner.
    async fn user(&self, ctx: &Context<'_>) -> Result<User> {
        User::load(ctx, self.0.user_id).await
    }

    /// The event.
    async fn event(&self, ctx: &Context<'_>) -> Result<Event> {
        event(ctx, self.0.event_id).await
    }

    /// RUNNING, SAVED or REJECTED.
    async fn status(&self) -> RunStatus {
        self.0.status.into()
    }

    /// When it started.
    async fn started_at(&self) -> DateTime<Utc> {
        self.0.started_at
    }

    /// When its track was saved.
    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.0.finished_at
    }

    /// Geodesic length of the track (WGS84), single wild GPS fixes left out and nothing counted
    /// across a pause (between GPX segments); 0 until saved.
    async fn distance_meters(&self) -> f64 {
        self.0.distance_meters
    }

    /// From the track's first point to its last, pauses included.
    async fn duration_seconds(&self) -> i32 {
        self.0.duration_seconds
    }

    /// Territory cells this run captured (H3 cells at the configured resolution): the cell of
    /// every fix kept (wild ones are left out), and those along the line between two consecutive fixes unless the recording
    /// paused between them or they are more than a minute apart.
    async fn cells_captured(&self) -> i32 {
        self.0.cells_captured
    }

    /// Why a run was rejected (e.g. implausible speed).
    async fn rejection_reason(&self) -> Option<&str> {
        self.0.rejection_reason.as_deref()
    }
}

/// One GPS fix.
#[derive(InputObject)]
pub struct TrackPointInput {
    /// Degrees, -90 to 90.
    latitude: f64,
    /// Degrees, -180 to 180.
    longitude: f64,
    /// When the fix was taken.
    at: DateTime<Utc>,
}

/// A held cell of an event's territory. A listing loads the holders once for all its cells (an
/// event's territory runs to 100,000 cells), so `owner` costs no loader call per cell.
pub struct Territory {
    row: territory::Model,
    owners: Arc<HashMap<Uuid, User>>,
}

impl Territory {
    /// `rows` with their holders, loaded in one batch.
    async fn all(ctx: &Context<'_>, rows: Vec<territory::Model>) -> Result<Vec<Self>> {
        let mut ids: Vec<Uuid> = rows.iter().map(|row| row.owner_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let owners: HashMap<Uuid, User> = loader::<UserLoader>(ctx)?
            .load_many(ids)
            .await?
            .into_iter()
            .map(|(id, model)| (id, User::from(model)))
            .collect();
        let owners = Arc::new(owners);
        Ok(rows
            .into_iter()
            .map(|row| Self {
                row,
                owners: owners.clone(),
            })
            .collect())
    }
}

#[Object]
impl Territory {
    /// H3 cell index, hex string.
    async fn cell(&self) -> String {
        unstored(self.row.cell).map_or_else(|| format!("{:x}", self.row.cell), |c| c.to_string())
    }

    /// The last runner who captured it.
    async fn owner(&self, ctx: &Context<'_>) -> Result<User> {
        match self.owners.get(&self.row.owner_id) {
            Some(owner) => Ok(owner.clone()),
            None => User::load(ctx, self.row.owner_id).await,
        }
    }

    /// When.
    async fn captured_at(&self) -> DateTime<Utc> {
        self.row.captured_at
    }

    /// Cell boundary as [latitude, longitude] pairs.
    async fn boundary(&self) -> Vec<[f64; 2]> {
        unstored(self.row.cell).map(boundary).unwrap_or_default()
    }
}

/// Tokens mined from held territory; accrue over time up to a cap, like regenerating hearts.
pub struct Wallet {
    row: wallet::Model,
    cells: u64,
    cap: i64,
    next_accrual_at: Option<DateTime<Utc>>,
}

impl Wallet {
    /// The wallet of `user` as the configuration mines it.
    pub async fn of(ctx: &Context<'_>, user: Uuid) -> Result<Self> {
        let state = ctx.state()?;
        let (row, cells) = service::wallet(state, user).await?;
        Self::from_parts(ctx, row, cells)
    }

    fn from_parts(ctx: &Context<'_>, row: wallet::Model, cells: u64) -> Result<Self> {
        let config = &ctx.state()?.config;
        let interval =
            Duration::seconds(i64::try_from(config.mining_interval_seconds).unwrap_or(3600));
        Ok(Self {
            row,
            cells,
            cap: i64::from(config.wallet_cap),
            next_accrual_at: service::next_accrual(Utc::now(), interval),
        })
    }
}

#[Object]
impl Wallet {
    /// Claimed tokens (GraphQL's Int: shown as 2,147,483,647 at most).
    async fn tokens(&self) -> i32 {
        saturate(self.row.tokens)
    }

    /// Accrued and claimable now (at most `cap`).
    async fn claimable(&self) -> i32 {
        saturate(self.row.claimable)
    }

    /// Most tokens `claimable` holds (`RALLY_WALLET_CAP`).
    async fn cap(&self) -> i32 {
        saturate(self.cap)
    }

    /// When held cells next add tokens; null while the user holds no cell.
    async fn next_accrual_at(&self) -> Option<DateTime<Utc>> {
        self.next_accrual_at.filter(|_| self.cells > 0)
    }
}

/// A count as GraphQL's 32-bit Int.
fn saturate(count: i64) -> i32 {
    i32::try_from(count).unwrap_or(if count < 0 { i32::MIN } else { i32::MAX })
}

/// Runs queries.
#[derive(Default)]
pub struct RunsQuery;

#[Object]
impl RunsQuery {
    /// My tickets, newest first (only ACTIVE ones unless `activeOnly: false`).
    #[graphql(guard = "SignedIn")]
    async fn my_tickets(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(true)")] active_only: Option<bool>,
    ) -> Result<Vec<Ticket>> {
        let me = ctx.identity()?;
        let active_only = active_only.unwrap_or(true);
        let tickets = service::my_tickets(ctx.state()?, me, active_only).await?;
        Ok(tickets.into_iter().map(Ticket).collect())
    }

    /// My own run (anyone else's: null with NOT_FOUND).
    #[graphql(guard = "SignedIn")]
    async fn run(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Run>> {
        let me = ctx.identity()?;
        let id = ids::require(&id, "no such run")?;
        Ok(Some(Run(service::run(ctx.state()?, me, id).await?)))
    }

    /// My runs, newest first; `after` is the id of the last run of the previous page.
    #[graphql(guard = "SignedIn")]
    async fn my_runs(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<Vec<Run>> {
        let me = ctx.identity()?;
        let page = PageRequest::parse(first, None)?;
        let after = after
            .map(|raw| {
                ids::parse(&ID(raw)).ok_or_else(|| Error::bad_input("after", "after is a run id"))
            })
            .transpose()?;
        let runs = service::my_runs(ctx.state()?, me, page.limit, after).await?;
        Ok(runs.into_iter().map(Run).collect())
    }

    /// Every held cell of an event, with its holder.
    async fn territories(&self, ctx: &Context<'_>, event_id: ID) -> Result<Vec<Territory>> {
        let id = ids::require(&event_id, "no such event")?;
        let cells = service::territories(ctx.state()?, id).await?;
        Territory::all(ctx, cells).await
    }
}

/// Runs mutations.
#[derive(Default)]
pub struct RunsMutation;

#[Object]
impl RunsMutation {
    /// The organizer gives each named user one new ACTIVE ticket (SCHEDULED or LIVE events).
    #[graphql(guard = "SignedIn")]
    async fn issue_tickets(
        &self,
        ctx: &Context<'_>,
        event_id: ID,
        handles: Vec<String>,
    ) -> Result<Vec<Ticket>> {
        let me = ctx.identity()?;
        let id = ids::require(&event_id, "no such event")?;
        let tickets = service::issue_tickets(ctx.state()?, me, id, &handles).await?;
        Ok(tickets.into_iter().map(Ticket).collect())
    }

    /// Consumes my ACTIVE ticket (exactly once) and starts a RUNNING run; the event must be LIVE.
    /// My run left RUNNING at an event that has ended ends REJECTED (it can capture nothing any
    /// more); one still RUNNING at a LIVE event must be saved first (CONFLICT).
    #[graphql(guard = "SignedIn")]
    async fn start_run(&self, ctx: &Context<'_>, ticket_id: ID) -> Result<Run> {
        let me = ctx.identity()?;
        let id = ids::require(&ticket_id, "no such ticket")?;
        Ok(Run(service::start_run(ctx.state()?, me, id).await?))
    }

    /// Finishes the run with its GPS track; captures territory; implausible tracks are REJECTED,
    /// not saved.
    #[graphql(guard = "SignedIn")]
    async fn save_run(
        &self,
        ctx: &Context<'_>,
        run_id: ID,
        track: Vec<TrackPointInput>,
    ) -> Result<Run> {
        let me = ctx.identity()?;
        let id = ids::require(&run_id, "no such run")?;
        let track = parse_track(
            track
                .into_iter()
                .map(|point| TrackPoint {
                    latitude: point.latitude,
                    longitude: point.longitude,
                    at: point.at,
                    resumes: false,
                })
                .collect(),
            "track",
        );
        Ok(Run(service::save_run(ctx.state()?, me, id, track).await?))
    }

    /// Same as saveRun, from a GPX 1.0 or 1.1 file (tracks and segments in order; a new segment or
    /// track is a pause, across which no distance or cells are counted); a file that is not GPX is
    /// BAD_USER_INPUT and the run stays RUNNING.
    #[graphql(guard = "SignedIn")]
    async fn import_run_gpx(&self, ctx: &Context<'_>, run_id: ID, file: Upload) -> Result<Run> {
        let me = ctx.identity()?;
        let id = ids::require(&run_id, "no such run")?;
        let bytes = upload::read(ctx, &file, "file");
        Ok(Run(service::import_gpx(ctx.state()?, me, id, bytes).await?))
    }

    /// Moves claimable tokens into the wallet (atomically: concurrent claims move them once).
    #[graphql(guard = "SignedIn")]
    async fn claim_tokens(&self, ctx: &Context<'_>) -> Result<Wallet> {
        let me = ctx.identity()?;
        let (row, cells) = service::claim_tokens(ctx.state()?, me).await?;
        Wallet::from_parts(ctx, row, cells)
    }
}

/// Runs subscriptions.
#[derive(Default)]
pub struct RunsSubscription;

#[Subscription]
impl RunsSubscription {
    /// Each cell captured at the event, as its run's save commits.
    async fn territory_changed(
        &self,
        ctx: &Context<'_>,
        event_id: ID,
    ) -> Result<impl Stream<Item = Territory>> {
        let id = ids::require(&event_id, "no such event")?;
        let captured = service::follow_territory(ctx.state()?, id).await?;
        let nobody = Arc::new(HashMap::new());
        Ok(captured.map(move |cell: model::CellCaptured| Territory {
            row: territory::Model {
                event_id: cell.event_id,
                cell: i64::try_from(cell.cell).unwrap_or(i64::MAX),
                owner_id: cell.owner_id,
                run_id: Uuid::nil(),
                captured_at: cell.captured_at,
                version: cell.version,
            },
            // A pushed cell's holder comes through the loader (once per instance and batch).
            owners: nobody.clone(),
        }))
    }
}
