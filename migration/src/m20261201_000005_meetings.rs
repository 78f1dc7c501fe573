//! Availabilities, meetings and calendar feeds.
//!
//! - `availabilities` are slots an owner publishes: SCHEDULED (open), BOOKED, CANCELLED. Times are
//!   whole seconds, so SQLite compares and orders the stored text correctly. The search index is
//!   (status, start_time, id): "open slots starting in [from, to), soonest first" is one range scan,
//!   and its keyset cursor (start_time, id) is stable while slots are added.
//! - Booking is a conditional update of the slot (`WHERE status = 'SCHEDULED'`) and an insert of a
//!   CONFIRMED meeting in one transaction; the partial unique index `meetings_one_confirmed_key` (one
//!   CONFIRMED meeting per availability) settles any race the update did not.
//! - "My meetings" is an index range scan on (owner_id, start_time, id) or
//!   (participant_id, start_time, id), or both merged for either role.
//! - `calendar_feeds` keeps one secret feed per user: only the hash of its token (unique, for the
//!   lookup) and the random nonce it is derived from (useless without the server's secret).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000005_meetings"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Availabilities::Table)
                    .col(
                        ColumnDef::new(Availabilities::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Availabilities::OwnerId).uuid().not_null())
                    .col(
                        ColumnDef::new(Availabilities::StartTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Availabilities::EndTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Availabilities::Title)
                            .string_len(200)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Availabilities::Description).text().null())
                    .col(
                        ColumnDef::new(Availabilities::Status)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Availabilities::Version)
                            .big_integer()
                            .not_null()
                            .default(1),
                    )
                    .col(
                        ColumnDef::new(Availabilities::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Availabilities::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("availabilities_owner_fk")
                            .from(Availabilities::Table, Availabilities::OwnerId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("availabilities_search_idx")
                    .table(Availabilities::Table)
                    .col(Availabilities::Status)
                    .col(Availabilities::StartTime)
                    .col(Availabilities::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("availabilities_owner_idx")
                    .table(Availabilities::Table)
                    .col(Availabilities::OwnerId)
                    .col(Availabilities::StartTime)
                    .col(Availabilities::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Meetings::Table)
                    .col(ColumnDef::new(Meetings::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Meetings::AvailabilityId).uuid().not_null())
                    .col(ColumnDef::new(Meetings::OwnerId).uuid().not_null())
                    .col(ColumnDef::new(Meetings::ParticipantId).uuid().not_null())
                    .col(
                        ColumnDef::new(Meetings::StartTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Meetings::EndTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Meetings::Status).string_len(16).not_null())
                    .col(
                        ColumnDef::new(Meetings::Sequence)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(Meetings::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Meetings::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Meetings::CancelledAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(ColumnDef::new(Meetings::CancelledBy).uuid().null())
                    .col(
                        ColumnDef::new(Meetings::CancellationReason)
                            .string_len(500)
                            .null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("meetings_availability_fk")
                            .from(Meetings::Table, Meetings::AvailabilityId)
                            .to(Availabilities::Table, Availabilities::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("meetings_owner_fk")
                            .from(Meetings::Table, Meetings::OwnerId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("meetings_participant_fk")
                            .from(Meetings::Table, Meetings::ParticipantId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("meetings_one_confirmed_key")
                    .table(Meetings::Table)
                    .col(Meetings::AvailabilityId)
                    .unique()
                    .and_where(Expr::col(Meetings::Status).eq("CONFIRMED"))
                    .to_owned(),
            )
            .await?;
        for (name, column) in [
            ("meetings_owner_idx", Meetings::OwnerId),
            ("meetings_participant_idx", Meetings::ParticipantId),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Meetings::Table)
                        .col(column)
                        .col(Meetings::StartTime)
                        .col(Meetings::Id)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("meetings_availability_idx")
                    .table(Meetings::Table)
                    .col(Meetings::AvailabilityId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(CalendarFeeds::Table)
                    .col(
                        ColumnDef::new(CalendarFeeds::UserId)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(CalendarFeeds::TokenHash)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CalendarFeeds::Nonce)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CalendarFeeds::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("calendar_feeds_user_fk")
                            .from(CalendarFeeds::Table, CalendarFeeds::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("calendar_feeds_token_key")
                    .table(CalendarFeeds::Table)
                    .col(CalendarFeeds::TokenHash)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            CalendarFeeds::Table.into_iden(),
            Meetings::Table.into_iden(),
            Availabilities::Table.into_iden(),
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
enum Availabilities {
    Table,
    Id,
    OwnerId,
    StartTime,
    EndTime,
    Title,
    Description,
    Status,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Meetings {
    Table,
    Id,
    AvailabilityId,
    OwnerId,
    ParticipantId,
    StartTime,
    EndTime,
    Status,
    Sequence,
    CreatedAt,
    UpdatedAt,
    CancelledAt,
    CancelledBy,
    CancellationReason,
}

#[derive(DeriveIden)]
enum CalendarFeeds {
    Table,
    UserId,
    TokenHash,
    Nonce,
    CreatedAt,
}
