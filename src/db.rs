//! The database connection and its migrations, for SQLite (the embedded default) and PostgreSQL;
//! write transactions that publish after their commit; pages of rows; the loaders' lookups by key.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use migration::{Migrator, MigratorTrait};
use sea_orm::sea_query::LockType;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection,
    DatabaseTransaction, DbErr, EntityTrait, FromQueryResult, QuerySelect, QueryTrait, Select,
    SelectTwo, Statement, TransactionTrait,
};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::config::Config;
use crate::live::{Live, Payload, Prepared, Topic};

mod positional;

pub use positional::{ByPosition, Positional, PositionalPair};

/// How long a SQLite statement waits for the write lock.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Key of the PostgreSQL advisory lock held while migrating, so instances starting together take
/// turns instead of racing on the same DDL.
const MIGRATION_LOCK: i64 = 0x5241_4c4c_5900_0001;

/// Opens the pool described by the configuration.
pub async fn connect(config: &Config) -> anyhow::Result<DatabaseConnection> {
    let url = config.database_url();
    let embedded = url
        .get(.."sqlite:".len())
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("sqlite:"));
    let mut options = ConnectOptions::new(url);
    options
        .max_connections(config.database_max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false)
        // sqlx pings a pooled connection before lending it out and again when it comes back. For
        // SQLite each ping is a round trip to the connection's own thread, and a connection to a
        // file practically cannot drop, so only the ping on return stays (it is not optional).
        // PostgreSQL keeps both: a server restart or a dropped socket is found before a request's
        // query, not by it.
        .test_before_acquire(!embedded)
        // SQLite has one writer. Rally's own writes take turns in process (`Writes`), so the
        // busy handler only waits out a write left running by a cancelled request, or another
        // process (a migration, a backup); give it as long as a request may take (sqlx's
        // default is 5 s).
        .map_sqlx_sqlite_opts(|sqlite| sqlite.busy_timeout(SQLITE_BUSY_TIMEOUT));
    let db = Database::connect(options)
        .await
        .context("cannot connect to the database (check RALLY_DATABASE_URL)")?;
    if db.get_database_backend() == DatabaseBackend::Sqlite {
        // WAL lets readers go on while one writer commits; the setting lives in the file.
        db.execute_unprepared("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
            .await
            .context("cannot configure SQLite")?;
    }
    Ok(db)
}

/// Applies pending migrations; on PostgreSQL inside one transaction under an advisory lock.
pub async fn migrate_up(db: &DatabaseConnection) -> anyhow::Result<()> {
    if db.get_database_backend() == DatabaseBackend::Postgres {
        let txn = db.begin().await?;
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
            .await?;
        Migrator::up(&txn, None).await.context("migration failed")?;
        txn.commit().await?;
    } else {
        Migrator::up(db, None).await.context("migration failed")?;
    }
    Ok(())
}

/// A statement that writes nothing but takes SQLite's write lock (the migrations table always
/// exists).
const TAKE_WRITE_LOCK: &str = "UPDATE seaql_migrations SET version = version WHERE 0";

/// Opens write transactions the way each database needs.
///
/// PostgreSQL locks rows, so concurrent transactions simply queue on the rows they touch. SQLite's
/// deferred transactions cannot queue: two that both read and then write fail with SQLITE_BUSY when
/// the second tries to upgrade its lock. So on SQLite (one process by design) write transactions
/// take turns behind an in-process lock, and each takes the write lock before its first statement.
/// A single-statement write needs no transaction but takes the same turn ([`Writes::one`]): left to
/// wait for SQLite's lock, it polls it from SQLite's busy handler, which sleeps up to 100 ms between
/// tries and can miss every gap in a stream of transactions until its timeout.
#[derive(Clone)]
pub struct Writes {
    turn: Option<Arc<Mutex<()>>>,
}

impl Writes {
    /// The policy for `db`'s backend.
    pub fn for_backend(db: &DatabaseConnection) -> Self {
        let sqlite = db.get_database_backend() == DatabaseBackend::Sqlite;
        Self {
            turn: sqlite.then(|| Arc::new(Mutex::new(()))),
        }
    }

    /// `db` for one write statement, once it is its turn (see [`OneWrite`]).
    pub async fn one<'a>(&self, db: &'a DatabaseConnection) -> OneWrite<'a> {
        OneWrite {
            db,
            _turn: self.take_turn().await,
        }
    }

    /// SQLite's turn (nothing on PostgreSQL).
    async fn take_turn(&self) -> Option<OwnedMutexGuard<()>> {
        match &self.turn {
            Some(turn) => Some(turn.clone().lock_owned().await),
            None => None,
        }
    }

    /// Begins a transaction that will write; what it publishes goes out on `live` after the commit.
    pub async fn begin(&self, db: &DatabaseConnection, live: &Live) -> Result<WriteTxn, DbErr> {
        let turn = self.take_turn().await;
        let txn = db.begin().await?;
        if turn.is_some() {
            // What BEGIN IMMEDIATE does (SeaORM only says BEGIN): take SQLite's write lock first,
            // waiting for it like any write. A deferred transaction that read and then writes
            // cannot wait for the lock: SQLite refuses the upgrade at once ("database is locked")
            // when a single-statement write of another request holds it.
            txn.execute_unprepared(TAKE_WRITE_LOCK).await?;
        }
        Ok(WriteTxn {
            open: Some(Open { txn, turn }),
            live: live.clone(),
            outbox: Vec::new(),
        })
    }
}

