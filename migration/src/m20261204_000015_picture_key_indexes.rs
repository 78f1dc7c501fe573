//! Indexes on the columns naming stored pictures (`users.avatar_key`, `events.image_key`), so the
//! hourly media sweep asks which of a few hundred listed pictures something shows with index
//! lookups rather than a scan of every account and event per batch.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000015_picture_key_indexes"
    }
}

/// (index, table, column).
const INDEXES: [(&str, &str, &str); 2] = [
    ("users_avatar_key_idx", "users", "avatar_key"),
    ("events_image_key_idx", "events", "image_key"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table, column) in INDEXES {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Alias::new(table))
                        .col(Alias::new(column))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table, _) in INDEXES {
            manager
                .drop_index(Index::drop().name(name).table(Alias::new(table)).to_owned())
                .await?;
        }
        Ok(())
    }
}
