//! The events part of the schema: events, likes, staff, the template catalogue, and the
//! `eventUpdated` / `eventStatusChanged` subscriptions.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Enum, ID, InputObject, MaybeUndefined, Object, Subscription, Upload};
use chrono::{DateTime, TimeZone, Utc};
use futures_util::Stream;
use uuid::Uuid;

use super::model::{ChangeKind, EventChange, TemplateSpec, optional_text, text};
use super::service::{self, EventChanges, EventQuery, NewEvent};
use crate::accounts::graphql::User;
use crate::accounts::model::Handle;
use crate::auth::{AdminOnly, SignedIn};
use crate::entity::{event, event_staff, event_template};
use crate::error::Error;
use crate::graphql::loaders::{
    EventLoader, LikeLoader, StaffLoader, UserLoader, loader, loader_error,
};
use crate::graphql::pagination::{PageRequest, encode_cursor};
use crate::graphql::{ContextExt, ids};
use crate::live::{Signal, Topic};

/// Where an event is in its life: SCHEDULED -> LIVE -> FINISHED, or CANCELLED.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Debug)]
#[graphql(remote = "event::Status")]
pub enum EventStatus {
    /// Announced, not started.
    Scheduled,
    /// Happening now.
    Live,
    /// Over.
    Finished,
    /// Called off.
    Cancelled,
}

/// What a staff member does at an event.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "event_staff::StaffRole")]
pub enum StaffRole {
    /// Serves drinks and runs the gateway device.
    Bartender,
    /// Runs games.
    GameMaster,
}

/// An event.
pub struct Event {
    model: event::Model,
    /// Known in advance for live payloads (kept per subscriber from the change stream).
    liked_by_me: Option<bool>,
}

impl From<event::Model> for Event {
    fn from(model: event::Model) -> Self {
        Self {
            model,
            liked_by_me: None,
        }
    }
}

#[Object]
impl Event {
    /// Stable id (UUID).
    async fn id(&self) -> ID {
        ids::to_id(self.model.id)
    }

    /// Shown everywhere.
    async fn title(&self) -> &str {
        &self.model.title
    }

    /// Free text.
    async fn description(&self) -> Option<&str> {
        self.model.description.as_deref()
    }

    /// Where.
    async fn venue(&self) -> Option<&str> {
        self.model.venue.as_deref()
    }

    /// When it starts (to the second).
    async fn starts_at(&self) -> DateTime<Utc> {
        self.model.starts_at
    }

    /// When it ends, if known.
    async fn ends_at(&self) -> Option<DateTime<Utc>> {
        self.model.ends_at
    }

    /// Life-cycle state.
    async fn status(&self) -> EventStatus {
        self.model.status.into()
    }

    /// URL of the event's picture.
    async fn image_url(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        let state = ctx.state()?;
        Ok(self
            .model
            .image_key
            .as_deref()
            .map(|key| state.media.url(key)))
    }

    /// Who runs it.
    async fn organizer(&self, ctx: &Context<'_>) -> async_graphql::Result<User> {
        loader::<UserLoader>(ctx)?
            .load_one(self.model.organizer_id)
            .await
            .map_err(loader_error)?
            .map(User::from)
            .ok_or_else(|| Error::internal(anyhow::anyhow!("event without organizer")).into())
    }

