//! Null propagation as the GraphQL spec says it, which the engine does not do by itself.
//!
//! async-graphql 7 lists a field's error and then drops the field's key from its parent object,
//! whatever the field's nullability (`resolver_utils::container::do_resolve_container`). The spec
//! ("Handling Field Errors") wants the key kept: a nullable field that fails is `null`; a non-null
//! field that fails makes its parent `null`, and so on up to the nearest nullable ancestor (or
//! `data: null`). Apollo Client's cache treats a missing key as a broken response.
//!
//! [`Shapes`] fixes a finished response from its errors alone, so the engine runs without a
//! per-field hook (an extension's `resolve` hook costs every field of every request, failed or
//! not). Each error's path is walked through the executed document (aliases, fragments and inline
//! fragments included) and the schema's field types, which say for every step of the path whether
//! the value there may be null (the engine's `null` for an object whose every field failed is made
//! an object again first); the nearest nullable ancestor-or-self is set to `null`, with the
//! key written even where the engine left it out; with none, `data` is null. A response without
//! errors costs nothing.

use std::collections::HashMap;

use async_graphql::parser::types::{
    BaseType, DocumentOperations, ExecutableDocument, OperationDefinition, OperationType,
    Selection, SelectionSet, Type, TypeKind, TypeSystemDefinition,
};
use async_graphql::{Name, PathSegment, Response, Value};

/// Deepest fragment nesting followed while matching a path (validation refuses cycles; this bounds
/// the walk anyway).
const MAX_FRAGMENT_DEPTH: usize = 64;

/// Every field's declared type, by parent type and field name, read from the schema's SDL.
pub struct Shapes {
    fields: HashMap<String, HashMap<String, Type>>,
    roots: [String; 3],
}

/// A field of the document that a response key names, with the type it was selected on.
struct Selected<'a> {
    parent: &'a str,
    field: &'a async_graphql::parser::types::Field,
}

impl Shapes {
    /// The field types of the schema printed as `sdl`.
    pub fn of_sdl(sdl: &str) -> Self {
        let mut fields = HashMap::new();
        let mut roots = [
            "Query".to_owned(),
            "Mutation".to_owned(),
            "Subscription".to_owned(),
        ];
        let parsed = async_graphql::parser::parse_schema(sdl);
        if let Err(err) = &parsed {
            tracing::error!(error = %err, "the schema's SDL does not parse: failed fields will be null where they fail");
        }
        if let Ok(document) = parsed {
            for definition in document.definitions {
                match definition {
                    TypeSystemDefinition::Type(ty) => {
                        let ty = ty.node;
                        let declared = match ty.kind {
                            TypeKind::Object(object) => object.fields,
                            TypeKind::Interface(interface) => interface.fields,
                            _ => continue,
                        };
                        let by_name = declared
                            .into_iter()
                            .map(|field| (field.node.name.node.to_string(), field.node.ty.node))
                            .collect();
                        fields.insert(ty.name.node.to_string(), by_name);
                    }
                    TypeSystemDefinition::Schema(schema) => {
                        let schema = schema.node;
                        for (slot, root) in roots.iter_mut().zip([
                            schema.query,
                            schema.mutation,
                            schema.subscription,
                        ]) {
                            if let Some(name) = root {
                                *slot = name.node.to_string();
                            }
                        }
                    }
                    TypeSystemDefinition::Directive(_) => {}
                }
            }
        }
        Self { fields, roots }
    }

    /// Nulls the nearest nullable ancestor-or-self of every error's path in `response` (see the
    /// module docs). `document` and `operation_name` are what was executed.
    pub fn propagate(
        &self,
        document: &ExecutableDocument,
        operation_name: Option<&str>,
        response: &mut Response,
    ) {
        if response.errors.iter().all(|error| error.path.is_empty()) {
            return;
        }
        let Some(operation) = operation(document, operation_name) else {
            return;
        };
        // The engine leaves `null` for an object whose every selected field failed (and for `data`
        // when every root field did). Resolution went inside it, so it was an object: it becomes
        // one again before the failures are placed, each where the spec puts it.
        for error in &response.errors {
            revive(&mut response.data, &error.path);
        }
        for error in &response.errors {
            if error.path.is_empty() {
                continue;
            }
            let nullable = self.nullability(document, operation, &error.path);
            let mut nulled = false;
            for end in (1..=error.path.len()).rev() {
                if !nullable.get(end - 1).copied().unwrap_or(true) {
                    continue;
                }
                match set_null(&mut response.data, &error.path[..end]) {
                    Outcome::Written | Outcome::UnderNull => {
                        nulled = true;
                        break;
                    }
                    // An ancestor's key is missing (the engine dropped it whole): go further up.
                    Outcome::Missing => {}
                }
            }
            if !nulled {
                response.data = Value::Null;
            }
        }
    }

