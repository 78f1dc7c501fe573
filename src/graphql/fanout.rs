//! Shared execution of identical subscriptions.
//!
//! Ten thousand phones watching one leaderboard send the same document with the same variables.
//! Running the selection and serializing the result ten thousand times per change is the naive
//! fan-out. Here subscribers of the same operation, variables and permission scope join one
//! *cohort*: one execution of the subscription, one serialized payload per change, handed to every
//! member, which only wraps it in its own `{"type":"next","id":…}` frame.
//!
//! **Permission scope.** An anonymous subscriber joins the public cohort, which runs as anonymous.
//! A signed-in subscriber joins a cohort of its own user (its sockets share it) unless the
//! operation is a state stream known to be impersonal: every cohort execution carries a
//! [`ViewerProbe`], which [`ContextExt::viewer`](super::ContextExt::viewer) marks whenever a resolver
//! asks who is calling. When a personal execution produced its first payload without asking, the
//! operation is learned as impersonal and later signed-in subscribers join the public cohort.
//! Should a public execution ask later (a field that only now resolves, e.g. the first staff member's
//! e-mail), that payload is marked, and signed-in members go on in executions of their own, which
//! start from the current state, before it reaches them; the operation is personal from then on.
//! Event streams (nothing to start from) never put signed-in subscribers in the public cohort. The
//! public cohort runs as anonymous, so sharing can only ever show someone less than their own view,
//! never another person's.
//!
//! **Late joiners.** State streams ([`STATE_SUBSCRIPTIONS`]) begin with the current state, so a
//! member joining a running cohort gets its latest payload first; event streams start at the next
//! event. A member that falls behind skips to the newest state (state streams) or loses the oldest
//! events (counted in `rally_live_lagged_total`), as a hub subscriber does.
//!
//! Queries, mutations and documents that are not a single-field subscription run per subscriber.
//!
//! **Permits.** Every operation holds one of its connection's [`Permit`]s for as long as it runs:
//! a subscription until its stream is dropped, a query or mutation until it has finished (it runs
//! to its end in a task of its own even when the client completes it first). So completing and
//! starting operations again cannot pile up work beyond the connection's limit.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use async_graphql::parser::parse_query;
use async_graphql::parser::types::{DocumentOperations, OperationType, Selection};
use async_graphql::{Request, Response, Variables};
use futures_util::{Stream, StreamExt};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{OwnedSemaphorePermit, broadcast};
use tokio::task::AbortHandle;
use uuid::Uuid;

use super::context::{Caller, ViewerProbe};
use super::execution::Executor;
use super::nulls::operation;
use super::response::{is_request_error, with_codes};
use super::schema::{STATE_SUBSCRIPTIONS, UNSHARED_SUBSCRIPTIONS};
use crate::auth::{ClientAddr, Viewer};
use crate::error::{Error, INTERNAL_MESSAGE, code};

/// How many payloads a member may fall behind its cohort.
const MEMBER_BACKLOG: usize = 64;

/// Operations remembered as impersonal; the memory is cleared when it would grow past this (a
/// client sending endless distinct documents costs sharing, not memory).
const MAX_LEARNED: usize = 10_000;

/// One serialized GraphQL response (`{"data":…}`), shared by every member of a cohort. Every error
/// in it carries a contract code.
#[derive(Debug)]
pub struct Payload {
    /// The response's JSON.
    pub json: String,
    /// Produced by a public execution that asked who is calling: not for signed-in members.
    viewer_sensitive: bool,
    /// When the document never executed (it did not parse or validate): its errors, the payload of
    /// the protocols' `error` message.
    request_errors: Option<String>,
}

impl Payload {
    fn of(response: Response, viewer_sensitive: bool) -> Self {
        let response = with_codes(response);
        let request_errors = is_request_error(&response).then(|| json(&response.errors));
        Self {
            json: json(&response),
            viewer_sensitive,
            request_errors,
        }
    }

