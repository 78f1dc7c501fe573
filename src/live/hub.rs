//! The per-instance hub: one broadcast channel per topic with local subscribers.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::TopicName;

/// How many messages a slow subscriber may fall behind before it is told to resynchronise.
const CHANNEL_CAPACITY: usize = 128;

/// One published message, shared by every local subscriber of its topic.
pub struct Delivery {
    /// Where it was published.
    pub topic: TopicName,
    /// The payload's JSON.
    pub payload: Bytes,
    /// The instance that published it.
    pub origin: Uuid,
    /// When it was published, µs since the epoch.
    pub published_at_us: i64,
    decoded: OnceLock<Option<Arc<dyn Any + Send + Sync>>>,
}

impl Delivery {
    /// A delivery of `payload` (JSON bytes).
    pub fn new(topic: TopicName, payload: Bytes, origin: Uuid, published_at_us: i64) -> Self {
        Self {
            topic,
            payload,
            origin,
            published_at_us,
            decoded: OnceLock::new(),
        }
    }

    /// The payload as `T`, decoded once per instance however many subscribers ask; `None` when it
    /// is not a `T` (logged).
    pub fn decode<T: DeserializeOwned + Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        let decoded = self.decoded.get_or_init(|| match serde_json::from_slice::<T>(&self.payload) {
            Ok(value) => Some(Arc::new(value) as Arc<dyn Any + Send + Sync>),
            Err(err) => {
                tracing::warn!(topic = self.topic.as_str(), error = %err, "undecodable live payload");
                None
            }
        });
        decoded.clone().and_then(|any| any.downcast::<T>().ok())
    }
}

/// What a hub subscriber receives (typed by [`Feed`](super::Feed)).
#[derive(Clone)]
pub(super) enum Signal {
    /// A message on the topic.
    Message(Arc<Delivery>),
    /// Messages may have been missed (the subscriber fell behind, or the broker reconnected):
    /// state streams should reload their snapshot.
    Resync,
}

/// Topic channels of this instance.
#[derive(Default)]
pub struct Hub {
    topics: Mutex<HashMap<TopicName, broadcast::Sender<Signal>>>,
}

impl Hub {
    /// A receiver of every later message on `topic`.
    pub(super) fn subscribe(&self, topic: &TopicName) -> Subscription {
        let mut topics = self
            .topics
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let sender = topics
            .entry(topic.clone())
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0);
        Subscription {
            receiver: sender.subscribe(),
        }
    }

    /// Hands `delivery` to every local subscriber of its topic.
    pub fn deliver(&self, delivery: Arc<Delivery>) {
        let latency = (now_micros() - delivery.published_at_us).max(0) as f64 / 1e6;
        let kind = delivery.topic.kind().to_owned();
        metrics::histogram!("rally_live_delivery_latency_seconds", "topic" => kind.clone())
            .record(latency);
        let mut topics = self
            .topics
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(sender) = topics.get(&delivery.topic) else {
            return;
        };
        let topic = delivery.topic.clone();
        match sender.send(Signal::Message(delivery)) {
            Ok(receivers) => {
                metrics::counter!("rally_live_delivered_total", "topic" => kind)
                    .increment(receivers as u64);
            }
            Err(_) => {
                topics.remove(&topic);
            }
        }
    }

    /// Tells every subscriber to reload (after the broker missed messages).
    pub fn resync_all(&self) {
        let topics = self
            .topics
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for sender in topics.values() {
            let _ = sender.send(Signal::Resync);
        }
    }

    /// How many local subscribers the topic named `name` has.
    pub(super) fn subscribers(&self, name: &str) -> usize {
        let topics = self
            .topics
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        topics
            .iter()
            .find(|(topic, _)| topic.as_str() == name)
            .map_or(0, |(_, sender)| sender.receiver_count())
    }

    /// Drops channels without receivers.
    pub fn sweep(&self) {
        let mut topics = self
            .topics
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        topics.retain(|_, sender| sender.receiver_count() > 0);
    }
}

/// One subscriber's view of a topic's raw messages.
pub(super) struct Subscription {
    receiver: broadcast::Receiver<Signal>,
}

impl Subscription {
    /// The next signal; a subscriber that fell behind gets [`Signal::Resync`] instead of the
    /// messages it missed (bounded memory, newest state wins). `None` once the hub is gone.
    pub(super) async fn next(&mut self) -> Option<Signal> {
        match self.receiver.recv().await {
            Ok(signal) => Some(signal),
            Err(RecvError::Lagged(missed)) => {
                metrics::counter!("rally_live_lagged_total").increment(missed);
                Some(Signal::Resync)
            }
            Err(RecvError::Closed) => None,
        }
    }
}

impl Subscription {
    /// The next signal already queued, without waiting.
    pub(super) fn try_next(&mut self) -> Option<Signal> {
        match self.receiver.try_recv() {
            Ok(signal) => Some(signal),
            Err(broadcast::error::TryRecvError::Lagged(_)) => Some(Signal::Resync),
            Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed) => {
                None
            }
        }
    }

    /// Discards everything already queued (a consumer that only needs to know "something changed").
    pub(super) fn drain(&mut self) {
        while !matches!(
            self.receiver.try_recv(),
            Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed)
        ) {}
    }
}

/// Microseconds since the epoch.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(topic: &TopicName, n: u32) -> Arc<Delivery> {
        Arc::new(Delivery::new(
            topic.clone(),
            serde_json::to_vec(&n).unwrap().into(),
            Uuid::nil(),
            now_micros(),
        ))
    }

    #[tokio::test]
    async fn every_subscriber_gets_the_same_decoded_payload() {
        let hub = Hub::default();
        let topic = TopicName::from_wire(format!("event:{}", Uuid::nil()));
        let mut a = hub.subscribe(&topic);
        let mut b = hub.subscribe(&topic);
        hub.deliver(delivery(&topic, 7));
        let (Some(Signal::Message(x)), Some(Signal::Message(y))) = (a.next().await, b.next().await)
        else {
            panic!("both get the message");
        };
        let (x, y) = (x.decode::<u32>().unwrap(), y.decode::<u32>().unwrap());
        assert_eq!(*x, 7);
        assert!(Arc::ptr_eq(&x, &y), "decoded once, shared");
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_told_to_resync() {
        let hub = Hub::default();
        let topic = TopicName::from_wire("events:status".to_owned());
        let mut slow = hub.subscribe(&topic);
        for n in 0..(CHANNEL_CAPACITY as u32 + 10) {
            hub.deliver(delivery(&topic, n));
        }
        assert!(matches!(slow.next().await, Some(Signal::Resync)));
    }

    #[test]
    fn channels_without_subscribers_are_dropped() {
        let hub = Hub::default();
        let topic = TopicName::from_wire(format!("event:{}", Uuid::nil()));
        drop(hub.subscribe(&topic));
        hub.sweep();
        assert!(hub.topics.lock().unwrap().is_empty());
    }
}
