//! The GraphQL schema: one root per domain merged here, the limits every document must pass, and the
//! builder shared by the server and `rally schema` (so `schema.graphql` is exactly what is served).

mod context;
pub mod ids;
mod limits;
pub mod loaders;
pub mod pagination;
mod telemetry;
pub mod ws;

use async_graphql::{MergedObject, MergedSubscription, Schema, SchemaBuilder};

pub use context::ContextExt;
pub use limits::{AliasLimit, QueryLimits};
pub use telemetry::OperationMetrics;

use crate::accounts::graphql::{AccountsMutation, AccountsQuery};
use crate::cups::graphql::{CupsMutation, CupsQuery, CupsSubscription};
use crate::events::graphql::{EventsMutation, EventsQuery, EventsSubscription};
use crate::games::graphql::{GamesMutation, GamesQuery, GamesSubscription};
use crate::state::AppState;

/// Every query root, merged.
#[derive(MergedObject, Default)]
pub struct Query(AccountsQuery, EventsQuery, CupsQuery, GamesQuery);

/// Every mutation root, merged.
#[derive(MergedObject, Default)]
pub struct Mutation(
    AccountsMutation,
    EventsMutation,
    CupsMutation,
    GamesMutation,
);

/// Every subscription root, merged.
#[derive(MergedSubscription, Default)]
pub struct Subscription(EventsSubscription, CupsSubscription, GamesSubscription);

/// Rally's schema type.
pub type RallySchema = Schema<Query, Mutation, Subscription>;

/// The schema with its limits, before app-wide data is attached.
pub fn schema_builder(limits: QueryLimits) -> SchemaBuilder<Query, Mutation, Subscription> {
    let builder = Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .limit_depth(limits.max_depth)
    .limit_complexity(limits.max_complexity)
    .limit_recursive_depth(limits.max_depth.max(32))
    .limit_directives(limits.max_directives)
    .extension(AliasLimit(limits.max_aliases))
    .extension(OperationMetrics);
    if limits.introspection {
        builder
    } else {
        builder.disable_introspection()
    }
}

/// The served schema: limits, app state and loaders.
pub fn build(limits: QueryLimits, state: &AppState) -> RallySchema {
    loaders::register(schema_builder(limits).data(state.clone()), state).finish()
}

/// The SDL of the schema, as committed in `schema.graphql` (indented with two spaces, as the API
/// contract is).
pub fn sdl() -> String {
    let sdl = schema_builder(QueryLimits::default()).finish().sdl();
    let mut out = String::with_capacity(sdl.len());
    for line in sdl.lines() {
        let body = line.trim_start_matches('\t');
        out.push_str(&"  ".repeat(line.len() - body.len()));
        out.push_str(body);
        out.push('\n');
    }
    out
}