    /// The catalogue entry this event was created from, if any.
    async fn template(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<EventTemplate>> {
        let Some(id) = self.model.template_id else {
            return Ok(None);
        };
        Ok(service::template(ctx.state()?, id)
            .await?
            .map(EventTemplate))
    }

    /// How many people like it.
    async fn like_count(&self) -> i32 {
        self.model.like_count
    }

    /// Whether the caller likes it (false when anonymous).
    async fn liked_by_me(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        if let Some(liked) = self.liked_by_me {
            return Ok(liked);
        }
        let Some(me) = ctx.viewer().identity()? else {
            return Ok(false);
        };
        Ok(loader::<LikeLoader>(ctx)?
            .load_one((self.model.id, me.user_id))
            .await
            .map_err(loader_error)?
            .unwrap_or(false))
    }

    /// Bartenders and game masters.
    async fn staff(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<EventStaff>> {
        let rows = loader::<StaffLoader>(ctx)?
            .load_one(self.model.id)
            .await
            .map_err(loader_error)?
            .unwrap_or_default();
        Ok(rows.into_iter().map(EventStaff).collect())
    }

    /// Games at this event, oldest first.
    async fn games(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<crate::games::graphql::Game>> {
        Ok(loader::<crate::graphql::loaders::GamesLoader>(ctx)?
            .load_one(self.model.id)
            .await
            .map_err(loader_error)?
            .unwrap_or_default()
            .into_iter()
            .map(crate::games::graphql::Game)
            .collect())
    }

    /// Top cup sessions by score; ties broken by earliest reach of that score.
    async fn leaderboard(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 10)] first: Option<i32>,
    ) -> async_graphql::Result<crate::cups::graphql::Leaderboard> {
        crate::cups::graphql::leaderboard_now(ctx, self.model.id, first).await
    }

    /// Grows by one with every committed change (likes included); live clients can use it to
    /// order what they receive.
    async fn version(&self) -> i64 {
        self.model.version
    }
}

/// A staff member of an event.
pub struct EventStaff(event_staff::Model);

#[Object]
impl EventStaff {
    /// Who.
    async fn user(&self, ctx: &Context<'_>) -> async_graphql::Result<User> {
        loader::<UserLoader>(ctx)?
            .load_one(self.0.user_id)
            .await
            .map_err(loader_error)?
            .map(User::from)
            .ok_or_else(|| Error::internal(anyhow::anyhow!("staff without user")).into())
    }

    /// Their role.
    async fn role(&self) -> StaffRole {
        self.0.role.into()
    }
}

/// The catalogue of 'available events' that admins keep and organizers create events from.
pub struct EventTemplate(event_template::Model);

#[Object]
impl EventTemplate {
    /// Stable id (UUID).
    async fn id(&self) -> ID {
        ids::to_id(self.0.id)
    }

    /// Catalogue name.
    async fn name(&self) -> &str {
        &self.0.name
    }

    /// Default description of events made from it.
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }

    /// Default length of events made from it.
    async fn default_duration_minutes(&self) -> i32 {
        self.0.default_duration_minutes
    }

    /// How many guests fit.
    async fn capacity(&self) -> Option<i32> {
        self.0.capacity
    }
}

/// A new event.
#[derive(InputObject)]
pub struct CreateEventInput {
    /// 1 to 200 characters.
    title: String,
    /// At most 5000 characters; defaults to the template's.
    description: Option<String>,
    /// At most 200 characters.
    venue: Option<String>,
    /// When it starts (kept to the second).
    starts_at: DateTime<Utc>,
    /// After the start; defaults to start + the template's duration.
    ends_at: Option<DateTime<Utc>>,
    /// The catalogue entry to take defaults from.
    template_id: Option<ID>,
}

/// Event changes: an absent field is kept; null clears description, venue and end.
#[derive(InputObject)]
pub struct UpdateEventInput {
    /// 1 to 200 characters.
    title: Option<String>,
    /// At most 5000 characters.
    description: MaybeUndefined<String>,
    /// At most 200 characters.
    venue: MaybeUndefined<String>,
    /// When it starts.
    starts_at: Option<DateTime<Utc>>,
    /// After the start.
    ends_at: MaybeUndefined<DateTime<Utc>>,
    /// SCHEDULED -> LIVE -> FINISHED, or CANCELLED; other moves are BAD_USER_INPUT.
    status: Option<EventStatus>,
}

/// Which events to list.
#[derive(InputObject, Default)]
pub struct EventFilter {
    /// Only this status.
    status: Option<EventStatus>,
    /// Starting at or after.
    from: Option<DateTime<Utc>>,
    /// Starting before.
    to: Option<DateTime<Utc>>,
    /// In title, venue or description (case-insensitive).
    search: Option<String>,
    /// Organized by this handle.
    organizer: Option<String>,
}

