//! How Rally's DataLoaders batch, and how resolvers reach them. Each domain defines its own loaders
//! beside its GraphQL types; the assembly registers them all in one place (`schema::register`).
//!
//! Loaders are app-wide (schema data, no cache): every lookup made meanwhile, by any request or
//! subscriber, is batched into one query. That keeps lists free of N+1 queries and makes a pushed
//! change cost one query per instance, not one per subscriber.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use async_graphql::Context;
use async_graphql::dataloader::DataLoader;

use super::ContextExt;
use crate::error::Result;

/// An app-wide loader that batches like JavaScript's DataLoader: no timed window; the batch task
/// first yields to the back of the runtime's queue, so it takes every key that the requests ready
/// to run meanwhile ask for. Under load that is many requests' keys in one query; when idle a lookup
/// waits for nothing. (A timed window, async-graphql's default 1 ms, made each of the two hops of
/// `event(id) { organizer }` wait a whole millisecond.)
/// Shared by the schema and its fast-validating twin, so their requests batch together.
pub fn app_wide<T: Send + Sync + 'static>(loader: T) -> Arc<DataLoader<T>> {
    Arc::new(
        DataLoader::new(loader, |batch| {
            tokio::spawn(async move {
                tokio::task::yield_now().await;
                batch.await;
            })
        })
        .delay(std::time::Duration::ZERO),
    )
}

/// The loader `T` from the context.
pub fn loader<'a, T: Send + Sync + 'static>(ctx: &'a Context<'_>) -> Result<&'a DataLoader<T>> {
    ctx.registered::<Arc<DataLoader<T>>>().map(Arc::as_ref)
}

/// Rows keyed by one of their fields.
pub fn by_key<K: Hash + Eq, V>(rows: Vec<V>, key: impl Fn(&V) -> K) -> HashMap<K, V> {
    rows.into_iter().map(|row| (key(&row), row)).collect()
}

/// Rows grouped by a key, with an empty list for every asked key.
pub fn grouped<K: Hash + Eq + Copy, V>(
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
