//! When an event's status last changed (`events.status_changed_at`, indexed): an
//! `eventStatusChanged` stream that missed messages (its subscriber fell behind, or another
//! instance's messages were lost while Redis was away) reads the events whose status changed since
//! and sends each as it is now. Existing rows have none: a change from before this release is too
//! old for any catch-up.

use sea_orm_migration::prelude::*;

use crate::plain_indexes::{self, PlainIndex};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000018_event_status_times"
    }
}

const INDEXES: [PlainIndex; 1] = [("events_status_changed_idx", "events", "status_changed_at")];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Events::Table)
                    .add_column(
                        ColumnDef::new(Events::StatusChangedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        plain_indexes::create(manager, &INDEXES).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        plain_indexes::drop(manager, &INDEXES).await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Events::Table)
                    .drop_column(Events::StatusChangedAt)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Events {
    Table,
    StatusChangedAt,
}
