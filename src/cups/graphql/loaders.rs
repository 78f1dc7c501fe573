//! The cups' DataLoaders (registered by the schema assembly).

use std::collections::HashMap;

use async_graphql::dataloader::Loader;
use uuid::Uuid;

use crate::cups::service;
use crate::entity::drink_order;
use crate::error::Error;
use crate::graphql::loaders::grouped;
use crate::state::AppState;

/// Drinks of cup sessions, by session id, oldest first.
pub struct DrinksLoader(pub AppState);

impl Loader<Uuid> for DrinksLoader {
    type Value = Vec<drink_order::Model>;
    type Error = Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Error> {
        let rows = service::drinks_of(&self.0, keys).await?;
        Ok(grouped(keys, rows, |row| row.session_id))
    }
}
