//! Limits on documents: depth, complexity, directives (async-graphql's own), aliases and fragment
//! expansion (ours), so a single request cannot make the server do unbounded work.

use std::collections::HashMap;

use async_graphql::parser::Positioned;
use async_graphql::parser::types::{Directive, ExecutableDocument, Selection, SelectionSet};
use async_graphql::{ServerError, ServerResult};
use async_graphql_value::{ConstValue, Name, Value};

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
    /// Most mutations running to their end at once over HTTP.
    pub max_running_mutations: usize,
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
            max_running_mutations: 1024,
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
            max_running_mutations: config.max_running_mutations,
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
    /// A spread names a fragment the document does not define (the engine would still expand the
    /// rest of the chain at every use before it refused the document).
    Unknown,
    /// A fragment no operation spreads (the engine walks every definition, used or not, and
    /// follows chains of them without a depth limit before it refuses the document).
    Unused,
    /// An operation declares more than [`MAX_VARIABLES`] variables (the engine matches each use
    /// of a variable against the list of definitions).
    TooManyVariables,
    /// Fields and fragment spreads nest deeper than [`MAX_NESTING`] (the parser bounds fields
    /// alone; a chain of fragments that each spread the next is flat text).
    TooDeep,
}

/// Deeper nesting of fields and fragment spreads than this is refused before the engine walks it
/// (the engine's own limit on depth is far below it).
pub const MAX_NESTING: usize = 128;

/// Most variables one operation may declare (an app's documents declare a handful).
pub const MAX_VARIABLES: usize = 256;

/// How many expanded nodes (fields, their argument values and directives, directives on fragments)
/// a document may ask for per unit of the complexity limit: the engine's complexity and depth
/// passes visit each of them once per expansion, while its complexity counts fields alone.
pub const NODES_PER_COMPLEXITY: usize = 4;

/// How big a document is: what it asks for once its fragment spreads are expanded, and how many
/// nodes its parsed form holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size {
    /// Its fields, with their argument values and directives, with every spread expanded.
    pub expansion: Expansion,
    /// Everything its parsed form holds, as written (each definition once, used or not): selections,
    /// argument values, directives, variable definitions. What keeping the parsed document costs.
    pub nodes: usize,
}

/// The size of `document`, each fragment's size and height worked out once. The engine's depth and
/// complexity passes expand spreads anew at every use, so a 2 KB document of fragments that each
/// spread the previous one ten times would hold a worker thread for ever; refusing it needs this
/// count before the engine sees the document.
pub fn size(document: &ExecutableDocument) -> Size {
    let mut walk = Walk {
        document,
        fragments: HashMap::new(),
    };
    let mut total = 0usize;
    let mut expansion = None;
    for (_, operation) in document.operations.iter() {
        if operation.node.variable_definitions.len() > MAX_VARIABLES {
            expansion = Some(Expansion::TooManyVariables);
            break;
        }
        match walk.set(&operation.node.selection_set.node, 0) {
            Ok(shape) => total = total.saturating_add(shape.fields),
            Err(refused) => {
                expansion = Some(refused);
                break;
            }
        }
    }
    if expansion.is_none() && walk.fragments.len() < document.fragments.len() {
        expansion = Some(Expansion::Unused);
    }
    let operations: usize = document
        .operations
        .iter()
        .map(|(_, operation)| {
            let operation = &operation.node;
            let variables: usize = operation
                .variable_definitions
                .iter()
                .map(|variable| {
                    1 + variable
                        .node
                        .default_value
                        .as_ref()
                        .map_or(0, |value| const_nodes(&value.node))
                        + directive_nodes(&variable.node.directives)
                })
                .sum();
            variables
                + directive_nodes(&operation.directives)
                + set_nodes(&operation.selection_set.node)
        })
        .sum();
    let fragments: usize = document
        .fragments
        .values()
        .map(|fragment| {
            1 + directive_nodes(&fragment.node.directives)
                + set_nodes(&fragment.node.selection_set.node)
        })
        .sum();
    Size {
        expansion: expansion.unwrap_or(Expansion::Fields(total)),
        nodes: operations.saturating_add(fragments),
    }
}

