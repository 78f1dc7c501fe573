//! Live leaderboards, computed once per event per change window on each instance and shared by all
//! of that instance's subscribers.
//!
//! The first subscriber of an event starts a feed: a throttled state stream
//! ([`live::follow_throttled`]) over `event:{id}:scores` that computes the top [`MAX_ENTRIES`] once
//! per change window (a change after a quiet spell at once, a burst once at the window's end;
//! failed computations are retried), publishing each board into a `watch` channel. Subscribers
//! read the channel: the newest board replaces any board they have not sent yet, so a slow
//! subscriber never builds a backlog and never goes back to an older board. The feed stops when its
//! last subscriber leaves, or when its event is deleted (then every subscriber's stream ends).
//!
//! [`Leaderboards`] is per-instance schema data (registered by the GraphQL assembly), not app
//! state.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};
use tokio::sync::watch;
use uuid::Uuid;

use super::model::{CupSessionState, SCORES};
use super::service;
use crate::entity::{event, user};
use crate::error::Result;
use crate::live::{self, Versioned};
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
    pub rows: Vec<(CupSessionState, user::Model)>,
    /// When it was computed.
    pub updated_at: DateTime<Utc>,
    /// Grows with each computation of this instance (a feed never goes back to an older board).
    pub sequence: u64,
}

impl Versioned for Board {
    type Version = u64;

    fn version(&self) -> u64 {
        self.sequence
    }
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
        .filter_map(|session| {
            users
                .remove(&session.user_id)
                .map(|user| (session.into(), user))
        })
        .collect();
    Ok(Some(Board {
        event,
        rows,
        updated_at: Utc::now(),
        sequence: 0,
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

    /// The event's boards from now on: the current one first (once computed), then the newest after
    /// each change; NOT_FOUND when there is no such event.
    pub async fn follow(
        &self,
        state: &AppState,
        event_id: Uuid,
    ) -> Result<impl Stream<Item = Arc<Board>> + Send + 'static> {
        events::service::require(state, event_id).await?;
        let mut boards = self.watch(state, event_id);
        Ok(async_stream::stream! {
            loop {
                let board = boards.borrow_and_update().clone();
                if let Some(board) = board {
                    yield board;
                }
                if boards.changed().await.is_err() {
                    break;
                }
            }
        })
    }

    /// A receiver of the event's board: `None` until the first computation, then the newest.
    fn watch(&self, state: &AppState, event_id: Uuid) -> watch::Receiver<Option<Arc<Board>>> {
        let mut feeds = self.inner.feeds.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(feed) = feeds.get(&event_id) {
            return feed.subscribe();
        }
        let (feed, receiver) = watch::channel(None);
        feeds.insert(event_id, feed.clone());
        tokio::spawn(run(self.clone(), state.clone(), event_id, feed));
        receiver
    }

    /// Computes a board for a feed, numbered by this instance's count of computations.
    async fn compute(&self, state: &AppState, event_id: Uuid) -> Result<Option<Board>> {
        let sequence = self.inner.computations.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::counter!("rally_leaderboard_computations_total").increment(1);
        let board = compute(state, event_id, MAX_ENTRIES).await?;
        Ok(board.map(|board| Board { sequence, ..board }))
    }

    /// Removes the feed (its event is gone, or the broker's stream ended): once its task ends, its
    /// channel closes.
    fn forget(&self, event_id: Uuid, feed: &Feed) {
        let mut feeds = self.inner.feeds.lock().unwrap_or_else(|p| p.into_inner());
        remove(&mut feeds, event_id, feed);
    }

    /// Removes the feed if nobody listens any more; true when removed.
    fn retire(&self, event_id: Uuid, feed: &Feed) -> bool {
        let mut feeds = self.inner.feeds.lock().unwrap_or_else(|p| p.into_inner());
        if feed.receiver_count() > 0 {
            return false;
        }
        remove(&mut feeds, event_id, feed);
        true
    }
}

/// Removes `feed` from `feeds` (unless another feed of the event took its place).
fn remove(feeds: &mut HashMap<Uuid, Feed>, event_id: Uuid, feed: &Feed) {
    if feeds.get(&event_id).is_some_and(|f| f.same_channel(feed)) {
        feeds.remove(&event_id);
    }
}

async fn run(boards: Leaderboards, state: AppState, event_id: Uuid, feed: Feed) {
    let mut event_changes = state.live.subscribe(&events::model::CHANGES.of(event_id));
    let changes = state.live.subscribe(&SCORES.of(event_id));
    // Deleted before this feed listened for it: nothing will announce it any more.
    if matches!(events::service::find(&state, event_id).await, Ok(None)) {
        boards.forget(event_id, &feed);
        return;
    }
    let window = boards.inner.window;
    let (computing, computing_state) = (boards.clone(), state.clone());
    let mut computed = Box::pin(live::follow_throttled(changes, window, move || {
        let (boards, state) = (computing.clone(), computing_state.clone());
        async move { boards.compute(&state, event_id).await }
    }));
    loop {
        tokio::select! {
            Some(signal) = event_changes.next() => {
                if events::service::gone(&state, event_id, &signal).await {
                    // The feed's channel closes with it, and every subscriber's stream ends.
                    boards.forget(event_id, &feed);
                    break;
                }
            }
            board = computed.next() => {
                let Some(board) = board else {
                    // The broker's stream ended: a new subscriber must start a new feed.
                    boards.forget(event_id, &feed);
                    break;
                };
                feed.send_replace(Some(Arc::new(board)));
            }
            () = feed.closed() => {
                if boards.retire(event_id, &feed) {
                    break;
                }
            }
        }
    }
}
