//! A meeting keeps the title and description its slot had when it was booked
//! (`meetings.title`, `meetings.description`), as it keeps the slot's times: a cancelled meeting
//! reopens its slot, whose owner may then rename it, and the calendar feed must go on showing the
//! cancelled meeting as it was. Existing rows take their slot's current title and description.
//!
//! One column per statement: SQLite alters a table one change at a time.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000016_meeting_titles"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Meetings::Table)
                    .add_column(
                        ColumnDef::new(Meetings::Title)
                            .string_len(200)
                            .not_null()
                            .default(""),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Meetings::Table)
                    .add_column(ColumnDef::new(Meetings::Description).text().null())
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE meetings SET \
                 title = (SELECT a.title FROM availabilities a WHERE a.id = meetings.availability_id), \
                 description = (SELECT a.description FROM availabilities a \
                                WHERE a.id = meetings.availability_id)",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Meetings::Description, Meetings::Title] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Meetings::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Meetings {
    Table,
    Title,
    Description,
}
