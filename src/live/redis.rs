//! The Redis broker: PUBLISH for outgoing messages (whatever is queued goes in one pipeline), and
//! **one** pub/sub connection per process
//! (`PSUBSCRIBE {prefix}:*`, `rally:*` by default) for incoming ones, fanned out by the local hub.
//!
//! Both sides reconnect with exponential backoff (100 ms to 5 s). While Redis is away, publishing
//! drops the cross-instance copy (counted in `rally_live_dropped_total`) but local subscribers still
//! get every message, and queries and mutations are unaffected. Redis pub/sub keeps nothing, so a
//! message lost on either side is gone, and every loss makes the subscribers that may have missed it
//! resynchronise:
//! - the subscriber connection (re)connects: every local subscriber resynchronises, since anything
//!   published while it was away is lost;
//! - another instance dropped messages (its outbox was full, a pipeline failed, Redis was away from
//!   its side only): each instance numbers what it sends (`seq`, one sequence per origin, in the
//!   order it sends) and skips a number for every loss, and says its last number in a beat on
//!   `{prefix}:_beat` every [`PING_EVERY`]. A receiver that finds a number missing resynchronises
//!   every local subscriber, within a beat of the sender's next connection. Every envelope and
//!   beat also says when its sender last lost messages (`lost`, its wall clock): a sender first
//!   heard just after this connection opened (whose earlier numbers the opening's resync covers)
//!   that lost messages since about then makes the receivers resynchronise too.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio::time::Instant;
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
/// The topic of the beats that carry each instance's last sequence number (no subscriber has it:
/// topics are `kind:id`).
const BEAT_TOPIC: &str = "_beat";
/// An origin not heard from (not even a beat) for this long has stopped; it is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// At most one resynchronisation for gaps per window (another is owed until it ends): this long at
/// first, twice as long after each that followed the last within two windows, up to
/// [`LONGEST_GAP_WINDOW`].
const GAP_RESYNC_EVERY: Duration = Duration::from_secs(1);
/// The widest window between resynchronisations for gaps that keep coming.
const LONGEST_GAP_WINDOW: Duration = Duration::from_secs(30);
/// How far two instances' clocks may disagree when a receiver compares a sender's last loss with
/// when its own connection opened, in microseconds.
const CLOCK_SKEW_US: i64 = 2_000_000;

/// Redis pub/sub between instances.
pub struct RedisBroker {
    hub: Arc<Hub>,
    origin: Uuid,
    outbox: mpsc::Sender<Outgoing>,
    /// Set when a message could not even be queued: the publisher skips a sequence number.
    lost: Arc<AtomicBool>,
    connected: Arc<AtomicBool>,
    /// `{RALLY_REDIS_PREFIX}:`, before every topic's channel name.
    channels: String,
}

/// A message for the publisher: its channel, and its envelope after the sequence number (the
/// publisher numbers messages in the order it sends them).
struct Outgoing {
    channel: String,
    rest: String,
}

/// Where and as whom the publisher sends its beats.
struct Beat {
    channel: String,
    origin: Uuid,
}

/// This instance's sequence numbers: one for every message sent, in the order sent, and one
/// skipped for every message lost, so the receivers see the gap; and when it last lost any.
#[derive(Default)]
struct Numbers {
    last: u64,
    /// Wall-clock microseconds of the last loss (0: none yet).
    lost_at: i64,
}

impl Numbers {
    /// A message was lost before it had a number.
    fn skip(&mut self) {
        self.last += 1;
        self.lost();
    }

    /// Messages were lost (numbered ones too: a pipeline that failed spent its numbers).
    fn lost(&mut self) {
        self.lost_at = super::hub::now_micros();
    }

    /// The envelope of the next message: its number, then `rest`.
    fn envelope(&mut self, rest: &str) -> String {
        self.last += 1;
        format!(
            r#"{{"v":{WIRE_VERSION},"seq":{},"lost":{},{rest}"#,
            self.last, self.lost_at
        )
    }

    /// A beat: the last number, on no subscriber's topic.
    fn beat(&self, origin: Uuid) -> String {
        format!(
            r#"{{"v":{WIRE_VERSION},"seq":{},"lost":{},"origin":"{origin}","topic":"{BEAT_TOPIC}","at":{},"payload":null}}"#,
            self.last,
            self.lost_at,
            super::hub::now_micros(),
        )
    }
}

