//! Live updates: typed topics, the one publisher, the per-instance hub that fans a message out to
//! every local subscriber, the [`Broker`] that carries messages between instances, and the one
//! state-stream helper every state subscription is built on.
//!
//! A mutation commits, then publishes a small payload on a [`Topic<T>`] (through
//! [`WriteTxn::publish`](crate::db::WriteTxn::publish) inside a transaction, which sends it after the
//! commit, or [`Live::publish`] after a single-statement write). The payload is serialized once,
//! delivered at once to this instance's hub, and (with Redis) published for the other instances,
//! whose single pub/sub connection hands it to their own hubs. A hub keeps one broadcast channel per
//! topic, so the cost of a message on an instance is one decode, shared by all of that instance's
//! subscribers of the topic.
//!
//! Uses `error` only; knows no domain (each declares its topics beside its payloads).
//!
//! Wire format (Redis channel `{RALLY_REDIS_PREFIX}:<topic>`, `rally:<topic>` by default), compact
//! JSON: `{"v":1,"seq":<n>,"origin":"<instance uuid>","topic":"event:<id>","at":<unix µs>,`
//! `"payload":{…}}`, where `seq` numbers each instance's messages in the order it sends them (see
//! `redis` for the beats on `{prefix}:_beat` that carry the last number, and what a gap does).

mod hub;
mod redis;
mod stream;
mod topic;

use std::marker::PhantomData;
use std::sync::Arc;

use serde::Serialize;
use uuid::Uuid;

pub use self::hub::Delivery;
use self::hub::Hub;
pub use self::redis::RedisBroker;
pub use self::stream::{
    CATCH_UP_WINDOW, CLOCK_LEEWAY, CatchUp, Change, Missing, Next, Sent, Versioned, follow,
    follow_throttled,
};
pub use self::topic::{Payload, Topic, TopicName, Topics};

/// Version of the wire envelope.
pub const WIRE_VERSION: u8 = 1;

/// How messages reach other instances.
pub trait Broker: Send + Sync + 'static {
    /// Hands a delivery to this instance's hub and to every other instance. Never blocks on the
    /// network: a message that cannot reach other instances is dropped (and counted), local
    /// subscribers still get it.
    fn publish(&self, delivery: Arc<Delivery>);

    /// What `/readyz` reports.
    fn status(&self) -> BrokerStatus;
}

/// The broker's state for health reporting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BrokerStatus {
    /// `in-process` or `redis`.
    pub kind: &'static str,
    /// Whether other instances are reachable (always true in-process).
    pub connected: bool,
}

/// The default broker: one process, no network.
pub struct InProcessBroker {
    hub: Arc<Hub>,
}

impl Broker for InProcessBroker {
    fn publish(&self, delivery: Arc<Delivery>) {
        self.hub.deliver(delivery);
    }

    fn status(&self) -> BrokerStatus {
        BrokerStatus {
            kind: "in-process",
            connected: true,
        }
    }
}

/// A message serialized for its topic, not yet sent (see [`Live::prepare`]).
pub struct Prepared(Arc<Delivery>);

/// The live layer as the rest of Rally sees it: publish after commit, subscribe per topic.
#[derive(Clone)]
pub struct Live {
    hub: Arc<Hub>,
    broker: Arc<dyn Broker>,
    origin: Uuid,
}

impl Live {
    /// The in-process default.
    pub fn in_process() -> Self {
        let hub = Arc::new(Hub::default());
        Self {
            broker: Arc::new(InProcessBroker { hub: hub.clone() }),
            hub,
            origin: Uuid::now_v7(),
        }
    }

    /// Redis pub/sub between instances (`redis://…`); starts reconnecting in the background, so
    /// Rally starts (and serves) even while Redis is away.
    /// Channels are named `{prefix}:{topic}`.
    pub fn redis(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let hub = Arc::new(Hub::default());
        let origin = Uuid::now_v7();
        let broker = RedisBroker::start(url, prefix, hub.clone(), origin)?;
        Ok(Self {
            hub,
            broker: Arc::new(broker),
            origin,
        })
    }

    /// Publishes `payload` on `topic`. Call it after the change is committed.
    pub fn publish<T: Payload>(&self, topic: &Topic<T>, payload: &T) {
        if let Some(prepared) = self.prepare(topic, payload) {
            self.send(prepared);
        }
    }

    /// Serializes `payload` for `topic` now, to be [sent](Self::send) later (after a commit).
    pub fn prepare<T: Payload>(&self, topic: &Topic<T>, payload: &T) -> Option<Prepared> {
        match serde_json::to_vec(payload) {
            Ok(bytes) => Some(Prepared(Arc::new(Delivery::new(
                topic.name().clone(),
                bytes.into(),
                self.origin,
                hub::now_micros(),
            )))),
            Err(err) => {
                tracing::error!(error = %err, topic = topic.name().as_str(), "cannot serialize a live payload");
                None
            }
        }
    }

    /// Sends a prepared message.
    pub fn send(&self, prepared: Prepared) {
        metrics::counter!("rally_live_published_total", "topic" => prepared.0.topic.kind().to_owned())
            .increment(1);
        self.broker.publish(prepared.0);
    }

    /// Receives every message published on `topic` from now on, on any instance.
    pub fn subscribe<T: Payload>(&self, topic: &Topic<T>) -> Feed<T> {
        Feed {
            inner: self.hub.subscribe(topic.name()),
            payload: PhantomData,
        }
    }

    /// The broker's state.
    pub fn status(&self) -> BrokerStatus {
        self.broker.status()
    }

    /// How many subscribers on this instance listen to the topic with the wire name `name` (the
    /// signal tests wait for before they make a change an event stream must see).
    pub fn subscribers(&self, name: &str) -> usize {
        self.hub.subscribers(name)
    }

    /// Drops topic channels nobody listens to any more.
    pub fn sweep(&self) {
        self.hub.sweep();
    }
}

/// What a subscriber of a `Topic<T>` receives.
pub enum Signal<T> {
    /// A message on the topic, decoded once per instance however many subscribers read it.
    Message(Arc<T>),
    /// Messages may have been missed (the subscriber fell behind, or the broker reconnected):
    /// state streams reload their snapshot.
    Resync,
}

/// One subscriber's view of a `Topic<T>`.
pub struct Feed<T> {
    inner: hub::Subscription,
    payload: PhantomData<fn() -> T>,
}

impl<T: Payload> Feed<T> {
    /// The next signal; a subscriber that fell behind gets [`Signal::Resync`] instead of the
    /// messages it missed (bounded memory, newest state wins). A payload that does not decode as `T`
    /// is skipped (and logged once per message). `None` once the hub is gone.
    pub async fn next(&mut self) -> Option<Signal<T>> {
        loop {
            match self.inner.next().await? {
                hub::Signal::Message(delivery) => {
                    if let Some(payload) = delivery.decode::<T>() {
                        return Some(Signal::Message(payload));
                    }
                }
                hub::Signal::Resync => return Some(Signal::Resync),
            }
        }
    }

    /// Discards everything already queued (a consumer that only needs to know "something changed").
    pub fn drain(&mut self) {
        self.inner.drain();
    }

    /// The next signal already queued, without waiting (`None` when nothing is).
    pub fn try_next(&mut self) -> Option<Signal<T>> {
        loop {
            match self.inner.try_next()? {
                hub::Signal::Message(delivery) => {
                    if let Some(payload) = delivery.decode::<T>() {
                        return Some(Signal::Message(payload));
                    }
                }
                hub::Signal::Resync => return Some(Signal::Resync),
            }
        }
    }
}
