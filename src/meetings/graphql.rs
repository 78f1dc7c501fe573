//! The meetings part of the schema: availabilities (single and weekly), bookings, meetings, the
//! `myMeetings` subscription, the calendar feed URL, and the availabilities' DataLoader.
//!
//! Uses the GraphQL toolkit and the meetings service; names `User`, the type the schema links slots
//! and meetings to. Every operation needs a signed-in caller.

use std::collections::HashMap;

use async_graphql::connection::Connection;
use async_graphql::dataloader::Loader;
use async_graphql::{Context, Enum, ID, InputObject, Object, Subscription};
use chrono::{DateTime, Datelike, TimeZone, Utc};
use futures_util::{Stream, StreamExt};
use uuid::Uuid;

use super::calendar::feed_path;
use super::model::{MeetingState, MeetingStatus as WireStatus, Role, Slot, WeeklyPattern};
use super::service::{self, Position, slot_rules};
use crate::accounts::graphql::{User, UserLoader};
use crate::accounts::model::Handle;
use crate::entity::availability;
use crate::error::{Error, Result};
use crate::graphql::loaders::{by_key, loader};
use crate::graphql::pagination::{self, PageRequest};
use crate::graphql::{ContextExt, SignedIn, ids};
use crate::state::AppState;

/// Availabilities by id (registered by the schema assembly).
pub struct AvailabilityLoader(pub AppState);

impl Loader<Uuid> for AvailabilityLoader {
    type Value = availability::Model;
    type Error = Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, availability::Model>> {
        Ok(by_key(service::find_many(&self.0, keys).await?, |a| a.id))
    }
}

/// Where a slot is.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "availability::Status")]
pub enum AvailabilityStatus {
    /// Open for booking.
    Scheduled,
    /// Booked (a CONFIRMED meeting).
    Booked,
    /// No longer offered.
    Cancelled,
}

/// Whether a meeting holds.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum MeetingStatus {
    /// Booked.
    Confirmed,
    /// Called off by the owner or the participant.
    Cancelled,
}

/// Which of my meetings.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum MeetingRole {
    /// On my availabilities.
    Owner,
    /// Booked by me.
    Participant,
    /// Both.
    Any,
}

/// A day of the week.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "chrono::Weekday")]
pub enum Weekday {
    /// Monday.
    #[graphql(name = "MONDAY")]
    Mon,
    /// Tuesday.
    #[graphql(name = "TUESDAY")]
    Tue,
    /// Wednesday.
    #[graphql(name = "WEDNESDAY")]
    Wed,
    /// Thursday.
    #[graphql(name = "THURSDAY")]
    Thu,
    /// Friday.
    #[graphql(name = "FRIDAY")]
    Fri,
    /// Saturday.
    #[graphql(name = "SATURDAY")]
    Sat,
    /// Sunday.
    #[graphql(name = "SUNDAY")]
    Sun,
}

/// A slot someone offers for booking.
pub struct Availability(availability::Model);

#[Object]
impl Availability {
    /// Stable id (UUID).
    async fn id(&self) -> ID {
        ids::to_id(self.0.id)
    }

    /// Who offers it (their public profile).
    async fn owner(&self, ctx: &Context<'_>) -> Result<User> {
        user(ctx, self.0.owner_id).await
    }

    /// When it starts (whole seconds).
    async fn start_time(&self) -> DateTime<Utc> {
        self.0.start_time
    }

    /// When it ends.
    async fn end_time(&self) -> DateTime<Utc> {
        self.0.end_time
    }

    /// 1 to 200 characters.
    async fn title(&self) -> &str {
        &self.0.title
    }

    /// Free text.
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }

    /// SCHEDULED (open), BOOKED or CANCELLED.
    async fn status(&self) -> AvailabilityStatus {
        self.0.status.into()
    }

    /// When it was published.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

async fn user(ctx: &Context<'_>, id: Uuid) -> Result<User> {
    loader::<UserLoader>(ctx)?
        .load_one(id)
        .await?
        .map(User::from)
        .ok_or_else(|| Error::internal(anyhow::anyhow!("a meeting's person is missing")))
}

/// A booked availability.
pub struct Meeting(MeetingState);

impl From<crate::entity::meeting::Model> for Meeting {
    fn from(row: crate::entity::meeting::Model) -> Self {
        Self(row.into())
    }
}

#[Object]
impl Meeting {
    /// Stable id (UUID).
    async fn id(&self) -> ID {
        ids::to_id(self.0.id)
    }

