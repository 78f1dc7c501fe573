//! Proximity GraphQL: consent links, the caller's own location, activities with their live status,
//! tracking commands for watched people's devices, and alerts. Every operation needs sign-in.

use async_graphql::{Context, Enum, ID, Object, Subscription};
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};
use uuid::Uuid;

use super::model::{self, ActivityView, Command, Position, parse_radius};
use super::service;
use crate::accounts::graphql::{User, UserLoader};
use crate::accounts::model::Handle;
use crate::entity::{activity, location, monitor_link};
use crate::error::{Error, Result};
use crate::graphql::loaders::loader;
use crate::graphql::{ContextExt, SignedIn, ids};

/// A handle argument; one that cannot be a handle names nobody.
fn handle(raw: &str, field: &str) -> Result<Handle> {
    Handle::parse(raw, field).map_err(|_| Error::NotFound("no user with this handle"))
}

/// Whether the watched person consented.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "monitor_link::Status")]
pub enum MonitorStatus {
    /// Asked, not accepted: exposes nothing.
    Pending,
    /// Accepted by the watched person.
    Accepted,
}

/// Where an activity stands.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "activity::Status")]
pub enum ActivityStatus {
    /// Running.
    Active,
    /// Ended because someone came too close.
    Disrupted,
    /// Ended by its owner.
    Stopped,
}

/// START or STOP sharing location.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "Command")]
pub enum TrackingCommandKind {
    /// Begin sending positions.
    Start,
    /// Stop sending positions.
    Stop,
}

/// watcher is told when watched comes near; watched must accept first.
pub struct MonitorLink(monitor_link::Model);

#[Object]
impl MonitorLink {
    /// Who watches.
    async fn watcher(&self, ctx: &Context<'_>) -> Result<User> {
        User::load(ctx, self.0.watcher_id).await
    }

    /// Who is watched.
    async fn watched(&self, ctx: &Context<'_>) -> Result<User> {
        User::load(ctx, self.0.watched_id).await
    }

    /// PENDING until the watched person accepts.
    async fn status(&self) -> MonitorStatus {
        self.0.status.into()
    }

    /// When it was asked for.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// The caller's own last report (the only place coordinates are shown).
pub struct LocationState(location::Model);

#[Object]
impl LocationState {
    /// The caller.
    async fn user(&self, ctx: &Context<'_>) -> Result<User> {
        User::load(ctx, self.0.user_id).await
    }

    /// Both null when the device reported its GPS off.
    async fn latitude(&self) -> Option<f64> {
        self.0.latitude
    }

    /// Both null when the device reported its GPS off.
    async fn longitude(&self) -> Option<f64> {
        self.0.longitude
    }

    /// When the report was accepted.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// The closest watched person: a distance, never their coordinates.
pub struct NearestPerson(model::Nearest);

#[Object]
impl NearestPerson {
    /// Who.
    async fn user(&self, ctx: &Context<'_>) -> Result<User> {
        User::load(ctx, self.0.user_id).await
    }

    /// Meters from the owner's last position (haversine).
    async fn distance_meters(&self) -> f64 {
        self.0.distance_meters
    }

    /// When their position was reported.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// An activity and its status when computed.
pub struct Activity(ActivityView);

#[Object]
impl Activity {
    /// Stable id (UUID).
    async fn id(&self) -> ID {
        ids::to_id(self.0.activity.id)
    }

    /// Who started it.
    async fn owner(&self, ctx: &Context<'_>) -> Result<User> {
        User::load(ctx, self.0.activity.owner_id).await
    }

    /// ACTIVE, DISRUPTED or STOPPED.
    async fn status(&self) -> ActivityStatus {
        self.0.activity.status.into()
    }

    /// Meters.
    async fn alert_radius_meters(&self) -> f64 {
        self.0.activity.alert_radius_meters
    }

    /// When it started.
    async fn started_at(&self) -> DateTime<Utc> {
        self.0.activity.started_at
    }

    /// When it ended.
    async fn ended_at(&self) -> Option<DateTime<Utc>> {
        self.0.activity.ended_at
    }

    /// Closest watched person with a fresh position (null until the owner and someone watched have
    /// reported one).
    async fn nearest(&self) -> Option<NearestPerson> {
        self.0.status.nearest.clone().map(NearestPerson)
    }

