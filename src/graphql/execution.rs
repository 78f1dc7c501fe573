//! Running a request: the engine with Rally's rules around it, the same for every transport.
//!
//! The engine runs with no extension registered. As soon as one is, async-graphql builds a
//! `ResolveInfo` (a registry lookup and, for list items, two formatted type names) and a chain of
//! boxed futures for every field of every request; that per-field toll made each object of a list
//! cost several times its data. So what the extensions did is done here, once per request:
//! - the parsed document comes from a cache ([`Documents`]), so the engine skips parsing;
//! - a query or mutation whose document passed the engine's full validation once, on a request that
//!   let it check every argument (`checks_every_argument`), runs on a twin schema in the engine's
//!   fast validation mode (limits and fragment cycles only) when its variables fit the types it
//!   declares ([`InputTypes`]): what the skipped rules decide depends on the document and the
//!   schema alone, except the arguments' values, which come from the variables (a document with
//!   variables used to meet the full validation on every request: a sixth of an authenticated
//!   `event(id)` read, in callgrind);
//! - the alias limit is checked on that document ([`check_aliases`]), counted once when it was
//!   parsed, and so is the number of fields its fragments expand to ([`check_expansion`]): the
//!   engine expands a spread anew at each use;
//! - failed fields are nulled as the spec says, from the errors' paths ([`Shapes`]);
//! - each executed query and mutation is counted and timed ([`OperationMetrics`]).
//!
//! A mutation runs to its end once it has started, in a task of its own ([`Executor::run_to_end`]):
//! a client that leaves, or a request timeout, drops only the answer. Cancelled at an `.await`, a
//! mutation could leave work half done that a transaction does not cover: a commit that lands
//! without the live messages announcing it, a stored picture without its row. Shutdown waits for
//! these tasks ([`Executor::finish_running`]).
//!
//! The depth, complexity and directive limits stay the engine's own (they cost nothing per field).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationType};
use async_graphql::{Request, Response, Variables};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;

use super::context::Caller;
use super::documents::{Documents, Parsed, PersistedQueryError};
use super::limits::{QueryLimits, check_aliases, check_expansion};
use super::nulls::{Shapes, operation};
use super::response::is_request_error;
use super::schema::{Mutation, Query, RallySchema, Schemas, Subscription};
use super::telemetry::OperationMetrics;
use super::variables::InputTypes;
use crate::state::{Stopping, join_to_end, spawn_unless_stopping};

/// Why [`Executor::run_to_end`] gave no answer: too busy (nothing ran) or stopping (nothing ran,
/// or, only when the runtime itself shuts down, the task was dropped part way).
#[derive(Debug)]
pub enum NotRun {
    /// As many mutations are running to their end as the limits allow.
    Busy,
    /// Shutdown has begun waiting for the work running to its end
    /// ([`crate::state::spawn_unless_stopping`]).
    Stopping,
}

/// Parsed documents kept for reuse (an app sends a few hundred distinct documents at most).
const DOCUMENT_CACHE: usize = 1024;

/// The schema and what every request goes through around it; cheap to clone.
#[derive(Clone)]
pub struct Executor(Arc<Inner>);

