//! The application state every request shares: one [`AppState`], cheap to clone (one `Arc`).
//!
//! Holds infrastructure only (storage, broker, keys, settings) and knows no domain: what a domain
//! keeps per instance (live leaderboards, say) is schema data, registered by the GraphQL assembly.

use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;

use sea_orm::DatabaseConnection;
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
    /// statement off halfway), and shutdown waits for it.
    pub async fn run_to_end<T>(
        &self,
        work: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T>
    where
        T: Send + 'static,
    {
        join_to_end(&self.to_end, work).await.unwrap_or_else(|| {
            Err(Error::internal(anyhow::anyhow!(
                "a task run to its end was dropped by the runtime"
            )))
        })
    }

    /// The limits uploads are checked against.
    pub fn image_limits(&self) -> ImageLimits {
        ImageLimits {
            max_bytes: self.config.max_upload_bytes,
            max_pixels: self.config.max_image_pixels,
        }
    }
}

/// Runs `work` in a task of its own among `tracker`, in the caller's span (its log lines keep the
/// request id), and waits for it: the task goes on to its end if the caller stops waiting. A panic
/// in `work` goes on in the caller, as it would have without the task. `None` when the runtime
/// dropped the task, which it does only when it shuts down (nothing else aborts it).
pub async fn join_to_end<T>(
    tracker: &TaskTracker,
    work: impl Future<Output = T> + Send + 'static,
) -> Option<T>
where
    T: Send + 'static,
{
    match tracker
        .spawn(work.instrument(tracing::Span::current()))
        .await
    {
        Ok(done) => Some(done),
        Err(failed) if failed.is_panic() => std::panic::resume_unwind(failed.into_panic()),
        Err(_) => None,
    }
}

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}
