//! Indexes for the hourly job that forgets old rows: `locations.updated_at` (positions not updated
//! for the retention period) and `refresh_tokens.expires_at` (expired tokens), so it reads ranges
//! rather than whole tables. (Alert states go by their activity, read by its key.)

use sea_orm_migration::prelude::*;

use crate::plain_indexes::{self, PlainIndex};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000017_retention_indexes"
    }
}

const INDEXES: [PlainIndex; 2] = [
    ("locations_updated_at_idx", "locations", "updated_at"),
    ("refresh_tokens_expires_idx", "refresh_tokens", "expires_at"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        plain_indexes::create(manager, &INDEXES).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        plain_indexes::drop(manager, &INDEXES).await
    }
}
