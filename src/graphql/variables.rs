//! Variable values checked against the types their operation declares, so that a document with
//! variables need not meet the engine's full validation on every request.
//!
//! Of the engine's validation rules, one depends on the request rather than on the document and the
//! schema: `ArgumentsOfCorrectType`, which checks each argument with the variables' values put in
//! (and skips an argument whose variables the request leaves out, or that belongs to an operation
//! the request does not select: `execution` only counts a document as validated after a request
//! that let it check every argument). Once a document passed every rule that way, what a later
//! request can still get wrong is its variables. The document's `VariablesInAllowedPosition`
//! already holds each variable's declared type to every place it is used, so a value that fits its
//! declared type fits its arguments too; [`InputTypes::accept`] checks that, as the engine checks a
//! value, with the same input types and scalar validators as the engine's registry. The check is
//! cautious: when in doubt (a null given for a variable, a type it does not know) it says "no", and
//! the request meets the full validation, whose errors are the ones clients see.

use async_graphql::parser::types::{BaseType, Type, VariableDefinition};
use async_graphql::registry::{MetaType, MetaTypeName, Registry};
use async_graphql::{OutputType, Positioned, SubscriptionType, Value, Variables};

/// The schema's input types: a registry of its own, built from the three roots as the engine builds
/// its (without the system and introspection types, which no variable of Rally's declares).
pub struct InputTypes(Registry);

impl InputTypes {
    /// The input types reachable from the three roots.
    pub fn of<Q: OutputType, M: OutputType, S: SubscriptionType>() -> Self {
        let mut registry = Registry::default();
        Q::create_type_info(&mut registry);
        M::create_type_info(&mut registry);
        S::create_type_info(&mut registry);
        Self(registry)
    }

    /// Whether every variable given for an operation with these `definitions` fits its declared
    /// type (a variable not given is left to its default and the resolver, as the engine does).
    pub fn accept(
        &self,
        definitions: &[Positioned<VariableDefinition>],
        variables: &Variables,
    ) -> bool {
        definitions.iter().all(|definition| {
            match variables.get(definition.node.name.node.as_str()) {
                None => true,
                // Null may be refused where the variable is used, whatever it declares.
                Some(Value::Null) => false,
                Some(value) => self.fits_declared(&definition.node.var_type.node, value),
            }
        })
    }

    /// `value` against a declared type (the parser's form; [`Self::fits`] walks the registry's
    /// string form of input fields' types the same way).
    fn fits_declared(&self, ty: &Type, value: &Value) -> bool {
        if matches!(value, Value::Null) {
            return ty.nullable;
        }
        match &ty.base {
            BaseType::Named(name) => self.fits_named(name, value),
            BaseType::List(item) => match value {
                Value::List(items) => items.iter().all(|value| self.fits_declared(item, value)),
                // A single value stands for a list of one.
                value => self.fits_declared(item, value),
            },
        }
    }

    /// `value` against a type written as a string (an input object field's type).
    fn fits(&self, ty: &str, value: &Value) -> bool {
        match MetaTypeName::create(ty) {
            MetaTypeName::NonNull(ty) => !matches!(value, Value::Null) && self.fits(ty, value),
            MetaTypeName::List(item) => match value {
                Value::List(items) => items.iter().all(|value| self.fits(item, value)),
                Value::Null => true,
                value => self.fits(item, value),
            },
            MetaTypeName::Named(name) => {
                matches!(value, Value::Null) || self.fits_named(name, value)
            }
        }
    }

    /// A non-null `value` against a named type.
    fn fits_named(&self, name: &str, value: &Value) -> bool {
        match self.0.types.get(name) {
            Some(MetaType::Scalar { is_valid, .. }) => {
                is_valid.as_ref().is_none_or(|valid| valid(value))
            }
            Some(MetaType::Enum { enum_values, .. }) => match value {
                Value::Enum(item) => enum_values.contains_key(item.as_str()),
                Value::String(item) => enum_values.contains_key(item.as_str()),
                _ => false,
            },
            Some(MetaType::InputObject {
                input_fields,
                oneof,
                ..
            }) => {
                let Value::Object(given) = value else {
                    return false;
                };
                if *oneof && (given.len() != 1 || given.values().any(|v| *v == Value::Null)) {
                    return false;
                }
                let known = given
                    .keys()
                    .all(|key| input_fields.contains_key(key.as_str()));
                known
                    && input_fields
                        .values()
                        .all(|field| match given.get(field.name.as_str()) {
                            Some(value) => self.fits(&field.ty, value),
                            None => {
                                field.default_value.is_some()
                                    || !MetaTypeName::create(&field.ty).is_non_null()
                            }
                        })
            }
            // Not an input type, or unknown: the engine decides.
            _ => false,
        }
    }
}
