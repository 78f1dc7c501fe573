//! The cups part of the schema: the gateway's mutations, cup sessions with their private side, and
//! the live `leaderboard`, `cupSessionUpdated` and `myCupSession` subscriptions.

use std::sync::Arc;

use async_graphql::{Context, Enum, ID, InputObject, Object, Subscription};
use chrono::{DateTime, Utc};
use futures_util::Stream;

use super::leaderboard::{self, Board, MAX_ENTRIES};
use super::model::{Drink, estimated_bac, parse_cheers};
use super::service::{self, sessions_topic};
use crate::accounts::graphql::User;
use crate::accounts::model::Handle;
use crate::auth::SignedIn;
use crate::entity::{cup_session, drink_order};
use crate::error::Error;
use crate::events;
use crate::events::graphql::Event;
use crate::graphql::loaders::{
    DrinksLoader, EventLoader, StaffLoader, UserLoader, loader, loader_error,
};
use crate::graphql::{ContextExt, ids};
use crate::live::Signal;

/// Whether the gateway may still record on a session.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "cup_session::Status")]
pub enum CupSessionStatus {
    /// Recording.
    Open,
    /// Done; later updates get CONFLICT.
    Closed,
}

/// One guest's cup at one event: opened when they ask for a cup, updated by the bartender's gateway
/// device. Bill, drinks, alcohol, calories and BAC are private: only the guest, the event's staff and
/// organizer see them (others get FORBIDDEN on those fields).
pub struct CupSession {
    model: cup_session::Model,
    /// Known in advance when the whole stream is for crew (cupSessionUpdated) or the guest.
    visible: Option<bool>,
}

impl CupSession {
    /// A session whose private side is checked against the viewer.
    pub fn new(model: cup_session::Model) -> Self {
        Self {
            model,
            visible: None,
        }
    }

    async fn private(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        if self.visible == Some(true) {
            return Ok(());
        }
        let Some(me) = ctx.viewer().identity()? else {
            return Err(Error::Forbidden("only the guest and the event's staff see this").into());
        };
        if me.user_id == self.model.user_id || me.is_admin {
            return Ok(());
        }
        let event = loader::<EventLoader>(ctx)?
            .load_one(self.model.event_id)
            .await
            .map_err(loader_error)?;
        let staff = loader::<StaffLoader>(ctx)?
            .load_one(self.model.event_id)
            .await
            .map_err(loader_error)?
            .unwrap_or_default();
        let crew = event.is_some_and(|e| e.organizer_id == me.user_id)
            || staff.iter().any(|s| s.user_id == me.user_id);
        if crew {
            Ok(())
        } else {
            Err(Error::Forbidden("only the guest and the event's staff see this").into())
        }
    }

    async fn bac(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<f64>> {
        let guest = loader::<UserLoader>(ctx)?
            .load_one(self.model.user_id)
            .await
            .map_err(loader_error)?;
        Ok(guest.and_then(|guest| {
            estimated_bac(
                self.model.alcohol_grams,
                guest.body_weight_kg,
                guest.body_type,
                self.model.first_drink_at,
                Utc::now(),
            )
        }))
    }
}

#[Object]
impl CupSession {
    /// Stable id (UUID).
    async fn id(&self) -> ID {
        ids::to_id(self.model.id)
    }

    /// The event.
    async fn event(&self, ctx: &Context<'_>) -> async_graphql::Result<Event> {
        loader::<EventLoader>(ctx)?
            .load_one(self.model.event_id)
            .await
            .map_err(loader_error)?
            .map(Event::from)
            .ok_or_else(|| Error::NotFound("no such event").into())
    }

    /// The guest.
    async fn user(&self, ctx: &Context<'_>) -> async_graphql::Result<User> {
        loader::<UserLoader>(ctx)?
            .load_one(self.model.user_id)
            .await
            .map_err(loader_error)?
            .map(User::from)
            .ok_or_else(|| Error::internal(anyhow::anyhow!("session without guest")).into())
    }

    /// OPEN or CLOSED.
    async fn status(&self) -> CupSessionStatus {
        self.model.status.into()
    }

    /// Clinks counted by the gateway.
    async fn cheers(&self) -> i32 {
        self.model.cheers
    }

    /// Drinks ordered. Private.
    async fn orders(&self, ctx: &Context<'_>) -> async_graphql::Result<i32> {
        self.private(ctx).await?;
        Ok(self.model.orders)
    }

    /// cheers + points won in games at this event.
    async fn score(&self) -> i32 {
        self.model.score
    }

