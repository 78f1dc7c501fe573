//! Cup queries.

use async_graphql::{Context, ID, Object};

use super::types::{CupSession, EventGuest};
use crate::accounts::model::Handle;
use crate::cups::service;
use crate::error::Result;
use crate::graphql::{ContextExt, SignedIn, ids};

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
    ) -> Result<Option<EventGuest>> {
        let me = ctx.identity()?;
        let event = ids::require(&event_id, "no such event")?;
        let handle = Handle::parse(&handle, "handle").ok();
        Ok(service::event_guest(ctx.state()?, me, event, handle)
            .await?
            .map(|(user, open_session)| EventGuest { user, open_session }))
    }

    /// Visible to its guest, the event's staff and organizer; null for anyone else.
    async fn cup_session(&self, ctx: &Context<'_>, id: ID) -> Result<Option<CupSession>> {
        let viewer = ctx.caller()?;
        let Some(id) = ids::parse(&id) else {
            return Ok(None);
        };
        Ok(service::visible(ctx.state()?, viewer, id)
            .await?
            .map(CupSession::private))
    }
}
