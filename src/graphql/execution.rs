//! Running a request: the engine with Rally's rules around it, the same for every transport.
//!
//! The engine runs with no extension registered. As soon as one is, async-graphql builds a
//! `ResolveInfo` (a registry lookup and, for list items, two formatted type names) and a chain of
//! boxed futures for every field of every request; that per-field toll made each object of a list
//! cost several times its data. So what the extensions did is done here, once per request:
//! - the parsed document comes from a cache ([`Documents`]), so the engine skips parsing;
//! - the alias limit is checked on that document ([`limits::check_aliases`]), counted once when it
//!   was parsed;
//! - failed fields are nulled as the spec says, from the errors' paths ([`Shapes`]);
//! - each executed query and mutation is counted and timed ([`OperationMetrics`]).
//!
//! The depth, complexity and directive limits stay the engine's own (they cost nothing per field).

use std::sync::Arc;
use std::time::Instant;

use async_graphql::parser::types::OperationType;
use async_graphql::parser::types::{DocumentOperations, ExecutableDocument};
use async_graphql::{Request, Response};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::documents::{Documents, Parsed, PersistedQueryError};
use super::limits::{QueryLimits, check_aliases};
use super::nulls::{Shapes, operation};
use super::response::is_request_error;
use super::schema::RallySchema;
use super::telemetry::OperationMetrics;

/// Parsed documents kept for reuse (an app sends a few hundred distinct documents at most).
const DOCUMENT_CACHE: usize = 1024;

/// The schema and what every request goes through around it; cheap to clone.
#[derive(Clone)]
pub struct Executor(Arc<Inner>);

struct Inner {
    schema: RallySchema,
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
    /// `schema` (built without extensions) under `limits`.
    pub fn new(schema: RallySchema, limits: QueryLimits) -> Self {
        let shapes = Shapes::of_sdl(&schema.sdl());
        Self(Arc::new(Inner {
            schema,
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

    /// Runs a query or mutation.
    pub async fn execute(&self, prepared: Prepared) -> Response {
        let Prepared { request, parsed } = prepared;
        if let Some(refused) = self.refusal(parsed.as_deref()) {
            return refused;
        }
        let operation_name = request.operation_name.clone();
        let started = Instant::now();
        let response = self.0.schema.execute(request).await;
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