    /// Grams of pure alcohol ordered so far. Private.
    async fn alcohol_grams(&self, ctx: &Context<'_>) -> async_graphql::Result<f64> {
        self.private(ctx).await?;
        Ok(self.model.alcohol_grams)
    }

    /// Estimated blood alcohol concentration in percent (Widmark), null when the profile lacks body
    /// weight. Private.
    async fn estimated_bac(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<f64>> {
        self.private(ctx).await?;
        self.bac(ctx).await
    }

    /// True when the estimate passes the configured threshold (responsible service). Private.
    async fn bac_warning(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        self.private(ctx).await?;
        let threshold = ctx.state()?.config.bac_warning_threshold;
        Ok(self.bac(ctx).await?.is_some_and(|bac| bac >= threshold))
    }

    /// Money owed, cents. Private.
    async fn bill_cents(&self, ctx: &Context<'_>) -> async_graphql::Result<i32> {
        self.private(ctx).await?;
        Ok(i32::try_from(self.model.bill_cents).unwrap_or(i32::MAX))
    }

    /// kcal ordered. Private.
    async fn calories(&self, ctx: &Context<'_>) -> async_graphql::Result<i32> {
        self.private(ctx).await?;
        Ok(self.model.calories)
    }

    /// When the cup was handed out.
    async fn opened_at(&self) -> DateTime<Utc> {
        self.model.opened_at
    }

    /// When the session closed.
    async fn closed_at(&self) -> Option<DateTime<Utc>> {
        self.model.closed_at
    }

    /// The drinks, oldest first. Private.
    async fn drinks(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<DrinkOrder>> {
        self.private(ctx).await?;
        Ok(loader::<DrinksLoader>(ctx)?
            .load_one(self.model.id)
            .await
            .map_err(loader_error)?
            .unwrap_or_default()
            .into_iter()
            .map(DrinkOrder)
            .collect())
    }

    /// Grows with each committed change.
    async fn version(&self) -> i64 {
        self.model.version
    }
}

/// A drink recorded on a cup.
pub struct DrinkOrder(drink_order::Model);

#[Object]
impl DrinkOrder {
    /// Stable id (UUID).
    async fn id(&self) -> ID {
        ids::to_id(self.0.id)
    }

    /// What was served.
    async fn name(&self) -> &str {
        &self.0.name
    }

    /// Millilitres.
    async fn volume_ml(&self) -> i32 {
        self.0.volume_ml
    }

    /// Alcohol by volume, percent (0-100).
    async fn abv(&self) -> f64 {
        self.0.abv
    }

    /// Price, cents.
    async fn price_cents(&self) -> i32 {
        self.0.price_cents
    }

    /// kcal (given, or 7 kcal per gram of alcohol).
    async fn calories(&self) -> i32 {
        self.0.calories
    }

    /// When ordered.
    async fn ordered_at(&self) -> DateTime<Utc> {
        self.0.ordered_at
    }
}

/// A drink as the gateway reports it.
#[derive(InputObject)]
pub struct DrinkInput {
    /// 1 to 80 characters.
    name: String,
    /// 1 to 2000 ml.
    volume_ml: i32,
    /// Alcohol by volume, 0 to 100 percent.
    abv: f64,
    /// 0 to 100000 cents.
    price_cents: i32,
    /// kcal; estimated from the alcohol (7 kcal/g) when absent.
    calories: Option<i32>,
}

/// What the gateway sees to confirm a guest's identity before handing over a cup.
pub struct EventGuest {
    user: crate::entity::user::Model,
    open_session: Option<cup_session::Model>,
}

#[Object]
impl EventGuest {
    /// The guest.
    async fn user(&self) -> User {
        User::from(self.user.clone())
    }

    /// Their OPEN session at the event, if any.
    async fn open_session(&self) -> Option<CupSession> {
        self.open_session.clone().map(|model| CupSession {
            model,
            visible: Some(true),
        })
    }
}

/// One line of a leaderboard.
pub struct LeaderboardEntry {
    rank: i32,
    session: cup_session::Model,
    user: crate::entity::user::Model,
}

#[Object]
impl LeaderboardEntry {
    /// 1 for the top score; ties go to whoever reached the score first.
    async fn rank(&self) -> i32 {
        self.rank
    }

    /// The guest.
    async fn user(&self) -> User {
        User::from(self.user.clone())
    }

    /// cheers + game points.
    async fn score(&self) -> i32 {
        self.session.score
    }

    /// Clinks.
    async fn cheers(&self) -> i32 {
        self.session.cheers
    }

    /// The cup session (its private fields stay private).
    async fn session(&self) -> CupSession {
        CupSession::new(self.session.clone())
    }
}

/// Top cup sessions of an event by score.
pub struct Leaderboard {
    board: Arc<Board>,
    first: usize,
}

impl Leaderboard {
    /// The first `first` entries of `board`.
    pub fn new(board: Arc<Board>, first: usize) -> Self {
        Self { board, first }
    }
}

#[Object]
impl Leaderboard {
    /// The event.
    async fn event(&self) -> Event {
        Event::from(self.board.event.clone())
    }

    /// Entries in rank order.
    async fn entries(&self) -> Vec<LeaderboardEntry> {
        self.board
            .rows
            .iter()
            .take(self.first)
            .enumerate()
            .map(|(index, (session, user))| LeaderboardEntry {
                rank: i32::try_from(index + 1).unwrap_or(i32::MAX),
                session: session.clone(),
                user: user.clone(),
            })
            .collect()
    }

    /// When this board was computed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.board.updated_at
    }
}

/// Checks `first` of a leaderboard: 1 to 100.
pub fn parse_first(first: Option<i32>) -> crate::error::Result<usize> {
    let first = first.unwrap_or(10);
    if (1..=i32::try_from(MAX_ENTRIES).unwrap_or(100)).contains(&first) {
        Ok(usize::try_from(first).unwrap_or(10))
    } else {
        Err(Error::bad_input("first", "first is 1 to 100"))
    }
}

/// A leaderboard computed now (for `Event.leaderboard`).
pub async fn leaderboard_now(
    ctx: &Context<'_>,
    event: uuid::Uuid,
    first: Option<i32>,
) -> async_graphql::Result<Leaderboard> {
    let first = parse_first(first)?;
    let board = leaderboard::compute(ctx.state()?, event, first as u64)
        .await?
        .ok_or(Error::NotFound("no such event"))?;
    Ok(Leaderboard::new(Arc::new(board), first))
}

fn parse_handle(raw: &str) -> crate::error::Result<Handle> {
    Handle::parse(raw, "handle").map_err(|_| Error::NotFound("no user with this handle"))
}

/// Cup queries.
#[derive(Default)]
pub struct CupsQuery;

#[Object]
impl CupsQuery {
    /// Gateway identity check: staff of the event only. Null when the handle names nobody.
    #[graphql(guard = "SignedIn")]
    async fn event_guest(
        &self,
        ctx: &Context<'_>,
        event_id: ID,
        handle: String,
    ) -> async_graphql::Result<Option<EventGuest>> {
        let me = ctx.identity()?;
        let event = ids::require(&event_id, "no such event")?;
        let Ok(handle) = Handle::parse(&handle, "handle") else {
            return Ok(None);
        };
        Ok(service::event_guest(ctx.state()?, me, event, &handle)
            .await?
            .map(|(user, open_session)| EventGuest { user, open_session }))
    }