    /// A payload carrying only `error` (raised outside any document: no location, no path).
    pub fn error(error: impl Into<async_graphql::Error>) -> Arc<Self> {
        let error: async_graphql::Error = error.into();
        let mut server_error = async_graphql::ServerError::new(error.message, None);
        server_error.extensions = error.extensions;
        let mut payload = Self::of(Response::from_errors(vec![server_error]), false);
        // Refused by the transport, not by the document: an execution error, not a request error.
        payload.request_errors = None;
        Arc::new(payload)
    }

    /// The `error` message's payload (the array of errors) when the document never executed.
    pub fn request_errors(&self) -> Option<&str> {
        self.request_errors.as_deref()
    }
}

/// `value` as JSON; a value that cannot be serialized becomes the internal error (logged).
fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|err| {
        tracing::error!(error = %err, "cannot serialize a GraphQL response");
        format!(
            r#"{{"errors":[{{"message":"{INTERNAL_MESSAGE}","extensions":{{"code":"{}"}}}}]}}"#,
            code::INTERNAL
        )
    })
}

/// What a subscriber sends: the `payload` of `subscribe` (graphql-transport-ws) or `start` (legacy).
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscribe {
    query: String,
    #[serde(default)]
    operation_name: Option<String>,
    #[serde(default)]
    variables: Option<serde_json::Value>,
}

impl Subscribe {
    /// What this document runs, the operation picked as the engine picks it. A name that picks
    /// nothing the document would not run without it (its only operation's) is forgotten here, so
    /// clients that send the name and clients that leave it out share one cohort.
    pub fn kind(&mut self) -> Kind {
        let (kind, name_needed) = kind(&self.query, self.operation_name.as_deref());
        if !name_needed {
            self.operation_name = None;
        }
        kind
    }
}

/// What a subscriber's document runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A subscription: its root field when it has exactly one (the kind that can be shared).
    Subscription(Option<String>),
    /// A query or a mutation, or a document that will not run (the engine answers it at once).
    Other,
}

impl Kind {
    /// The root field of a single-field subscription.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Subscription(field) => field.as_deref(),
            Self::Other => None,
        }
    }
}

/// A running operation's payloads, ending when the operation does.
pub type Payloads = Pin<Box<dyn Stream<Item = Arc<Payload>> + Send>>;

/// One of a connection's running operations, held until the operation's work has ended.
pub type Permit = OwnedSemaphorePermit;

/// Who may see what a cohort computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Scope {
    Public,
    User { id: Uuid, admin: bool },
}

/// The operation's identity: the same text, operation and variables give the same results.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Operation {
    query: Arc<str>,
    operation_name: Option<Arc<str>>,
    variables: Arc<str>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    operation: Operation,
    scope: Scope,
}

/// The subscriptions of this instance, grouped into cohorts.
#[derive(Clone)]
pub struct Fanout {
    inner: Arc<Inner>,
}

struct Inner {
    executor: Executor,
    cohorts: Mutex<HashMap<Key, Arc<Cohort>>>,
    /// Hashes of operations known to be impersonal (a collision can only put a signed-in member in
    /// the public cohort, which runs as anonymous and moves it out when the caller matters).
    impersonal: Mutex<HashSet<u64>>,
    hasher: std::collections::hash_map::RandomState,
}

struct Cohort {
    key: Key,
    /// Whether late joiners get the latest payload first.
    replays: bool,
    /// Changed only under the registry lock.
    members: std::sync::atomic::AtomicUsize,
    feed: Mutex<Feed>,
    task: Mutex<Option<AbortHandle>>,
}

struct Feed {
    latest: Option<Arc<Payload>>,
    sender: Option<broadcast::Sender<Arc<Payload>>>,
}

