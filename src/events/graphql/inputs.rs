//! Event inputs, and their parsing into the service's types.

use async_graphql::{ID, InputObject, MaybeUndefined};
use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

use super::types::EventStatus;
use crate::accounts::model::Handle;
use crate::entity::event;
use crate::error::{Error, Result};
use crate::events::model::{TemplateSpec, optional_text};
use crate::events::service::{EventChanges, EventQuery, NewEvent};
use crate::graphql::ids;
use crate::model::{instant, name};

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

impl CreateEventInput {
    /// Checks every field.
    pub fn parse(self) -> Result<NewEvent> {
        Ok(NewEvent {
            title: name(&self.title, "input.title", 1, 200)?,
            description: optional_text(self.description.as_deref(), "input.description", 5000)?,
            venue: optional_text(self.venue.as_deref(), "input.venue", 200)?,
            starts_at: instant(self.starts_at, "input.startsAt")?,
            ends_at: self
                .ends_at
                .map(|end| instant(end, "input.endsAt"))
                .transpose()?,
            template_id: self
                .template_id
                .as_ref()
                .map(|id| {
                    ids::parse(id).ok_or_else(|| {
                        Error::bad_input("input.templateId", "no such event template")
                    })
                })
                .transpose()?,
        })
    }
}

impl UpdateEventInput {
    /// Checks every given field.
    pub fn parse(self) -> Result<EventChanges> {
        Ok(EventChanges {
            title: self
                .title
                .as_deref()
                .map(|t| name(t, "input.title", 1, 200))
                .transpose()?,
            description: maybe_text(self.description, "input.description", 5000)?,
            venue: maybe_text(self.venue, "input.venue", 200)?,
            starts_at: self
                .starts_at
                .map(|start| instant(start, "input.startsAt"))
                .transpose()?,
            ends_at: match self.ends_at {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(end) => Some(Some(instant(end, "input.endsAt")?)),
            },
            status: self.status.map(Into::into),
        })
    }
}

impl EventFilter {
    /// The listing query; `None` when it can match nothing (an organizer that is not a handle).
    pub fn parse(self) -> Result<Option<EventQuery>> {
        if self
            .search
            .as_ref()
            .is_some_and(|s| s.chars().any(char::is_control))
        {
            return Err(Error::bad_input(
                "filter.search",
                "search has no control characters",
            ));
        }
        if self
            .search
            .as_ref()
            .is_some_and(|s| s.chars().count() > 100)
        {
            return Err(Error::bad_input(
                "filter.search",
                "search has at most 100 characters",
            ));
        }
        let organizer = match self.organizer.as_deref() {
            Some(raw) => match Handle::parse(raw, "filter.organizer") {
                Ok(handle) => Some(handle),
                Err(_) => return Ok(None),
            },
            None => None,
        };
        Ok(Some(EventQuery {
            status: self.status.map(Into::into),
            from: self
                .from
                .map(|from| instant(from, "filter.from"))
                .transpose()?,
            to: self.to.map(|to| instant(to, "filter.to")).transpose()?,
            search: self.search,
            organizer,
        }))
    }
}

impl EventTemplateInput {
    /// Checks every field.
    pub fn parse(&self) -> Result<TemplateSpec> {
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
) -> Result<Option<Option<String>>> {
    match value {
        MaybeUndefined::Undefined => Ok(None),
        MaybeUndefined::Null => Ok(Some(None)),
        MaybeUndefined::Value(v) => optional_text(Some(&v), field, max).map(Some),
    }
}

/// The sort key of an event in listings (made into its cursor by the pagination toolkit).
pub fn event_key(event: &event::Model) -> String {
    format!("{}|{}", event.starts_at.timestamp(), event.id)
}

/// The `(starts_at, id)` key of a decoded cursor.
pub fn parse_event_key(key: &str) -> Result<(DateTime<Utc>, Uuid)> {
    let bad = || Error::bad_input("after", "not a cursor from this API");
    let (seconds, id) = key.split_once('|').ok_or_else(bad)?;
    let seconds: i64 = seconds.parse().map_err(|_| bad())?;
    let at = Utc.timestamp_opt(seconds, 0).single().ok_or_else(bad)?;
    // Only instants the API stores (a crafted one past year 9999 would reach the database).
    let at = instant(at, "after").map_err(|_| bad())?;
    Ok((at, Uuid::parse_str(id).map_err(|_| bad())?))
}

/// A handle argument; one that is not a handle names nobody.
pub fn parse_handle(raw: &str, field: &str) -> Result<Handle> {
    Handle::parse(raw, field).map_err(|_| Error::NotFound("no user with this handle"))
}
