//! Activities by owner and status: how a location update finds the ACTIVE activities of the people
//! who watch its sender. The partial unique index `activities_one_active_key` keeps one ACTIVE
//! activity per owner, but a planner can use a partial index only when it can prove the query's
//! `status = ?` matches its predicate, which SQLite cannot with a bound parameter (nor PostgreSQL
//! with a generic plan); this plain index serves the lookup on both.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000010_activities_owner_idx"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("activities_owner_idx")
                    .table(Activities::Table)
                    .col(Activities::OwnerId)
                    .col(Activities::Status)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("activities_owner_idx")
                    .table(Activities::Table)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Activities {
    Table,
    OwnerId,
    Status,
}
