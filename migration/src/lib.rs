//! Rally's database migrations: one module per change, applied in order, never edited once released.
//!
//! Every migration is written against SeaORM's schema builder so that the same code creates the same
//! tables on SQLite (the embedded default) and PostgreSQL (production).

pub use sea_orm_migration::prelude::*;

mod m20261121_000001_accounts;
mod m20261121_000002_events;
mod m20261121_000003_cups;
mod m20261121_000004_games;
mod m20261201_000005_meetings;
mod m20261201_000006_blur_guesses;
mod m20261202_000007_cup_codes;
mod m20261202_000008_ended_sessions;
mod m20261202_000009_proximity;
mod m20261202_000010_activities_owner_idx;
mod m20261202_000011_runs;
mod m20261204_000012_foreign_key_indexes;
mod m20261204_000013_proximity_entries;
mod m20261204_000014_territory_versions;
mod m20261204_000015_picture_key_indexes;
mod m20261204_000016_meeting_titles;
mod m20261204_000017_retention_indexes;
mod m20261204_000018_event_status_times;
mod plain_indexes;

/// The ordered list of Rally's migrations.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261121_000001_accounts::Migration),
            Box::new(m20261121_000002_events::Migration),
            Box::new(m20261121_000003_cups::Migration),
            Box::new(m20261121_000004_games::Migration),
            Box::new(m20261201_000005_meetings::Migration),
            Box::new(m20261201_000006_blur_guesses::Migration),
            Box::new(m20261202_000007_cup_codes::Migration),
            Box::new(m20261202_000008_ended_sessions::Migration),
            Box::new(m20261202_000009_proximity::Migration),
            Box::new(m20261202_000010_activities_owner_idx::Migration),
            Box::new(m20261202_000011_runs::Migration),
            Box::new(m20261204_000012_foreign_key_indexes::Migration),
            Box::new(m20261204_000013_proximity_entries::Migration),
            Box::new(m20261204_000014_territory_versions::Migration),
            Box::new(m20261204_000015_picture_key_indexes::Migration),
            Box::new(m20261204_000016_meeting_titles::Migration),
            Box::new(m20261204_000017_retention_indexes::Migration),
            Box::new(m20261204_000018_event_status_times::Migration),
        ]
    }
}