    /// Visible to its guest, the event's staff and organizer; null for anyone else.
    async fn cup_session(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<CupSession>> {
        let viewer = ctx.viewer().identity()?;
        let Some(id) = ids::parse(&id) else {
            return Ok(None);
        };
        let state = ctx.state()?;
        let Some(session) = service::find(state, id).await? else {
            return Ok(None);
        };
        if !service::can_see(state, viewer, &session).await? {
            return Ok(None);
        }
        Ok(Some(CupSession {
            model: session,
            visible: Some(true),
        }))
    }
}

/// Cup mutations (the gateway's).
#[derive(Default)]
pub struct CupsMutation;

#[Object]
impl CupsMutation {
    /// Staff: a guest asks for a cup. Returns the guest's OPEN session at this event if there is one,
    /// else opens one. The event must be LIVE (else CONFLICT).
    #[graphql(guard = "SignedIn")]
    async fn open_cup_session(
        &self,
        ctx: &Context<'_>,
        event_id: ID,
        handle: String,
    ) -> async_graphql::Result<CupSession> {
        let me = ctx.identity()?;
        let event = ids::require(&event_id, "no such event")?;
        let session = service::open(ctx.state()?, me, event, &parse_handle(&handle)?).await?;
        Ok(CupSession {
            model: session,
            visible: Some(true),
        })
    }

    /// Staff: count cheers (clinks) for a session; 1 to 100 per call.
    #[graphql(guard = "SignedIn")]
    async fn record_cheers(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
        #[graphql(default = 1)] count: Option<i32>,
    ) -> async_graphql::Result<CupSession> {
        let me = ctx.identity()?;
        let count = parse_cheers(count.unwrap_or(1))?;
        let id = ids::require(&session_id, "no such cup session")?;
        let session = service::record_cheers(ctx.state()?, me, id, count).await?;
        Ok(CupSession {
            model: session,
            visible: Some(true),
        })
    }