    /// Watched people whose last position is older than the stale threshold
    /// (`RALLY_LOCATION_STALE_SECONDS`), or who never reported one.
    async fn stale(&self, ctx: &Context<'_>) -> Result<Vec<User>> {
        users(ctx, &self.0.status.stale).await
    }

    /// Watched people whose device reported GPS off.
    async fn gps_off(&self, ctx: &Context<'_>) -> Result<Vec<User>> {
        users(ctx, &self.0.status.gps_off).await
    }
}

async fn users(ctx: &Context<'_>, ids: &[Uuid]) -> Result<Vec<User>> {
    let mut found = loader::<UserLoader>(ctx)?
        .load_many(ids.iter().copied())
        .await?;
    Ok(ids
        .iter()
        .filter_map(|id| found.remove(id).map(User::from))
        .collect())
}

/// For a watched person's device: start or stop sharing location.
pub struct TrackingCommand(model::TrackingCommand);

#[Object]
impl TrackingCommand {
    /// START or STOP.
    async fn command(&self) -> TrackingCommandKind {
        self.0.command.into()
    }

    /// The activity that asks.
    async fn activity_id(&self) -> ID {
        ids::to_id(self.0.activity_id)
    }

    /// The activity's owner.
    async fn requested_by(&self, ctx: &Context<'_>) -> Result<User> {
        User::load(ctx, self.0.requested_by).await
    }
}

/// A watched person entered an activity's alert radius.
pub struct ProximityAlert(model::ProximityAlert);

#[Object]
impl ProximityAlert {
    /// The activity, with its status now.
    async fn activity(&self, ctx: &Context<'_>) -> Result<Activity> {
        let me = ctx.identity()?;
        Ok(Activity(
            service::activity(ctx.state()?, me, self.0.activity_id).await?,
        ))
    }

    /// Who came near.
    async fn user(&self, ctx: &Context<'_>) -> Result<User> {
        User::load(ctx, self.0.user_id).await
    }

    /// How near, meters.
    async fn distance_meters(&self) -> f64 {
        self.0.distance_meters
    }
}

/// Proximity queries.
#[derive(Default)]
pub struct ProximityQuery;

#[Object]
impl ProximityQuery {
    /// People I watch (pending and accepted), newest first.
    #[graphql(guard = "SignedIn")]
    async fn monitoring(&self, ctx: &Context<'_>) -> Result<Vec<MonitorLink>> {
        let me = ctx.identity()?;
        let links = service::links(ctx.state()?, me, true).await?;
        Ok(links.into_iter().map(MonitorLink).collect())
    }

    /// People who watch me (pending and accepted), newest first.
    #[graphql(guard = "SignedIn")]
    async fn monitored_by(&self, ctx: &Context<'_>) -> Result<Vec<MonitorLink>> {
        let me = ctx.identity()?;
        let links = service::links(ctx.state()?, me, false).await?;
        Ok(links.into_iter().map(MonitorLink).collect())
    }

    /// The owner's own activity only (anyone else's: null with NOT_FOUND).
    #[graphql(guard = "SignedIn")]
    async fn activity(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Activity>> {
        let me = ctx.identity()?;
        let id = ids::require(&id, "no such activity")?;
        Ok(Some(Activity(
            service::activity(ctx.state()?, me, id).await?,
        )))
    }
}

/// Proximity mutations.
#[derive(Default)]
pub struct ProximityMutation;

#[Object]
impl ProximityMutation {
    /// Both null = GPS off; exactly one null is BAD_USER_INPUT. Latitude in [-90, 90], longitude in
    /// [-180, 180]. At most one accepted update per `RALLY_LOCATION_MIN_INTERVAL_MS` (then
    /// RATE_LIMITED, and the stored position is kept); only the latest position is kept.
    #[graphql(guard = "SignedIn")]
    async fn update_location(
        &self,
        ctx: &Context<'_>,
        latitude: Option<f64>,
        longitude: Option<f64>,
    ) -> Result<LocationState> {
        let me = ctx.identity()?;
        let position = Position::parse(latitude, longitude)?;
        let stored = service::update_location(ctx.state()?, me, position).await?;
        Ok(LocationState(stored))
    }

    /// Ask to watch someone: a PENDING link until they accept (the existing link if there is one).
    #[graphql(guard = "SignedIn")]
    async fn request_monitor(&self, ctx: &Context<'_>, handle: String) -> Result<MonitorLink> {
        let me = ctx.identity()?;
        let watched = self::handle(&handle, "handle")?;
        let link = service::request_monitor(ctx.state()?, me, &watched).await?;
        Ok(MonitorLink(link))
    }