/// Refuses documents that expand to more than [`NODES_PER_COMPLEXITY`] times `max_complexity`
/// fields, argument values and directives, whose fragments spread themselves, an unknown fragment
/// or are left unused, that nest too deep, or that declare too many variables.
pub fn check_expansion(expansion: Expansion, max_complexity: usize) -> ServerResult<()> {
    let max = max_complexity.saturating_mul(NODES_PER_COMPLEXITY);
    let message = match expansion {
        Expansion::Fields(nodes) if nodes <= max => return Ok(()),
        Expansion::Fields(nodes) => format!(
            "the document expands to {nodes} fields, arguments and directives once its fragments \
             are spread; at most {max} are allowed"
        ),
        Expansion::Cycle => "a fragment of the document spreads itself".to_owned(),
        Expansion::Unknown => "the document spreads a fragment it does not define".to_owned(),
        Expansion::Unused => "the document defines a fragment no operation spreads".to_owned(),
        Expansion::TooManyVariables => {
            format!("an operation declares more than {MAX_VARIABLES} variables")
        }
        Expansion::TooDeep => {
            format!("the document's fields and fragments are nested more than {MAX_NESTING} deep")
        }
    };
    Err(ServerError::new(message, None))
}

/// The fields (with their argument values and directives) a selection set asks for with its spreads
/// expanded, and how deep its fields and spreads nest.
#[derive(Clone, Copy)]
struct Shape {
    fields: usize,
    height: usize,
}

/// A walk over a document's selections, with the shape of each fragment met so far (`None` while
/// it is being walked, so that a spread of it from inside itself is a cycle).
struct Walk<'a> {
    document: &'a ExecutableDocument,
    fragments: HashMap<&'a str, Option<Shape>>,
}

impl<'a> Walk<'a> {
    /// `set`'s shape, met at `depth`; refused when anything under it would nest past
    /// [`MAX_NESTING`] (a fragment's height is kept with its size, so meeting a walked fragment
    /// deep down counts its whole height).
    fn set(&mut self, set: &'a SelectionSet, depth: usize) -> Result<Shape, Expansion> {
        if depth > MAX_NESTING {
            return Err(Expansion::TooDeep);
        }
        let mut shape = Shape {
            fields: 0,
            height: 0,
        };
        for selection in &set.items {
            let (fields, below) = match &selection.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    let inner = self.set(&field.selection_set.node, depth + 1)?;
                    let own =
                        1 + argument_nodes(&field.arguments) + directive_nodes(&field.directives);
                    (inner.fields.saturating_add(own), inner.height)
                }
                Selection::InlineFragment(fragment) => {
                    let inner = self.set(&fragment.node.selection_set.node, depth + 1)?;
                    let own = directive_nodes(&fragment.node.directives);
                    (inner.fields.saturating_add(own), inner.height)
                }
                Selection::FragmentSpread(spread) => {
                    let inner =
                        self.fragment(spread.node.fragment_name.node.as_str(), depth + 1)?;
                    let own = directive_nodes(&spread.node.directives);
                    (inner.fields.saturating_add(own), inner.height)
                }
            };
            shape.fields = shape.fields.saturating_add(fields);
            shape.height = shape.height.max(below + 1);
        }
        Ok(shape)
    }

    fn fragment(&mut self, name: &'a str, depth: usize) -> Result<Shape, Expansion> {
        match self.fragments.get(name) {
            Some(Some(shape)) if depth + shape.height > MAX_NESTING => Err(Expansion::TooDeep),
            Some(Some(shape)) => Ok(*shape),
            Some(None) => Err(Expansion::Cycle),
            None => {
                let fragment = self
                    .document
                    .fragments
                    .get(name)
                    .ok_or(Expansion::Unknown)?;
                self.fragments.insert(name, None);
                let shape = self.set(&fragment.node.selection_set.node, depth)?;
                self.fragments.insert(name, Some(shape));
                Ok(shape)
            }
        }
    }
}

