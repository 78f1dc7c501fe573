//! The application state every request shares: one [`AppState`], cheap to clone (one `Arc`).
//!
//! Holds infrastructure only (storage, broker, keys, settings) and knows no domain: what a domain
//! keeps per instance (live leaderboards, say) is schema data, registered by the GraphQL assembly.

use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;

use sea_orm::DatabaseConnection;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::auth::{AuthLimits, Passwords, PerUserLimit, TokenKeys};
use crate::config::Config;
use crate::db::{OneWrite, WriteTxn, Writes};
use crate::error::{Error, Result};
use crate::live::Live;
use crate::media::{ImageLimits, MediaStore};

/// Shared handles to storage, keys and settings.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// What [`AppState`] holds.
pub struct Inner {
    /// Every setting, as resolved at start-up.
    pub config: Config,
    /// The connection pool (SQLite or PostgreSQL).
    pub db: DatabaseConnection,
    /// Uploaded pictures.
    pub media: MediaStore,
    /// Publishing and subscribing to live updates.
    pub live: Live,
    /// Signs and checks access tokens.
    pub tokens: TokenKeys,
    /// argon2id hashing on the blocking pool.
    pub passwords: Passwords,
    /// Login and sign-up rate limits.
    pub auth_limits: AuthLimits,
    /// How write transactions are opened (see [`Writes`]).
    pub writes: Writes,
    /// Uploads per user per minute.
    pub uploads: PerUserLimit,
    /// Session refreshes per user per minute.
    pub refreshes: PerUserLimit,
    /// Cup-code attempts (`openCupSession`) per staff member per minute.
    pub cup_code_attempts: PerUserLimit,
    /// Work that goes on to its end whoever still waits for it: mutations whose clients left, and
    /// a query's writes ([`AppState::run_to_end`]). Shutdown waits for it before the database
    /// closes.
    pub to_end: TaskTracker,
}

impl AppState {
    /// Wraps the parts.
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }

    /// Begins a transaction that will write; what it publishes is sent after its commit.
    pub async fn begin_write(&self) -> Result<WriteTxn, sea_orm::DbErr> {
        self.writes.begin(&self.db, &self.live).await
    }

    /// The database for one write statement outside a transaction, once it is its turn (see
    /// [`OneWrite`]): `statement.exec(&*state.one_write().await)`.
    pub async fn one_write(&self) -> OneWrite<'_> {
        self.writes.one(&self.db).await
    }

    /// Runs `work` to its end among [`Inner::to_end`] ([`join_to_end`]): a query's write goes on
    /// when its client leaves (a query is dropped with its request, which must not cut a
    /// statement off halfway), and shutdown waits for it. Once shutdown has begun waiting, `work`
    /// does not start: [`Error::stopping`].
    pub async fn run_to_end<T>(
        &self,
        work: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T>
    where
        T: Send + 'static,
    {
        join_to_end(&self.to_end, work)
            .await
            .unwrap_or_else(|Stopping| Err(Error::stopping()))
    }

    /// The limits uploads are checked against.
    pub fn image_limits(&self) -> ImageLimits {
        ImageLimits {
            max_bytes: self.config.max_upload_bytes,
            max_pixels: self.config.max_image_pixels,
        }
    }
}

/// Work that did not run, or did not end, because the server is stopping.
#[derive(Debug)]
pub struct Stopping;

/// Runs `work` in a task of its own among `tracker`, in the caller's span (its log lines keep the
/// request id), and waits for it: the task goes on to its end if the caller stops waiting. A panic
/// in `work` goes on in the caller, as it would have without the task. [`Stopping`] when `work`
/// was refused ([`spawn_unless_stopping`]) or the runtime dropped the task, which it does only
/// when it shuts down (nothing else aborts it).
pub async fn join_to_end<T>(
    tracker: &TaskTracker,
    work: impl Future<Output = T> + Send + 'static,
) -> Result<T, Stopping>
where
    T: Send + 'static,
{
    let task = spawn_unless_stopping(tracker, work.instrument(tracing::Span::current()))?;
    match task.await {
        Ok(done) => Ok(done),
        Err(failed) if failed.is_panic() => std::panic::resume_unwind(failed.into_panic()),
        Err(_) => Err(Stopping),
    }
}

/// Spawns `work` among `tracker` unless shutdown has closed it: once shutdown is waiting for the
/// tracker's tasks (or has stopped waiting), work spawned there would run with nobody waiting
/// for it, against a database about to close, so it is refused before it starts.
pub fn spawn_unless_stopping<F>(
    tracker: &TaskTracker,
    work: F,
) -> Result<JoinHandle<F::Output>, Stopping>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    // Counted first, then checked (one atomic holds both): either the check sees the tracker
    // closed, or the close comes after this count and shutdown's wait includes the task.
    let _counted = tracker.token();
    if tracker.is_closed() {
        return Err(Stopping);
    }
    Ok(tracker.spawn(work))
}

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Work started before the close is among what shutdown waits for; work after it is refused
    /// without running.
    #[tokio::test]
    async fn work_is_refused_once_shutdown_closes_the_tracker() {
        let tracker = TaskTracker::new();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let before = spawn_unless_stopping(&tracker, async move {
            let _ = released.await;
        })
        .expect("spawned before the close");
        tracker.close();
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ran.clone();
        let refused = join_to_end(&tracker, async move {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        })
        .await;
        assert!(refused.is_err(), "work after the close was run");
        assert!(spawn_unless_stopping(&tracker, async {}).is_err());
        assert_eq!(tracker.len(), 1, "only the task from before the close");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), tracker.wait())
                .await
                .is_err(),
            "shutdown's wait did not include the task from before the close"
        );
        release.send(()).expect("released");
        before.await.expect("ended");
        tracker.wait().await;
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
    }
}
