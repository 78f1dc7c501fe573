//! `game_players`: who plays a game and the points they won in it.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One row of `game_players`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "game_players")]
pub struct Model {
    /// The game.
    #[sea_orm(primary_key, auto_increment = false)]
    pub game_id: Uuid,
    /// The player.
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    /// Points won in this game.
    pub points: i32,
    /// When they joined.
    pub added_at: DateTimeUtc,
}

/// `game_players` has no relations it navigates.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
