//! One guess per player per blur level: the primary key (round, player, level) admits one, so a
//! player cannot try every handle in turn, under any concurrency.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000006_blur_guesses"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(BlurGuesses::Table)
                    .col(ColumnDef::new(BlurGuesses::RoundId).uuid().not_null())
                    .col(ColumnDef::new(BlurGuesses::UserId).uuid().not_null())
                    .col(ColumnDef::new(BlurGuesses::Level).integer().not_null())
                    .col(
                        ColumnDef::new(BlurGuesses::GuessedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .name("blur_guesses_pkey")
                            .col(BlurGuesses::RoundId)
                            .col(BlurGuesses::UserId)
                            .col(BlurGuesses::Level),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("blur_guesses_round_fk")
                            .from(BlurGuesses::Table, BlurGuesses::RoundId)
                            .to(BlurRounds::Table, BlurRounds::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(BlurGuesses::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum BlurRounds {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum BlurGuesses {
    Table,
    RoundId,
    UserId,
    Level,
    GuessedAt,
}
