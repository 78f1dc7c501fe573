//! `activities`: a user watching the people they monitor come near, with an alert radius.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// Where an activity stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum Status {
    /// Running: watched people share their location.
    #[sea_orm(string_value = "ACTIVE")]
    Active,
    /// Ended because someone came too close.
    #[sea_orm(string_value = "DISRUPTED")]
    Disrupted,
    /// Ended by its owner.
    #[sea_orm(string_value = "STOPPED")]
    Stopped,
}

/// One row of `activities`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "activities")]
pub struct Model {
    /// UUID v7.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Who started it.
    pub owner_id: Uuid,
    /// ACTIVE, DISRUPTED or STOPPED.
    pub status: Status,
    /// Meters.
    pub alert_radius_meters: f64,
    /// When it started.
    pub started_at: DateTimeUtc,
    /// When it ended.
    pub ended_at: Option<DateTimeUtc>,
    /// Grows with every change of the activity itself.
    pub version: i64,
}

/// `activities` has no relations it navigates.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