struct Inner {
    /// Fully validating: what every document meets first.
    schema: RallySchema,
    /// The same schema in the engine's fast validation mode, for documents validated before.
    validated: RallySchema,
    documents: Documents,
    inputs: InputTypes,
    shapes: Shapes,
    metrics: OperationMetrics,
    max_aliases: usize,
    max_complexity: usize,
    /// Work running to its end whoever still waits for it: operations (see the module docs) and
    /// the domains' writes in queries (the state's [`crate::state::Inner::to_end`]).
    running: TaskTracker,
    /// A place for each mutation [`Executor::run_to_end`] may run at once.
    places: Arc<Semaphore>,
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
    /// The schemas (built without extensions) under `limits`; mutations run to their end among
    /// `running`, the tasks shutdown waits for (the state's [`crate::state::Inner::to_end`]).
    pub fn new(schemas: Schemas, limits: QueryLimits, running: TaskTracker) -> Self {
        let shapes = Shapes::of_sdl(&schemas.strict.sdl());
        Self(Arc::new(Inner {
            schema: schemas.strict,
            validated: schemas.validated,
            documents: Documents::new(DOCUMENT_CACHE),
            inputs: InputTypes::of::<Query, Mutation, Subscription>(),
            shapes,
            metrics: OperationMetrics::new(limits.metrics_max_operations),
            max_aliases: limits.max_aliases,
            max_complexity: limits.max_complexity,
            running,
            places: Arc::new(Semaphore::new(limits.max_running_mutations)),
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
            .is_some_and(|parsed| self.is_known(parsed, &request));
        let checks_everything = !known
            && parsed
                .as_deref()
                .is_some_and(|parsed| checks_every_argument(&parsed.document, &request.variables));
        let schema = if known {
            &self.0.validated
        } else {
            &self.0.schema
        };
        let response = schema.execute(caller.attach(request, None)).await;
        if let Some(parsed) = parsed.as_deref()
            && checks_everything
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

    /// Runs a query or mutation for `caller` in a task of its own: it goes on to its end when the
    /// returned future is dropped (see the module docs). [`NotRun`] when as many are running as
    /// the limits allow, or the server is stopping.
    pub async fn run_to_end(&self, prepared: Prepared, caller: Caller) -> Result<Response, NotRun> {
        let place = self.mutation_place()?;
        let executor = self.clone();
        let run = async move {
            let _place = place;
            executor.execute(prepared, caller).await
        };
        join_to_end(&self.0.running, run)
            .await
            .map_err(|Stopping| NotRun::Stopping)
    }

    /// A place among the mutations running to their end (`RALLY_MAX_RUNNING_MUTATIONS`), over HTTP
    /// or a websocket, held until the mutation ends; [`NotRun::Busy`] when none is free.
    pub fn mutation_place(&self) -> Result<OwnedSemaphorePermit, NotRun> {
        self.0
            .places
            .clone()
            .try_acquire_owned()
            .map_err(|_| NotRun::Busy)
    }

    /// Spawns `work` among the operations shutdown waits for ([`Executor::finish_running`]);
    /// [`Stopping`] (and nothing spawned) once shutdown has begun waiting for them.
    pub fn spawn_to_end<F>(&self, work: F) -> Result<(), Stopping>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        spawn_unless_stopping(&self.0.running, work).map(drop)
    }

    /// Waits up to `within` for the work running to its end (at shutdown, once the server has
    /// stopped taking requests); whether it all ended. Work that a connection still open tries to
    /// start from now on is refused ([`crate::state::spawn_unless_stopping`]).
    pub async fn finish_running(&self, within: Duration) -> bool {
        self.0.running.close();
        tokio::time::timeout(within, self.0.running.wait())
            .await
            .is_ok()
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

    /// Whether `request` runs a query or mutation of a document that passed full validation before,
    /// with variables that fit their declared types.
    fn is_known(&self, parsed: &Parsed, request: &Request) -> bool {
        parsed.validated.load(Ordering::Relaxed)
            && operation(&parsed.document, request.operation_name.as_deref()).is_some_and(
                |operation| {
                    operation.ty != OperationType::Subscription
                        && self
                            .0
                            .inputs
                            .accept(&operation.variable_definitions, &request.variables)
                },
            )
    }

    /// A request error for a document over the alias limit, or one whose fragments expand past the
    /// complexity limit (a field costs 1 unless the schema says otherwise, so the engine would
    /// refuse nearly all such documents too, but only after expanding them), spread themselves or
    /// an unknown fragment, or nest too deep.
    fn refusal(&self, parsed: Option<&Parsed>) -> Option<Response> {
        let parsed = parsed?;
        let error = check_aliases(parsed.aliases, self.0.max_aliases)
            .and_then(|()| check_expansion(parsed.expansion, self.0.max_complexity))
            .err()?;
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

/// Whether the engine's full validation of a request with these `variables` checks every argument of
/// `document`. It leaves out an argument holding a variable the request does not give (even the
/// argument's literal parts), and every argument of an operation the request does not select; a
/// document passed on such a request may hold a value the rules would refuse, so only a document
/// of one operation, with all its variables given, counts as validated.
fn checks_every_argument(document: &ExecutableDocument, variables: &Variables) -> bool {
    operation(document, None).is_some_and(|operation| {
        operation
            .variable_definitions
            .iter()
            .all(|definition| variables.get(definition.node.name.node.as_str()).is_some())
    })
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

#[cfg(test)]
mod tests {
    use async_graphql::{Value, Variables};
    use serde_json::json;

    use super::super::schema::schema_builder;
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

    /// Each case: a document, variables, whether the check accepts them and whether the engine's
    /// full validation (the independent judge) does. They differ only where the check is cautious:
    /// it never accepts what the engine refuses.
    #[tokio::test]
    async fn the_variables_check_never_accepts_what_validation_refuses() {
        let types = InputTypes::of::<Query, Mutation, Subscription>();
        // No data attached: a valid request fails in its resolvers, never in validation.
        let schema = schema_builder(QueryLimits::default()).finish();
        let event = "query($id: ID!) { event(id: $id) { title } }";
        let create = "mutation($input: CreateEventInput!) { createEvent(input: $input) { id } }";
        let save = "mutation($run: ID!, $track: [TrackPointInput!]!) { saveRun(runId: $run, track: $track) { id } }";
        let list = "query($first: Int) { events(first: $first) { edges { node { id } } } }";
        let skip = "query($id: ID!, $hide: Boolean!) { event(id: $id) { title @skip(if: $hide) } }";
        let input = json!({ "title": "Quiz", "startsAt": "2026-12-02T20:00:00Z" });
        let point = json!({ "latitude": 1.5, "longitude": 2, "at": "2026-12-02T20:00:00Z" });
        let cases = [
            (event, json!({ "id": "abc" }), true, true),
            (event, json!({ "id": 7 }), true, true),
            (event, json!({ "id": { "a": 1 } }), false, false),
            (event, json!({ "id": [true] }), false, false),
            (event, json!({ "id": null }), false, false),
            // Cautious: null is refused by the check, but fits where this variable goes.
            (list, json!({ "first": null }), false, true),
            (list, json!({ "first": 5 }), true, true),
            (list, json!({ "first": 2.5 }), false, false),
            (event, json!({ "id": "abc", "unused": {} }), true, true),
            (skip, json!({ "id": "abc", "hide": true }), true, true),
            (skip, json!({ "id": "abc", "hide": "yes" }), false, false),
            (create, json!({ "input": input }), true, true),
            (
                create,
                json!({ "input": { "title": "Quiz", "startsAt": "2026-12-02T20:00:00Z", "venue": null } }),
                true,
                true,
            ),
            (
                create,
                json!({ "input": { "title": "Quiz" } }),
                false,
                false,
            ),
            // The engine's `DateTime` has no validator: argument coercion refuses it, as a field
            // error, on both paths.
            (
                create,
                json!({ "input": { "title": "Quiz", "startsAt": "tomorrow" } }),
                true,
                true,
            ),
            (
                create,
                json!({ "input": { "title": "Quiz", "startsAt": "2026-12-02T20:00:00Z", "colour": "red" } }),
                false,
                false,
            ),
            (
                create,
                json!({ "input": { "title": null, "startsAt": "2026-12-02T20:00:00Z" } }),
                false,
                false,
            ),
            // Cautious: the engine leaves a non-object input to the resolver's coercion.
            (create, json!({ "input": "Quiz" }), false, true),
            (
                save,
                json!({ "run": "r", "track": [point, point] }),
                true,
                true,
            ),
            (save, json!({ "run": "r", "track": point }), true, true),
            (
                save,
                json!({ "run": "r", "track": [point, null] }),
                false,
                false,
            ),
            (
                save,
                json!({ "run": "r", "track": [{ "latitude": "north", "longitude": 2, "at": "2026-12-02T20:00:00Z" }] }),
                false,
                false,
            ),
        ];
        for (query, variables, accepted, valid) in cases {
            let document = async_graphql::parser::parse_query(query).expect("parses");
            let definitions = &operation(&document, None)
                .expect("one operation")
                .variable_definitions;
            let variables = Variables::from_json(variables.clone());
            assert_eq!(
                types.accept(definitions, &variables),
                accepted,
                "{query} with {variables:?}"
            );
            let response = schema
                .execute(Request::new(query).variables(variables.clone()))
                .await;
            assert_eq!(
                !is_request_error(&response),
                valid,
                "the engine's validation of {query} with {variables:?}: {:?}",
                response.errors
            );
        }
    }
}