/// A catalogue entry.
#[derive(InputObject)]
pub struct EventTemplateInput {
    /// 1 to 120 characters.
    name: String,
    /// At most 5000 characters.
    description: Option<String>,
    /// 1 minute to 7 days.
    default_duration_minutes: i32,
    /// At least 1 when set.
    capacity: Option<i32>,
}

impl EventTemplateInput {
    fn parse(&self) -> crate::error::Result<TemplateSpec> {
        TemplateSpec::parse(
            &self.name,
            self.description.as_deref(),
            self.default_duration_minutes,
            self.capacity,
            "input",
        )
    }
}

fn maybe_text(
    value: MaybeUndefined<String>,
    field: &str,
    max: usize,
) -> crate::error::Result<Option<Option<String>>> {
    match value {
        MaybeUndefined::Undefined => Ok(None),
        MaybeUndefined::Null => Ok(Some(None)),
        MaybeUndefined::Value(v) => optional_text(Some(&v), field, max).map(Some),
    }
}

fn event_cursor(event: &event::Model) -> String {
    encode_cursor(&format!("{}|{}", event.starts_at.timestamp(), event.id))
}

fn parse_event_cursor(key: &str) -> crate::error::Result<(DateTime<Utc>, Uuid)> {
    let bad = || Error::bad_input("after", "not a cursor from this API");
    let (seconds, id) = key.split_once('|').ok_or_else(bad)?;
    let seconds: i64 = seconds.parse().map_err(|_| bad())?;
    let at = Utc.timestamp_opt(seconds, 0).single().ok_or_else(bad)?;
    Ok((at, Uuid::parse_str(id).map_err(|_| bad())?))
}

fn parse_handle(raw: &str, field: &str) -> crate::error::Result<Handle> {
    Handle::parse(raw, field).map_err(|_| Error::NotFound("no user with this handle"))
}

/// Event queries.
#[derive(Default)]
pub struct EventsQuery;

