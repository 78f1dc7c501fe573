//! The one error type of Rally, and the policy it carries.
//!
//! Every failure a client can see is one [`Error`] variant, and every variant maps to exactly one
//! `extensions.code` of the API contract (see [`code`]). Domain services and resolvers alike return
//! [`Result<T>`]; async-graphql turns a resolver's `Error` into a GraphQL error through our own
//! conversion only, so no foreign error's text can reach a client as its message. `Error` is cheap
//! to clone (DataLoaders share one failure among every waiting resolver).
//!
//! Policy:
//! - Expected failures (validation, authorization, conflicts) carry a message written for the client.
//! - Unexpected failures ([`Error::Internal`]) carry their cause for the logs only. The cause is logged
//!   once, inside the request's span (so the line carries the request id), and the client sees
//!   `INTERNAL` with a fixed message: no SQL, no paths, no secrets.
//!
//! `Error` deliberately does not implement `Display`: async-graphql converts any `Display` type into
//! its own error without extensions, so a `Display` impl would let `?` silently drop the code. Without
//! it, our own `From<Error> for async_graphql::Error` is the only conversion and the code always
//! survives.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_graphql::ErrorExtensions;
use sea_orm::{DbErr, RuntimeErr, SqlErr};

/// Stable values of `extensions.code`, as written in the API contract.
pub mod code {
    /// No token, or a bad one.
    pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
    /// Signed in, but not allowed.
    pub const FORBIDDEN: &str = "FORBIDDEN";
    /// The id or handle names nothing visible to the caller.
    pub const NOT_FOUND: &str = "NOT_FOUND";
    /// Input fails validation; `extensions.field` names the input.
    pub const BAD_USER_INPUT: &str = "BAD_USER_INPUT";
    /// The state changed under the caller (taken, closed, already used).
    pub const CONFLICT: &str = "CONFLICT";
    /// Too many attempts; `extensions.retryAfterSeconds` says when to try again.
    pub const RATE_LIMITED: &str = "RATE_LIMITED";
    /// Anything else. The message never leaks internals.
    pub const INTERNAL: &str = "INTERNAL";
}

/// The message every internal failure shows to clients.
pub const INTERNAL_MESSAGE: &str = "internal server error";

