//! DataLoaders, one per kind of lookup, registered in [`register`]. They are app-wide (schema data,
//! no cache): every lookup made within the same millisecond, by any request or subscriber, is batched
//! into one query. That keeps lists free of N+1 queries and makes a pushed change cost one query per
//! instance, not one per subscriber.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{Context, SchemaBuilder};
use uuid::Uuid;

use crate::entity::{blur_round, drink_order, event, event_staff, game, game_player, user};
use crate::error::Error;
use crate::state::AppState;
use crate::{accounts, cups, events, games};

/// Users by id.
pub struct UserLoader(AppState);

impl Loader<Uuid> for UserLoader {
    type Value = user::Model;
    type Error = Arc<async_graphql::Error>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, user::Model>, Self::Error> {
        let users = accounts::service::find_many(&self.0, keys)
            .await
            .map_err(|e| Arc::new(async_graphql::Error::from(e)))?;
        Ok(users.into_iter().map(|user| (user.id, user)).collect())
    }
}

/// Events by id.
pub struct EventLoader(AppState);

impl Loader<Uuid> for EventLoader {
    type Value = event::Model;
    type Error = Arc<async_graphql::Error>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, event::Model>, Self::Error> {
        let found = events::service::find_many(&self.0, keys)
            .await
            .map_err(|e| Arc::new(async_graphql::Error::from(e)))?;
        Ok(found.into_iter().map(|event| (event.id, event)).collect())
    }
}

/// Drinks of cup sessions, by session id, oldest first.
pub struct DrinksLoader(AppState);

impl Loader<Uuid> for DrinksLoader {
    type Value = Vec<drink_order::Model>;
    type Error = Arc<async_graphql::Error>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = cups::service::drinks_of(&self.0, keys)
            .await
            .map_err(|e| Arc::new(async_graphql::Error::from(e)))?;
        let mut by_session: HashMap<Uuid, Self::Value> =
            keys.iter().map(|k| (*k, Vec::new())).collect();
        for row in rows {
            by_session.entry(row.session_id).or_default().push(row);
        }
        Ok(by_session)
    }
}

/// Groups rows by a key, with an empty list for every asked key.
fn group<K: std::hash::Hash + Eq + Copy, V>(
    keys: &[K],
    rows: Vec<V>,
    key: impl Fn(&V) -> K,
) -> HashMap<K, Vec<V>> {
    let mut grouped: HashMap<K, Vec<V>> = keys.iter().map(|k| (*k, Vec::new())).collect();
    for row in rows {
        grouped.entry(key(&row)).or_default().push(row);
    }
    grouped
}

/// Games of events, by event id.
pub struct GamesLoader(AppState);

impl Loader<Uuid> for GamesLoader {
    type Value = Vec<game::Model>;
    type Error = Arc<async_graphql::Error>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = games::service::for_events(&self.0, keys)
            .await
            .map_err(|e| Arc::new(async_graphql::Error::from(e)))?;
        Ok(group(keys, rows, |g| g.event_id))
    }
}

/// Players of games, by game id.
pub struct PlayersLoader(AppState);

impl Loader<Uuid> for PlayersLoader {
    type Value = Vec<game_player::Model>;
    type Error = Arc<async_graphql::Error>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = games::service::players_of(&self.0, keys)
            .await
            .map_err(|e| Arc::new(async_graphql::Error::from(e)))?;
        Ok(group(keys, rows, |p| p.game_id))
    }
}

/// Blur rounds of games, by game id, newest first.
pub struct RoundsLoader(AppState);

impl Loader<Uuid> for RoundsLoader {
    type Value = Vec<blur_round::Model>;
    type Error = Arc<async_graphql::Error>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = games::service::rounds_of(&self.0, keys)
            .await
            .map_err(|e| Arc::new(async_graphql::Error::from(e)))?;
        Ok(group(keys, rows, |r| r.game_id))
    }
}

/// Staff of events, by event id.
pub struct StaffLoader(AppState);

impl Loader<Uuid> for StaffLoader {
    type Value = Vec<event_staff::Model>;
    type Error = Arc<async_graphql::Error>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = events::service::staff_of(&self.0, keys)
            .await
            .map_err(|e| Arc::new(async_graphql::Error::from(e)))?;
        let mut by_event: HashMap<Uuid, Self::Value> =
            keys.iter().map(|k| (*k, Vec::new())).collect();
        for row in rows {
            by_event.entry(row.event_id).or_default().push(row);
        }
        Ok(by_event)
    }
}

/// Whether (event, user) is a like.
pub struct LikeLoader(AppState);

impl Loader<(Uuid, Uuid)> for LikeLoader {
    type Value = bool;
    type Error = Arc<async_graphql::Error>;

    async fn load(
        &self,
        keys: &[(Uuid, Uuid)],
    ) -> Result<HashMap<(Uuid, Uuid), bool>, Self::Error> {
        let liked = events::service::likes_among(&self.0, keys)
            .await
            .map_err(|e| Arc::new(async_graphql::Error::from(e)))?;
        Ok(keys.iter().map(|key| (*key, liked.contains(key))).collect())
    }
}

/// An app-wide loader that batches like JavaScript's DataLoader: no timed window; the batch task
/// first yields to the back of the runtime's queue, so it takes every key that the requests ready
/// to run meanwhile ask for. Under load that is many requests' keys in one query; when idle a lookup
/// waits for nothing. (A timed window, async-graphql's default 1 ms, made each of the two hops of
/// `event(id) { organizer }` wait a whole millisecond.)
fn app_wide<T: Send + Sync + 'static>(loader: T) -> DataLoader<T> {
    DataLoader::new(loader, |batch| {
        tokio::spawn(async move {
            tokio::task::yield_now().await;
            batch.await;
        })
    })
    .delay(std::time::Duration::ZERO)
}

/// Adds every loader to the schema.
pub fn register<Q, M, S>(
    builder: SchemaBuilder<Q, M, S>,
    state: &AppState,
) -> SchemaBuilder<Q, M, S> {
    builder
        .data(app_wide(UserLoader(state.clone())))
        .data(app_wide(StaffLoader(state.clone())))
        .data(app_wide(LikeLoader(state.clone())))
        .data(app_wide(EventLoader(state.clone())))
        .data(app_wide(DrinksLoader(state.clone())))
        .data(app_wide(GamesLoader(state.clone())))
        .data(app_wide(PlayersLoader(state.clone())))
        .data(app_wide(RoundsLoader(state.clone())))
}

/// The loader `T` from the context.
pub fn loader<'a, T: Send + Sync + 'static>(
    ctx: &'a Context<'_>,
) -> Result<&'a DataLoader<T>, Error> {
    ctx.data::<DataLoader<T>>()
        .map_err(|_| Error::internal(anyhow::anyhow!("a DataLoader is not registered")))
}

/// Maps a loader's shared error back into a GraphQL error.
pub fn loader_error(err: Arc<async_graphql::Error>) -> async_graphql::Error {
    (*err).clone()
}