/// The last sequence number heard from each other instance, and when; and when this connection
/// last made every subscriber resynchronise for a gap.
struct Heard {
    origins: HashMap<Uuid, (u64, Instant)>,
    /// When the connection opened (and resynchronised everyone).
    opened: Instant,
    /// The same, on the wall clock (microseconds), to compare with a sender's last loss.
    opened_us: i64,
    /// The last resynchronisation for a gap, the window after it, and whether another is owed.
    resynced: Instant,
    window: Duration,
    owed: bool,
}

impl Heard {
    /// For a connection that opened just now.
    fn new() -> Self {
        let now = Instant::now();
        Self {
            origins: HashMap::new(),
            opened: now,
            opened_us: super::hub::now_micros(),
            resynced: now,
            window: GAP_RESYNC_EVERY,
            owed: false,
        }
    }

    /// Records `seq` from `origin` (a beat repeats the last number sent), which last lost messages
    /// at `lost_at` (its wall clock, microseconds; 0 for never); whether numbers are missing before
    /// it. Every running instance beats within [`PING_EVERY`], so an origin first heard soon after
    /// the connection opened is one it resynchronised for, unless it lost messages since about then
    /// (between the opening and its first message here); one first heard later started since (its
    /// numbers begin at 1, its beats at 0) or had lost Redis (or was forgotten) and must show no gap
    /// from its beginning either.
    fn missing(&mut self, origin: Uuid, seq: u64, beat: bool, lost_at: i64) -> bool {
        let expected = u64::from(!beat);
        let now = Instant::now();
        let missing = match self.origins.get(&origin) {
            Some(&(last, _)) => seq > last + expected,
            None if now - self.opened > 3 * PING_EVERY => seq > expected,
            None => seq > expected && lost_at > self.opened_us - CLOCK_SKEW_US,
        };
        let last = self
            .origins
            .get(&origin)
            .map_or(seq, |&(last, _)| last.max(seq));
        self.origins.insert(origin, (last, now));
        missing
    }

    /// Whether every subscriber resynchronises now: a gap was found (or one is owed) and the
    /// window after the last resynchronisation for a gap has passed. An instance that keeps losing
    /// messages (overloaded, its outbox full) makes the others resynchronise once per window, and
    /// the window widens while gaps keep coming (1 s doubling to 30 s), so the reloads do not add
    /// to the load that causes them; a quiet spell narrows it again.
    fn resync_due(&mut self, gap: bool) -> bool {
        self.owed |= gap;
        let since = self.resynced.elapsed();
        if !self.owed || since < self.window {
            return false;
        }
        self.window = if since < self.window * 2 {
            (self.window * 2).min(LONGEST_GAP_WINDOW)
        } else {
            GAP_RESYNC_EVERY
        };
        self.owed = false;
        self.resynced = Instant::now();
        true
    }

    /// Forgets origins not heard from for [`FORGET_AFTER`] (stopped instances).
    fn forget_silent(&mut self) {
        self.origins
            .retain(|_, (_, heard)| heard.elapsed() < FORGET_AFTER);
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    v: u8,
    /// The sender's sequence number (absent from instances older than the numbering).
    seq: Option<u64>,
    /// When the sender last lost messages, its wall clock in microseconds (0, or absent from older
    /// instances: never, as far as it says).
    #[serde(default)]
    lost: i64,
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
        let lost = Arc::new(AtomicBool::new(false));
        let channels = format!("{prefix}:");
        let beat = Beat {
            channel: format!("{channels}{BEAT_TOPIC}"),
            origin,
        };
        tokio::spawn(publisher(client.clone(), queue, lost.clone(), beat));
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
            lost,
            connected,
            channels,
        })
    }
}

