//! Event types: events, their staff, the template catalogue.

use async_graphql::{Context, Enum, ID, Object};
use chrono::{DateTime, Utc};

use super::loaders::{LikeLoader, StaffLoader, TemplateLoader};
use crate::accounts::graphql::{User, UserLoader};
use crate::cups::graphql::{Leaderboard, leaderboard_of};
use crate::entity::{event, event_staff, event_template, user};
use crate::error::{Error, Result};
use crate::events::model::EventState;
use crate::games::graphql::{Game, games_of};
use crate::graphql::loaders::loader;
use crate::graphql::pagination;
use crate::graphql::{ContextExt, ids};

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
    event: EventState,
    /// Known in advance for the caller's own like or unlike.
    liked_by_me: Option<bool>,
    /// Read with the event when the query asked for both.
    organizer: Option<user::Model>,
}

impl Event {
    /// The event with its organizer's account, read together.
    pub fn with_organizer(event: event::Model, organizer: user::Model) -> Self {
        Self {
            organizer: Some(organizer),
            ..Self::from(event)
        }
    }

    /// The event as the caller who just liked (or unliked) it sees it.
    pub fn liked(event: impl Into<EventState>, liked: bool) -> Self {
        Self {
            event: event.into(),
            liked_by_me: Some(liked),
            organizer: None,
        }
    }
}

impl From<EventState> for Event {
    fn from(event: EventState) -> Self {
        Self {
            event,
            liked_by_me: None,
            organizer: None,
        }
    }
}

impl From<event::Model> for Event {
    fn from(row: event::Model) -> Self {
        EventState::from(row).into()
    }
}

#[Object]
impl Event {
    /// Stable id (UUID).
    async fn id(&self) -> ID {
        ids::to_id(self.event.id)
    }

    /// Shown everywhere.
    async fn title(&self) -> &str {
        &self.event.title
    }

    /// Free text.
    async fn description(&self) -> Option<&str> {
        self.event.description.as_deref()
    }

    /// Where.
    async fn venue(&self) -> Option<&str> {
        self.event.venue.as_deref()
    }

    /// When it starts (to the second).
    async fn starts_at(&self) -> DateTime<Utc> {
        self.event.starts_at
    }

    /// When it ends, if known.
    async fn ends_at(&self) -> Option<DateTime<Utc>> {
        self.event.ends_at
    }

    /// Life-cycle state.
    async fn status(&self) -> EventStatus {
        self.event.status.into()
    }

    /// URL of the event's picture.
    async fn image_url(&self, ctx: &Context<'_>) -> Result<Option<String>> {
        let state = ctx.state()?;
        Ok(self
            .event
            .image_key
            .as_deref()
            .map(|key| state.media.url(key)))
    }

    /// Who runs it.
    async fn organizer(&self, ctx: &Context<'_>) -> Result<User> {
        if let Some(organizer) = &self.organizer {
            return Ok(User::from(organizer.clone()));
        }
        loader::<UserLoader>(ctx)?
            .load_one(self.event.organizer_id)
            .await?
            .map(User::from)
            .ok_or_else(|| Error::internal(anyhow::anyhow!("event without organizer")))
    }

    /// The catalogue entry this event was created from, if any.
    async fn template(&self, ctx: &Context<'_>) -> Result<Option<EventTemplate>> {
        let Some(id) = self.event.template_id else {
            return Ok(None);
        };
        Ok(loader::<TemplateLoader>(ctx)?
            .load_one(id)
            .await?
            .map(EventTemplate))
    }

    /// How many people like it.
    async fn like_count(&self) -> i32 {
        self.event.like_count
    }

    /// Whether the caller likes it (false when anonymous).
    async fn liked_by_me(&self, ctx: &Context<'_>) -> Result<bool> {
        if let Some(liked) = self.liked_by_me {
            return Ok(liked);
        }
        let Some(me) = ctx.caller()? else {
            return Ok(false);
        };
        Ok(loader::<LikeLoader>(ctx)?
            .load_one((self.event.id, me.user_id))
            .await?
            .unwrap_or(false))
    }

    /// Bartenders and game masters.
    async fn staff(&self, ctx: &Context<'_>) -> Result<Vec<EventStaff>> {
        let rows = loader::<StaffLoader>(ctx)?
            .load_one(self.event.id)
            .await?
            .unwrap_or_default();
        Ok(rows.into_iter().map(EventStaff).collect())
    }

    /// Games at this event, oldest first.
    async fn games(&self, ctx: &Context<'_>) -> Result<Vec<Game>> {
        games_of(ctx, self.event.id).await
    }

    /// Top cup sessions by score; ties broken by earliest reach of that score.
    #[graphql(complexity = "pagination::complexity(first, child_complexity)")]
    async fn leaderboard(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 10)] first: Option<i32>,
    ) -> Result<Leaderboard> {
        leaderboard_of(ctx, self.event.id, first).await
    }

    /// Grows by one with every committed change (likes included); live clients can use it to
    /// order what they receive.
    async fn version(&self) -> i64 {
        self.event.version
    }
}

/// A staff member of an event.
pub struct EventStaff(event_staff::Model);

#[Object]
impl EventStaff {
    /// Who.
    async fn user(&self, ctx: &Context<'_>) -> Result<User> {
        loader::<UserLoader>(ctx)?
            .load_one(self.0.user_id)
            .await?
            .map(User::from)
            .ok_or_else(|| Error::internal(anyhow::anyhow!("staff without user")))
    }

    /// Their role.
    async fn role(&self) -> StaffRole {
        self.0.role.into()
    }
}

/// The catalogue of 'available events' that admins keep and organizers create events from.
pub struct EventTemplate(pub(super) event_template::Model);

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
