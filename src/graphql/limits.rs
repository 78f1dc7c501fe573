//! Limits on documents: depth, complexity, directives (async-graphql's own) and aliases (ours), so a
//! single request cannot make the server do unbounded work.

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{ServerError, ServerResult};

use crate::config::Config;

/// The configured limits.
#[derive(Clone, Copy, Debug)]
pub struct QueryLimits {
    /// Deepest nesting.
    pub max_depth: usize,
    /// Highest complexity.
    pub max_complexity: usize,
    /// Most aliases in a document.
    pub max_aliases: usize,
    /// Most directives on one field.
    pub max_directives: usize,
    /// Whether introspection is served.
    pub introspection: bool,
    /// Most distinct operation names labelled in the metrics.
    pub metrics_max_operations: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            max_depth: 12,
            max_complexity: 5_000,
            max_aliases: 50,
            max_directives: 8,
            introspection: true,
            metrics_max_operations: 100,
        }
    }
}

impl QueryLimits {
    /// The limits from the configuration.
    pub fn from_config(config: &Config) -> Self {
        Self {
            max_depth: config.query_max_depth,
            max_complexity: config.query_max_complexity,
            max_aliases: config.query_max_aliases,
            introspection: config.introspection_enabled(),
            metrics_max_operations: config.metrics_max_operations,
            ..Self::default()
        }
    }
}

/// Refuses documents with more than `max` aliased fields (alias batching multiplies work, e.g. many
/// `login` attempts in one request).
pub fn check_aliases(aliases: usize, max: usize) -> ServerResult<()> {
    if aliases > max {
        return Err(ServerError::new(
            format!("the document has {aliases} aliases; at most {max} are allowed"),
            None,
        ));
    }
    Ok(())
}

/// The aliased fields of `document`, its operations and fragments.
pub fn aliases(document: &ExecutableDocument) -> usize {
    let operations: usize = document
        .operations
        .iter()
        .map(|(_, operation)| count_aliases(&operation.node.selection_set.node))
        .sum();
    let fragments: usize = document
        .fragments
        .values()
        .map(|fragment| count_aliases(&fragment.node.selection_set.node))
        .sum();
    operations + fragments
}

fn count_aliases(set: &SelectionSet) -> usize {
    set.items
        .iter()
        .map(|selection| match &selection.node {
            Selection::Field(field) => {
                usize::from(field.node.alias.is_some())
                    + count_aliases(&field.node.selection_set.node)
            }
            Selection::InlineFragment(fragment) => count_aliases(&fragment.node.selection_set.node),
            Selection::FragmentSpread(_) => 0,
        })
        .sum()
}
