//! `event_staff`: bartenders and game masters of an event (one role per person and event).

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// What a staff member does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum StaffRole {
    /// Serves drinks, runs the gateway device.
    #[sea_orm(string_value = "BARTENDER")]
    Bartender,
    /// Runs games.
    #[sea_orm(string_value = "GAME_MASTER")]
    GameMaster,
}

/// One row of `event_staff`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "event_staff")]
pub struct Model {
    /// The event.
    #[sea_orm(primary_key, auto_increment = false)]
    pub event_id: Uuid,
    /// The staff member.
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    /// Their role.
    pub role: StaffRole,
    /// When added.
    pub created_at: DateTimeUtc,
}

/// `event_staff` has no relations it navigates.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
