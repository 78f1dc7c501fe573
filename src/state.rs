//! The application state every request shares: one [`AppState`], cheap to clone (one `Arc`).
//!
//! Holds infrastructure only (storage, broker, keys, settings) and knows no domain: what a domain
//! keeps per instance (live leaderboards, say) is schema data, registered by the GraphQL assembly.

use std::ops::Deref;
use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::auth::{AuthLimits, Passwords, PerUserLimit, TokenKeys};
use crate::config::Config;
use crate::db::{OneWrite, WriteTxn, Writes};
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

    /// The limits uploads are checked against.
    pub fn image_limits(&self) -> ImageLimits {
        ImageLimits {
            max_bytes: self.config.max_upload_bytes,
            max_pixels: self.config.max_image_pixels,
        }
    }
}

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}
