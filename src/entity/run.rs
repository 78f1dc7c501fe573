//! `runs`: one run of a runner at an event, started with a ticket, finished with a track.

use sea_orm::entity::prelude::*;

/// Where a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum Status {
    /// Started, no track yet.
    #[sea_orm(string_value = "RUNNING")]
    Running,
    /// Saved with a plausible track; its cells were captured.
    #[sea_orm(string_value = "SAVED")]
    Saved,
    /// Its track was implausible; kept for review, captured nothing.
    #[sea_orm(string_value = "REJECTED")]
    Rejected,
}

/// One row of `runs`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "runs")]
pub struct Model {
    /// UUID v7.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The runner.
    pub user_id: Uuid,
    /// The event.
    pub event_id: Uuid,
    /// The ticket it consumed (one run per ticket, by a unique index).
    pub ticket_id: Uuid,
    /// RUNNING, SAVED or REJECTED.
    pub status: Status,
    /// When it started.
    pub started_at: DateTimeUtc,
    /// When its track was saved.
    pub finished_at: Option<DateTimeUtc>,
    /// Geodesic length of the track.
    pub distance_meters: f64,
    /// From the first point to the last.
    pub duration_seconds: i32,
    /// Cells its save captured.
    pub cells_captured: i32,
    /// Why it was rejected.
    pub rejection_reason: Option<String>,
}

/// `runs` has no relations it navigates.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