/// What `query` runs: its operation as the engine picks it ([`operation`]: the only one, or the
/// one named; a document with one named operation runs it when no name is given), and whether
/// `operation_name` is needed to pick it (false when the document holds one named operation: it
/// runs without its name).
fn kind(query: &str, operation_name: Option<&str>) -> (Kind, bool) {
    let Ok(document) = parse_query(query) else {
        return (Kind::Other, true);
    };
    let Some(operation) = operation(&document, operation_name)
        .filter(|operation| operation.ty == OperationType::Subscription)
    else {
        return (Kind::Other, true);
    };
    let name_needed = match &document.operations {
        DocumentOperations::Single(_) => true,
        DocumentOperations::Multiple(operations) => operations.len() > 1,
    };
    let field = match operation.selection_set.node.items.as_slice() {
        [only] => match &only.node {
            Selection::Field(field) => Some(field.node.name.node.to_string()),
            _ => None,
        },
        _ => None,
    };
    (Kind::Subscription(field), name_needed)
}

impl Fanout {
    /// Cohorts executing with `executor`.
    pub fn new(executor: Executor) -> Self {
        Self {
            inner: Arc::new(Inner {
                executor,
                cohorts: Mutex::new(HashMap::new()),
                impersonal: Mutex::new(HashSet::new()),
                hasher: std::collections::hash_map::RandomState::new(),
            }),
        }
    }

    /// How many shared executions run now.
    pub fn executions(&self) -> usize {
        lock(&self.inner.cohorts).len()
    }

    /// Starts `request` for a subscriber: joins (or starts) its cohort when it is a single-field
    /// subscription that can be shared, runs it alone otherwise. `kind` is the request's
    /// [`Subscribe::kind`]; `permit` is held until the operation's work ends.
    pub fn run(
        &self,
        request: Subscribe,
        kind: &Kind,
        viewer: &Viewer,
        addr: ClientAddr,
        permit: Permit,
    ) -> Payloads {
        let field = match kind {
            Kind::Subscription(Some(field))
                if !UNSHARED_SUBSCRIPTIONS.contains(&field.as_str()) =>
            {
                field.as_str()
            }
            Kind::Subscription(_) => return self.run_alone(request, viewer, addr, permit, false),
            Kind::Other => return self.run_alone(request, viewer, addr, permit, true),
        };
        let operation = Operation {
            variables: request
                .variables
                .as_ref()
                .map_or_else(|| "{}".to_owned(), serde_json::Value::to_string)
                .into(),
            query: request.query.into(),
            operation_name: request.operation_name.map(Into::into),
        };
        let member = Member {
            fanout: self.clone(),
            operation,
            viewer: viewer.clone(),
            addr,
            replays: STATE_SUBSCRIPTIONS.contains(&field),
            permit,
        };
        Box::pin(member.payloads())
    }

