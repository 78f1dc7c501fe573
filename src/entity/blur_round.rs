//! `blur_rounds`: one photo of a player shown blurred, sharper at each reveal.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One row of `blur_rounds`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "blur_rounds")]
pub struct Model {
    /// UUID v7.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The game.
    pub game_id: Uuid,
    /// Media key of the original photo (never served as is).
    pub photo_key: String,
    /// The player in the photo.
    pub answer_id: Uuid,
    /// 10 = unrecognisable, 0 = sharp.
    pub level: i32,
    /// Who guessed right first.
    pub solved_by: Option<Uuid>,
    /// When.
    pub solved_at: Option<DateTimeUtc>,
    /// Points the winner got.
    pub points_awarded: i32,
    /// When started.
    pub created_at: DateTimeUtc,
}

/// `blur_rounds` has no relations it navigates.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