    /// The slot booked.
    async fn availability(&self, ctx: &Context<'_>) -> Result<Availability> {
        loader::<AvailabilityLoader>(ctx)?
            .load_one(self.0.availability_id)
            .await?
            .map(Availability)
            .ok_or(Error::NotFound("no such availability"))
    }

    /// The slot's owner.
    async fn owner(&self, ctx: &Context<'_>) -> Result<User> {
        user(ctx, self.0.owner_id).await
    }

    /// Who booked it.
    async fn participant(&self, ctx: &Context<'_>) -> Result<User> {
        user(ctx, self.0.participant_id).await
    }

    /// When it starts.
    async fn start_time(&self) -> DateTime<Utc> {
        self.0.start_time
    }

    /// When it ends.
    async fn end_time(&self) -> DateTime<Utc> {
        self.0.end_time
    }

    /// CONFIRMED or CANCELLED.
    async fn status(&self) -> MeetingStatus {
        match self.0.status {
            WireStatus::Confirmed => MeetingStatus::Confirmed,
            WireStatus::Cancelled => MeetingStatus::Cancelled,
        }
    }

    /// When it was booked.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    /// When it was cancelled.
    async fn cancelled_at(&self) -> Option<DateTime<Utc>> {
        self.0.cancelled_at
    }

    /// Who cancelled (owner or participant), once cancelled.
    async fn cancelled_by(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        match self.0.cancelled_by {
            Some(id) => Ok(Some(user(ctx, id).await?)),
            None => Ok(None),
        }
    }

    /// Free text given with the cancellation, if any (at most 500 characters).
    async fn cancellation_reason(&self) -> Option<&str> {
        self.0.cancellation_reason.as_deref()
    }
}

/// A slot to publish (times are kept to the whole second).
#[derive(InputObject)]
pub struct AvailabilityInput {
    /// In the future.
    start_time: DateTime<Utc>,
    /// After the start; at most RALLY_MAX_SLOT_MINUTES later.
    end_time: DateTime<Utc>,
    /// 1 to 200 characters.
    title: String,
    /// At most 5000 characters.
    description: Option<String>,
}

impl AvailabilityInput {
    fn parse(&self, state: &AppState) -> Result<Slot> {
        Slot::parse(
            self.start_time,
            self.end_time,
            &self.title,
            self.description.as_deref(),
            slot_rules(state),
        )
    }
}

/// A weekly pattern of slots, in a time zone: 09:00 stays 09:00 on the wall clock across
/// daylight-saving changes (the UTC instant moves). A local start that does not exist on a day (the
/// spring-forward gap) moves forward by the gap; one that exists twice (fall-back) takes the first
/// occurrence.
#[derive(InputObject)]
pub struct WeeklyAvailabilityInput {
    /// IANA time zone name, e.g. Europe/Paris.
    time_zone: String,
    /// The days of the week with a slot, each at most once.
    weekdays: Vec<Weekday>,
    /// Local wall-clock start, HH:MM.
    start_local: String,
    /// Length of each slot.
    duration_minutes: i32,
    /// First and last local dates, inclusive (YYYY-MM-DD), at most 366 days apart.
    from_date: String,
    /// The last local date, inclusive.
    until_date: String,
    /// 1 to 200 characters.
    title: String,
    /// At most 5000 characters.
    description: Option<String>,
}

impl WeeklyAvailabilityInput {
    /// Every slot of the pattern, each checked as `setAvailability` checks one.
    fn parse(&self, state: &AppState) -> Result<Vec<Slot>> {
        let rules = slot_rules(state);
        let pattern = WeeklyPattern::parse(
            &self.time_zone,
            self.weekdays.iter().map(|day| (*day).into()).collect(),
            &self.start_local,
            self.duration_minutes,
            &self.from_date,
            &self.until_date,
            rules.max_length,
        )?;
        let starts = pattern.expand();
        if starts.is_empty() {
            return Err(Error::bad_input(
                "input.weekdays",
                "no day between the two dates is one of these weekdays",
            ));
        }
        starts
            .into_iter()
            .map(|(start, end)| {
                // A slot's own fields are the pattern's: one past the last year the API takes
                // (an end, or a start behind UTC) comes from the last date, any other problem
                // of a start from the first.
                if start.year() > *crate::model::YEARS.end()
                    || end.year() > *crate::model::YEARS.end()
                {
                    return Err(Error::bad_input(
                        "input.untilDate",
                        format!("slots end by the year {}", crate::model::YEARS.end()),
                    ));
                }
                Slot::parse(start, end, &self.title, self.description.as_deref(), rules).map_err(
                    |err| match err {
                        Error::BadInput { field, message } if field == "input.startTime" => {
                            Error::bad_input("input.fromDate", message)
                        }
                        other => other,
                    },
                )
            })
            .collect()
    }
}

