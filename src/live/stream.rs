//! The one state stream: "snapshot, then changes" for every state subscription.
//!
//! [`follow`] subscribes to a topic *before* it loads the snapshot (so no change falls between the
//! two), yields the snapshot, then turns each message into the next state. It never goes back: a
//! state that does not supersede the last one yielded (deliveries can cross between instances) is
//! dropped. When messages may have been missed ([`Signal::Resync`]: a lagging subscriber, a broker
//! that reconnected) it reloads the snapshot; a reload that fails is logged and retried with
//! backoff (100 ms doubling to 5 s), so the stream neither ends silently nor skips ahead of the
//! truth. [`follow_throttled`] is the variant for states that are recomputed rather than carried
//! by the message (leaderboards): every message means "reload", at most once per window. An event
//! stream that must catch up after a resync (`trackingCommands`, `myMeetings`, `proximityAlerts`,
//! `territoryChanged`, `eventStatusChanged`) reads its feed through [`CatchUp::next`]: each
//! message, or a [`Next::CatchUp`] after a resync or when a failed catch-up is due again (with
//! backoff, while messages keep flowing); one that reads missed events back from the database keeps
//! what it sent ([`Sent`], the newest capture per cell, or the newest version and status per event)
//! so it sends each once.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::Stream;
use tokio::time::Instant;

use super::{Feed, Payload, Signal};
use crate::error::{Error, Result};

/// First wait before retrying a failed reload; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between reload attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A state with an order: a stream never yields a state older than one it already yielded.
pub trait Versioned: Send + 'static {
    /// Grows with every committed change.
    type Version: PartialOrd + Copy + Send + Sync + 'static;
    /// This state's version.
    fn version(&self) -> Self::Version;
}

/// What a message means for a state stream.
pub enum Change<S> {
    /// The next state, carried by the message.
    State(S),
    /// Not about this stream (e.g. another guest's cup).
    Skip,
    /// Something changed that the message does not carry: reload the snapshot.
    Reload,
    /// The thing is gone: the stream completes.
    End,
}

/// What a missing snapshot means.
#[derive(Clone, Copy, Debug)]
pub enum Missing {
    /// The subscription is refused with NOT_FOUND (this message); a later reload that finds
    /// nothing completes the stream.
    NotFound(&'static str),
    /// Nothing yet: the stream waits for the first state.
    Wait,
}

/// Follows a state: the snapshot from `load` first (unless [`Missing::Wait`] and there is none),
/// then every change `apply` reads off a message. Errors of the first load refuse the subscription.
pub async fn follow<P, S, L, F, A>(
    feed: Feed<P>,
    missing: Missing,
    load: L,
    apply: A,
) -> Result<impl Stream<Item = S> + Send + 'static>
where
    P: Payload,
    S: Versioned,
    L: Fn() -> F + Send + Sync + 'static,
    F: Future<Output = Result<Option<S>>> + Send,
    A: Fn(&P) -> Change<S> + Send + 'static,
{
    let snapshot = load().await?;
    if snapshot.is_none()
        && let Missing::NotFound(message) = missing
    {
        return Err(Error::NotFound(message));
    }
    Ok(run(feed, missing, None, Some(snapshot), load, apply))
}

/// Follows a state that is recomputed on every change (a background feed, not one subscriber's):
/// the first load and each message (or resync) load it, retried until they succeed, at most once
/// per `window` (a change after a quiet spell at once; a burst within a window of the last load
/// waits for the window's end and is loaded once).
pub fn follow_throttled<P, S, L, F>(
    feed: Feed<P>,
    window: Duration,
    load: L,
) -> impl Stream<Item = S> + Send + 'static
where
    P: Payload,
    S: Versioned,
    L: Fn() -> F + Send + Sync + 'static,
    F: Future<Output = Result<Option<S>>> + Send,
{
    run(feed, Missing::Wait, Some(window), None, load, |_: &P| {
        Change::Reload
    })
}

/// How an event stream that catches up after a [`Signal::Resync`] (it reads what it missed from
/// the database) keeps a catch-up that failed: owed, and tried again at a deadline that backs off
/// from 100 ms to 5 s (`FIRST_BACKOFF` to `MAX_BACKOFF`, with up to a quarter more, so streams that
/// failed together do not retry together), while the stream goes on delivering messages (retrying
/// in place would hold them back). The deadline stays put however often the stream polls [`due`]
/// between messages.
///
/// [`due`]: CatchUp::due
#[derive(Default)]
pub struct CatchUp {
    retry: Option<(Instant, Duration)>,
}

/// What an event stream that catches up does next.
pub enum Next<P> {
    /// Deliver a message.
    Message(Arc<P>),
    /// Read what was missed: after a [`Signal::Resync`], or an owed catch-up that is due.
    CatchUp,
}

impl CatchUp {
    /// The stream's next step; `None` once the feed ends.
    pub async fn next<P: Payload>(&self, feed: &mut Feed<P>) -> Option<Next<P>> {
        tokio::select! {
            signal = feed.next() => match signal? {
                Signal::Message(payload) => Some(Next::Message(payload)),
                Signal::Resync => Some(Next::CatchUp),
            },
            () = self.due() => Some(Next::CatchUp),
        }
    }

