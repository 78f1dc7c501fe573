//! Event subscriptions.

use async_graphql::{Context, ID, Subscription};
use futures_util::{Stream, StreamExt};

use super::types::Event;
use crate::error::Result;
use crate::events::service;
use crate::graphql::{ContextExt, ids};

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
    ) -> Result<impl Stream<Item = Event>> {
        // Who is calling is read only where a field needs it (`likedByMe`), so subscribers who do
        // not select it share one execution whoever they are.
        let id = ids::require(&event_id, "no such event")?;
        Ok(service::follow(ctx.state()?, id).await?.map(Event::from))
    }

    /// Event status changes (LIVE, FINISHED, CANCELLED, including the nightly finisher's), each once
    /// it is committed. When the server missed changes (it lost the broker for a while, or the
    /// shared stream fell behind), subscribers get each event whose status changed meanwhile (in
    /// the last hour at most), as it is now. Public.
    async fn event_status_changed(&self, ctx: &Context<'_>) -> Result<impl Stream<Item = Event>> {
        Ok(service::follow_status(ctx.state()?).map(Event::from))
    }
}