fn position_key(start: DateTime<Utc>, id: Uuid) -> String {
    format!("{}|{id}", start.timestamp())
}

fn parse_position(key: &str) -> Result<Position> {
    let bad = || Error::bad_input("after", "not a cursor from this API");
    let (seconds, id) = key.split_once('|').ok_or_else(bad)?;
    let at = Utc
        .timestamp_opt(seconds.parse().map_err(|_| bad())?, 0)
        .single()
        .ok_or_else(bad)?;
    Ok((at, Uuid::parse_str(id).map_err(|_| bad())?))
}

fn page(first: Option<i32>, after: Option<&str>) -> Result<(PageRequest, Option<Position>)> {
    let page = PageRequest::parse(first, after)?;
    let position = page.after.as_deref().map(parse_position).transpose()?;
    Ok((page, position))
}

fn slot_connection(
    page: &PageRequest,
    (rows, more): (Vec<availability::Model>, bool),
) -> Connection<String, Availability> {
    pagination::connection(
        page,
        rows,
        more,
        |row| position_key(row.start_time, row.id),
        Availability,
    )
}

fn feed_url(state: &AppState, token: &str) -> String {
    let base = state.config.public_url.as_deref().unwrap_or("");
    format!("{}{}", base.trim_end_matches('/'), feed_path(token))
}

/// Meeting queries; all need a signed-in caller.
#[derive(Default)]
pub struct MeetingsQuery;

#[Object]
impl MeetingsQuery {
    /// Open (SCHEDULED) slots starting in [from, to), soonest first, optionally of one owner
    /// (a handle).
    #[graphql(
        guard = "SignedIn",
        complexity = "pagination::complexity(first, child_complexity)"
    )]
    async fn availabilities(
        &self,
        ctx: &Context<'_>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        owner: Option<String>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, Availability>> {
        let (page, position) = page(first, after.as_deref())?;
        let from = crate::model::instant(from, "from")?;
        let to = crate::model::instant(to, "to")?;
        if to <= from {
            return Err(Error::bad_input("to", "`to` is after `from`"));
        }
        let owner = match owner.as_deref().map(|raw| Handle::parse(raw, "owner")) {
            Some(Ok(handle)) => Some(handle),
            Some(Err(_)) => return Ok(Connection::new(position.is_some(), false)),
            None => None,
        };
        let rows =
            service::search(ctx.state()?, from, to, owner.as_ref(), position, page.limit).await?;
        Ok(slot_connection(&page, rows))
    }

    /// The caller's own slots (every status), soonest first.
    #[graphql(
        guard = "SignedIn",
        complexity = "pagination::complexity(first, child_complexity)"
    )]
    async fn my_availabilities(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, Availability>> {
        let me = ctx.identity()?;
        let (page, position) = page(first, after.as_deref())?;
        let rows = service::mine(ctx.state()?, me.user_id, position, page.limit).await?;
        Ok(slot_connection(&page, rows))
    }

    /// Visible to its owner and participant only (anyone else: NOT_FOUND).
    #[graphql(guard = "SignedIn")]
    async fn meeting(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Meeting>> {
        let me = ctx.identity()?;
        let id = ids::require(&id, "no such meeting")?;
        Ok(Some(service::meeting(ctx.state()?, me, id).await?.into()))
    }

    /// The caller's meetings as owner, participant or either, soonest first (cancelled ones too).
    #[graphql(
        guard = "SignedIn",
        complexity = "pagination::complexity(first, child_complexity)"
    )]
    async fn my_meetings(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(MeetingRole::Any)")] role: Option<MeetingRole>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, Meeting>> {
        let me = ctx.identity()?;
        let (page, position) = page(first, after.as_deref())?;
        let role = match role.unwrap_or(MeetingRole::Any) {
            MeetingRole::Owner => Role::Owner,
            MeetingRole::Participant => Role::Participant,
            MeetingRole::Any => Role::Any,
        };
        let (rows, more) =
            service::meetings_of(ctx.state()?, me.user_id, role, position, page.limit).await?;
        Ok(pagination::connection(
            &page,
            rows,
            more,
            |row| position_key(row.start_time, row.id),
            Meeting::from,
        ))
    }

    /// A private iCalendar (RFC 5545) feed of the caller's meetings (as owner and participant), for
    /// calendar apps to subscribe to: GET it without a token. Anyone holding the URL can read it;
    /// rotateCalendarFeed replaces it. Absolute when RALLY_PUBLIC_URL is set, else a path on this
    /// server.
    #[graphql(guard = "SignedIn")]
    async fn my_calendar_feed_url(&self, ctx: &Context<'_>) -> Result<String> {
        let me = ctx.identity()?;
        let state = ctx.state()?;
        Ok(feed_url(
            state,
            &service::feed_token(state, me.user_id).await?,
        ))
    }
}

