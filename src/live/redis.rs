//! The Redis broker: PUBLISH for outgoing messages (whatever is queued goes in one pipeline), and
//! **one** pub/sub connection per process
//! (`PSUBSCRIBE {prefix}:*`, `rally:*` by default) for incoming ones, fanned out by the local hub.
//!
//! Both sides reconnect with exponential backoff (100 ms to 5 s). While Redis is away, publishing
//! drops the cross-instance copy (counted in `rally_live_dropped_total`) but local subscribers still
//! get every message, and queries and mutations are unaffected. After the subscriber reconnects it
//! tells every local subscriber to resynchronise, since messages published meanwhile are lost (Redis
//! pub/sub does not keep them).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::hub::{Delivery, Hub};
use super::{Broker, BrokerStatus, TopicName, WIRE_VERSION};

/// Outgoing messages waiting for the publisher connection.
const OUTBOX: usize = 10_000;
/// Most messages sent in one pipeline.
const PUBLISH_BATCH: usize = 256;
/// A health ping on the pub/sub connection this often.
const PING_EVERY: Duration = Duration::from_secs(5);
/// Longest wait for Redis to answer anything.
const TIMEOUT: Duration = Duration::from_secs(3);

/// Redis pub/sub between instances.
pub struct RedisBroker {
    hub: Arc<Hub>,
    origin: Uuid,
    outbox: mpsc::Sender<(String, String)>,
    connected: Arc<AtomicBool>,
    /// `{RALLY_REDIS_PREFIX}:`, before every topic's channel name.
    channels: String,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    v: u8,
    origin: Uuid,
    topic: String,
    at: i64,
    #[serde(borrow)]
    payload: &'a RawValue,
}

impl RedisBroker {
    /// Starts the publisher and subscriber tasks for `url`, on the channels under `prefix`.
    pub fn start(url: &str, prefix: &str, hub: Arc<Hub>, origin: Uuid) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)
            .map_err(|e| anyhow::anyhow!("RALLY_REDIS_URL is not a Redis URL: {e}"))?;
        let (outbox, queue) = mpsc::channel(OUTBOX);
        let connected = Arc::new(AtomicBool::new(false));
        tokio::spawn(publisher(client.clone(), queue));
        let channels = format!("{prefix}:");
        let pattern = format!("{channels}*");
        tokio::spawn(subscriber(
            client,
            pattern,
            hub.clone(),
            origin,
            connected.clone(),
        ));
        Ok(Self {
            hub,
            origin,
            outbox,
            connected,
            channels,
        })
    }
}

impl Broker for RedisBroker {
    fn publish(&self, delivery: Arc<Delivery>) {
        let payload = String::from_utf8_lossy(&delivery.payload);
        let wire = format!(
            r#"{{"v":{WIRE_VERSION},"origin":"{}","topic":{},"at":{},"payload":{payload}}}"#,
            self.origin,
            serde_json::Value::from(delivery.topic.as_str()),
            delivery.published_at_us,
        );
        let channel = format!("{}{}", self.channels, delivery.topic.as_str());
        self.hub.deliver(delivery);
        if self.outbox.try_send((channel, wire)).is_err() {
            metrics::counter!("rally_live_dropped_total").increment(1);
        }
    }

    fn status(&self) -> BrokerStatus {
        BrokerStatus {
            kind: "redis",
            connected: self.connected.load(Ordering::Relaxed),
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(6))).min(Duration::from_secs(5))
}