    /// Completes when an owed catch-up is due again; never while none is owed.
    pub async fn due(&self) {
        match self.retry {
            Some((at, _)) => tokio::time::sleep_until(at).await,
            None => std::future::pending::<()>().await,
        }
    }

    /// The catch-up's reading, or `None` when it failed (logged; the catch-up is owed, and its next
    /// try waits twice as long as the last, up to 5 s).
    pub fn settle<T>(&mut self, read: Result<T>) -> Option<T> {
        match read {
            Ok(read) => {
                self.retry = None;
                Some(read)
            }
            Err(err) => {
                err.report();
                metrics::counter!("rally_state_reload_failures_total").increment(1);
                let backoff = match self.retry {
                    Some((_, last)) => (last * 2).min(MAX_BACKOFF),
                    None => FIRST_BACKOFF,
                };
                let jitter = backoff.mul_f64(rand::random::<f64>() / 4.0);
                self.retry = Some((Instant::now() + backoff + jitter, backoff));
                None
            }
        }
    }
}

/// How far back an event stream that missed messages looks for the events it did not send, and
/// how long it remembers what it sent.
pub const CATCH_UP_WINDOW: chrono::Duration = chrono::Duration::hours(1);
/// How long before it subscribed a stream's window starts: a write stamps its time before it
/// commits, and instances' clocks differ a little.
pub const CLOCK_LEEWAY: chrono::Duration = chrono::Duration::minutes(1);

/// What one event stream that catches up has sent (`myMeetings`, `proximityAlerts`): each event,
/// named by its key, once, whether it came as a message or was found when the stream caught up
/// after missing messages. Events are remembered for the last [`CATCH_UP_WINDOW`] by when they
/// were sent, which is after they were made: an event older than the window is not looked for
/// again, so it cannot come twice.
pub struct Sent<K> {
    /// Events before this were made before the stream began.
    began: DateTime<Utc>,
    /// Each event sent, with when it was sent.
    sent: HashMap<K, DateTime<Utc>>,
}

impl<K: Eq + Hash> Sent<K> {
    /// A stream that subscribed at `now`.
    pub fn new(now: DateTime<Utc>) -> Self {
        Self {
            began: now - CLOCK_LEEWAY,
            sent: HashMap::new(),
        }
    }

    /// From when a catch-up at `now` looks for events: the last [`CATCH_UP_WINDOW`], not before
    /// the stream began.
    pub fn since(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.began.max(now - CATCH_UP_WINDOW)
    }

