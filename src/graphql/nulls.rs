//! Null propagation as the GraphQL spec says it, which the engine does not do by itself.
//!
//! async-graphql 7 lists a field's error and then drops the field's key from its parent object,
//! whatever the field's nullability (`resolver_utils::container::do_resolve_container`). The spec
//! ("Handling Field Errors") wants the key kept: a nullable field that fails is `null`; a non-null
//! field that fails makes its parent `null`, and so on up to the nearest nullable ancestor (or
//! `data: null`). Apollo Client's cache treats a missing key as a broken response.
//!
//! [`NullPropagation`] watches every field's resolution (the engine's `resolve` hook, which sees
//! the field's declared type and its path) and fixes the finished response, once the engine has
//! merged every copy of a field (fragments and repeated selections resolve a field more than once
//! under one path, and the engine merges them):
//! - a failed field's path is recorded; a nullable one's error is kept here (the engine never sees
//!   it) and added to the response;
//! - once anything failed, each field that completes records whether it is nullable (its
//!   ancestors complete after it, so the whole chain above a failure is known);
//! - at the end, each failure is walked up to its nearest nullable ancestor-or-self, which is set to
//!   `null` (the key is written even where the engine left it out); with none, `data` is null.
//!
//! The common case (nothing failed) costs one atomic load per field.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextResolve, NextSubscribe,
    ResolveInfo,
};
use async_graphql::{
    Name, QueryPathNode, QueryPathSegment, Response, ServerError, ServerResult, Value,
};
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

/// One path segment as owned data.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum Segment {
    Key(String),
    Index(usize),
}

type Path = Vec<Segment>;

fn path_of(node: &QueryPathNode<'_>) -> Path {
    let mut path: Path = std::iter::once(node)
        .chain(node.parents())
        .map(|node| match node.segment {
            QueryPathSegment::Name(name) => Segment::Key(name.to_owned()),
            QueryPathSegment::Index(index) => Segment::Index(index),
        })
        .collect();
    path.reverse();
    path
}

/// One operation's failures.
#[derive(Default)]
struct Failures {
    /// Set once anything failed, so the common case reads one flag.
    failed: AtomicBool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Errors of nullable fields, caught here (the engine never saw them).
    caught: Vec<ServerError>,
    /// Paths of fields that failed.
    failed: Vec<Path>,
    /// Whether the field (or list item) at a path is nullable, recorded once something failed.
    nullable: HashMap<Path, bool>,
}

impl Failures {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Nulls the nearest nullable ancestor-or-self of every failure in `response`, adds the caught
    /// errors, and starts clean (a subscription resolves again for its next event).
    fn finish(&self, mut response: Response) -> Response {
        if !self.failed.swap(false, Ordering::AcqRel) {
            return response;
        }
        let state = std::mem::take(&mut *self.lock());
        response.errors.extend(state.caught);
        for failed in &state.failed {
            let nearest = (1..=failed.len())
                .rev()
                .map(|len| &failed[..len])
                .find(|path| state.nullable.get(*path).copied().unwrap_or(false));
            match nearest {
                Some(path) => set_null(&mut response.data, path),
                None => response.data = Value::Null,
            }
        }
        response
    }
}

/// Sets the value at `path` in `data` to null, writing the key if it is missing; does nothing when
/// a parent on the way is already null.
fn set_null(data: &mut Value, path: &[Segment]) {
    let Some((last, parents)) = path.split_last() else {
        *data = Value::Null;
        return;
    };
    let mut here = data;
    for segment in parents {
        here = match (segment, here) {
            (Segment::Key(key), Value::Object(object)) => match object.get_mut(key.as_str()) {
                Some(child) => child,
                None => return,
            },
            (Segment::Index(index), Value::List(items)) => match items.get_mut(*index) {
                Some(child) => child,
                None => return,
            },
            _ => return,
        };
    }
    match (last, here) {
        (Segment::Key(key), Value::Object(object)) => {
            object.insert(Name::new(key), Value::Null);
        }
        (Segment::Index(index), Value::List(items)) => {
            if let Some(item) = items.get_mut(*index) {
                *item = Value::Null;
            }
        }
        _ => {}
    }
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
        let result = next.run(ctx, info).await;
        if result.is_ok() && !failures.failed.load(Ordering::Acquire) {
            return result;
        }
        let path = path_of(node);
        let mut state = failures.lock();
        state.nullable.insert(path.clone(), nullable);
        match result {
            Ok(value) => Ok(value),
            Err(err) => {
                failures.failed.store(true, Ordering::Release);
                state.failed.push(path);
                if nullable {
                    state.caught.push(err);
                    Ok(Some(Value::Null))
                } else {
                    // The engine lists the error; `finish` nulls the nearest nullable parent.
                    Err(err)
                }
            }
        }
    }
}
