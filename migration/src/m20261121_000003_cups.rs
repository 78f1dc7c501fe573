//! Cups: one guest's cup at one event, and the drinks ordered on it.
//!
//! - Counters (`cheers`, `orders`, `bill_cents`, `calories`, `alcohol_grams`, `game_points`, `score`)
//!   move only by atomic `SET x = x + ?` updates, so concurrent gateway calls never lose an update.
//! - `score` = `cheers` + `game_points`, kept in the same statements; `score_reached_at` is when the
//!   current score was reached, which breaks ties on the leaderboard (earliest first).
//! - `cup_sessions_event_score_idx` serves the leaderboard: top N of an event by score, then time.
//! - A partial unique index allows at most one OPEN session per guest and event, on SQLite and
//!   PostgreSQL alike; closed sessions do not count.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261121_000003_cups"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CupSessions::Table)
                    .col(
                        ColumnDef::new(CupSessions::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(CupSessions::EventId).uuid().not_null())
                    .col(ColumnDef::new(CupSessions::UserId).uuid().not_null())
                    .col(
                        ColumnDef::new(CupSessions::Status)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CupSessions::Cheers)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(CupSessions::Orders)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(CupSessions::GamePoints)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(CupSessions::Score)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(CupSessions::ScoreReachedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CupSessions::AlcoholGrams)
                            .double()
                            .not_null()
                            .default(0.0),
                    )
                    .col(
                        ColumnDef::new(CupSessions::BillCents)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(CupSessions::Calories)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(CupSessions::FirstDrinkAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(CupSessions::OpenedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CupSessions::ClosedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(CupSessions::Version)
                            .big_integer()
                            .not_null()
                            .default(1),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("cup_sessions_event_fk")
                            .from(CupSessions::Table, CupSessions::EventId)
                            .to(Events::Table, Events::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("cup_sessions_user_fk")
                            .from(CupSessions::Table, CupSessions::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("cup_sessions_one_open_key")
                    .table(CupSessions::Table)
                    .col(CupSessions::EventId)
                    .col(CupSessions::UserId)
                    .unique()
                    .and_where(Expr::col(CupSessions::Status).eq("OPEN"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("cup_sessions_event_score_idx")
                    .table(CupSessions::Table)
                    .col(CupSessions::EventId)
                    .col((CupSessions::Score, IndexOrder::Desc))
                    .col(CupSessions::ScoreReachedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("cup_sessions_user_idx")
                    .table(CupSessions::Table)
                    .col(CupSessions::UserId)
                    .col(CupSessions::EventId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(DrinkOrders::Table)
                    .col(
                        ColumnDef::new(DrinkOrders::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(DrinkOrders::SessionId).uuid().not_null())
                    .col(ColumnDef::new(DrinkOrders::Name).string_len(80).not_null())
                    .col(ColumnDef::new(DrinkOrders::VolumeMl).integer().not_null())
                    .col(ColumnDef::new(DrinkOrders::Abv).double().not_null())
                    .col(ColumnDef::new(DrinkOrders::PriceCents).integer().not_null())
                    .col(ColumnDef::new(DrinkOrders::Calories).integer().not_null())
                    .col(
                        ColumnDef::new(DrinkOrders::AlcoholGrams)
                            .double()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DrinkOrders::OrderedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("drink_orders_session_fk")
                            .from(DrinkOrders::Table, DrinkOrders::SessionId)
                            .to(CupSessions::Table, CupSessions::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("drink_orders_session_idx")
                    .table(DrinkOrders::Table)
                    .col(DrinkOrders::SessionId)
                    .col(DrinkOrders::OrderedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(DrinkOrders::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(CupSessions::Table).to_owned())
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
enum CupSessions {
    Table,
    Id,
    EventId,
    UserId,
    Status,
    Cheers,
    Orders,
    GamePoints,
    Score,
    ScoreReachedAt,
    AlcoholGrams,
    BillCents,
    Calories,
    FirstDrinkAt,
    OpenedAt,
    ClosedAt,
    Version,
}

#[derive(DeriveIden)]
enum DrinkOrders {
    Table,
    Id,
    SessionId,
    Name,
    VolumeMl,
    Abv,
    PriceCents,
    Calories,
    AlcoholGrams,
    OrderedAt,
}