    /// Runs `request` in a task of its own, which holds `permit`. `to_the_end`: a query or
    /// mutation, which runs to its end even when nobody reads its result any more; otherwise (a
    /// subscription) the work stops as soon as the payloads are dropped.
    fn run_alone(
        &self,
        request: Subscribe,
        viewer: &Viewer,
        addr: ClientAddr,
        permit: Permit,
        to_the_end: bool,
    ) -> Payloads {
        let request = build_request(
            &request.query,
            request.operation_name.as_deref(),
            request.variables,
        );
        let request = Caller {
            viewer: viewer.clone(),
            addr: Some(addr),
        }
        .attach(request, None);
        // In a task of its own: a mutation runs to its end even when the client completes the
        // operation or leaves first (only the result is dropped then), and shutdown waits for it.
        let (sender, receiver) = tokio::sync::mpsc::channel(1);
        let executor = &self.inner.executor;
        let prepared = executor.prepare(request);
        // A mutation takes a place among those running to their end, as over HTTP (`is_mutation`
        // is true of subscriptions too: they are not `to_the_end`).
        let place = if to_the_end && prepared.is_mutation() {
            match executor.mutation_place() {
                Ok(place) => Some(place),
                Err(_) => {
                    return Box::pin(futures_util::stream::iter([Payload::error(
                        Error::RateLimited {
                            what: "too many mutations are running",
                            retry_after_seconds: 1,
                        },
                    )]));
                }
            }
        } else {
            None
        };
        let mut responses = executor.execute_stream(prepared);
        let work = async move {
            let _permit = permit;
            let _place = place;
            loop {
                let response = tokio::select! {
                    response = responses.next() => response,
                    () = sender.closed(), if !to_the_end => None,
                };
                let Some(response) = response else {
                    break;
                };
                if sender
                    .send(Arc::new(Payload::of(response, false)))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        };
        if !to_the_end {
            tokio::spawn(work);
        } else if executor.spawn_to_end(work).is_err() {
            return Box::pin(futures_util::stream::iter([Payload::error(
                Error::stopping(),
            )]));
        }
        Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver))
    }

    /// Public for anonymous subscribers; for signed-in ones only when the operation is a state
    /// stream known to be impersonal (see the module docs).
    fn scope_for(&self, operation: &Operation, viewer: &Viewer, state_stream: bool) -> Scope {
        match viewer {
            Viewer::User(me)
                if !state_stream
                    || !lock(&self.inner.impersonal).contains(&self.fingerprint(operation)) =>
            {
                Scope::User {
                    id: me.user_id,
                    admin: me.is_admin,
                }
            }
            _ => Scope::Public,
        }
    }

    /// Joins the cohort of `key`, starting it if needed; returns it, the payload to replay and the
    /// receiver of what follows.
    fn join(
        &self,
        key: Key,
        viewer: &Viewer,
        replays: bool,
    ) -> (
        Arc<Cohort>,
        Option<Arc<Payload>>,
        broadcast::Receiver<Arc<Payload>>,
    ) {
        let mut cohorts = lock(&self.inner.cohorts);
        if let Some(cohort) = cohorts.get(&key).cloned() {
            cohort.members.fetch_add(1, Ordering::Relaxed);
            let feed = lock(&cohort.feed);
            let replay = if cohort.replays {
                feed.latest.clone()
            } else {
                None
            };
            let receiver = match &feed.sender {
                Some(sender) => sender.subscribe(),
                // An ended cohort leaves the registry under this lock, so this cannot happen; an
                // empty, closed receiver is the safe answer anyway.
                None => broadcast::channel(1).1,
            };
            drop(feed);
            return (cohort, replay, receiver);
        }
        // The first member's receiver exists before the execution starts, so an event published
        // by its very first step is not lost.
        let (sender, receiver) = broadcast::channel(MEMBER_BACKLOG);
        let cohort = Arc::new(Cohort {
            key: key.clone(),
            replays,
            members: 1.into(),
            feed: Mutex::new(Feed {
                latest: None,
                sender: Some(sender),
            }),
            task: Mutex::new(None),
        });
        let runs_as = match key.scope {
            Scope::Public => Viewer::Anonymous,
            Scope::User { .. } => viewer.clone(),
        };
        let task = tokio::spawn(execute(self.clone(), cohort.clone(), runs_as));
        *lock(&cohort.task) = Some(task.abort_handle());
        cohorts.insert(key, cohort.clone());
        (cohort, None, receiver)
    }

    /// A member left; the last one out stops the execution.
    fn leave(&self, cohort: &Arc<Cohort>) {
        let mut cohorts = lock(&self.inner.cohorts);
        if cohort.members.fetch_sub(1, Ordering::Relaxed) > 1 {
            return;
        }
        if cohorts
            .get(&cohort.key)
            .is_some_and(|current| Arc::ptr_eq(current, cohort))
        {
            cohorts.remove(&cohort.key);
        }
        if let Some(task) = lock(&cohort.task).take() {
            task.abort();
        }
    }

    /// The execution ended: later subscribers start a new one; members get what is queued, then
    /// the end.
    fn end(&self, cohort: &Arc<Cohort>) {
        let mut cohorts = lock(&self.inner.cohorts);
        if cohorts
            .get(&cohort.key)
            .is_some_and(|current| Arc::ptr_eq(current, cohort))
        {
            cohorts.remove(&cohort.key);
        }
        lock(&cohort.feed).sender = None;
    }

    fn learn(&self, operation: &Operation, impersonal: bool) {
        let fingerprint = self.fingerprint(operation);
        let mut known = lock(&self.inner.impersonal);
        if impersonal {
            if known.len() >= MAX_LEARNED {
                known.clear();
            }
            known.insert(fingerprint);
        } else {
            known.remove(&fingerprint);
        }
    }

    fn fingerprint(&self, operation: &Operation) -> u64 {
        use std::hash::BuildHasher;
        self.inner.hasher.hash_one(operation)
    }
}

