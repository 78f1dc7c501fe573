//! `territories`: who holds each H3 cell of an event (the last runner who captured it).

use sea_orm::entity::prelude::*;

/// One row of `territories`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "territories")]
pub struct Model {
    /// The event.
    #[sea_orm(primary_key, auto_increment = false)]
    pub event_id: Uuid,
    /// The H3 cell index (a u64 whose top bit is always 0, stored as i64).
    #[sea_orm(primary_key, auto_increment = false)]
    pub cell: i64,
    /// Who holds it.
    pub owner_id: Uuid,
    /// The run that captured it.
    pub run_id: Uuid,
    /// When.
    pub captured_at: DateTimeUtc,
    /// Raised by every capture of the cell: orders its captures whatever the instances' clocks.
    pub version: i64,
}

/// `territories` has no relations it navigates.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
