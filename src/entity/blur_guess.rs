//! `blur_guesses`: who guessed at which level of a blur round (one guess per player per level).

use sea_orm::entity::prelude::*;

/// One row of `blur_guesses`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "blur_guesses")]
pub struct Model {
    /// The round.
    #[sea_orm(primary_key, auto_increment = false)]
    pub round_id: Uuid,
    /// The player.
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    /// The round's level when they guessed.
    #[sea_orm(primary_key, auto_increment = false)]
    pub level: i32,
    /// When.
    pub guessed_at: DateTimeUtc,
}

/// `blur_guesses` has no relations it navigates.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
