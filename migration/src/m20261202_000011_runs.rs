//! Runs: event tickets, runs with their tracks, territory cells, wallets, and the job scheduler's
//! lease and ledger.
//!
//! - `tickets`: one row per ticket an organizer issued; ACTIVE until a run consumes it (a
//!   conditional update, plus the unique `runs_ticket_key`: one run per ticket) or its event
//!   finishes (EXPIRED).
//! - `runs`: a partial unique index allows one RUNNING run per runner.
//! - `run_tracks`: each saved run's track as JSON, also when it was REJECTED (for review); apart
//!   from `runs` so listing runs never reads tracks.
//! - `territories`: one row per (event, H3 cell), owned by the last runner who captured it; indexed
//!   by owner for mining.
//! - `wallets`: mined tokens per user: `claimable` accrues up to the cap, `tokens` is what was
//!   claimed.
//! - `job_leases`: which instance runs a job now (taken by a conditional update, with an expiry).
//! - `job_runs`: the ledger, one row per (job, scheduled moment) by its primary key, so a moment is
//!   done once even when two instances race.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000011_runs"
    }
}

fn at(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Tickets::Table)
                    .col(ColumnDef::new(Tickets::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Tickets::EventId).uuid().not_null())
                    .col(ColumnDef::new(Tickets::OwnerId).uuid().not_null())
                    .col(ColumnDef::new(Tickets::Status).string_len(16).not_null())
                    .col(at(Tickets::IssuedAt))
                    .col(ColumnDef::new(Tickets::ConsumedAt).timestamp_with_time_zone())
                    .foreign_key(
                        ForeignKey::create()
                            .name("tickets_event_fk")
                            .from(Tickets::Table, Tickets::EventId)
                            .to(Events::Table, Events::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("tickets_owner_fk")
                            .from(Tickets::Table, Tickets::OwnerId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, first) in [
            ("tickets_owner_idx", Tickets::OwnerId),
            ("tickets_event_idx", Tickets::EventId),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Tickets::Table)
                        .col(first)
                        .col(Tickets::Status)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(Runs::Table)
                    .col(ColumnDef::new(Runs::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Runs::UserId).uuid().not_null())
                    .col(ColumnDef::new(Runs::EventId).uuid().not_null())
                    .col(ColumnDef::new(Runs::TicketId).uuid().not_null())
                    .col(ColumnDef::new(Runs::Status).string_len(16).not_null())
                    .col(at(Runs::StartedAt))
                    .col(ColumnDef::new(Runs::FinishedAt).timestamp_with_time_zone())
                    .col(ColumnDef::new(Runs::DistanceMeters).double().not_null())
                    .col(ColumnDef::new(Runs::DurationSeconds).integer().not_null())
                    .col(ColumnDef::new(Runs::CellsCaptured).integer().not_null())
                    .col(ColumnDef::new(Runs::RejectionReason).text())
                    .foreign_key(
                        ForeignKey::create()
                            .name("runs_user_fk")
                            .from(Runs::Table, Runs::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("runs_event_fk")
                            .from(Runs::Table, Runs::EventId)
                            .to(Events::Table, Events::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("runs_ticket_fk")
                            .from(Runs::Table, Runs::TicketId)
                            .to(Tickets::Table, Tickets::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("runs_ticket_key")
                    .table(Runs::Table)
                    .col(Runs::TicketId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("runs_one_running_key")
                    .table(Runs::Table)
                    .col(Runs::UserId)
                    .unique()
                    .and_where(Expr::col(Runs::Status).eq("RUNNING"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("runs_user_idx")
                    .table(Runs::Table)
                    .col(Runs::UserId)
                    .col(Runs::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RunTracks::Table)
                    .col(
                        ColumnDef::new(RunTracks::RunId)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(RunTracks::Points).text().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("run_tracks_run_fk")
                            .from(RunTracks::Table, RunTracks::RunId)
                            .to(Runs::Table, Runs::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Territories::Table)
                    .col(ColumnDef::new(Territories::EventId).uuid().not_null())
                    .col(ColumnDef::new(Territories::Cell).big_integer().not_null())
                    .col(ColumnDef::new(Territories::OwnerId).uuid().not_null())
                    .col(ColumnDef::new(Territories::RunId).uuid().not_null())
                    .col(at(Territories::CapturedAt))
                    .primary_key(
                        Index::create()
                            .name("territories_pkey")
                            .col(Territories::EventId)
                            .col(Territories::Cell),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("territories_event_fk")
                            .from(Territories::Table, Territories::EventId)
                            .to(Events::Table, Events::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("territories_owner_fk")
                            .from(Territories::Table, Territories::OwnerId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("territories_owner_idx")
                    .table(Territories::Table)
                    .col(Territories::OwnerId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Wallets::Table)
                    .col(
                        ColumnDef::new(Wallets::UserId)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Wallets::Tokens).big_integer().not_null())
                    .col(ColumnDef::new(Wallets::Claimable).big_integer().not_null())
                    .col(at(Wallets::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("wallets_user_fk")
                            .from(Wallets::Table, Wallets::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(JobLeases::Table)
                    .col(
                        ColumnDef::new(JobLeases::Job)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(JobLeases::Holder).string_len(64).not_null())
                    .col(at(JobLeases::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(JobRuns::Table)
                    .col(ColumnDef::new(JobRuns::Job).string_len(64).not_null())
                    .col(at(JobRuns::Moment))
                    .col(ColumnDef::new(JobRuns::Holder).string_len(64).not_null())
                    .col(at(JobRuns::RanAt))
                    .col(ColumnDef::new(JobRuns::Changed).integer().not_null())
                    .primary_key(
                        Index::create()
                            .name("job_runs_pkey")
                            .col(JobRuns::Job)
                            .col(JobRuns::Moment),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            JobRuns::Table.into_iden(),
            JobLeases::Table.into_iden(),
            Wallets::Table.into_iden(),
            Territories::Table.into_iden(),
            RunTracks::Table.into_iden(),
            Runs::Table.into_iden(),
            Tickets::Table.into_iden(),
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
enum Events {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Tickets {
    Table,
    Id,
    EventId,
    OwnerId,
    Status,
    IssuedAt,
    ConsumedAt,
}

#[derive(DeriveIden)]
enum Runs {
    Table,
    Id,
    UserId,
    EventId,
    TicketId,
    Status,
    StartedAt,
    FinishedAt,
    DistanceMeters,
    DurationSeconds,
    CellsCaptured,
    RejectionReason,
}

#[derive(DeriveIden)]
enum RunTracks {
    Table,
    RunId,
    Points,
}

#[derive(DeriveIden)]
enum Territories {
    Table,
    EventId,
    Cell,
    OwnerId,
    RunId,
    CapturedAt,
}

#[derive(DeriveIden)]
enum Wallets {
    Table,
    UserId,
    Tokens,
    Claimable,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum JobLeases {
    Table,
    Job,
    Holder,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum JobRuns {
    Table,
    Job,
    Moment,
    Holder,
    RanAt,
    Changed,
}