#[Object]
impl EventsQuery {
    /// An event by id; null when there is none. Public.
    async fn event(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Event>> {
        let Some(id) = ids::parse(&id) else {
            return Ok(None);
        };
        // Through the app-wide loader: concurrent lookups share one query.
        Ok(loader::<EventLoader>(ctx)?
            .load_one(id)
            .await
            .map_err(loader_error)?
            .map(Event::from))
    }

    /// Events in start order, filtered. Public.
    #[graphql(complexity = "first.unwrap_or(20).clamp(0, 100) as usize * child_complexity")]
    async fn events(
        &self,
        ctx: &Context<'_>,
        filter: Option<EventFilter>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Event>> {
        let page = PageRequest::parse(first, after.as_deref())?;
        let after = page.after.as_deref().map(parse_event_cursor).transpose()?;
        let filter = filter.unwrap_or_default();
        if filter
            .search
            .as_ref()
            .is_some_and(|s| s.chars().count() > 100)
        {
            return Err(
                Error::bad_input("filter.search", "search has at most 100 characters").into(),
            );
        }
        let organizer = match filter.organizer.as_deref() {
            Some(raw) => match Handle::parse(raw, "filter.organizer") {
                Ok(handle) => Some(handle),
                Err(_) => return Ok(Connection::new(after.is_some(), false)),
            },
            None => None,
        };
        let query = EventQuery {
            status: filter.status.map(Into::into),
            from: filter.from,
            to: filter.to,
            search: filter.search,
            organizer,
        };
        let (rows, more) = service::list(ctx.state()?, query, after, page.limit).await?;
        let mut connection = Connection::new(after.is_some(), more);
        connection.edges.extend(
            rows.into_iter()
                .map(|row| Edge::new(event_cursor(&row), Event::from(row))),
        );
        Ok(connection)
    }

    /// The catalogue of event templates. Public.
    async fn event_templates(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<EventTemplate>> {
        Ok(service::templates(ctx.state()?)
            .await?
            .into_iter()
            .map(EventTemplate)
            .collect())
    }
}

/// Event mutations.
#[derive(Default)]
pub struct EventsMutation;

#[Object]
impl EventsMutation {
    /// Creates an event organized by the caller, SCHEDULED.
    #[graphql(guard = "SignedIn")]
    async fn create_event(
        &self,
        ctx: &Context<'_>,
        input: CreateEventInput,
    ) -> async_graphql::Result<Event> {
        let me = ctx.identity()?;
        let new = NewEvent {
            title: text(&input.title, "input.title", 1, 200)?,
            description: optional_text(input.description.as_deref(), "input.description", 5000)?,
            venue: optional_text(input.venue.as_deref(), "input.venue", 200)?,
            starts_at: input.starts_at,
            ends_at: input.ends_at,
            template_id: match &input.template_id {
                Some(id) => Some(ids::parse(id).ok_or_else(|| {
                    Error::bad_input("input.templateId", "no such event template")
                })?),
                None => None,
            },
        };
        Ok(service::create(ctx.state()?, me.user_id, new).await?.into())
    }

    /// Organizer only.
    #[graphql(guard = "SignedIn")]
    async fn update_event(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateEventInput,
    ) -> async_graphql::Result<Event> {
        let me = ctx.identity()?;
        let id = ids::require(&id, "no such event")?;
        let changes = EventChanges {
            title: input
                .title
                .as_deref()
                .map(|t| text(t, "input.title", 1, 200))
                .transpose()?,
            description: maybe_text(input.description, "input.description", 5000)?,
            venue: maybe_text(input.venue, "input.venue", 200)?,
            starts_at: input.starts_at,
            ends_at: match input.ends_at {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(end) => Some(Some(end)),
            },
            status: input.status.map(Into::into),
        };
        Ok(service::update(ctx.state()?, me, id, changes).await?.into())
    }

    /// Organizer only; likes and staff go with it.
    #[graphql(guard = "SignedIn")]
    async fn delete_event(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        let me = ctx.identity()?;
        service::delete(ctx.state()?, me, ids::require(&id, "no such event")?).await?;
        Ok(true)
    }

    /// Organizer only: sets the event's picture (PNG, JPEG, GIF or WebP; re-encoded, at most 1600 px).
    #[graphql(guard = "SignedIn")]
    async fn upload_event_image(
        &self,
        ctx: &Context<'_>,
        id: ID,
        file: Upload,
    ) -> async_graphql::Result<Event> {
        let me = ctx.identity()?;
        let id = ids::require(&id, "no such event")?;
        let upload = file
            .value(ctx)
            .map_err(|_| Error::bad_input("file", "the upload is missing"))?;
        Ok(
            service::set_image(ctx.state()?, me, id, upload.content.to_vec())
                .await?
                .into(),
        )
    }

    /// Idempotent.
    #[graphql(guard = "SignedIn")]
    async fn like_event(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Event> {
        let me = ctx.identity()?;
        let event = service::like(
            ctx.state()?,
            me.user_id,
            ids::require(&id, "no such event")?,
        )
        .await?;
        Ok(Event {
            model: event,
            liked_by_me: Some(true),
        })
    }

    /// Idempotent.
    #[graphql(guard = "SignedIn")]
    async fn unlike_event(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Event> {
        let me = ctx.identity()?;
        let event = service::unlike(
            ctx.state()?,
            me.user_id,
            ids::require(&id, "no such event")?,
        )
        .await?;
        Ok(Event {
            model: event,
            liked_by_me: Some(false),
        })
    }

    /// Organizer only: adds a staff member (or changes their role).
    #[graphql(guard = "SignedIn")]
    async fn add_event_staff(
        &self,
        ctx: &Context<'_>,
        event_id: ID,
        handle: String,
        role: StaffRole,
    ) -> async_graphql::Result<Event> {
        let me = ctx.identity()?;
        let id = ids::require(&event_id, "no such event")?;
        let handle = parse_handle(&handle, "handle")?;
        Ok(
            service::add_staff(ctx.state()?, me, id, &handle, role.into())
                .await?
                .into(),
        )
    }

    /// Organizer only.
    #[graphql(guard = "SignedIn")]
    async fn remove_event_staff(
        &self,
        ctx: &Context<'_>,
        event_id: ID,
        handle: String,
    ) -> async_graphql::Result<Event> {
        let me = ctx.identity()?;
        let id = ids::require(&event_id, "no such event")?;
        let handle = parse_handle(&handle, "handle")?;
        Ok(service::remove_staff(ctx.state()?, me, id, &handle)
            .await?
            .into())
    }

    /// Admin only.
    #[graphql(guard = "AdminOnly")]
    async fn create_event_template(
        &self,
        ctx: &Context<'_>,
        input: EventTemplateInput,
    ) -> async_graphql::Result<EventTemplate> {
        Ok(EventTemplate(
            service::create_template(ctx.state()?, input.parse()?).await?,
        ))
    }

    /// Admin only.
    #[graphql(guard = "AdminOnly")]
    async fn update_event_template(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: EventTemplateInput,
    ) -> async_graphql::Result<EventTemplate> {
        let id = ids::require(&id, "no such event template")?;
        Ok(EventTemplate(
            service::update_template(ctx.state()?, id, input.parse()?).await?,
        ))
    }

    /// Admin only; events made from it keep their values.
    #[graphql(guard = "AdminOnly")]
    async fn delete_event_template(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<bool> {
        service::delete_template(ctx.state()?, ids::require(&id, "no such event template")?)
            .await?;
        Ok(true)
    }
}

/// Event subscriptions.
#[derive(Default)]
pub struct EventsSubscription;

#[Subscription]
impl EventsSubscription {
    /// The event's own changes (status, likes, details): the current state first, then every change.
    /// Completes when the event is deleted. Public.
    async fn event_updated(
        &self,
        ctx: &Context<'_>,
        event_id: ID,
    ) -> async_graphql::Result<impl Stream<Item = Event>> {
        // Who is calling is read only where a field needs it (`likedByMe`), so subscribers who do
        // not select it share one execution whoever they are.
        let state = ctx.state()?.clone();
        let id = ids::require(&event_id, "no such event")?;
        // Subscribe before reading the snapshot, so no change falls between the two.
        let mut feed = state.live.subscribe(&Topic::event(id));
        let snapshot = service::find(&state, id)
            .await?
            .ok_or(Error::NotFound("no such event"))?;
        Ok(async_stream::stream! {
            let mut version = snapshot.version;
            yield Event::from(snapshot);
            while let Some(signal) = feed.next().await {
                let current = match signal {
                    Signal::Message(delivery) => {
                        let Some(change) = delivery.decode::<EventChange>() else { continue };
                        if change.kind == ChangeKind::Deleted {
                            break;
                        }
                        change.event.clone()
                    }
                    Signal::Resync => match service::find(&state, id).await {
                        Ok(Some(current)) => current,
                        _ => break,
                    },
                };
                // Never go back to an older state (deliveries can cross between instances).
                if current.version <= version {
                    continue;
                }
                version = current.version;
                yield Event::from(current);
            }
        })
    }

    /// Event status changes (LIVE, FINISHED, CANCELLED, including the nightly finisher's), each once
    /// it is committed. Public.
    async fn event_status_changed(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = Event>> {
        let state = ctx.state()?.clone();
        let mut feed = state.live.subscribe(&Topic::event_status());
        Ok(async_stream::stream! {
            while let Some(signal) = feed.next().await {
                if let Signal::Message(delivery) = signal
                    && let Some(event) = delivery.decode::<event::Model>()
                {
                    yield Event::from((*event).clone());
                }
            }
        })
    }
}
