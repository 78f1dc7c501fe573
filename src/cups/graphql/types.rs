//! Cup types: sessions with their private side, drinks, the gateway's guest check, leaderboards.

use std::sync::Arc;

use async_graphql::{Context, Enum, ID, Object};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::loaders::DrinksLoader;
use crate::accounts::graphql::{User, UserLoader};
use crate::cups::leaderboard::{self, Board, MAX_ENTRIES};
use crate::cups::model::{CupSessionState, estimated_bac};
use crate::entity::{cup_session, drink_order, user};
use crate::error::{Error, Result};
use crate::events;
use crate::events::graphql::{Event, EventLoader, StaffLoader};
use crate::graphql::loaders::loader;
use crate::graphql::{ContextExt, ids};

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
/// device. Orders, bill, drinks, alcohol, calories and BAC are private: only the guest, the event's
/// staff and organizer see them; anyone else gets null with a FORBIDDEN error at that path.
pub struct CupSession {
    session: CupSessionState,
    /// Known in advance when the whole stream is for crew (cupSessionUpdated) or the guest.
    visible: bool,
}

/// Refuses the private side to anyone else.
const PRIVATE: &str = "only the guest and the event's staff see this";

impl CupSession {
    /// A session whose private side is checked against the viewer.
    pub fn new(session: impl Into<CupSessionState>) -> Self {
        Self {
            session: session.into(),
            visible: false,
        }
    }

    /// A session for a caller already known to see its private side (the guest, crew).
    pub fn private(session: impl Into<CupSessionState>) -> Self {
        Self {
            session: session.into(),
            visible: true,
        }
    }

    /// The guest, the event's crew and admins see the private side.
    async fn check_private(&self, ctx: &Context<'_>) -> Result<()> {
        if self.visible {
            return Ok(());
        }
        let me = ctx.caller()?.ok_or(Error::Forbidden(PRIVATE))?;
        if me.user_id == self.session.user_id {
            return Ok(());
        }
        let event = self.session.event_id;
        let Some(event) = loader::<EventLoader>(ctx)?.load_one(event).await? else {
            return Err(Error::Forbidden(PRIVATE));
        };
        let staff = loader::<StaffLoader>(ctx)?
            .load_one(event.id)
            .await?
            .unwrap_or_default();
        let role = staff
            .iter()
            .find(|member| member.user_id == me.user_id)
            .map(|member| member.role);
        if events::model::is_crew(me, event.organizer_id, role, &[]) {
            Ok(())
        } else {
            Err(Error::Forbidden(PRIVATE))
        }
    }

    async fn bac(&self, ctx: &Context<'_>) -> Result<Option<f64>> {
        let guest = loader::<UserLoader>(ctx)?
            .load_one(self.session.user_id)
            .await?;
        Ok(guest.and_then(|guest| {
            estimated_bac(
                self.session.alcohol_grams,
                guest.body_weight_kg,
                guest.body_type,
                self.session.first_drink_at,
                Utc::now(),
            )
        }))
    }
}

#[Object]
impl CupSession {
    /// Stable id (UUID).
    async fn id(&self) -> ID {
        ids::to_id(self.session.id)
    }

    /// The event.
    async fn event(&self, ctx: &Context<'_>) -> Result<Event> {
        loader::<EventLoader>(ctx)?
            .load_one(self.session.event_id)
            .await?
            .map(Event::from)
            .ok_or(Error::NotFound("no such event"))
    }

    /// The guest.
    async fn user(&self, ctx: &Context<'_>) -> Result<User> {
        loader::<UserLoader>(ctx)?
            .load_one(self.session.user_id)
            .await?
            .map(User::from)
            .ok_or_else(|| Error::internal(anyhow::anyhow!("session without guest")))
    }

    /// OPEN or CLOSED.
    async fn status(&self) -> CupSessionStatus {
        self.session.status.into()
    }

    /// Clinks counted by the gateway.
    async fn cheers(&self) -> i32 {
        self.session.cheers
    }

    /// Drinks ordered. Private.
    async fn orders(&self, ctx: &Context<'_>) -> Result<Option<i32>> {
        self.check_private(ctx).await?;
        Ok(Some(self.session.orders))
    }