impl Broker for RedisBroker {
    fn publish(&self, delivery: Arc<Delivery>) {
        let payload = String::from_utf8_lossy(&delivery.payload);
        let rest = format!(
            r#""origin":"{}","topic":{},"at":{},"payload":{payload}}}"#,
            self.origin,
            serde_json::Value::from(delivery.topic.as_str()),
            delivery.published_at_us,
        );
        let channel = format!("{}{}", self.channels, delivery.topic.as_str());
        self.hub.deliver(delivery);
        if self.outbox.try_send(Outgoing { channel, rest }).is_err() {
            self.lost.store(true, Ordering::Relaxed);
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

/// Sends queued messages with PUBLISH, numbered, and a beat every [`PING_EVERY`], reconnecting as
/// needed.
async fn publisher(
    client: redis::Client,
    mut queue: mpsc::Receiver<Outgoing>,
    lost: Arc<AtomicBool>,
    beat: Beat,
) {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(TIMEOUT))
        .set_response_timeout(Some(TIMEOUT));
    let mut numbers = Numbers::default();
    let mut beats = tokio::time::interval(PING_EVERY);
    beats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
                // returns, and the skipped numbers make the receivers resynchronise.
                while let Ok(_stale) = queue.try_recv() {
                    numbers.skip();
                    metrics::counter!("rally_live_dropped_total").increment(1);
                }
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
                continue;
            }
        };
        let mut batch = Vec::with_capacity(PUBLISH_BATCH);
        loop {
            tokio::select! {
                received = queue.recv_many(&mut batch, PUBLISH_BATCH) => {
                    if received == 0 {
                        return;
                    }
                }
                _ = beats.tick() => {}
            }
            if lost.swap(false, Ordering::Relaxed) {
                numbers.skip();
            }
            // Everything queued meanwhile goes in one pipeline (one round trip, in order): one
            // PUBLISH awaited at a time fell behind a busy instance's writes, until a slow answer
            // timed out and the reconnection dropped the whole queue.
            let mut pipeline = redis::pipe();
            for message in &batch {
                pipeline
                    .publish(&message.channel, numbers.envelope(&message.rest))
                    .ignore();
            }
            if batch.is_empty() {
                pipeline
                    .publish(&beat.channel, numbers.beat(beat.origin))
                    .ignore();
            }
            let sent: redis::RedisResult<()> = pipeline.query_async(&mut connection).await;
            if let Err(err) = sent {
                // The batch's numbers are spent, so the receivers see the gap (a beat alone spent
                // none and lost nothing).
                if !batch.is_empty() {
                    numbers.lost();
                }
                tracing::warn!(error = %err, "redis publish failed; reconnecting");
                metrics::counter!("rally_live_dropped_total").increment(batch.len() as u64);
                batch.clear();
                continue 'connect;
            }
            batch.clear();
        }
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
        } else {
            tracing::info!("redis subscriber connected");
        }
        // Whatever was published before this connection (while it was away, or since start-up)
        // never reaches it.
        hub.resync_all();
        was_connected = true;
        let mut heard = Heard::new();
        let (mut sink, mut stream) = pubsub.split();
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        loop {
            tokio::select! {
                message = stream.next() => {
                    let Some(message) = message else { break };
                    receive(&hub, origin, &mut heard, message.get_payload_bytes());
                }
                _ = ping.tick() => {
                    heard.forget_silent();
                    if heard.resync_due(false) {
                        resync_for_gaps(&hub);
                    }
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

/// Every local subscriber resynchronises: messages of another instance were lost.
fn resync_for_gaps(hub: &Hub) {
    tracing::info!("messages from another instance were lost; resynchronising subscribers");
    hub.resync_all();
}

/// Hands a message from another instance to the hub; when numbers from its sender are missing,
/// every local subscriber resynchronises first.
fn receive(hub: &Hub, origin: Uuid, heard: &mut Heard, bytes: &[u8]) {
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
    let beat = envelope.topic == BEAT_TOPIC;
    let gap = envelope
        .seq
        .is_some_and(|seq| heard.missing(envelope.origin, seq, beat, envelope.lost));
    if gap {
        metrics::counter!("rally_live_gaps_total").increment(1);
    }
    if heard.resync_due(gap) {
        resync_for_gaps(hub);
    }
    if beat {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What a receiver reads off an envelope: its number, and whether it is a beat.
    fn read(wire: &str) -> (u64, bool) {
        let envelope: Envelope<'_> = serde_json::from_str(wire).expect("an envelope");
        (
            envelope.seq.expect("numbered"),
            envelope.topic == BEAT_TOPIC,
        )
    }

    #[test]
    fn a_receiver_sees_a_gap_exactly_where_the_sender_lost_messages() {
        let sender = Uuid::new_v4();
        let rest = format!(r#""origin":"{sender}","topic":"event:1","at":1,"payload":{{}}}}"#);
        let mut numbers = Numbers::default();
        let mut heard = Heard::new();
        let mut gaps = Vec::new();
        let mut hear = |wire: String| {
            let (seq, beat) = read(&wire);
            gaps.push(heard.missing(sender, seq, beat, 0));
        };
        hear(numbers.envelope(&rest)); // first heard: nothing missing
        hear(numbers.envelope(&rest));
        hear(numbers.beat(sender)); // a beat repeats the last number
        numbers.skip(); // lost
        hear(numbers.beat(sender)); // the beat shows the loss
        hear(numbers.envelope(&rest));
        numbers.skip();
        hear(numbers.envelope(&rest)); // a message shows it too
        hear(numbers.beat(sender));
        assert_eq!(gaps, [false, false, false, true, false, true, false]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_sender_first_heard_late_must_show_no_gap_from_its_beginning() {
        let mut heard = Heard::new();
        let (running, started, cut_off) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        assert!(
            !heard.missing(running, 500, true, 0),
            "running when the connection opened, which resynchronised for it"
        );
        tokio::time::advance(4 * PING_EVERY).await;
        assert!(
            !heard.missing(started, 0, true, 0),
            "started since: its first beat"
        );
        assert!(
            !heard.missing(started, 1, false, 0),
            "and its first message"
        );
        assert!(
            heard.missing(cut_off, 7, true, 0),
            "numbers this connection never heard"
        );
        assert!(
            !heard.missing(cut_off, 6, false, 0),
            "one that crossed a later one"
        );
        assert!(
            !heard.missing(cut_off, 8, false, 0),
            "the order goes on from the highest"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn gaps_resynchronise_at_most_once_a_window_that_widens_while_they_keep_coming() {
        let second = Duration::from_secs(1);
        let mut heard = Heard::new();
        assert!(
            !heard.resync_due(true),
            "just resynchronised as it opened: owed"
        );
        assert!(!heard.resync_due(false), "still owed");
        tokio::time::advance(second).await;
        assert!(
            heard.resync_due(false),
            "the owed one, once the window ended"
        );
        assert!(!heard.resync_due(true), "a new gap in the window: owed");
        tokio::time::advance(second).await;
        assert!(
            !heard.resync_due(false),
            "gaps kept coming: the window is 2 s now"
        );
        tokio::time::advance(second).await;
        assert!(heard.resync_due(false));
        // A gap right after each resynchronisation: the next comes a window later, each window
        // twice the last.
        for _ in 0..10 {
            assert!(!heard.resync_due(true));
            tokio::time::advance(heard.window).await;
            assert!(heard.resync_due(false));
        }
        assert_eq!(heard.window, LONGEST_GAP_WINDOW, "at most 30 s");
        tokio::time::advance(LONGEST_GAP_WINDOW * 3).await;
        assert!(heard.resync_due(true), "after a quiet spell, at once");
        assert_eq!(
            heard.window, GAP_RESYNC_EVERY,
            "and the window is 1 s again"
        );
        assert!(!heard.resync_due(false), "nothing owed");
    }

    #[test]
    fn a_sender_first_heard_just_after_opening_that_lost_messages_since_shows_a_gap() {
        let sender = Uuid::new_v4();
        let rest = format!(r#""origin":"{sender}","topic":"event:1","at":1,"payload":{{}}}}"#);
        let mut numbers = Numbers::default();
        for _ in 0..40 {
            numbers.envelope(&rest);
        }
        let beat = numbers.beat(sender);
        let before_any_loss: Envelope<'_> = serde_json::from_str(&beat).expect("a beat");
        assert_eq!(before_any_loss.lost, 0);
        // The receiver's connection opens (and resynchronises); then the sender's pipeline fails.
        let mut heard = Heard::new();
        numbers.lost();
        let wire = numbers.envelope(&rest);
        let after: Envelope<'_> = serde_json::from_str(&wire).expect("an envelope");
        assert!(after.lost >= heard.opened_us, "the loss is stamped: {wire}");
        assert!(
            heard.missing(sender, after.seq.expect("numbered"), false, after.lost),
            "first heard after a loss since the opening"
        );
        let quiet = Uuid::new_v4();
        assert!(
            !heard.missing(quiet, 500, false, 0),
            "running, no loss: the opening's resync covered it"
        );
        let long_ago = heard.opened_us - 60_000_000;
        assert!(
            !heard.missing(Uuid::new_v4(), 500, false, long_ago),
            "a loss a minute before the opening: covered too"
        );
    }

    #[test]
    fn envelopes_of_instances_without_numbers_are_still_read() {
        let old = r#"{"v":1,"origin":"00000000-0000-0000-0000-000000000000","topic":"event:1","at":1,"payload":{}}"#;
        let envelope: Envelope<'_> = serde_json::from_str(old).expect("an envelope");
        assert_eq!(envelope.seq, None);
    }
}