/// Meeting mutations; all need a signed-in caller.
#[derive(Default)]
pub struct MeetingsMutation;

#[Object]
impl MeetingsMutation {
    /// Rejects end <= start, a start in the past, a slot longer than RALLY_MAX_SLOT_MINUTES
    /// (BAD_USER_INPUT), and overlap with the owner's own SCHEDULED or BOOKED slots (CONFLICT on
    /// `input.startTime`; back to back is fine).
    #[graphql(guard = "SignedIn")]
    async fn set_availability(
        &self,
        ctx: &Context<'_>,
        input: AvailabilityInput,
    ) -> Result<Availability> {
        let me = ctx.identity()?;
        let state = ctx.state()?;
        let slot = input.parse(state)?;
        let mut created = service::publish(state, me, vec![slot], "input.startTime").await?;
        created
            .pop()
            .map(Availability)
            .ok_or_else(|| Error::internal(anyhow::anyhow!("no slot was published")))
    }

    /// The owner changes a SCHEDULED slot (the rules of setAvailability; a BOOKED slot is CONFLICT).
    #[graphql(guard = "SignedIn")]
    async fn update_availability(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: AvailabilityInput,
    ) -> Result<Availability> {
        let me = ctx.identity()?;
        let state = ctx.state()?;
        let id = ids::require(&id, "no such availability")?;
        let slot = input.parse(state);
        Ok(Availability(service::update(state, me, id, slot).await?))
    }

    /// The owner withdraws a SCHEDULED slot (a BOOKED slot is CONFLICT).
    #[graphql(guard = "SignedIn")]
    async fn delete_availability(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let me = ctx.identity()?;
        let id = ids::require(&id, "no such availability")?;
        service::delete(ctx.state()?, me, id).await?;
        Ok(true)
    }

    /// Exactly one booker wins under any concurrency; the others get CONFLICT. Not one's own slot
    /// (FORBIDDEN).
    #[graphql(guard = "SignedIn")]
    async fn book_availability(&self, ctx: &Context<'_>, id: ID) -> Result<Meeting> {
        let me = ctx.identity()?;
        let id = ids::require(&id, "no such availability")?;
        Ok(service::book(ctx.state()?, me, id).await?.into())
    }

    /// Owner or participant, until the meeting ends (then CONFLICT). The slot goes back to
    /// SCHEDULED if it still lies in the future, else CANCELLED.
    #[graphql(guard = "SignedIn")]
    async fn cancel_meeting(
        &self,
        ctx: &Context<'_>,
        id: ID,
        reason: Option<String>,
    ) -> Result<Meeting> {
        let me = ctx.identity()?;
        let id = ids::require(&id, "no such meeting")?;
        Ok(service::cancel(ctx.state()?, me, id, reason.as_deref())
            .await?
            .into())
    }

    /// One SCHEDULED slot per matching day, all or none: any slot that breaks a setAvailability rule
    /// refuses the whole pattern.
    #[graphql(guard = "SignedIn")]
    async fn set_weekly_availability(
        &self,
        ctx: &Context<'_>,
        input: WeeklyAvailabilityInput,
    ) -> Result<Vec<Availability>> {
        let me = ctx.identity()?;
        let state = ctx.state()?;
        let slots = input.parse(state)?;
        Ok(service::publish(state, me, slots, "input.startLocal")
            .await?
            .into_iter()
            .map(Availability)
            .collect())
    }

    /// Makes a new calendar feed URL; the old one stops working at once. Returns the new URL.
    #[graphql(guard = "SignedIn")]
    async fn rotate_calendar_feed(&self, ctx: &Context<'_>) -> Result<String> {
        let me = ctx.identity()?;
        let state = ctx.state()?;
        Ok(feed_url(
            state,
            &service::rotate_feed(state, me.user_id).await?,
        ))
    }
}

/// Meeting subscriptions.
#[derive(Default)]
pub struct MeetingsSubscription;

#[Subscription]
impl MeetingsSubscription {
    /// For the slot owner: meetings booked on, or cancelled from, their availabilities; and for
    /// participants, cancellations (by either side).
    #[graphql(guard = "SignedIn")]
    async fn my_meetings(&self, ctx: &Context<'_>) -> Result<impl Stream<Item = Meeting>> {
        let me = ctx.identity()?;
        Ok(service::follow(ctx.state()?, me.user_id).map(Meeting))
    }
}
