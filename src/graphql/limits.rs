//! Limits on documents: depth, complexity, directives (async-graphql's own), aliases and fragment
//! expansion (ours), so a single request cannot make the server do unbounded work.

use std::collections::HashMap;

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{ServerError, ServerResult};
use async_graphql_value::Value;

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

/// What a document asks for once every fragment spread is expanded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expansion {
    /// This many fields (saturating at `usize::MAX`).
    Fields(usize),
    /// A fragment spreads itself, directly or through others.
    Cycle,
    /// Fields and fragment spreads nest deeper than [`MAX_NESTING`] (the parser bounds fields
    /// alone; a chain of fragments that each spread the next is flat text).
    TooDeep,
}

/// Deeper nesting of fields and fragment spreads than this is refused before it is walked (the
/// engine's own limit on depth is far below it).
pub const MAX_NESTING: usize = 128;

/// How big a document is: what it asks for once its fragment spreads are expanded, and how many
/// nodes its parsed form holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size {
    /// Its fields with every spread expanded.
    pub expansion: Expansion,
    /// Its fields, fragment spreads and argument values as written (each fragment once), up to the
    /// point a refused expansion stopped the walk: what keeping the parsed document costs.
    pub nodes: usize,
}

/// The size of `document`, each fragment's size worked out once. The engine's depth and complexity
/// passes expand spreads anew at every use, so a 2 KB document of fragments that each spread the
/// previous one ten times would hold a worker thread for ever; refusing it needs this count before
/// the engine sees the document.
pub fn size(document: &ExecutableDocument) -> Size {
    let mut walk = Walk {
        document,
        sizes: HashMap::new(),
        nodes: 0,
    };
    let mut total = 0usize;
    for (_, operation) in document.operations.iter() {
        match walk.fields(&operation.node.selection_set.node, 0) {
            Ok(fields) => total = total.saturating_add(fields),
            Err(refused) => {
                return Size {
                    expansion: refused,
                    nodes: walk.nodes,
                };
            }
        }
    }
    Size {
        expansion: Expansion::Fields(total),
        nodes: walk.nodes,
    }
}

/// Refuses documents that expand to more fields than `max`, or whose fragments spread themselves.
pub fn check_expansion(expansion: Expansion, max: usize) -> ServerResult<()> {
    let message = match expansion {
        Expansion::Fields(fields) if fields <= max => return Ok(()),
        Expansion::Fields(fields) => {
            format!("the document's fragments expand to {fields} fields; at most {max} are allowed")
        }
        Expansion::Cycle => "a fragment of the document spreads itself".to_owned(),
        Expansion::TooDeep => {
            format!("the document's fields and fragments are nested more than {MAX_NESTING} deep")
        }
    };
    Err(ServerError::new(message, None))
}

/// A walk over a document's selections, with the size of each fragment met so far (`None` while
/// it is being walked, so that a spread of it from inside itself is a cycle).
struct Walk<'a> {
    document: &'a ExecutableDocument,
    sizes: HashMap<&'a str, Option<usize>>,
    nodes: usize,
}

impl<'a> Walk<'a> {
    fn fields(&mut self, set: &'a SelectionSet, depth: usize) -> Result<usize, Expansion> {
        if depth > MAX_NESTING {
            return Err(Expansion::TooDeep);
        }
        let mut total = 0usize;
        for selection in &set.items {
            self.nodes += 1;
            let fields = match &selection.node {
                Selection::Field(field) => {
                    for (_, value) in &field.node.arguments {
                        self.nodes += value_nodes(&value.node);
                    }
                    1usize.saturating_add(self.fields(&field.node.selection_set.node, depth + 1)?)
                }
                Selection::InlineFragment(fragment) => {
                    self.fields(&fragment.node.selection_set.node, depth + 1)?
                }
                Selection::FragmentSpread(spread) => {
                    self.fragment(spread.node.fragment_name.node.as_str(), depth + 1)?
                }
            };
            total = total.saturating_add(fields);
        }
        Ok(total)
    }

    fn fragment(&mut self, name: &'a str, depth: usize) -> Result<usize, Expansion> {
        match self.sizes.get(name) {
            Some(Some(size)) => return Ok(*size),
            Some(None) => return Err(Expansion::Cycle),
            None => {}
        }
        // An unknown fragment is the engine's to report.
        let Some(fragment) = self.document.fragments.get(name) else {
            return Ok(0);
        };
        self.sizes.insert(name, None);
        let size = self.fields(&fragment.node.selection_set.node, depth)?;
        self.sizes.insert(name, Some(size));
        Ok(size)
    }
}

/// The values in an argument's value (a list or object counts with its items).
fn value_nodes(value: &Value) -> usize {
    1 + match value {
        Value::List(items) => items.iter().map(value_nodes).sum(),
        Value::Object(fields) => fields.values().map(value_nodes).sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;

    use super::*;

    fn expansion_of(query: &str) -> Expansion {
        size(&parse_query(query).expect("parses")).expansion
    }

    #[test]
    fn nodes_count_what_the_parsed_document_holds() {
        let document = parse_query("{ a(x: [1, 2, {y: 3}]) ...F ...F } fragment F on Query { b }")
            .expect("parses");
        // a, its 5 values, two spreads, and b once.
        assert_eq!(size(&document).nodes, 9);
    }

    #[test]
    fn fragments_count_once_per_spread_and_are_walked_once() {
        assert_eq!(
            expansion_of("{ a b { c } ... on Query { d } }"),
            Expansion::Fields(4)
        );
        assert_eq!(
            expansion_of("{ ...F ...F } fragment F on Query { a b }"),
            Expansion::Fields(4)
        );
        // 10 spreads of the previous fragment, 25 levels deep: 10^25 fields, counted in 26 steps.
        let mut document = String::from("query { ...F25 } fragment F0 on Query { a }");
        for level in 1..=25 {
            let spreads = format!("...F{} ", level - 1).repeat(10);
            document.push_str(&format!(" fragment F{level} on Query {{ {spreads}}}"));
        }
        assert_eq!(expansion_of(&document), Expansion::Fields(usize::MAX));
    }

    #[test]
    fn cycles_and_deep_nesting_are_named() {
        assert_eq!(
            expansion_of("{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }"),
            Expansion::Cycle
        );
        assert_eq!(expansion_of("{ ...Nowhere }"), Expansion::Fields(0));
        // The parser bounds the nesting of fields; a chain of fragments is flat text.
        let mut chain = format!("{{ ...F{} }} fragment F0 on Query {{ a }}", MAX_NESTING + 1);
        for level in 1..=MAX_NESTING + 1 {
            chain.push_str(&format!(
                " fragment F{level} on Query {{ ...F{} }}",
                level - 1
            ));
        }
        assert_eq!(expansion_of(&chain), Expansion::TooDeep);
    }
}