    /// Whether the value at each prefix of `path` may be null (entry `i` is for `path[..=i]`). The
    /// list is shorter than the path where the document or the schema does not say (introspection
    /// types): those steps count as nullable.
    fn nullability(
        &self,
        document: &ExecutableDocument,
        operation: &OperationDefinition,
        path: &[PathSegment],
    ) -> Vec<bool> {
        let root = match operation.ty {
            OperationType::Query => &self.roots[0],
            OperationType::Mutation => &self.roots[1],
            OperationType::Subscription => &self.roots[2],
        };
        let mut nullable = Vec::with_capacity(path.len());
        let mut sets: Vec<(&str, &SelectionSet)> =
            vec![(root.as_str(), &operation.selection_set.node)];
        let mut current: Option<&Type> = None;
        for segment in path {
            match segment {
                PathSegment::Field(key) => {
                    let mut found = Vec::new();
                    for (parent, set) in &sets {
                        collect(document, parent, set, key, 0, &mut found);
                    }
                    let Some(first) = found.first() else { break };
                    let Some(ty) = self.field_type(first) else {
                        break;
                    };
                    nullable.push(ty.nullable);
                    let named = named(ty);
                    sets = found
                        .iter()
                        .map(|selected| (named, &selected.field.selection_set.node))
                        .collect();
                    current = Some(ty);
                }
                PathSegment::Index(_) => {
                    let Some(BaseType::List(item)) = current.map(|ty| &ty.base) else {
                        break;
                    };
                    nullable.push(item.nullable);
                    current = Some(item);
                }
            }
        }
        nullable
    }

    fn field_type<'s>(&'s self, selected: &Selected<'_>) -> Option<&'s Type> {
        static TYPENAME: std::sync::OnceLock<Type> = std::sync::OnceLock::new();
        let name = selected.field.name.node.as_str();
        if name == "__typename" {
            return Some(TYPENAME.get_or_init(|| Type {
                base: BaseType::Named(Name::new("String")),
                nullable: false,
            }));
        }
        self.fields.get(selected.parent)?.get(name)
    }
}

/// The operation the engine runs for `name` (its own rule: the named one, or the only one).
pub fn operation<'d>(
    document: &'d ExecutableDocument,
    name: Option<&str>,
) -> Option<&'d OperationDefinition> {
    match (&document.operations, name) {
        (DocumentOperations::Single(operation), None) => Some(&operation.node),
        (DocumentOperations::Multiple(operations), Some(name)) => {
            operations.get(name).map(|operation| &operation.node)
        }
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => {
            operations.values().next().map(|operation| &operation.node)
        }
        _ => None,
    }
}

/// The named type under a type's list and non-null wrappers.
fn named(ty: &Type) -> &str {
    match &ty.base {
        BaseType::Named(name) => name.as_str(),
        BaseType::List(item) => named(item),
    }
}

/// The fields of `set` (through its fragments) whose response key is `key`.
fn collect<'a>(
    document: &'a ExecutableDocument,
    parent: &'a str,
    set: &'a SelectionSet,
    key: &str,
    depth: usize,
    found: &mut Vec<Selected<'a>>,
) {
    if depth > MAX_FRAGMENT_DEPTH {
        return;
    }
    for selection in &set.items {
        match &selection.node {
            Selection::Field(field) => {
                if field.node.response_key().node.as_str() == key {
                    found.push(Selected {
                        parent,
                        field: &field.node,
                    });
                }
            }
            Selection::InlineFragment(fragment) => {
                let on = fragment
                    .node
                    .type_condition
                    .as_ref()
                    .map_or(parent, |condition| condition.node.on.node.as_str());
                collect(
                    document,
                    on,
                    &fragment.node.selection_set.node,
                    key,
                    depth + 1,
                    found,
                );
            }
            Selection::FragmentSpread(spread) => {
                if let Some(fragment) = document.fragments.get(&spread.node.fragment_name.node) {
                    collect(
                        document,
                        fragment.node.type_condition.node.on.node.as_str(),
                        &fragment.node.selection_set.node,
                        key,
                        depth + 1,
                        found,
                    );
                }
            }
        }
    }
}

/// Makes every `null` that the engine left on the way to `path` (not at `path` itself) an empty
/// object again, where the next step is a key.
fn revive(data: &mut Value, path: &[PathSegment]) {
    let mut here = data;
    for segment in path {
        if matches!(here, Value::Null) && matches!(segment, PathSegment::Field(_)) {
            *here = Value::Object(Default::default());
        }
        here = match (segment, here) {
            (PathSegment::Field(key), Value::Object(object)) => {
                match object.get_mut(key.as_str()) {
                    Some(child) => child,
                    None => return,
                }
            }
            (PathSegment::Index(index), Value::List(items)) => match items.get_mut(*index) {
                Some(child) => child,
                None => return,
            },
            _ => return,
        };
    }
}

