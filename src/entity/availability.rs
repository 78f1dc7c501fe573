//! `availabilities`: slots an owner publishes for others to book.

use sea_orm::entity::prelude::*;

/// Where a slot is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum Status {
    /// Open for booking.
    #[sea_orm(string_value = "SCHEDULED")]
    Scheduled,
    /// Someone booked it (a CONFIRMED meeting).
    #[sea_orm(string_value = "BOOKED")]
    Booked,
    /// No longer offered.
    #[sea_orm(string_value = "CANCELLED")]
    Cancelled,
}

/// One row of `availabilities`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "availabilities")]
pub struct Model {
    /// UUID v7.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Who offers it.
    pub owner_id: Uuid,
    /// When it starts (whole seconds).
    pub start_time: DateTimeUtc,
    /// When it ends (whole seconds).
    pub end_time: DateTimeUtc,
    /// 1-200 characters.
    pub title: String,
    /// Free text.
    pub description: Option<String>,
    /// SCHEDULED, BOOKED or CANCELLED.
    pub status: Status,
    /// Grows with each committed change.
    pub version: i64,
    /// When published.
    pub created_at: DateTimeUtc,
    /// When last changed.
    pub updated_at: DateTimeUtc,
}

/// `availabilities` has no relations it navigates.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
