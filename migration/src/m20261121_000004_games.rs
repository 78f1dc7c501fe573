//! Games between guests at an event: score games and the photo blur game.
//!
//! - `game_players.points` is what each player won in the game; the same points are added to the
//!   player's cup session at the event (its `score`), in the same transaction.
//! - `blur_rounds.solved_by` is set by a conditional update (`WHERE solved_by IS NULL`), so exactly
//!   one right guess wins a round under any concurrency.
//! - `blur_rounds.photo_key` names the original picture in the media store; it is never served as is.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261121_000004_games"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Games::Table)
                    .col(ColumnDef::new(Games::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Games::EventId).uuid().not_null())
                    .col(ColumnDef::new(Games::Kind).string_len(16).not_null())
                    .col(ColumnDef::new(Games::Title).string_len(120).not_null())
                    .col(ColumnDef::new(Games::Status).string_len(16).not_null())
                    .col(
                        ColumnDef::new(Games::Version)
                            .big_integer()
                            .not_null()
                            .default(1),
                    )
                    .col(
                        ColumnDef::new(Games::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("games_event_fk")
                            .from(Games::Table, Games::EventId)
                            .to(Events::Table, Events::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("games_event_idx")
                    .table(Games::Table)
                    .col(Games::EventId)
                    .col(Games::CreatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(GamePlayers::Table)
                    .col(ColumnDef::new(GamePlayers::GameId).uuid().not_null())
                    .col(ColumnDef::new(GamePlayers::UserId).uuid().not_null())
                    .col(
                        ColumnDef::new(GamePlayers::Points)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(GamePlayers::AddedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(GamePlayers::GameId)
                            .col(GamePlayers::UserId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("game_players_game_fk")
                            .from(GamePlayers::Table, GamePlayers::GameId)
                            .to(Games::Table, Games::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("game_players_user_fk")
                            .from(GamePlayers::Table, GamePlayers::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(BlurRounds::Table)
                    .col(
                        ColumnDef::new(BlurRounds::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(BlurRounds::GameId).uuid().not_null())
                    .col(ColumnDef::new(BlurRounds::PhotoKey).string().not_null())
                    .col(ColumnDef::new(BlurRounds::AnswerId).uuid().not_null())
                    .col(ColumnDef::new(BlurRounds::Level).integer().not_null())
                    .col(ColumnDef::new(BlurRounds::SolvedBy).uuid().null())
                    .col(
                        ColumnDef::new(BlurRounds::SolvedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(BlurRounds::PointsAwarded)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(BlurRounds::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("blur_rounds_game_fk")
                            .from(BlurRounds::Table, BlurRounds::GameId)
                            .to(Games::Table, Games::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("blur_rounds_game_idx")
                    .table(BlurRounds::Table)
                    .col(BlurRounds::GameId)
                    .col(BlurRounds::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(BlurRounds::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(GamePlayers::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Games::Table).to_owned())
            .await
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
enum Games {
    Table,
    Id,
    EventId,
    Kind,
    Title,
    Status,
    Version,
    CreatedAt,
}

#[derive(DeriveIden)]
enum GamePlayers {
    Table,
    GameId,
    UserId,
    Points,
    AddedAt,
}

#[derive(DeriveIden)]
enum BlurRounds {
    Table,
    Id,
    GameId,
    PhotoKey,
    AnswerId,
    Level,
    SolvedBy,
    SolvedAt,
    PointsAwarded,
    CreatedAt,
}