    /// Records that the event `key` is sent at `now`; whether it was not sent before.
    pub fn first(&mut self, key: K, now: DateTime<Utc>) -> bool {
        let forgotten = self.since(now) - CLOCK_LEEWAY;
        self.sent.retain(|_, sent| *sent >= forgotten);
        self.sent.insert(key, now).is_none()
    }
}

/// The stream itself; `snapshot` is the first load when the caller made it (`None`: load first).
fn run<P, S, L, F, A>(
    mut feed: Feed<P>,
    missing: Missing,
    window: Option<Duration>,
    snapshot: Option<Option<S>>,
    load: L,
    apply: A,
) -> impl Stream<Item = S> + Send + 'static
where
    P: Payload,
    S: Versioned,
    L: Fn() -> F + Send + Sync + 'static,
    F: Future<Output = Result<Option<S>>> + Send,
    A: Fn(&P) -> Change<S> + Send + 'static,
{
    async_stream::stream! {
        let snapshot = match snapshot {
            Some(snapshot) => snapshot,
            None => reload(&load).await,
        };
        let mut loaded_at = Instant::now();
        let mut seen = snapshot.as_ref().map(Versioned::version);
        if let Some(snapshot) = snapshot {
            yield snapshot;
        }
        while let Some(signal) = feed.next().await {
            let change = match signal {
                Signal::Message(payload) => apply(&payload),
                Signal::Resync => Change::Reload,
            };
            let state = match change {
                Change::State(state) => Some(state),
                Change::Skip => None,
                Change::End => break,
                Change::Reload => {
                    if let Some(window) = window {
                        tokio::time::sleep_until(loaded_at + window).await;
                        feed.drain();
                    }
                    // The window counts from the start of a load, so a burst costs one per window.
                    loaded_at = Instant::now();
                    let state = reload(&load).await;
                    if state.is_none() && matches!(missing, Missing::NotFound(_)) {
                        break;
                    }
                    state
                }
            };
            let Some(state) = state else { continue };
            let version = state.version();
            if seen.is_some_and(|seen| version <= seen) {
                continue;
            }
            seen = Some(version);
            yield state;
        }
    }
}

/// Loads until it succeeds: failures are logged and retried with backoff.
async fn reload<S, L, F>(load: &L) -> Option<S>
where
    L: Fn() -> F,
    F: Future<Output = Result<Option<S>>>,
{
    let mut backoff = FIRST_BACKOFF;
    loop {
        match load().await {
            Ok(state) => return state,
            Err(err) => {
                err.report();
                tracing::warn!(
                    retry_in_ms = backoff.as_millis() as u64,
                    "a state stream could not reload; retrying"
                );
                metrics::counter!("rally_state_reload_failures_total").increment(1);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use futures_util::StreamExt;
    use serde::{Deserialize, Serialize};
    use uuid::Uuid;

    use super::*;
    use crate::live::{Live, Topics};

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    struct Thing {
        version: i64,
        gone: bool,
    }

    impl Versioned for Thing {
        type Version = i64;

        fn version(&self) -> i64 {
            self.version
        }
    }

    const THINGS: Topics<Thing> = Topics::per("thing");

    fn thing(version: i64) -> Thing {
        Thing {
            version,
            gone: false,
        }
    }

    fn apply(thing: &Thing) -> Change<Thing> {
        if thing.gone {
            Change::End
        } else {
            Change::State(thing.clone())
        }
    }

    #[tokio::test]
    async fn a_snapshot_then_changes_never_an_older_one_until_the_end() {
        let live = Live::in_process();
        let topic = THINGS.of(Uuid::nil());
        let stream = follow(
            live.subscribe(&topic),
            Missing::NotFound("no such thing"),
            || async { Ok(Some(thing(2))) },
            apply,
        )
        .await
        .expect("the snapshot loads");
        for version in [1, 2, 3, 5, 4] {
            live.publish(&topic, &thing(version));
        }
        live.publish(
            &topic,
            &Thing {
                version: 6,
                gone: true,
            },
        );
        live.publish(&topic, &thing(7));
        let seen: Vec<i64> = stream.map(|t| t.version).collect().await;
        assert_eq!(
            seen,
            [2, 3, 5],
            "older versions dropped, nothing after the end"
        );
    }

    #[tokio::test]
    async fn a_missing_snapshot_refuses_with_not_found_or_waits() {
        let live = Live::in_process();
        let topic = THINGS.of(Uuid::nil());
        let refused = follow(
            live.subscribe(&topic),
            Missing::NotFound("no such thing"),
            || async { Ok(None) },
            apply,
        )
        .await;
        assert!(matches!(refused, Err(Error::NotFound("no such thing"))));
        let mut waiting = Box::pin(
            follow(
                live.subscribe(&topic),
                Missing::Wait,
                || async { Ok(None) },
                apply,
            )
            .await
            .expect("waits"),
        );
        live.publish(&topic, &thing(1));
        assert_eq!(waiting.next().await, Some(thing(1)));
    }

    #[tokio::test]
    async fn a_failed_reload_is_retried_and_the_stream_goes_on() {
        let live = Live::in_process();
        let topic = THINGS.of(Uuid::nil());
        let loads = Arc::new(AtomicU32::new(0));
        let counted = loads.clone();
        let mut stream = Box::pin(
            follow(
                live.subscribe(&topic),
                Missing::NotFound("no such thing"),
                move || {
                    let n = counted.fetch_add(1, Ordering::SeqCst);
                    async move {
                        match n {
                            0 => Ok(Some(thing(1))),
                            1 | 2 => Err(Error::internal(anyhow::anyhow!("database away"))),
                            _ => Ok(Some(thing(500))),
                        }
                    }
                },
                apply,
            )
            .await
            .expect("the snapshot loads"),
        );
        assert_eq!(stream.next().await, Some(thing(1)));
        // More than a subscriber may fall behind: it is told to resync, and reloads.
        for version in 2..300 {
            live.publish(&topic, &thing(version));
        }
        assert_eq!(
            stream.next().await,
            Some(thing(500)),
            "reloaded after two failures"
        );
        assert_eq!(loads.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_throttled_state_is_loaded_once_per_burst() {
        let live = Live::in_process();
        let topic = THINGS.of(Uuid::nil());
        let loads = Arc::new(AtomicU32::new(0));
        let counted = loads.clone();
        let mut stream = Box::pin(follow_throttled(
            live.subscribe(&topic),
            Duration::from_millis(50),
            move || {
                let n = counted.fetch_add(1, Ordering::SeqCst);
                async move { Ok(Some(thing(i64::from(n)))) }
            },
        ));
        assert_eq!(stream.next().await, Some(thing(0)));
        for version in 0..20 {
            live.publish(&topic, &thing(version));
        }
        let started = Instant::now();
        assert_eq!(
            stream.next().await,
            Some(thing(1)),
            "one load for the burst"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(40),
            "not before the window ends"
        );
        let more = tokio::time::timeout(Duration::from_millis(150), stream.next()).await;
        assert!(
            more.is_err(),
            "nothing else to load: the burst was coalesced"
        );
        assert_eq!(loads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_catch_up_is_owed_and_due_again_until_one_succeeds() {
        let mut catch_up = CatchUp::default();
        let failed =
            || -> Result<u32> { Err(Error::internal(anyhow::anyhow!("the database is away"))) };
        /// How long `due` takes from now, or `None` past `within`.
        async fn due_in(catch_up: &CatchUp, within: Duration) -> Option<Duration> {
            let start = Instant::now();
            tokio::time::timeout(within, catch_up.due())
                .await
                .ok()
                .map(|()| start.elapsed())
        }
        assert_eq!(
            due_in(&catch_up, MAX_BACKOFF * 2).await,
            None,
            "nothing owed"
        );
        assert_eq!(catch_up.settle(failed()), None);
        let first = due_in(&catch_up, MAX_BACKOFF).await.expect("owed");
        assert!(
            first >= FIRST_BACKOFF && first <= FIRST_BACKOFF * 5 / 4,
            "{first:?}"
        );
        // Polled again and again between messages, the deadline stays where it is.
        assert_eq!(catch_up.settle(failed()), None);
        let mut waited = Duration::ZERO;
        let second = loop {
            if let Some(left) = due_in(&catch_up, Duration::from_millis(30)).await {
                break waited + left;
            }
            waited += Duration::from_millis(30);
        };
        assert!(
            second >= FIRST_BACKOFF * 2 && second <= FIRST_BACKOFF * 5 / 2,
            "twice the first: {second:?}"
        );
        for _ in 0..10 {
            assert_eq!(catch_up.settle(failed()), None);
        }
        let longest = due_in(&catch_up, MAX_BACKOFF * 2).await.expect("owed");
        assert!(
            longest <= MAX_BACKOFF * 5 / 4,
            "backs off to at most 5 s: {longest:?}"
        );
        assert_eq!(catch_up.settle(Ok(7)), Some(7));
        assert_eq!(due_in(&catch_up, MAX_BACKOFF * 2).await, None, "settled");
    }
}
