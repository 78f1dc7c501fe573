//! The events' DataLoaders (registered by the schema assembly).

use std::collections::HashMap;

use async_graphql::dataloader::Loader;
use uuid::Uuid;

use crate::entity::{event, event_staff, event_template, user};
use crate::error::Error;
use crate::events::service;
use crate::graphql::loaders::{by_key, grouped};
use crate::state::AppState;

/// Events by id.
pub struct EventLoader(pub AppState);

impl Loader<Uuid> for EventLoader {
    type Value = event::Model;
    type Error = Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, event::Model>, Error> {
        Ok(by_key(service::find_many(&self.0, keys).await?, |e| e.id))
    }
}

/// Events by id, each with its organizer's account: for queries that ask for both.
pub struct EventWithOrganizerLoader(pub AppState);

impl Loader<Uuid> for EventWithOrganizerLoader {
    type Value = (event::Model, user::Model);
    type Error = Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Error> {
        let rows = service::find_many_with_organizers(&self.0, keys).await?;
        Ok(by_key(rows, |(event, _)| event.id))
    }
}

/// Event templates by id (the `template` of every event in a list, in one query).
pub struct TemplateLoader(pub AppState);

impl Loader<Uuid> for TemplateLoader {
    type Value = event_template::Model;
    type Error = Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Error> {
        Ok(by_key(
            service::templates_by_id(&self.0, keys).await?,
            |t| t.id,
        ))
    }
}

/// Staff of events, by event id.
pub struct StaffLoader(pub AppState);

impl Loader<Uuid> for StaffLoader {
    type Value = Vec<event_staff::Model>;
    type Error = Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Error> {
        let rows = service::staff_of(&self.0, keys).await?;
        Ok(grouped(keys, rows, |row| row.event_id))
    }
}

/// Whether (event, user) is a like.
pub struct LikeLoader(pub AppState);

impl Loader<(Uuid, Uuid)> for LikeLoader {
    type Value = bool;
    type Error = Error;

    async fn load(&self, keys: &[(Uuid, Uuid)]) -> Result<HashMap<(Uuid, Uuid), bool>, Error> {
        let liked = service::likes_among(&self.0, keys).await?;
        Ok(keys.iter().map(|key| (*key, liked.contains(key))).collect())
    }
}
