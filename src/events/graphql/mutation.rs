//! Event mutations.

use async_graphql::{Context, ID, Object, Upload};

use super::inputs::{CreateEventInput, EventTemplateInput, UpdateEventInput, parse_handle};
use super::types::{Event, EventTemplate, StaffRole};
use crate::error::Result;
use crate::events::service;
use crate::graphql::{AdminOnly, ContextExt, SignedIn, ids, upload};

/// Event mutations.
#[derive(Default)]
pub struct EventsMutation;

#[Object]
impl EventsMutation {
    /// Creates an event organized by the caller, SCHEDULED.
    #[graphql(guard = "SignedIn")]
    async fn create_event(&self, ctx: &Context<'_>, input: CreateEventInput) -> Result<Event> {
        let me = ctx.identity()?;
        Ok(service::create(ctx.state()?, me.user_id, input.parse()?)
            .await?
            .into())
    }

    /// Organizer only.
    #[graphql(guard = "SignedIn")]
    async fn update_event(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateEventInput,
    ) -> Result<Event> {
        let me = ctx.identity()?;
        let id = ids::require(&id, "no such event")?;
        Ok(service::update(ctx.state()?, me, id, input.parse())
            .await?
            .into())
    }

    /// Organizer only; likes and staff go with it.
    #[graphql(guard = "SignedIn")]
    async fn delete_event(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let me = ctx.identity()?;
        service::delete(ctx.state()?, me, ids::require(&id, "no such event")?).await?;
        Ok(true)
    }

    /// Organizer only: sets the event's picture (PNG, JPEG, GIF or WebP; re-encoded, at most 1600 px).
    #[graphql(guard = "SignedIn")]
    async fn upload_event_image(&self, ctx: &Context<'_>, id: ID, file: Upload) -> Result<Event> {
        let me = ctx.identity()?;
        let id = ids::require(&id, "no such event")?;
        let bytes = upload::read(ctx, &file, "file");
        Ok(service::set_image(ctx.state()?, me, id, bytes)
            .await?
            .into())
    }

    /// Idempotent.
    #[graphql(guard = "SignedIn")]
    async fn like_event(&self, ctx: &Context<'_>, id: ID) -> Result<Event> {
        let me = ctx.identity()?;
        let id = ids::require(&id, "no such event")?;
        let event = service::like(ctx.state()?, me.user_id, id).await?;
        Ok(Event::liked(event, true))
    }

    /// Idempotent.
    #[graphql(guard = "SignedIn")]
    async fn unlike_event(&self, ctx: &Context<'_>, id: ID) -> Result<Event> {
        let me = ctx.identity()?;
        let id = ids::require(&id, "no such event")?;
        let event = service::unlike(ctx.state()?, me.user_id, id).await?;
        Ok(Event::liked(event, false))
    }

    /// Organizer only: adds a staff member (or changes their role).
    #[graphql(guard = "SignedIn")]
    async fn add_event_staff(
        &self,
        ctx: &Context<'_>,
        event_id: ID,
        handle: String,
        role: StaffRole,
    ) -> Result<Event> {
        let me = ctx.identity()?;
        let id = ids::require(&event_id, "no such event")?;
        let handle = parse_handle(&handle, "handle");
        Ok(
            service::add_staff(ctx.state()?, me, id, handle, role.into())
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
    ) -> Result<Event> {
        let me = ctx.identity()?;
        let id = ids::require(&event_id, "no such event")?;
        let handle = parse_handle(&handle, "handle");
        Ok(service::remove_staff(ctx.state()?, me, id, handle)
            .await?
            .into())
    }

    /// Admin only.
    #[graphql(guard = "AdminOnly")]
    async fn create_event_template(
        &self,
        ctx: &Context<'_>,
        input: EventTemplateInput,
    ) -> Result<EventTemplate> {
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
    ) -> Result<EventTemplate> {
        let id = ids::require(&id, "no such event template")?;
        Ok(EventTemplate(
            service::update_template(ctx.state()?, id, input.parse()?).await?,
        ))
    }

    /// Admin only; events made from it keep their values.
    #[graphql(guard = "AdminOnly")]
    async fn delete_event_template(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        service::delete_template(ctx.state()?, ids::require(&id, "no such event template")?)
            .await?;
        Ok(true)
    }
}