/// Sends queued messages with PUBLISH, reconnecting as needed.
async fn publisher(client: redis::Client, mut queue: mpsc::Receiver<(String, String)>) {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(TIMEOUT))
        .set_response_timeout(Some(TIMEOUT));
    let mut attempt = 0;
    'connect: loop {
        let mut connection = match client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(connection) => {
                attempt = 0;
                connection
            }
            Err(err) => {
                tracing::debug!(error = %err, "redis publisher cannot connect");
                // Messages queued while Redis is away are dropped: they are stale by the time it
                // returns, and subscribers resynchronise on reconnect.
                while let Ok(_stale) = queue.try_recv() {
                    metrics::counter!("rally_live_dropped_total").increment(1);
                }
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
                continue;
            }
        };
        let mut batch = Vec::with_capacity(PUBLISH_BATCH);
        while queue.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
            // Everything queued meanwhile goes in one pipeline (one round trip, in order): one
            // PUBLISH awaited at a time fell behind a busy instance's writes, until a slow answer
            // timed out and the reconnection dropped the whole queue.
            let mut pipeline = redis::pipe();
            for (channel, message) in &batch {
                pipeline.publish(channel, message).ignore();
            }
            let sent: redis::RedisResult<()> = pipeline.query_async(&mut connection).await;
            if let Err(err) = sent {
                tracing::warn!(error = %err, "redis publish failed; reconnecting");
                metrics::counter!("rally_live_dropped_total").increment(batch.len() as u64);
                batch.clear();
                continue 'connect;
            }
            batch.clear();
        }
        return;
    }
}

/// Holds the one pub/sub connection, handing every foreign message to the hub.
async fn subscriber(
    client: redis::Client,
    pattern: String,
    hub: Arc<Hub>,
    origin: Uuid,
    connected: Arc<AtomicBool>,
) {
    let mut attempt = 0;
    let mut was_connected = false;
    loop {
        let pubsub = tokio::time::timeout(TIMEOUT, client.get_async_pubsub()).await;
        let mut pubsub = match pubsub {
            Ok(Ok(pubsub)) => pubsub,
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "redis subscriber cannot connect");
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
                continue;
            }
            Err(_) => {
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
                continue;
            }
        };
        if let Err(err) = pubsub.psubscribe(&pattern).await {
            tracing::warn!(error = %err, "redis PSUBSCRIBE failed");
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
            continue;
        }
        attempt = 0;
        connected.store(true, Ordering::Relaxed);
        metrics::gauge!("rally_redis_connected").set(1.0);
        if was_connected {
            metrics::counter!("rally_redis_reconnects_total").increment(1);
            tracing::info!("redis subscriber reconnected; resynchronising subscribers");
            hub.resync_all();
        } else {
            tracing::info!("redis subscriber connected");
        }
        was_connected = true;
        let (mut sink, mut stream) = pubsub.split();
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        loop {
            tokio::select! {
                message = stream.next() => {
                    let Some(message) = message else { break };
                    receive(&hub, origin, message.get_payload_bytes());
                }
                _ = ping.tick() => {
                    // In pub/sub mode Redis answers PING with `["pong", ""]`, not `PONG`: any answer will do.
                    let answer = tokio::time::timeout(TIMEOUT, sink.ping::<redis::Value>()).await;
                    if !matches!(answer, Ok(Ok(_))) {
                        tracing::warn!("redis pub/sub connection stopped answering");
                        break;
                    }
                }
            }
        }
        connected.store(false, Ordering::Relaxed);
        metrics::gauge!("rally_redis_connected").set(0.0);
        tracing::warn!("redis subscriber disconnected; reconnecting");
        tokio::time::sleep(backoff(0)).await;
    }
}

fn receive(hub: &Hub, origin: Uuid, bytes: &[u8]) {
    let envelope: Envelope<'_> = match serde_json::from_slice(bytes) {
        Ok(envelope) => envelope,
        Err(err) => {
            tracing::warn!(error = %err, "unreadable message on a rally channel");
            return;
        }
    };
    if envelope.v != WIRE_VERSION || envelope.origin == origin {
        return;
    }
    let payload = bytes::Bytes::copy_from_slice(envelope.payload.get().as_bytes());
    hub.deliver(Arc::new(Delivery::new(
        TopicName::from_wire(envelope.topic),
        payload,
        envelope.origin,
        envelope.at,
    )));
}