    /// The watched person accepts a watcher (NOT_FOUND when that person asked nothing).
    #[graphql(guard = "SignedIn")]
    async fn accept_monitor(&self, ctx: &Context<'_>, watcher: String) -> Result<MonitorLink> {
        let me = ctx.identity()?;
        let watcher = handle(&watcher, "watcher")?;
        let link = service::accept_monitor(ctx.state()?, me, &watcher).await?;
        Ok(MonitorLink(link))
    }

    /// Either side removes the link; false when there was none. Nobody else may (FORBIDDEN).
    #[graphql(guard = "SignedIn")]
    async fn remove_monitor(
        &self,
        ctx: &Context<'_>,
        watcher: String,
        watched: String,
    ) -> Result<bool> {
        let me = ctx.identity()?;
        let watcher = handle(&watcher, "watcher")?;
        let watched = handle(&watched, "watched")?;
        service::remove_monitor(ctx.state()?, me, &watcher, &watched).await
    }

    /// Start an activity (one ACTIVE per user, else CONFLICT); the radius is 1 m to 50 km. Watched
    /// people's devices get START.
    #[graphql(guard = "SignedIn")]
    async fn start_activity(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100.0)] alert_radius_meters: Option<f64>,
    ) -> Result<Activity> {
        let me = ctx.identity()?;
        let radius = parse_radius(alert_radius_meters.unwrap_or(100.0))?;
        Ok(Activity(
            service::start_activity(ctx.state()?, me, radius).await?,
        ))
    }

    /// Someone came too close: the activity ends DISRUPTED; devices get STOP.
    #[graphql(guard = "SignedIn")]
    async fn disrupt_activity(&self, ctx: &Context<'_>, id: ID) -> Result<Activity> {
        self.end(ctx, id, activity::Status::Disrupted).await
    }

    /// Done: the activity ends STOPPED; devices get STOP.
    #[graphql(guard = "SignedIn")]
    async fn stop_activity(&self, ctx: &Context<'_>, id: ID) -> Result<Activity> {
        self.end(ctx, id, activity::Status::Stopped).await
    }
}

impl ProximityMutation {
    async fn end(&self, ctx: &Context<'_>, id: ID, ending: activity::Status) -> Result<Activity> {
        let me = ctx.identity()?;
        let id = ids::require(&id, "no such activity")?;
        Ok(Activity(
            service::end_activity(ctx.state()?, me, id, ending).await?,
        ))
    }
}

/// Proximity subscriptions.
#[derive(Default)]
pub struct ProximitySubscription;

#[Subscription]
impl ProximitySubscription {
    /// For a watched person's device: start or stop sharing location. On subscribe it first sends
    /// START for every ACTIVE activity that watches the caller (a phone that was offline still
    /// learns that it must share), then each command as it happens.
    #[graphql(guard = "SignedIn")]
    async fn tracking_commands(
        &self,
        ctx: &Context<'_>,
    ) -> Result<impl Stream<Item = TrackingCommand>> {
        let me = ctx.identity()?;
        let commands = service::tracking_commands(ctx.state()?, me).await?;
        Ok(commands.map(TrackingCommand))
    }

    /// For the activity owner: the current status, then the recomputed status on every change that
    /// touches it (a watched person's location or GPS state, a link accepted or removed, the
    /// activity ending) and when a watched person goes stale (by a timer, with no update).
    #[graphql(guard = "SignedIn")]
    async fn activity_updated(
        &self,
        ctx: &Context<'_>,
        activity_id: ID,
    ) -> Result<impl Stream<Item = Activity>> {
        let me = ctx.identity()?;
        let id = ids::require(&activity_id, "no such activity")?;
        let views = service::follow_activity(ctx.state()?, me, id).await?;
        Ok(views.map(Activity))
    }

    /// For the activity owner: a watched person entered the alert radius. Edge-triggered: once on
    /// entry; again only after that person went beyond alertRadiusMeters + max(10%, 20 m).
    #[graphql(guard = "SignedIn")]
    async fn proximity_alerts(
        &self,
        ctx: &Context<'_>,
    ) -> Result<impl Stream<Item = ProximityAlert>> {
        let me = ctx.identity()?;
        Ok(service::alerts(ctx.state()?, me).map(ProximityAlert))
    }
}
