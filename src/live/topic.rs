//! Typed topics: a topic knows the type of its payload, so publishing the wrong payload or reading
//! a topic as the wrong type does not compile.
//!
//! Names are made here only, in one form: `{scope}:{id}` or `{scope}:{id}:{stream}` for a family of
//! topics keyed by an id ([`Topics`]), `{scope}:{stream}` for a single one ([`Topic::single`]). Each
//! domain declares its own topics beside its payload types (in its `model.rs`), so this module knows
//! no domain.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

/// What may travel on a topic: a small serde type of a domain's `model.rs`, never a database row.
///
/// Payloads cross instances of different versions during a rolling deploy, so they evolve by
/// adding fields with `#[serde(default)]` and never by renaming or removing one; decoding ignores
/// fields it does not know. A change that cannot follow these rules is a new topic.
pub trait Payload: Serialize + DeserializeOwned + Send + Sync + 'static {}

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> Payload for T {}

/// The wire name of a topic (the Redis channel is `rally:<name>`), untyped: what the hub and the
/// brokers route by.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TopicName(Arc<str>);

impl TopicName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The topic's kind (its first segment), a bounded metrics label.
    pub fn kind(&self) -> &str {
        self.0.split(':').next().unwrap_or("other")
    }

    /// A name read off the wire (only brokers make these).
    pub(super) fn from_wire(name: String) -> Self {
        Self(name.into())
    }
}

impl fmt::Debug for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A topic whose messages are `T`s.
pub struct Topic<T> {
    name: TopicName,
    payload: PhantomData<fn() -> T>,
}

impl<T: Payload> Topic<T> {
    /// The one topic `{scope}:{stream}` (e.g. `events:status`).
    pub fn single(scope: &'static str, stream: &'static str) -> Self {
        Self::named(format!("{scope}:{stream}"))
    }

    fn named(name: String) -> Self {
        Self {
            name: TopicName(name.into()),
            payload: PhantomData,
        }
    }

    /// The wire name.
    pub fn name(&self) -> &TopicName {
        &self.name
    }
}

impl<T> Clone for Topic<T> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            payload: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Topic<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.name.fmt(f)
    }
}

/// A family of topics with one payload type, one topic per id: `{scope}:{id}` or
/// `{scope}:{id}:{stream}`. Declared as a constant beside the payload type.
pub struct Topics<T> {
    scope: &'static str,
    stream: Option<&'static str>,
    payload: PhantomData<fn() -> T>,
}

impl<T: Payload> Topics<T> {
    /// `{scope}:{id}`: the changes of one thing (e.g. `event:{id}`).
    pub const fn per(scope: &'static str) -> Self {
        Self {
            scope,
            stream: None,
            payload: PhantomData,
        }
    }

    /// `{scope}:{id}:{stream}`: one stream about one thing (e.g. `event:{id}:scores`).
    pub const fn stream(scope: &'static str, stream: &'static str) -> Self {
        Self {
            scope,
            stream: Some(stream),
            payload: PhantomData,
        }
    }

    /// The topic of `id`.
    pub fn of(&self, id: Uuid) -> Topic<T> {
        match self.stream {
            None => Topic::named(format!("{}:{id}", self.scope)),
            Some(stream) => Topic::named(format!("{}:{id}:{stream}", self.scope)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_have_one_form() {
        let id = Uuid::nil();
        const CHANGES: Topics<u32> = Topics::per("event");
        const SCORES: Topics<u32> = Topics::stream("event", "scores");
        assert_eq!(CHANGES.of(id).name().as_str(), format!("event:{id}"));
        assert_eq!(SCORES.of(id).name().as_str(), format!("event:{id}:scores"));
        let status: Topic<u32> = Topic::single("events", "status");
        assert_eq!(status.name().as_str(), "events:status");
        assert_eq!(status.name().kind(), "events");
    }
}
