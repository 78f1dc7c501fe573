//! An index for every foreign key that had none, so a deletion cascading through a reference (or
//! setting it null) reads an index range instead of the whole referring table: runs and cup codes
//! of a deleted event, a deleted template's events, and a user's refresh tokens, likes, staff
//! places and game places. `tests/api/query_plans.rs` reads both databases' catalogs and fails on a
//! foreign key whose columns lead no index.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000012_foreign_key_indexes"
    }
}

/// (index, table, column): each index is the one column of a foreign key.
const INDEXES: [(&str, &str, &str); 7] = [
    ("runs_event_idx", "runs", "event_id"),
    ("cup_codes_event_idx", "cup_codes", "event_id"),
    ("events_template_idx", "events", "template_id"),
    ("refresh_tokens_user_idx", "refresh_tokens", "user_id"),
    ("event_likes_user_idx", "event_likes", "user_id"),
    ("event_staff_user_idx", "event_staff", "user_id"),
    ("game_players_user_idx", "game_players", "user_id"),
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
