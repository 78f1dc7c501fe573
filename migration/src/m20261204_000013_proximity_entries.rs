//! When and how near a watched person last entered an activity's alert radius, kept beside whether
//! they are inside (`proximity_states.entered_at`, `entered_meters`). An owner's `proximityAlerts`
//! stream that missed messages (it fell behind, or another instance's messages were lost) reads
//! the entries of the last hour from here and sends the ones it has not sent. Rows written before
//! this migration have neither (null): their entries are older than any catch-up looks.
//!
//! One column per statement: SQLite alters a table one change at a time.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000013_proximity_entries"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(ProximityStates::Table)
                    .add_column(
                        ColumnDef::new(ProximityStates::EnteredAt).timestamp_with_time_zone(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(ProximityStates::Table)
                    .add_column(ColumnDef::new(ProximityStates::EnteredMeters).double())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [ProximityStates::EnteredMeters, ProximityStates::EnteredAt] {
            manager
                .alter_table(
                    Table::alter()
                        .table(ProximityStates::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum ProximityStates {
    Table,
    EnteredAt,
    EnteredMeters,
}
