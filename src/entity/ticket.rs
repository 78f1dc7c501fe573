//! `tickets`: a runner's ticket to an event; a run consumes it.

use sea_orm::entity::prelude::*;

/// Where a ticket stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum Status {
    /// Can start a run.
    #[sea_orm(string_value = "ACTIVE")]
    Active,
    /// A run started with it.
    #[sea_orm(string_value = "CONSUMED")]
    Consumed,
    /// Its event finished before it was used.
    #[sea_orm(string_value = "EXPIRED")]
    Expired,
}

/// One row of `tickets`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tickets")]
pub struct Model {
    /// UUID v7.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The event it admits to.
    pub event_id: Uuid,
    /// The runner.
    pub owner_id: Uuid,
    /// ACTIVE, CONSUMED or EXPIRED.
    pub status: Status,
    /// When the organizer issued it.
    pub issued_at: DateTimeUtc,
    /// When a run consumed it.
    pub consumed_at: Option<DateTimeUtc>,
}

/// `tickets` has no relations it navigates.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
