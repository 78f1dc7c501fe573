//! Running a request: the engine with Rally's rules around it, the same for every transport.
//!
//! The engine runs with no extension registered. As soon as one is, async-graphql builds a
//! `ResolveInfo` (a registry lookup and, for list items, two formatted type names) and a chain of
//! boxed futures for every field of every request; that per-field toll made each object of a list
//! cost several times its data. So what the extensions did is done here, once per request:
//! - the parsed document comes from a cache ([`Documents`]), so the engine skips parsing;
//! - a query whose document declares no variables and passed the engine's full validation once
//!   runs on a twin schema in the engine's fast validation mode (limits and fragment cycles only):
//!   without variables, what the skipped rules decide depends on the document and the schema alone.
//!   A document with variables is validated every time: its arguments' values, its `@skip(if:)`
//!   and the arguments of selections that never execute can only be checked by the full rules;
//! - the alias limit is checked on that document ([`limits::check_aliases`]), counted once when it
//!   was parsed;
//! - failed fields are nulled as the spec says, from the errors' paths ([`Shapes`]);
//! - each executed query and mutation is counted and timed ([`OperationMetrics`]).
//!
//! The depth, complexity and directive limits stay the engine's own (they cost nothing per field).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationType};
use async_graphql::{Request, Response};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::context::Caller;
use super::documents::{Documents, Parsed, PersistedQueryError};
use super::limits::{QueryLimits, check_aliases};
use super::nulls::{Shapes, operation};
use super::response::is_request_error;
use super::schema::{RallySchema, Schemas};
use super::telemetry::OperationMetrics;

/// Parsed documents kept for reuse (an app sends a few hundred distinct documents at most).
const DOCUMENT_CACHE: usize = 1024;

/// The schema and what every request goes through around it; cheap to clone.
#[derive(Clone)]
pub struct Executor(Arc<Inner>);

struct Inner {
    /// Fully validating: what every document meets first.
    schema: RallySchema,
    /// The same schema in the engine's fast validation mode, for queries validated before.
    validated: RallySchema,
    documents: Documents,
    shapes: Shapes,
    metrics: OperationMetrics,
    max_aliases: usize,
}

/// A request with its parsed document attached (when it parsed; otherwise the engine reports the
/// syntax error).
pub struct Prepared {
    request: Request,
    parsed: Option<Arc<Parsed>>,
}

impl Prepared {
    /// Whether the operation the request would run is a mutation (or a subscription).
    pub fn is_mutation(&self) -> bool {
        self.parsed.as_ref().is_some_and(|parsed| {
            operation(&parsed.document, self.request.operation_name.as_deref())
                .is_some_and(|operation| operation.ty != OperationType::Query)
        })
    }
}

impl Executor {
    /// The schemas (built without extensions) under `limits`.
    pub fn new(schemas: Schemas, limits: QueryLimits) -> Self {
        let shapes = Shapes::of_sdl(&schemas.strict.sdl());
        Self(Arc::new(Inner {
            schema: schemas.strict,
            validated: schemas.validated,
            documents: Documents::new(DOCUMENT_CACHE),
            shapes,
            metrics: OperationMetrics::new(limits.metrics_max_operations),
            max_aliases: limits.max_aliases,
        }))
    }

    /// Honours Apollo's automatic persisted queries (see [`Documents::resolve_persisted`]).
    pub fn resolve_persisted(&self, request: &mut Request) -> Result<(), PersistedQueryError> {
        self.0.documents.resolve_persisted(request)
    }

    /// Attaches the request's parsed document, from the cache when it was seen before.
    pub fn prepare(&self, mut request: Request) -> Prepared {
        let parsed = self.0.documents.parse(&request.query);
        if let Some(parsed) = &parsed {
            request.set_parsed_query(parsed.document.clone());
        }
        Prepared { request, parsed }
    }

    /// Runs a query or mutation for `caller`.
    pub async fn execute(&self, prepared: Prepared, caller: Caller) -> Response {
        let Prepared { request, parsed } = prepared;
        if let Some(refused) = self.refusal(parsed.as_deref()) {
            return refused;
        }
        let operation_name = request.operation_name.clone();
        let started = Instant::now();
        let known = parsed
            .as_deref()
            .is_some_and(|parsed| is_known_query(parsed, &request));
        let schema = if known {
            &self.0.validated
        } else {
            &self.0.schema
        };
        let response = schema.execute(caller.attach(request, None)).await;
        if let Some(parsed) = parsed.as_deref()
            && !known
            && !is_request_error(&response)
        {
            parsed.validated.store(true, Ordering::Relaxed);
        }
        self.finish(
            parsed.as_deref(),
            operation_name.as_deref(),
            response,
            Some(started),
        )
    }

