//! Proximity alerts: who watches whom (with consent), the latest position of each user, activities.
//!
//! - `monitor_links`: one row per (watcher, watched); PENDING until the watched person accepts. The
//!   index on (watched_id, status) finds who watches a user, which is how a location update reaches
//!   only the activities that watch its sender.
//! - `locations`: only the latest position of each user (no history); both coordinates null when the
//!   device reported its GPS off. `updated_at` is also the rate limit's clock: an update is accepted
//!   by a conditional write only when the previous one is old enough.
//! - `activities`: a partial unique index allows one ACTIVE activity per owner, on SQLite and
//!   PostgreSQL alike.
//! - `proximity_states`: whether a watched person is inside an activity's alert radius, flipped by
//!   conditional updates so each entry is alerted once across all instances.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000009_proximity"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(MonitorLinks::Table)
                    .col(ColumnDef::new(MonitorLinks::WatcherId).uuid().not_null())
                    .col(ColumnDef::new(MonitorLinks::WatchedId).uuid().not_null())
                    .col(
                        ColumnDef::new(MonitorLinks::Status)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(MonitorLinks::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .name("monitor_links_pkey")
                            .col(MonitorLinks::WatcherId)
                            .col(MonitorLinks::WatchedId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("monitor_links_watcher_fk")
                            .from(MonitorLinks::Table, MonitorLinks::WatcherId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("monitor_links_watched_fk")
                            .from(MonitorLinks::Table, MonitorLinks::WatchedId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("monitor_links_watched_idx")
                    .table(MonitorLinks::Table)
                    .col(MonitorLinks::WatchedId)
                    .col(MonitorLinks::Status)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Locations::Table)
                    .col(
                        ColumnDef::new(Locations::UserId)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Locations::Latitude).double())
                    .col(ColumnDef::new(Locations::Longitude).double())
                    .col(
                        ColumnDef::new(Locations::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("locations_user_fk")
                            .from(Locations::Table, Locations::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Activities::Table)
                    .col(
                        ColumnDef::new(Activities::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Activities::OwnerId).uuid().not_null())
                    .col(ColumnDef::new(Activities::Status).string_len(16).not_null())
                    .col(
                        ColumnDef::new(Activities::AlertRadiusMeters)
                            .double()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Activities::StartedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Activities::EndedAt).timestamp_with_time_zone())
                    .col(ColumnDef::new(Activities::Version).big_integer().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("activities_owner_fk")
                            .from(Activities::Table, Activities::OwnerId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("activities_one_active_key")
                    .table(Activities::Table)
                    .col(Activities::OwnerId)
                    .unique()
                    .and_where(Expr::col(Activities::Status).eq("ACTIVE"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ProximityStates::Table)
                    .col(
                        ColumnDef::new(ProximityStates::ActivityId)
                            .uuid()
                            .not_null(),
                    )
                    .col(ColumnDef::new(ProximityStates::UserId).uuid().not_null())
                    .col(ColumnDef::new(ProximityStates::Inside).boolean().not_null())
                    .primary_key(
                        Index::create()
                            .name("proximity_states_pkey")
                            .col(ProximityStates::ActivityId)
                            .col(ProximityStates::UserId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("proximity_states_activity_fk")
                            .from(ProximityStates::Table, ProximityStates::ActivityId)
                            .to(Activities::Table, Activities::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            ProximityStates::Table.into_iden(),
            Activities::Table.into_iden(),
            Locations::Table.into_iden(),
            MonitorLinks::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum MonitorLinks {
    Table,
    WatcherId,
    WatchedId,
    Status,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Locations {
    Table,
    UserId,
    Latitude,
    Longitude,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Activities {
    Table,
    Id,
    OwnerId,
    Status,
    AlertRadiusMeters,
    StartedAt,
    EndedAt,
    Version,
}

#[derive(DeriveIden)]
enum ProximityStates {
    Table,
    ActivityId,
    UserId,
    Inside,
}
