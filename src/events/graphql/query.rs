//! Event queries.

use async_graphql::connection::Connection;
use async_graphql::{Context, ID, Object};

use super::inputs::{EventFilter, event_key, parse_event_key};
use super::loaders::{EventLoader, EventWithOrganizerLoader};
use super::types::{Event, EventTemplate};
use crate::error::Result;
use crate::events::service;
use crate::graphql::loaders::loader;
use crate::graphql::pagination::{self, PageRequest};
use crate::graphql::{ContextExt, ids};

/// Event queries.
#[derive(Default)]
pub struct EventsQuery;

#[Object]
impl EventsQuery {
    /// An event by id; null when there is none. Public.
    async fn event(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Event>> {
        let Some(id) = ids::parse(&id) else {
            return Ok(None);
        };
        // Through app-wide loaders: concurrent lookups share one query. With the organizer when the
        // query asks for it: one join instead of two lookups in turn.
        if ctx.look_ahead().field("organizer").exists() {
            return Ok(loader::<EventWithOrganizerLoader>(ctx)?
                .load_one(id)
                .await?
                .map(|(event, organizer)| Event::with_organizer(event, organizer)));
        }
        Ok(loader::<EventLoader>(ctx)?
            .load_one(id)
            .await?
            .map(Event::from))
    }

    /// Events in start order, filtered. Public.
    #[graphql(complexity = "pagination::complexity(first, child_complexity)")]
    async fn events(
        &self,
        ctx: &Context<'_>,
        filter: Option<EventFilter>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, Event>> {
        let page = PageRequest::parse(first, after.as_deref())?;
        let after = page.after.as_deref().map(parse_event_key).transpose()?;
        let Some(query) = filter.unwrap_or_default().parse()? else {
            return Ok(Connection::new(after.is_some(), false));
        };
        let (rows, more) = service::list(ctx.state()?, query, after, page.limit).await?;
        Ok(pagination::connection(
            &page,
            rows,
            more,
            event_key,
            Event::from,
        ))
    }

    /// The catalogue of event templates. Public.
    async fn event_templates(&self, ctx: &Context<'_>) -> Result<Vec<EventTemplate>> {
        Ok(service::templates(ctx.state()?)
            .await?
            .into_iter()
            .map(EventTemplate)
            .collect())
    }
}
