//! Cup subscriptions: live leaderboards, the crew's feed of every session, the guest's own cup.

use async_graphql::{Context, ID, Subscription};
use futures_util::{Stream, StreamExt};

use super::types::{CupSession, Leaderboard, parse_first};
use crate::cups::Leaderboards;
use crate::cups::service;
use crate::error::Result;
use crate::graphql::{ContextExt, SignedIn, ids};

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
    ) -> Result<impl Stream<Item = Leaderboard>> {
        let first = parse_first(first)?;
        let event = ids::require(&event_id, "no such event")?;
        let boards = ctx.registered::<Leaderboards>()?;
        let boards = boards.follow(ctx.state()?, event).await?;
        Ok(boards.map(move |board| Leaderboard::new(board, first)))
    }

    /// Every change of every cup session at the event. Staff and organizer only (bills are private).
    #[graphql(guard = "SignedIn")]
    async fn cup_session_updated(
        &self,
        ctx: &Context<'_>,
        event_id: ID,
    ) -> Result<impl Stream<Item = Result<CupSession>>> {
        let event = ids::require(&event_id, "no such event")?;
        let sessions = service::follow_sessions(ctx.state()?, ctx.identity()?, event).await?;
        Ok(sessions.map(|session| session.map(CupSession::private)))
    }

    /// The caller's own session at an event: the current one first (when there is one), then every
    /// change as the bartender records.
    #[graphql(guard = "SignedIn")]
    async fn my_cup_session(
        &self,
        ctx: &Context<'_>,
        event_id: ID,
    ) -> Result<impl Stream<Item = CupSession>> {
        let event = ids::require(&event_id, "no such event")?;
        let mine = service::follow_mine(ctx.state()?, ctx.identity()?, event).await?;
        Ok(mine.map(CupSession::private))
    }
}
