//! The GraphQL schema: one root per domain merged here, the limits every document must pass, and the
//! builder shared by the server and `rally schema` (so `schema.graphql` is exactly what is served).

mod context;
mod limits;
pub mod pagination;
mod telemetry;

use async_graphql::{EmptySubscription, MergedObject, Schema, SchemaBuilder};

pub use context::ContextExt;
pub use limits::{AliasLimit, QueryLimits};
pub use telemetry::OperationMetrics;

use crate::accounts::graphql::{AccountsMutation, AccountsQuery};

/// Every query root, merged.
#[derive(MergedObject, Default)]
pub struct Query(AccountsQuery);

/// Every mutation root, merged.
#[derive(MergedObject, Default)]
pub struct Mutation(AccountsMutation);

/// Rally's schema type.
pub type RallySchema = Schema<Query, Mutation, EmptySubscription>;

/// The schema with its limits, before app-wide data is attached.
pub fn schema_builder(limits: QueryLimits) -> SchemaBuilder<Query, Mutation, EmptySubscription> {
    let builder = Schema::build(Query::default(), Mutation::default(), EmptySubscription)
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

/// The SDL of the schema, as committed in `schema.graphql`.
pub fn sdl() -> String {
    schema_builder(QueryLimits::default()).finish().sdl()
}
