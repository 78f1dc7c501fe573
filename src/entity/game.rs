//! `games`: score games and blur games at an event.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// Kind of game.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum Kind {
    /// Points awarded by the game master.
    #[sea_orm(string_value = "SCORE")]
    Score,
    /// Guess who is in the blurred photo.
    #[sea_orm(string_value = "BLUR")]
    Blur,
}

/// Where a game is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum Status {
    /// Created, nothing happened yet.
    #[sea_orm(string_value = "PENDING")]
    Pending,
    /// Points or rounds under way.
    #[sea_orm(string_value = "RUNNING")]
    Running,
    /// Over; no more points.
    #[sea_orm(string_value = "FINISHED")]
    Finished,
}

/// One row of `games`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "games")]
pub struct Model {
    /// UUID v7.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The event.
    pub event_id: Uuid,
    /// SCORE or BLUR.
    pub kind: Kind,
    /// Shown to players.
    pub title: String,
    /// PENDING, RUNNING or FINISHED.
    pub status: Status,
    /// Grows with each committed change (players, points, rounds).
    pub version: i64,
    /// When created.
    pub created_at: DateTimeUtc,
}

/// `games` has no relations it navigates.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
