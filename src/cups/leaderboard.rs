//! Live leaderboards, computed once per event per change window on each instance and shared by all
//! of that instance's subscribers.
//!
//! The first subscriber of an event starts a feed: it listens to `event:{id}:scores` and computes
//! the top [`MAX_ENTRIES`] once per change, publishing the result into a `watch` channel. Computing
//! is throttled, not delayed: a change after a quiet spell is computed at once, and changes within
//! one window of the last computation wait for the window's end and are computed together, so a
//! burst of cheers costs at most one computation per window. Subscribers read the
//! channel: the newest board replaces any board they have not sent yet, so a slow subscriber never
//! builds a backlog and never goes back to an older board. The feed stops when its last subscriber
//! leaves.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use uuid::Uuid;

use super::service;
use crate::entity::{cup_session, event, user};
use crate::error::Result;
use crate::state::AppState;
use crate::{accounts, events};

/// Entries every board keeps (subscribers take their `first` from it).
pub const MAX_ENTRIES: u64 = 100;

/// One computed leaderboard.
#[derive(Debug)]
pub struct Board {
    /// The event as of the computation.
    pub event: event::Model,
    /// Sessions in rank order with their guests.
    pub rows: Vec<(cup_session::Model, user::Model)>,
    /// When it was computed.
    pub updated_at: DateTime<Utc>,
}

/// Computes a board now (also used for plain queries).
pub async fn compute(state: &AppState, event_id: Uuid, limit: u64) -> Result<Option<Board>> {
    let Some(event) = events::service::find(state, event_id).await? else {
        return Ok(None);
    };
    let sessions = service::top_sessions(state, event_id, limit).await?;
    let ids: Vec<Uuid> = sessions.iter().map(|s| s.user_id).collect();
    let mut users: HashMap<Uuid, user::Model> = accounts::service::find_many(state, &ids)
        .await?
        .into_iter()
        .map(|u| (u.id, u))
        .collect();
    let rows = sessions
        .into_iter()
        .filter_map(|session| users.remove(&session.user_id).map(|user| (session, user)))
        .collect();
    Ok(Some(Board {
        event,
        rows,
        updated_at: Utc::now(),
    }))
}

type Feed = watch::Sender<Option<Arc<Board>>>;

/// The instance's leaderboard feeds.
#[derive(Clone)]
pub struct Leaderboards {
    inner: Arc<Inner>,
}

struct Inner {
    feeds: Mutex<HashMap<Uuid, Feed>>,
    window: Duration,
    computations: AtomicU64,
}

impl Leaderboards {
    /// Feeds that coalesce changes over `window`.
    pub fn new(window: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                feeds: Mutex::new(HashMap::new()),
                window,
                computations: AtomicU64::new(0),
            }),
        }
    }

    /// How many boards this instance has computed for feeds (they must not grow with subscribers).
    pub fn computations(&self) -> u64 {
        self.inner.computations.load(Ordering::Relaxed)
    }

    /// A receiver of the event's board: `None` until the first computation, then the newest.
    pub fn watch(&self, state: &AppState, event_id: Uuid) -> watch::Receiver<Option<Arc<Board>>> {
        let mut feeds = self.inner.feeds.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(feed) = feeds.get(&event_id) {
            return feed.subscribe();
        }
        let (feed, receiver) = watch::channel(None);
        feeds.insert(event_id, feed.clone());
        tokio::spawn(run(self.clone(), state.clone(), event_id, feed));
        receiver
    }

    async fn refresh(&self, state: &AppState, event_id: Uuid, feed: &Feed) {
        self.inner.computations.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("rally_leaderboard_computations_total").increment(1);
        match compute(state, event_id, MAX_ENTRIES).await {
            Ok(Some(board)) => {
                feed.send_replace(Some(Arc::new(board)));
            }
            Ok(None) => {}
            Err(err) => err.report(),
        }
    }

    /// Removes the feed if nobody listens any more; true when removed.
    fn retire(&self, event_id: Uuid, feed: &Feed) -> bool {
        let mut feeds = self.inner.feeds.lock().unwrap_or_else(|p| p.into_inner());
        if feed.receiver_count() > 0 {
            return false;
        }
        if feeds.get(&event_id).is_some_and(|f| f.same_channel(feed)) {
            feeds.remove(&event_id);
        }
        true
    }
}

async fn run(boards: Leaderboards, state: AppState, event_id: Uuid, feed: Feed) {
    let mut changes = state.live.subscribe(&service::scores_topic(event_id));
    let mut last = tokio::time::Instant::now();
    boards.refresh(&state, event_id, &feed).await;
    loop {
        tokio::select! {
            signal = changes.next() => {
                if signal.is_none() {
                    break;
                }
                // Within a window of the last computation: wait for its end, then take everything
                // that queued meanwhile in one computation.
                tokio::time::sleep_until(last + boards.inner.window).await;
                changes.drain();
                last = tokio::time::Instant::now();
                boards.refresh(&state, event_id, &feed).await;
            }
            () = feed.closed() => {
                if boards.retire(event_id, &feed) {
                    break;
                }
            }
        }
    }
}
