//! Null propagation as the GraphQL spec says it, which the engine does not do by itself.
//!
//! async-graphql 7 lists a field's error and then drops the field's key from its parent object,
//! whatever the field's nullability (`resolver_utils::container::do_resolve_container`). The spec
//! ("Handling Field Errors") wants the key kept: a nullable field that fails is `null`; a non-null
//! field that fails makes its parent `null`, and so on up to the nearest nullable ancestor (or
//! `data: null`). Apollo Client's cache treats a missing key as a broken response.
//!
//! [`NullPropagation`] wraps every field's resolution (the engine's `resolve` hook, which sees the
//! field's declared type and its path):
//! - a nullable field whose resolver fails resolves to `null`; its error is kept here and appended
//!   to the response;
//! - a non-null field that fails marks its parent's path; when the parent's own resolution ends it
//!   sees the mark and becomes `null` if it is nullable, or passes the mark on to its own parent;
//! - a mark that reaches the root makes `data` null.
//!
//! The common case (no error) costs one atomic load per field.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextResolve, NextSubscribe,
    ResolveInfo,
};
use async_graphql::{QueryPathNode, Response, ServerError, ServerResult, Value};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

/// Puts `null` where a field failed, and propagates it as the spec says (see the module docs).
pub struct NullPropagation;

impl ExtensionFactory for NullPropagation {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Propagation::default())
    }
}

/// The extension of one operation; the state is shared with a subscription's response stream.
#[derive(Default)]
struct Propagation(Arc<Failures>);

/// One operation's failures.
#[derive(Default)]
struct Failures {
    /// Set once anything failed, so the common case reads one flag.
    failed: AtomicBool,
    /// Errors of nullable fields, caught here (the engine never saw them).
    caught: Mutex<Vec<ServerError>>,
    /// Paths (`a.0.b`; the root is "") whose value must become null because a non-null child failed.
    poisoned: Mutex<HashSet<String>>,
}

/// The path key of `node`'s parent ("" at the root).
fn parent_key(node: &QueryPathNode<'_>) -> String {
    node.parent.map(ToString::to_string).unwrap_or_default()
}

impl Failures {
    fn poison(&self, key: String) {
        self.failed.store(true, Ordering::Release);
        lock(&self.poisoned).insert(key);
    }

    /// Whether `key` was poisoned (and forgets it: one field resolves once per execution).
    fn take_poisoned(&self, key: &str) -> bool {
        self.failed.load(Ordering::Acquire) && lock(&self.poisoned).remove(key)
    }

    /// Adds the caught errors to `response`, and nulls `data` when a failure reached the root.
    fn finish(&self, mut response: Response) -> Response {
        if !self.failed.load(Ordering::Acquire) {
            return response;
        }
        response.errors.append(&mut lock(&self.caught));
        if lock(&self.poisoned).remove("") {
            response.data = Value::Null;
        }
        // A subscription resolves again for its next event: start clean.
        lock(&self.poisoned).clear();
        self.failed.store(false, Ordering::Release);
        response
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[async_trait::async_trait]
impl Extension for Propagation {
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let response = next.run(ctx, operation_name).await;
        self.0.finish(response)
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        // Each response takes the failures of its own resolution.
        let failures = self.0.clone();
        next.run(ctx, stream)
            .map(move |response| failures.finish(response))
            .boxed()
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        let nullable = !info.return_type.ends_with('!');
        let node = info.path_node;
        let failures = &self.0;
        match next.run(ctx, info).await {
            Ok(value) => {
                if !failures.take_poisoned(&node.to_string()) {
                    Ok(value)
                } else if nullable {
                    // The failure below is already listed; this field absorbs it.
                    Ok(Some(Value::Null))
                } else {
                    failures.poison(parent_key(node));
                    Ok(value)
                }
            }
            Err(err) if nullable => {
                failures.failed.store(true, Ordering::Release);
                lock(&failures.caught).push(err);
                Ok(Some(Value::Null))
            }
            Err(err) => {
                // The engine lists the error and drops the key; the parent becomes null.
                failures.poison(parent_key(node));
                Err(err)
            }
        }
    }
}
