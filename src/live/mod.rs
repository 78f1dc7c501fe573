//! Live updates: typed topics, the per-instance hub that fans a message out to every local
//! subscriber, and the [`Broker`] that carries messages between instances.
//!
//! A mutation commits, then calls [`Live::publish`] with a small serde payload. The payload is
//! serialized once, delivered at once to this instance's hub, and (with Redis) published for the
//! other instances, whose single pub/sub connection hands it to their own hubs. A hub keeps one
//! broadcast channel per topic, so the cost of a message on an instance is one decode, shared by all
//! of that instance's subscribers of the topic (see [`Delivery::decode`]).
//!
//! Wire format (Redis channel `rally:<topic>`): compact JSON
//! `{"v":1,"origin":"<instance uuid>","topic":"event:<id>","at":<unix µs>,"payload":{…}}`.

mod hub;
mod redis;

use std::sync::Arc;

use serde::Serialize;
use uuid::Uuid;

pub use self::hub::{Delivery, Hub, Signal, Subscription};
pub use self::redis::RedisBroker;

/// Version of the wire envelope.
pub const WIRE_VERSION: u8 = 1;

/// A named stream of messages. Constructors are the only way to make one, so names stay uniform.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Topic(String);

impl Topic {
    /// Changes of one event (details, status, likes).
    pub fn event(id: Uuid) -> Self {
        Self(format!("event:{id}"))
    }

    /// A stream about one event, e.g. `event:{id}:scores`.
    pub fn event_stream(id: Uuid, stream: &str) -> Self {
        Self(format!("event:{id}:{stream}"))
    }

    /// Changes of one game.
    pub fn game(id: Uuid) -> Self {
        Self(format!("game:{id}"))
    }

    /// Status changes of every event.
    pub fn event_status() -> Self {
        Self("events:status".to_owned())
    }

    /// A stream private to one user, e.g. `user:{id}:meetings`.
    pub fn user(id: Uuid, stream: &str) -> Self {
        Self(format!("user:{id}:{stream}"))
    }

    /// The topic's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The topic's kind (its first segment), a bounded metrics label.
    pub fn kind(name: &str) -> &str {
        name.split(':').next().unwrap_or("other")
    }

    pub(crate) fn from_wire(name: String) -> Self {
        Self(name)
    }
}

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
    pub fn redis(url: &str) -> anyhow::Result<Self> {
        let hub = Arc::new(Hub::default());
        let origin = Uuid::now_v7();
        let broker = RedisBroker::start(url, hub.clone(), origin)?;
        Ok(Self {
            hub,
            broker: Arc::new(broker),
            origin,
        })
    }

    /// Publishes `payload` on `topic`. Call it after the change is committed.
    pub fn publish<T: Serialize>(&self, topic: &Topic, payload: &T) {
        match serde_json::to_vec(payload) {
            Ok(bytes) => {
                metrics::counter!("rally_live_published_total", "topic" => Topic::kind(topic.as_str()).to_owned())
                    .increment(1);
                let delivery =
                    Delivery::new(topic.clone(), bytes.into(), self.origin, hub::now_micros());
                self.broker.publish(Arc::new(delivery));
            }
            Err(err) => {
                tracing::error!(error = %err, topic = topic.as_str(), "cannot serialize a live payload")
            }
        }
    }

    /// Receives every message published on `topic` from now on, on any instance.
    pub fn subscribe(&self, topic: &Topic) -> Subscription {
        self.hub.subscribe(topic)
    }

    /// The broker's state.
    pub fn status(&self) -> BrokerStatus {
        self.broker.status()
    }

    /// Drops topic channels nobody listens to any more.
    pub fn sweep(&self) {
        self.hub.sweep();
    }
}