/// One subscriber's membership, moving between cohorts when its scope changes.
struct Member {
    fanout: Fanout,
    operation: Operation,
    viewer: Viewer,
    addr: ClientAddr,
    replays: bool,
    permit: Permit,
}

/// Leaves the cohort when the member's stream is dropped.
struct Seat {
    fanout: Fanout,
    cohort: Arc<Cohort>,
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.fanout.leave(&self.cohort);
    }
}

impl Member {
    fn take_seat(
        &self,
        scope: Scope,
    ) -> (
        Seat,
        Option<Arc<Payload>>,
        broadcast::Receiver<Arc<Payload>>,
    ) {
        let key = Key {
            operation: self.operation.clone(),
            scope,
        };
        let (cohort, replay, receiver) = self.fanout.join(key, &self.viewer, self.replays);
        let seat = Seat {
            fanout: self.fanout.clone(),
            cohort,
        };
        (seat, replay, receiver)
    }

    fn payloads(self) -> impl Stream<Item = Arc<Payload>> + Send {
        async_stream::stream! {
            let signed_in = matches!(self.viewer, Viewer::User(_));
            let scope = self.fanout.scope_for(&self.operation, &self.viewer, self.replays);
            let (seat, replay, mut receiver) = self.take_seat(scope);
            let mut pending = replay;
            loop {
                let payload = match pending.take() {
                    Some(payload) => payload,
                    None => match receiver.recv().await {
                        Ok(payload) => payload,
                        Err(RecvError::Lagged(missed)) => {
                            metrics::counter!("rally_live_lagged_total").increment(missed);
                            if !seat.cohort.replays {
                                continue;
                            }
                            // Skip to the newest state and listen from there: the older payloads
                            // still queued must not follow it.
                            let feed = lock(&seat.cohort.feed);
                            receiver = receiver.resubscribe();
                            match feed.latest.clone() {
                                Some(latest) => latest,
                                None => continue,
                            }
                        }
                        Err(RecvError::Closed) => break,
                    },
                };
                if payload.viewer_sensitive && signed_in && scope == Scope::Public {
                    // The operation turned out to depend on the caller (only a state stream can
                    // get here). Go on in an execution of our own: it starts from the current
                    // state, read after the change that revealed it.
                    drop(seat);
                    let mut alone = self.fanout.run_alone(
                        Subscribe {
                            query: self.operation.query.to_string(),
                            operation_name: self.operation.operation_name.as_deref().map(str::to_owned),
                            variables: serde_json::from_str(&self.operation.variables).ok(),
                        },
                        &self.viewer,
                        self.addr,
                        self.permit,
                        false,
                    );
                    while let Some(payload) = alone.next().await {
                        yield payload;
                    }
                    return;
                }
                yield payload;
            }
            drop(seat);
        }
    }
}

/// Runs a cohort's execution, publishing each response once.
async fn execute(fanout: Fanout, cohort: Arc<Cohort>, runs_as: Viewer) {
    let _running = Running::start();
    // However the execution stops (its stream ends, it panics, the last member leaves and aborts
    // it), later subscribers start a new one and members get the end.
    let _ending = Ending {
        fanout: fanout.clone(),
        cohort: cohort.clone(),
    };
    let operation = &cohort.key.operation;
    let probe = Arc::new(ViewerProbe::default());
    let variables = serde_json::from_str(&operation.variables).ok();
    let request = build_request(
        &operation.query,
        operation.operation_name.as_deref(),
        variables,
    );
    let caller = Caller {
        viewer: runs_as,
        addr: None,
    };
    let request = caller.attach(request, Some(probe.clone()));
    let executor = &fanout.inner.executor;
    let mut responses = executor.execute_stream(executor.prepare(request));
    let mut first = true;
    while let Some(response) = responses.next().await {
        let asked = probe.touched();
        let public = cohort.key.scope == Scope::Public;
        if public && asked {
            fanout.learn(operation, false);
        } else if first && !public && !asked && response.errors.is_empty() {
            fanout.learn(operation, true);
        }
        first = false;
        let payload = Arc::new(Payload::of(response, public && asked));
        metrics::counter!("rally_subscription_payloads_total").increment(1);
        let mut feed = lock(&cohort.feed);
        if cohort.replays {
            feed.latest = Some(payload.clone());
        }
        if let Some(sender) = &feed.sender {
            let _ = sender.send(payload);
        }
    }
}