/// The nodes of a selection set as written: each selection, argument value and directive.
fn set_nodes(set: &SelectionSet) -> usize {
    set.items
        .iter()
        .map(|selection| {
            1 + match &selection.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    argument_nodes(&field.arguments)
                        + directive_nodes(&field.directives)
                        + set_nodes(&field.selection_set.node)
                }
                Selection::InlineFragment(fragment) => {
                    directive_nodes(&fragment.node.directives)
                        + set_nodes(&fragment.node.selection_set.node)
                }
                Selection::FragmentSpread(spread) => directive_nodes(&spread.node.directives),
            }
        })
        .sum()
}

fn argument_nodes(arguments: &[(Positioned<Name>, Positioned<Value>)]) -> usize {
    arguments
        .iter()
        .map(|(_, value)| value_nodes(&value.node))
        .sum()
}

fn directive_nodes(directives: &[Positioned<Directive>]) -> usize {
    directives
        .iter()
        .map(|directive| 1 + argument_nodes(&directive.node.arguments))
        .sum()
}

/// The values in an argument's value (a list or object counts with its items).
fn value_nodes(value: &Value) -> usize {
    1 + match value {
        Value::List(items) => items.iter().map(value_nodes).sum(),
        Value::Object(fields) => fields.values().map(value_nodes).sum(),
        _ => 0,
    }
}

/// The values in a variable's default value.
fn const_nodes(value: &ConstValue) -> usize {
    1 + match value {
        ConstValue::List(items) => items.iter().map(const_nodes).sum(),
        ConstValue::Object(fields) => fields.values().map(const_nodes).sum(),
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
        // a, its 5 values, two spreads; the fragment and b once.
        assert_eq!(size(&document).nodes, 10);
        // Expanded, a and its values count once, b twice.
        assert_eq!(size(&document).expansion, Expansion::Fields(8));
        // Unused fragments count too (and are refused).
        let unused =
            parse_query("{ a } fragment U on Query { a a a } fragment C on Query { ...C b b }")
                .expect("parses");
        assert_eq!(size(&unused).nodes, 1 + 4 + 4);
        assert_eq!(size(&unused).expansion, Expansion::Unused);
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
        assert_eq!(expansion_of("{ ...Nowhere }"), Expansion::Unknown);
        // A long unused chain is refused without being walked.
        let mut unused = String::from("{ a } fragment F0 on Query { a }");
        for level in 1..=1000 {
            unused.push_str(&format!(
                " fragment F{level} on Query {{ ...F{} }}",
                level - 1
            ));
        }
        assert_eq!(expansion_of(&unused), Expansion::Unused);
        let variables: String = (0..=MAX_VARIABLES)
            .map(|n| format!("$v{n}: Int "))
            .collect();
        assert_eq!(
            expansion_of(&format!("query({variables}) {{ a }}")),
            Expansion::TooManyVariables
        );
        // A chain that ends in an unknown fragment is refused, however few fields it names.
        let mut unknown = String::from("query { ...F25 } fragment F0 on Query { ...Nowhere }");
        for level in 1..=25 {
            let spreads = format!("...F{} ", level - 1).repeat(10);
            unknown.push_str(&format!(" fragment F{level} on Query {{ {spreads}}}"));
        }
        assert_eq!(expansion_of(&unknown), Expansion::Unknown);
        // Spreading the chain's links in order never walks deeper than one link, yet the last one
        // nests the whole chain.
        let links = 3 * MAX_NESTING;
        let spreads: String = (0..links)
            .step_by(MAX_NESTING / 2)
            .map(|n| format!("...F{n} "))
            .collect();
        let mut ordered = format!("{{ {spreads}}} fragment F0 on Query {{ a }}");
        for level in 1..links {
            ordered.push_str(&format!(
                " fragment F{level} on Query {{ ...F{} }}",
                level - 1
            ));
        }
        assert_eq!(expansion_of(&ordered), Expansion::TooDeep);
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
