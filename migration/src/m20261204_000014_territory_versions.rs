//! A version per held cell (`territories.version`), raised by every capture of it. Captures of one
//! cell commit one after another (each waits for the row), so the version orders them whatever the
//! clocks of the instances that saved them say: a `territoryChanged` stream never shows a capture
//! older than the one it showed for that cell, even when the older one's message comes late. Rows
//! written before this migration start at 0.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000014_territory_versions"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Territories::Table)
                    .add_column(
                        ColumnDef::new(Territories::Version)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Territories::Table)
                    .drop_column(Territories::Version)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Territories {
    Table,
    Version,
}
