//! Plain one-column indexes, made and dropped together: what index-only migrations share (from
//! `m20261204_000017` on; earlier ones, released, keep their own loops).

use sea_orm_migration::prelude::*;

/// An index's name, its table and its column.
pub type PlainIndex = (&'static str, &'static str, &'static str);

/// Creates every index of `indexes`.
pub async fn create(manager: &SchemaManager<'_>, indexes: &[PlainIndex]) -> Result<(), DbErr> {
    for &(name, table, column) in indexes {
        manager
            .create_index(
                Index::create()
                    .name(name)
                    .table(Alias::new(table))
                    .col(Alias::new(column))
                    .to_owned(),
            )
            .await?;
    }
    Ok(())
}

/// Drops every index of `indexes`.
pub async fn drop(manager: &SchemaManager<'_>, indexes: &[PlainIndex]) -> Result<(), DbErr> {
    for &(name, table, _) in indexes {
        manager
            .drop_index(Index::drop().name(name).table(Alias::new(table)).to_owned())
            .await?;
    }
    Ok(())
}