/// A failure of a Rally operation, with the code the client sees.
#[derive(Clone, Debug)]
pub enum Error {
    /// No valid credentials.
    Unauthenticated(&'static str),
    /// Signed in, but this operation is not theirs to do.
    Forbidden(&'static str),
    /// Nothing the caller may see has this id or handle.
    NotFound(&'static str),
    /// An input failed validation; `field` is the argument path as the client wrote it.
    BadInput {
        /// e.g. `input.handle`, `first`.
        field: String,
        /// What is wrong, for a person.
        message: String,
    },
    /// The state changed under the caller.
    Conflict {
        /// What is taken or already done; `None` when not about one input.
        field: Option<String>,
        /// What happened, for a person.
        message: String,
    },
    /// Too many attempts.
    RateLimited {
        /// What there were too many of (or why not now), for the message.
        what: &'static str,
        /// Whole seconds until the next attempt may succeed (at least 1).
        retry_after_seconds: u64,
    },
    /// Anything unexpected; the cause goes to the logs only (once, however often it is cloned).
    Internal(Arc<Internal>),
}

/// The cause of an internal error, and whether it has been logged.
#[derive(Debug)]
pub struct Internal {
    cause: anyhow::Error,
    reported: AtomicBool,
}

/// Result of a domain operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The error as the operator reads it at start-up, where no client is there to keep causes
    /// from: an internal error's cause, any other's message.
    pub fn for_operator(&self) -> anyhow::Error {
        match self {
            Self::Internal(internal) => anyhow::anyhow!("{:#}", internal.cause),
            other => anyhow::anyhow!(other.message()),
        }
    }

    /// A validation failure of one input field.
    pub fn bad_input(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::BadInput {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A conflict about one input field (e.g. a handle that is taken).
    pub fn conflict(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Conflict {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// A conflict about the state of a thing rather than one input.
    pub fn state_conflict(message: impl Into<String>) -> Self {
        Self::Conflict {
            field: None,
            message: message.into(),
        }
    }

    /// Work refused (or cut off) because this instance is stopping: another instance, or this one
    /// once it is back, takes the retry. `RATE_LIMITED` with a retry time, as when too many
    /// mutations are running: the contract's code for "not now, try again".
    pub fn stopping() -> Self {
        Self::RateLimited {
            what: "the server is stopping",
            retry_after_seconds: 1,
        }
    }

    /// An unexpected failure with its cause (logged, never shown).
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Self::Internal(Arc::new(Internal {
            cause: cause.into(),
            reported: AtomicBool::new(false),
        }))
    }

    /// The contract's `extensions.code` of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => code::UNAUTHENTICATED,
            Self::Forbidden(_) => code::FORBIDDEN,
            Self::NotFound(_) => code::NOT_FOUND,
            Self::BadInput { .. } => code::BAD_USER_INPUT,
            Self::Conflict { .. } => code::CONFLICT,
            Self::RateLimited { .. } => code::RATE_LIMITED,
            Self::Internal(_) => code::INTERNAL,
        }
    }

    /// The message a client sees.
    pub fn message(&self) -> String {
        match self {
            Self::Unauthenticated(m) | Self::Forbidden(m) | Self::NotFound(m) => (*m).to_owned(),
            Self::BadInput { message, .. } | Self::Conflict { message, .. } => message.clone(),
            Self::RateLimited {
                what,
                retry_after_seconds,
            } => format!("{what}; retry in {retry_after_seconds} s"),
            Self::Internal(_) => INTERNAL_MESSAGE.to_owned(),
        }
    }

    /// Maps a database error from an insert or update: a violation of one of `known` (by the
    /// constraint's name) becomes that entry's error; anything else as any database error.
    pub fn on_constraint(err: DbErr, known: &[ConstraintError]) -> Self {
        match known.iter().find(|(key, _)| key.violated_by(&err)) {
            Some((_, error)) => error(),
            None => Self::from(err),
        }
    }
}

/// A unique key and the error its violation means.
pub type ConstraintError = (UniqueKey, fn() -> Error);

/// A unique index, as a migration creates it: its name, table and columns.
///
/// PostgreSQL reports a violation with the constraint's name; SQLite reports only
/// `UNIQUE constraint failed: <table>.<column>, …`, so the key is recognised there by its table and
/// columns. Either way it is matched against what the database says about the constraint itself,
/// never by searching a message for a word.
#[derive(Clone, Copy, Debug)]
pub struct UniqueKey {
    /// The index's name (PostgreSQL reports it).
    pub name: &'static str,
    /// Its table.
    pub table: &'static str,
    /// Its columns, in index order.
    pub columns: &'static [&'static str],
}

impl UniqueKey {
    /// Whether `err` is a violation of this key.
    pub fn violated_by(&self, err: &DbErr) -> bool {
        let (DbErr::Exec(RuntimeErr::SqlxError(sqlx)) | DbErr::Query(RuntimeErr::SqlxError(sqlx))) =
            err
        else {
            return false;
        };
        let Some(db) = sqlx.as_database_error() else {
            return false;
        };
        if !matches!(db.kind(), sea_orm::sqlx::error::ErrorKind::UniqueViolation) {
            return false;
        }
        if let Some(name) = db.constraint() {
            return name == self.name;
        }
        // SQLite: "UNIQUE constraint failed: users.handle" (the columns of the violated index).
        db.message()
            .split_once("constraint failed: ")
            .is_some_and(|(_, columns)| {
                let named: Vec<&str> = columns.split(',').map(str::trim).collect();
                named.len() == self.columns.len()
                    && named
                        .iter()
                        .zip(self.columns)
                        .all(|(named, column)| named.split_once('.') == Some((self.table, column)))
            })
    }
}

impl From<DbErr> for Error {
    /// Internal, except a foreign-key violation: every service looks up what a write refers to
    /// first (and every reference cascades or is set null on delete, so no deletion is refused by
    /// one), so a violation means a row it refers to was deleted by a concurrent transaction after
    /// the look-up (a staff change racing the event's deletion): the state changed under the
    /// caller. Logged as a warning, so a write that never looked up what it refers to shows.
    fn from(err: DbErr) -> Self {
        if matches!(
            err.sql_err(),
            Some(SqlErr::ForeignKeyConstraintViolation(_))
        ) {
            tracing::warn!(error = %err, "a referenced row vanished under a write");
            return Self::state_conflict("what this refers to was deleted meanwhile");
        }
        Self::internal(err)
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(err: tokio::task::JoinError) -> Self {
        Self::internal(err)
    }
}

impl Error {
    /// Logs an internal cause (inside the current span, so with the request id when there is one);
    /// expected failures are not logged. Call it where an error ends without reaching GraphQL.
    pub fn report(&self) {
        if let Error::Internal(internal) = self
            && !internal.reported.swap(true, Ordering::Relaxed)
        {
            // A DataLoader shares one failure among every resolver waiting on it: logged once.
            tracing::error!(error = format!("{:#}", internal.cause), "internal error");
            metrics::counter!("rally_internal_errors_total").increment(1);
        }
    }
}

impl From<Error> for async_graphql::Error {
    fn from(err: Error) -> Self {
        err.report();
        let message = err.message();
        async_graphql::Error::new(message).extend_with(|_, ext| {
            ext.set("code", err.code());
            match &err {
                Error::BadInput { field, .. }
                | Error::Conflict {
                    field: Some(field), ..
                } => ext.set("field", field.as_str()),
                Error::RateLimited {
                    retry_after_seconds,
                    ..
                } => ext.set("retryAfterSeconds", *retry_after_seconds),
                _ => {}
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extensions(err: Error) -> async_graphql::ErrorExtensionValues {
        async_graphql::Error::from(err)
            .extensions
            .unwrap_or_default()
    }

    #[test]
    fn every_error_carries_its_code() {
        let ext = extensions(Error::bad_input("input.handle", "too short"));
        assert_eq!(
            ext.get("code"),
            Some(&async_graphql::Value::from("BAD_USER_INPUT"))
        );
        assert_eq!(
            ext.get("field"),
            Some(&async_graphql::Value::from("input.handle"))
        );
        let ext = extensions(Error::RateLimited {
            what: "too many attempts",
            retry_after_seconds: 7,
        });
        assert_eq!(
            ext.get("retryAfterSeconds"),
            Some(&async_graphql::Value::from(7))
        );
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let err = async_graphql::Error::from(Error::internal(anyhow::anyhow!(
            "SELECT secret FROM users"
        )));
        assert_eq!(err.message, INTERNAL_MESSAGE);
    }
}