/// Ends its cohort when dropped.
struct Ending {
    fanout: Fanout,
    cohort: Arc<Cohort>,
}

impl Drop for Ending {
    fn drop(&mut self) {
        self.fanout.end(&self.cohort);
    }
}

fn build_request(
    query: &str,
    operation_name: Option<&str>,
    variables: Option<serde_json::Value>,
) -> Request {
    let mut request = Request::new(query);
    if let Some(name) = operation_name {
        request = request.operation_name(name);
    }
    if let Some(variables) = variables {
        request = request.variables(Variables::from_json(variables));
    }
    request
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Counts a running execution in the metrics until dropped (also when its task is aborted).
struct Running;

impl Running {
    fn start() -> Self {
        metrics::gauge!("rally_subscription_executions_active").increment(1.0);
        Self
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        metrics::gauge!("rally_subscription_executions_active").decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_single_field_subscriptions_are_shared() {
        let field =
            |query: &str, name: Option<&str>| kind(query, name).0.field().map(str::to_owned);
        assert_eq!(
            field(
                "subscription { leaderboard(eventId: 1) { updatedAt } }",
                None
            )
            .as_deref(),
            Some("leaderboard")
        );
        assert_eq!(
            field(
                "query A { me { id } } subscription B { board: leaderboard(eventId: 1) { updatedAt } }",
                Some("B")
            )
            .as_deref(),
            Some("leaderboard"),
            "the field, not its alias"
        );
        assert_eq!(
            field(
                "subscription Watch { leaderboard(eventId: 1) { updatedAt } }",
                None
            )
            .as_deref(),
            Some("leaderboard"),
            "one named operation runs without its name"
        );
        for (query, name) in [
            ("{ me { id } }", None),
            ("mutation { likeEvent(id: 1) { id } }", None),
            ("subscription A { x } subscription B { y }", None),
            (
                "subscription { ...F } fragment F on Subscription { x }",
                None,
            ),
            ("subscription {", None),
        ] {
            assert_eq!(field(query, name), None, "{query}");
        }
    }

    #[test]
    fn a_name_is_kept_only_where_it_picks_the_operation() {
        for (query, name, needed) in [
            ("subscription Watch { a { x } }", Some("Watch"), false),
            ("subscription Watch { a { x } }", None, false),
            ("subscription { a { x } }", None, true),
            (
                "query A { me { id } } subscription B { a { x } }",
                Some("B"),
                true,
            ),
        ] {
            assert_eq!(kind(query, name).1, needed, "{query} {name:?}");
        }
    }

    #[test]
    fn subscriptions_are_told_from_queries_and_mutations() {
        for (query, name) in [
            ("subscription { a { x } b { y } }", None),
            ("subscription Watch { a { x } }", None),
            (
                "query A { me { id } } subscription B { a { x } }",
                Some("B"),
            ),
            (
                "subscription { ...F } fragment F on Subscription { x }",
                None,
            ),
        ] {
            assert!(
                matches!(kind(query, name).0, Kind::Subscription(_)),
                "{query}"
            );
        }
        for (query, name) in [
            ("{ me { id } }", None),
            ("mutation M { likeEvent(id: 1) { id } }", None),
            ("subscription A { x } subscription B { y }", None),
            (
                "query A { me { id } } subscription B { a { x } }",
                Some("A"),
            ),
            ("subscription { a { x } }", Some("X")),
            ("subscription {", None),
        ] {
            assert_eq!(kind(query, name).0, Kind::Other, "{query}");
        }
    }
}