/// The database lent for one write statement outside a transaction: on SQLite it holds the write
/// turn while it lives (see [`Writes`]), so the statement runs when its turn comes, in line with
/// write transactions. Keep it for that one statement: a task holding it (or a [`WriteTxn`]) that
/// asks for another would wait for itself.
pub struct OneWrite<'a> {
    db: &'a DatabaseConnection,
    _turn: Option<OwnedMutexGuard<()>>,
}

impl std::ops::Deref for OneWrite<'_> {
    type Target = DatabaseConnection;

    fn deref(&self) -> &DatabaseConnection {
        self.db
    }
}

/// A write transaction (holding SQLite's turn until it has really ended) with the live messages that
/// announce its changes: they are sent once it commits, and never when it does not.
pub struct WriteTxn {
    open: Option<Open>,
    live: Live,
    outbox: Vec<Prepared>,
}

struct Open {
    txn: DatabaseTransaction,
    turn: Option<OwnedMutexGuard<()>>,
}

impl WriteTxn {
    /// Announces `payload` on `topic` once this transaction commits (dropped if it does not).
    pub fn publish<T: Payload>(&mut self, topic: &Topic<T>, payload: &T) {
        self.outbox.extend(self.live.prepare(topic, payload));
    }

    /// `select`, locking the rows it reads until this transaction ends: on PostgreSQL (at READ
    /// COMMITTED) with `FOR NO KEY UPDATE`, so writers of the same rows take turns and each reads
    /// what the last one wrote, while inserts of rows that reference them (their foreign-key checks
    /// take `FOR KEY SHARE`) pass. SQLite needs nothing: its write transactions already take turns.
    pub fn locking<S: QuerySelect>(&self, select: S) -> S {
        self.lock_on_postgres(select, LockType::NoKeyUpdate)
    }

    /// `select`, keeping the rows it reads from any change (and deletion) until this transaction
    /// ends: on PostgreSQL with `FOR SHARE`, so a decision made on what they say (an event is LIVE)
    /// still holds at commit, while other transactions that only read them the same way pass. A
    /// transaction that writes rows a deletion would cascade to takes this first, so a deletion
    /// waits for it (or it for the deletion, and finds nothing) instead of each waiting for the
    /// other. SQLite needs nothing.
    pub fn sharing<S: QuerySelect>(&self, select: S) -> S {
        self.lock_on_postgres(select, LockType::Share)
    }

    /// `select`, keeping the rows it reads from deletion (and from changes to their keys) until
    /// this transaction ends: on PostgreSQL with `FOR KEY SHARE`, which other writers of the rows'
    /// other columns pass. For a transaction that only needs the rows to stay (it writes rows their
    /// deletion would cascade to) and not what they say. SQLite needs nothing.
    pub fn keeping<S: QuerySelect>(&self, select: S) -> S {
        self.lock_on_postgres(select, LockType::KeyShare)
    }

    /// `select` with the row lock `lock` on PostgreSQL; as it is on SQLite, whose write
    /// transactions already take turns.
    fn lock_on_postgres<S: QuerySelect>(&self, select: S, lock: LockType) -> S {
        if self.get_database_backend() == DatabaseBackend::Postgres {
            select.lock(lock)
        } else {
            select
        }
    }

    /// Commits, ends SQLite's turn, then sends what was published.
    pub async fn commit(mut self) -> Result<(), DbErr> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        open.txn.commit().await?;
        drop(open.turn);
        for prepared in std::mem::take(&mut self.outbox) {
            self.live.send(prepared);
        }
        Ok(())
    }
}

impl Drop for WriteTxn {
    /// A transaction abandoned on an error path rolls back. On SQLite the turn is kept until the
    /// rollback has run, so the next write transaction never starts while this one still holds the
    /// write lock.
    fn drop(&mut self) {
        let Some(Open { txn, turn }) = self.open.take() else {
            return;
        };
        match (turn, tokio::runtime::Handle::try_current()) {
            (Some(turn), Ok(runtime)) => {
                runtime.spawn(async move {
                    if let Err(err) = txn.rollback().await {
                        tracing::warn!(error = %err, "rollback of an abandoned transaction failed");
                    }
                    drop(turn);
                });
            }
            // PostgreSQL (no turn): the driver rolls back when the transaction is dropped.
            _ => drop(txn),
        }
    }
}

