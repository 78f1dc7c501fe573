//! `meetings`: a booked availability, between its owner and the participant who booked it.

use sea_orm::entity::prelude::*;

/// Whether a meeting holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum Status {
    /// Booked.
    #[sea_orm(string_value = "CONFIRMED")]
    Confirmed,
    /// Called off by the owner or the participant.
    #[sea_orm(string_value = "CANCELLED")]
    Cancelled,
}

/// One row of `meetings`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "meetings")]
pub struct Model {
    /// UUID v7.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The slot booked.
    pub availability_id: Uuid,
    /// The slot's owner.
    pub owner_id: Uuid,
    /// Who booked it.
    pub participant_id: Uuid,
    /// The slot's start at booking.
    pub start_time: DateTimeUtc,
    /// The slot's end at booking.
    pub end_time: DateTimeUtc,
    /// CONFIRMED or CANCELLED.
    pub status: Status,
    /// iCalendar SEQUENCE: grows with each change calendars must pick up.
    pub sequence: i32,
    /// When booked.
    pub created_at: DateTimeUtc,
    /// When last changed.
    pub updated_at: DateTimeUtc,
    /// When cancelled.
    pub cancelled_at: Option<DateTimeUtc>,
    /// Who cancelled.
    pub cancelled_by: Option<Uuid>,
    /// Why, if they said.
    pub cancellation_reason: Option<String>,
    /// The slot's title at booking.
    pub title: String,
    /// The slot's description at booking.
    pub description: Option<String>,
}

/// `meetings` has no relations it navigates.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