    /// cheers + points won in games at this event.
    async fn score(&self) -> i32 {
        self.session.score
    }

    /// Grams of pure alcohol ordered so far. Private.
    async fn alcohol_grams(&self, ctx: &Context<'_>) -> Result<Option<f64>> {
        self.check_private(ctx).await?;
        Ok(Some(self.session.alcohol_grams))
    }

    /// Estimated blood alcohol concentration in percent (Widmark), null when the profile lacks body
    /// weight. Private.
    async fn estimated_bac(&self, ctx: &Context<'_>) -> Result<Option<f64>> {
        self.check_private(ctx).await?;
        self.bac(ctx).await
    }

    /// True when the estimate passes the configured threshold (responsible service). Private.
    async fn bac_warning(&self, ctx: &Context<'_>) -> Result<Option<bool>> {
        self.check_private(ctx).await?;
        let threshold = ctx.state()?.config.bac_warning_threshold;
        Ok(Some(
            self.bac(ctx).await?.is_some_and(|bac| bac >= threshold),
        ))
    }

    /// Money owed, cents. Private.
    async fn bill_cents(&self, ctx: &Context<'_>) -> Result<Option<i32>> {
        self.check_private(ctx).await?;
        Ok(Some(
            i32::try_from(self.session.bill_cents).unwrap_or(i32::MAX),
        ))
    }

    /// kcal ordered. Private.
    async fn calories(&self, ctx: &Context<'_>) -> Result<Option<i32>> {
        self.check_private(ctx).await?;
        Ok(Some(self.session.calories))
    }

    /// When the cup was handed out.
    async fn opened_at(&self) -> DateTime<Utc> {
        self.session.opened_at
    }

    /// When the session closed.
    async fn closed_at(&self) -> Option<DateTime<Utc>> {
        self.session.closed_at
    }

    /// The drinks, oldest first. Private.
    async fn drinks(&self, ctx: &Context<'_>) -> Result<Option<Vec<DrinkOrder>>> {
        self.check_private(ctx).await?;
        Ok(Some(
            loader::<DrinksLoader>(ctx)?
                .load_one(self.session.id)
                .await?
                .unwrap_or_default()
                .into_iter()
                .map(DrinkOrder)
                .collect(),
        ))
    }

    /// Grows with each committed change, drinks too (so it would count them). Private.
    async fn version(&self, ctx: &Context<'_>) -> Result<Option<i64>> {
        self.check_private(ctx).await?;
        Ok(Some(self.session.version))
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

/// What the gateway sees to confirm a guest's identity before handing over a cup.
pub struct EventGuest {
    /// The guest.
    pub user: user::Model,
    /// Their OPEN session at the event, if any.
    pub open_session: Option<cup_session::Model>,
}

#[Object]
impl EventGuest {
    /// The guest.
    async fn user(&self) -> User {
        User::from(self.user.clone())
    }

    /// Their OPEN session at the event, if any.
    async fn open_session(&self) -> Option<CupSession> {
        self.open_session.clone().map(CupSession::private)
    }
}

/// One line of a leaderboard.
pub struct LeaderboardEntry {
    rank: i32,
    session: CupSessionState,
    user: user::Model,
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
pub fn parse_first(first: Option<i32>) -> Result<usize> {
    let first = first.unwrap_or(10);
    if (1..=i32::try_from(MAX_ENTRIES).unwrap_or(100)).contains(&first) {
        Ok(usize::try_from(first).unwrap_or(10))
    } else {
        Err(Error::bad_input("first", "first is 1 to 100"))
    }
}

/// The event's leaderboard computed now: what `Event.leaderboard` resolves to.
pub async fn leaderboard_of(
    ctx: &Context<'_>,
    event: Uuid,
    first: Option<i32>,
) -> Result<Leaderboard> {
    let first = parse_first(first)?;
    let board = leaderboard::compute(ctx.state()?, event, first as u64)
        .await?
        .ok_or(Error::NotFound("no such event"))?;
    Ok(Leaderboard::new(Arc::new(board), first))
}