impl std::ops::Deref for WriteTxn {
    type Target = DatabaseTransaction;

    fn deref(&self) -> &DatabaseTransaction {
        match &self.open {
            Some(open) => &open.txn,
            None => unreachable!("a WriteTxn stays open until commit or drop consumes it"),
        }
    }
}

/// One page of `select` (the entity's own columns, decoded by position): at most `limit` rows, and
/// whether more follow (one more row is fetched to tell).
pub async fn page<E>(
    db: &impl ConnectionTrait,
    select: Select<E>,
    limit: u64,
) -> Result<(Vec<E::Model>, bool), DbErr>
where
    E: EntityTrait,
    E::Model: ByPosition,
{
    let rows = select
        .limit(limit.saturating_add(1))
        .into_model::<Positional<E::Model>>()
        .all(db)
        .await?;
    let mut rows: Vec<E::Model> = rows.into_iter().map(|Positional(model)| model).collect();
    let more = rows.len() as u64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok((rows, more))
}

/// Queries of a fixed shape whose SQL is built once per backend and number of keys, then reused.
const MEMOIZED_MAX_KEYS: usize = 128;

/// The rows `select(keys)` finds, for a query whose only values are `keys` in order (the
/// DataLoaders' `WHERE key IN (…)`). SeaORM builds its SQL the first time for each backend and
/// number of keys (`shape` names the query); later calls bind the keys to that SQL. Building is
/// what a small read spends most on: sea-query quotes every identifier of the column list anew
/// (a quarter of an authenticated `event(id)` read's instructions, in callgrind). A query whose
/// values turn out not to be exactly the keys is run as built, never memoized.
pub async fn find_by_keys<E>(
    db: &impl ConnectionTrait,
    shape: &'static str,
    keys: &[uuid::Uuid],
    select: impl FnOnce(&[uuid::Uuid]) -> Select<E>,
) -> Result<Vec<E::Model>, DbErr>
where
    E: EntityTrait,
    E::Model: ByPosition + 'static,
{
    let rows = rows_by_keys::<Positional<E::Model>, _>(db, shape, keys, select).await?;
    Ok(rows.into_iter().map(|Positional(model)| model).collect())
}

/// [`find_by_keys`] for a select of two entities' rows side by side (`select_also`, a join), each
/// key's row with its partner.
pub async fn find_pairs_by_keys<E, F>(
    db: &impl ConnectionTrait,
    shape: &'static str,
    keys: &[uuid::Uuid],
    select: impl FnOnce(&[uuid::Uuid]) -> SelectTwo<E, F>,
) -> Result<Vec<(E::Model, F::Model)>, DbErr>
where
    E: EntityTrait,
    F: EntityTrait,
    E::Model: ByPosition + 'static,
    F::Model: ByPosition + 'static,
{
    let rows =
        rows_by_keys::<PositionalPair<E::Model, F::Model>, _>(db, shape, keys, select).await?;
    Ok(rows
        .into_iter()
        .map(|PositionalPair(a, b)| (a, b))
        .collect())
}

/// What [`find_by_keys`] and [`find_pairs_by_keys`] share: the memoized SQL, rows decoded as `R`.
async fn rows_by_keys<R: FromQueryResult + 'static, Q: QueryTrait>(
    db: &impl ConnectionTrait,
    shape: &'static str,
    keys: &[uuid::Uuid],
    select: impl FnOnce(&[uuid::Uuid]) -> Q,
) -> Result<Vec<R>, DbErr> {
    type Key = (
        std::any::TypeId,
        &'static str,
        std::mem::Discriminant<DatabaseBackend>,
        usize,
    );
    static SQL: std::sync::LazyLock<std::sync::Mutex<HashMap<Key, Arc<str>>>> =
        std::sync::LazyLock::new(Default::default);
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let backend = db.get_database_backend();
    let values: Vec<sea_orm::Value> = keys.iter().map(|key| (*key).into()).collect();
    let key = (
        std::any::TypeId::of::<R>(),
        shape,
        std::mem::discriminant(&backend),
        keys.len(),
    );
    let memoized = (keys.len() <= MEMOIZED_MAX_KEYS)
        .then(|| lock(&SQL).get(&key).cloned())
        .flatten();
    let statement = match memoized {
        Some(sql) => Statement::from_sql_and_values(backend, sql.as_ref(), values),
        None => {
            let statement = select(keys).build(backend);
            let values_are_keys = statement
                .values
                .as_ref()
                .is_some_and(|built| built.0 == values);
            if values_are_keys && keys.len() <= MEMOIZED_MAX_KEYS {
                lock(&SQL).insert(key, statement.sql.as_str().into());
            }
            statement
        }
    };
    R::find_by_statement(statement).all(db).await
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
