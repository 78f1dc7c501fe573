//! The database connection and its migrations, for SQLite (the embedded default) and PostgreSQL.

use std::time::Duration;

use anyhow::Context;
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection,
    TransactionTrait,
};

use crate::config::Config;

/// Key of the PostgreSQL advisory lock held while migrating, so instances starting together take
/// turns instead of racing on the same DDL.
const MIGRATION_LOCK: i64 = 0x5241_4c4c_5900_0001;

/// Opens the pool described by the configuration.
pub async fn connect(config: &Config) -> anyhow::Result<DatabaseConnection> {
    let url = config.database_url();
    let mut options = ConnectOptions::new(url);
    options
        .max_connections(config.database_max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false);
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
