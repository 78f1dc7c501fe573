//! Cup codes: a guest asks for a cup by showing a short-lived, single-use code, so nobody gets a cup
//! (and with it a bill, a BAC estimate and a leaderboard place) without asking.
//!
//! Only an HMAC of the code is stored (`code_hash`). A code is looked up by guest and event (the
//! index below), then matched by hash; `used_at` is set by a conditional update, so a code opens at
//! most one cup however many gateways present it at once.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000007_cup_codes"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CupCodes::Table)
                    .col(ColumnDef::new(CupCodes::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(CupCodes::EventId).uuid().not_null())
                    .col(ColumnDef::new(CupCodes::UserId).uuid().not_null())
                    .col(ColumnDef::new(CupCodes::CodeHash).string_len(64).not_null())
                    .col(
                        ColumnDef::new(CupCodes::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CupCodes::ExpiresAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(CupCodes::UsedAt).timestamp_with_time_zone())
                    .foreign_key(
                        ForeignKey::create()
                            .name("cup_codes_event_fk")
                            .from(CupCodes::Table, CupCodes::EventId)
                            .to(Events::Table, Events::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("cup_codes_user_fk")
                            .from(CupCodes::Table, CupCodes::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("cup_codes_guest_idx")
                    .table(CupCodes::Table)
                    .col(CupCodes::UserId)
                    .col(CupCodes::EventId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(CupCodes::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Events {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum CupCodes {
    Table,
    Id,
    EventId,
    UserId,
    CodeHash,
    CreatedAt,
    ExpiresAt,
    UsedAt,
}