    /// Staff: the guest ordered a drink; bill, calories, alcohol and BAC follow.
    #[graphql(guard = "SignedIn")]
    async fn record_drink(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
        drink: DrinkInput,
    ) -> async_graphql::Result<CupSession> {
        let me = ctx.identity()?;
        let drink = Drink::parse(
            &drink.name,
            drink.volume_ml,
            drink.abv,
            drink.price_cents,
            drink.calories,
            "drink",
        )?;
        let id = ids::require(&session_id, "no such cup session")?;
        let session = service::record_drink(ctx.state()?, me, id, drink).await?;
        Ok(CupSession {
            model: session,
            visible: Some(true),
        })
    }

    /// Staff or the guest: close the session; later updates get CONFLICT.
    #[graphql(guard = "SignedIn")]
    async fn close_cup_session(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
    ) -> async_graphql::Result<CupSession> {
        let me = ctx.identity()?;
        let id = ids::require(&session_id, "no such cup session")?;
        let session = service::close(ctx.state()?, me, id).await?;
        Ok(CupSession {
            model: session,
            visible: Some(true),
        })
    }
}

/// Cup subscriptions.
#[derive(Default)]
pub struct CupsSubscription;

#[Subscription]
impl CupsSubscription {
    /// Live scores: the current board, then a new board after each change (bursts coalesced; never an
    /// older board than one already sent). Public.
    async fn leaderboard(
        &self,
        ctx: &Context<'_>,
        event_id: ID,
        #[graphql(default = 10)] first: Option<i32>,
    ) -> async_graphql::Result<impl Stream<Item = Leaderboard>> {
        let state = ctx.state()?.clone();
        let first = parse_first(first)?;
        let event = ids::require(&event_id, "no such event")?;
        events::service::require(&state, event).await?;
        let mut boards = state.boards.watch(&state, event);
        Ok(async_stream::stream! {
            loop {
                let board = boards.borrow_and_update().clone();
                if let Some(board) = board {
                    yield Leaderboard::new(board, first);
                }
                if boards.changed().await.is_err() {
                    break;
                }
            }
        })
    }

    /// Every change of every cup session at the event. Staff and organizer only (bills are private).
    #[graphql(guard = "SignedIn")]
    async fn cup_session_updated(
        &self,
        ctx: &Context<'_>,
        event_id: ID,
    ) -> async_graphql::Result<impl Stream<Item = CupSession>> {
        let state = ctx.state()?.clone();
        let me = ctx.identity()?;
        let event =
            events::service::require(&state, ids::require(&event_id, "no such event")?).await?;
        if !events::service::is_crew(&state, me, &event, &[]).await? {
            return Err(
                Error::Forbidden("only the event's staff and organizer follow its cups").into(),
            );
        }
        let mut feed = state.live.subscribe(&sessions_topic(event.id));
        Ok(async_stream::stream! {
            while let Some(signal) = feed.next().await {
                if let Signal::Message(delivery) = signal
                    && let Some(session) = delivery.decode::<cup_session::Model>()
                {
                    yield CupSession { model: (*session).clone(), visible: Some(true) };
                }
            }
        })
    }

    /// The caller's own session at an event: the current one first (when there is one), then every
    /// change as the bartender records.
    #[graphql(guard = "SignedIn")]
    async fn my_cup_session(
        &self,
        ctx: &Context<'_>,
        event_id: ID,
    ) -> async_graphql::Result<impl Stream<Item = CupSession>> {
        let state = ctx.state()?.clone();
        let me = ctx.identity()?;
        let event =
            events::service::require(&state, ids::require(&event_id, "no such event")?).await?;
        let mut feed = state.live.subscribe(&sessions_topic(event.id));
        let current = service::latest_session_of(&state.db, event.id, me.user_id).await?;
        Ok(async_stream::stream! {
            let mut version = None;
            if let Some(session) = current {
                version = Some((session.id, session.version));
                yield CupSession { model: session, visible: Some(true) };
            }
            while let Some(signal) = feed.next().await {
                let session = match signal {
                    Signal::Message(delivery) => match delivery.decode::<cup_session::Model>() {
                        Some(session) if session.user_id == me.user_id => (*session).clone(),
                        _ => continue,
                    },
                    Signal::Resync => match service::latest_session_of(&state.db, event.id, me.user_id).await {
                        Ok(Some(session)) => session,
                        _ => continue,
                    },
                };
                if let Some((id, seen)) = version
                    && id == session.id
                    && session.version <= seen
                {
                    continue;
                }
                version = Some((session.id, session.version));
                yield CupSession { model: session, visible: Some(true) };
            }
        })
    }
}