    /// Runs any operation as a stream of responses (one for a query or mutation, one per event for
    /// a subscription).
    pub fn execute_stream(&self, prepared: Prepared) -> BoxStream<'static, Response> {
        let Prepared { request, parsed } = prepared;
        if let Some(refused) = self.refusal(parsed.as_deref()) {
            return futures_util::stream::once(async move { refused }).boxed();
        }
        let subscription = parsed.as_ref().is_some_and(|parsed| {
            operation(&parsed.document, request.operation_name.as_deref())
                .is_some_and(|operation| operation.ty == OperationType::Subscription)
        });
        let operation_name = request.operation_name.clone();
        let executor = self.clone();
        let started = Instant::now();
        self.0
            .schema
            .execute_stream(request)
            .map(move |response| {
                // A query or mutation is timed; a subscription's events are not operations.
                let timed = (!subscription).then_some(started);
                executor.finish(
                    parsed.as_deref(),
                    operation_name.as_deref(),
                    response,
                    timed,
                )
            })
            .boxed()
    }

    /// A request error for a document over the alias limit.
    fn refusal(&self, parsed: Option<&Parsed>) -> Option<Response> {
        let error = check_aliases(parsed?.aliases, self.0.max_aliases).err()?;
        Some(Response::from_errors(vec![error]))
    }

    /// Nulls failed fields as the spec says, and records an executed operation.
    fn finish(
        &self,
        parsed: Option<&Parsed>,
        operation_name: Option<&str>,
        mut response: Response,
        started: Option<Instant>,
    ) -> Response {
        if is_request_error(&response) {
            return response;
        }
        let document = parsed.map(|parsed| &parsed.document);
        if let Some(document) = document {
            self.0
                .shapes
                .propagate(document, operation_name, &mut response);
        }
        if let Some(started) = started {
            // The engine's label: the requested name, or the document's only operation's.
            let name = operation_name.or_else(|| document.and_then(only_name));
            self.0
                .metrics
                .record(name, response.errors.is_empty(), started.elapsed());
        }
        response
    }
}

/// The name of a document's only operation, when it has one name.
fn only_name(document: &ExecutableDocument) -> Option<&str> {
    match &document.operations {
        DocumentOperations::Multiple(operations) if operations.len() == 1 => {
            operations.keys().next().map(|name| name.as_str())
        }
        _ => None,
    }
}

/// Whether `request` is a query of a variable-free document that passed full validation before.
fn is_known_query(parsed: &Parsed, request: &Request) -> bool {
    parsed.validated.load(Ordering::Relaxed)
        && !parsed.has_variables
        && operation(&parsed.document, request.operation_name.as_deref())
            .is_some_and(|operation| operation.ty == OperationType::Query)
}

#[cfg(test)]
mod tests {
    use async_graphql::Value;

    use super::*;

    /// The engine's answer to `{ me { <field> } }` when `field` failed, made right with the field
    /// types read from the served schema's SDL.
    fn me_with_failed(field: &str) -> serde_json::Value {
        let shapes = Shapes::of_sdl(&super::super::schema::sdl());
        let query = format!("{{ me {{ {field} }} }}");
        let document = async_graphql::parser::parse_query(&query).expect("parsed");
        // `me` resolved, then its only field failed: the engine collapsed it to null.
        let collapsed = serde_json::json!({ "me": null });
        let mut response = Response::new(Value::from_json(collapsed).expect("a value"));
        let mut error = async_graphql::ServerError::new("boom", None);
        error.path = vec![
            async_graphql::PathSegment::Field("me".into()),
            async_graphql::PathSegment::Field(field.into()),
        ];
        response.errors.push(error);
        shapes.propagate(&document, None, &mut response);
        response.data.into_json().expect("json")
    }

    #[test]
    fn the_served_schema_gives_the_null_propagation_its_field_types() {
        // `me: User` and `User.email: String` are nullable in the contract; `User.handle` is not.
        assert_eq!(
            me_with_failed("email"),
            serde_json::json!({ "me": { "email": null } })
        );
        assert_eq!(me_with_failed("handle"), serde_json::json!({ "me": null }));
    }
}
