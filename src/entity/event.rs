//! `events`: what happens where and when, organized by a user.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// Where an event is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum Status {
    /// Announced, not started.
    #[sea_orm(string_value = "SCHEDULED")]
    Scheduled,
    /// Happening now.
    #[sea_orm(string_value = "LIVE")]
    Live,
    /// Over.
    #[sea_orm(string_value = "FINISHED")]
    Finished,
    /// Called off.
    #[sea_orm(string_value = "CANCELLED")]
    Cancelled,
}

/// One row of `events` (live messages carry `events::model::EventState`, not this; serde stays
/// so tests can show the previous release still decodes those).
///
/// The table has one more column, `status_changed_at` (nullable): `events::service` writes it with
/// each status move and reads it only to catch `eventStatusChanged` streams up. It is left out of
/// the model, so the reads of events (the hottest) decode nothing more for it: a NULL column costs
/// SeaORM an error string per row.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "events")]
pub struct Model {
    /// UUID v7.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Shown everywhere.
    pub title: String,
    /// Free text.
    pub description: Option<String>,
    /// Where.
    pub venue: Option<String>,
    /// When it starts.
    pub starts_at: DateTimeUtc,
    /// When it ends, if known.
    pub ends_at: Option<DateTimeUtc>,
    /// Life-cycle state.
    pub status: Status,
    /// Object-store key of the picture.
    pub image_key: Option<String>,
    /// Who runs it.
    pub organizer_id: Uuid,
    /// The catalogue entry it came from.
    pub template_id: Option<Uuid>,
    /// Number of likes (kept by atomic updates).
    pub like_count: i32,
    /// Grows with each committed change.
    pub version: i64,
    /// When created.
    pub created_at: DateTimeUtc,
    /// When last changed.
    pub updated_at: DateTimeUtc,
}

/// Relations of `events`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The organizer.
    #[sea_orm(
        belongs_to = "super::user::Entity",
        from = "Column::OrganizerId",
        to = "super::user::Column::Id",
        on_delete = "Cascade"
    )]
    Organizer,
}

impl ActiveModelBehavior for ActiveModel {}
