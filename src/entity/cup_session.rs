//! `cup_sessions`: one guest's cup at one event, with its running totals.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// Whether the gateway may still record on the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum Status {
    /// Recording.
    #[sea_orm(string_value = "OPEN")]
    Open,
    /// Done; updates are refused.
    #[sea_orm(string_value = "CLOSED")]
    Closed,
}

/// One row of `cup_sessions` (live messages carry `cups::model::CupSessionState`, not this).
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "cup_sessions")]
pub struct Model {
    /// UUID v7.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The event.
    pub event_id: Uuid,
    /// The guest.
    pub user_id: Uuid,
    /// OPEN or CLOSED.
    pub status: Status,
    /// Clinks counted by the gateway.
    pub cheers: i32,
    /// Drinks ordered.
    pub orders: i32,
    /// Points won in games at the event.
    pub game_points: i32,
    /// cheers + game_points.
    pub score: i32,
    /// When the current score was reached (tie-break).
    pub score_reached_at: DateTimeUtc,
    /// Grams of pure alcohol ordered.
    pub alcohol_grams: f64,
    /// Money owed, cents.
    pub bill_cents: i64,
    /// kcal ordered.
    pub calories: i32,
    /// When the first drink was ordered.
    pub first_drink_at: Option<DateTimeUtc>,
    /// When opened.
    pub opened_at: DateTimeUtc,
    /// When closed.
    pub closed_at: Option<DateTimeUtc>,
    /// Grows with each committed change.
    pub version: i64,
}

/// `cup_sessions` has no relations it navigates.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