/// What [`set_null`] did.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The value at the path is now null.
    Written,
    /// An ancestor on the way is already null: nothing to do.
    UnderNull,
    /// An ancestor on the way is missing.
    Missing,
}

/// Sets the value at `path` in `data` to null, writing the key if it is missing.
fn set_null(data: &mut Value, path: &[PathSegment]) -> Outcome {
    let Some((last, parents)) = path.split_last() else {
        *data = Value::Null;
        return Outcome::Written;
    };
    let mut here = data;
    for segment in parents {
        here = match (segment, here) {
            (_, Value::Null) => return Outcome::UnderNull,
            (PathSegment::Field(key), Value::Object(object)) => {
                match object.get_mut(key.as_str()) {
                    Some(child) => child,
                    None => return Outcome::Missing,
                }
            }
            (PathSegment::Index(index), Value::List(items)) => match items.get_mut(*index) {
                Some(child) => child,
                None => return Outcome::Missing,
            },
            _ => return Outcome::Missing,
        };
    }
    match (last, here) {
        (_, Value::Null) => Outcome::UnderNull,
        (PathSegment::Field(key), Value::Object(object)) => {
            object.insert(Name::new(key), Value::Null);
            Outcome::Written
        }
        (PathSegment::Index(index), Value::List(items)) => match items.get_mut(*index) {
            Some(item) => {
                *item = Value::Null;
                Outcome::Written
            }
            None => Outcome::Missing,
        },
        _ => Outcome::Missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::ServerError;
    use async_graphql::parser::parse_query;

    const SDL: &str = "
        type Query { me: User, users: [User!]!, node: Node }
        interface Node { id: ID! }
        type User implements Node { id: ID!, handle: String!, email: String, friends: [User] }
    ";

    fn failed(data: serde_json::Value, query: &str, path: serde_json::Value) -> serde_json::Value {
        let shapes = Shapes::of_sdl(SDL);
        let document = parse_query(query).expect("a document");
        let mut error = ServerError::new("boom", None);
        error.path = serde_json::from_value(path).expect("a path");
        let mut response = Response::new(Value::from_json(data).expect("a value"));
        response.errors.push(error);
        shapes.propagate(&document, None, &mut response);
        response.data.into_json().expect("json")
    }

    #[test]
    fn a_nullable_field_that_failed_is_null_and_keeps_its_key() {
        let data = failed(
            serde_json::json!({ "me": { "handle": "ada" } }),
            "{ me { handle email } }",
            serde_json::json!(["me", "email"]),
        );
        assert_eq!(
            data,
            serde_json::json!({ "me": { "handle": "ada", "email": null } })
        );
    }

    #[test]
    fn a_non_null_failure_nulls_the_nearest_nullable_ancestor_through_aliases_and_fragments() {
        let data = failed(
            serde_json::json!({ "people": [{ "id": "1", "name": "ada" }, { "id": "2" }] }),
            "{ people: users { ...on Node { id } ...F } } fragment F on User { name: handle }",
            serde_json::json!(["people", 1, "name"]),
        );
        // `users` is [User!]!: the item cannot be null, nor the list, and `Query` is the root.
        assert_eq!(data, serde_json::Value::Null);

        let data = failed(
            serde_json::json!({ "me": { "friends": [{ "id": "1" }, { "id": "2" }] } }),
            "{ me { friends { id handle } } }",
            serde_json::json!(["me", "friends", 1, "handle"]),
        );
        assert_eq!(
            data,
            serde_json::json!({ "me": { "friends": [{ "id": "1" }, null] } }),
            "a [User] item is nullable"
        );
    }

    #[test]
    fn an_object_whose_every_field_failed_is_an_object_again() {
        // The engine's answer to `{ me { email } }` when `email` failed: `me` collapsed to null.
        let data = failed(
            serde_json::json!({ "me": null }),
            "{ me { email } }",
            serde_json::json!(["me", "email"]),
        );
        assert_eq!(data, serde_json::json!({ "me": { "email": null } }));
        // ... and when the only root field failed, `data` itself.
        let data = failed(
            serde_json::Value::Null,
            "{ me { handle } }",
            serde_json::json!(["me"]),
        );
        assert_eq!(data, serde_json::json!({ "me": null }));
    }

    #[test]
    fn a_missing_ancestor_moves_the_null_further_up() {
        // The engine dropped `friends` whole; its parent `me` is the nearest nullable one left.
        let data = failed(
            serde_json::json!({ "me": { "id": "1" } }),
            "{ me { id friends { handle } } }",
            serde_json::json!(["me", "friends", 0, "handle"]),
        );
        assert_eq!(
            data,
            serde_json::json!({ "me": { "id": "1", "friends": null } })
        );
    }
}
