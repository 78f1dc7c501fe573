//! `run_tracks`: the track a run was saved with (JSON), kept for review, apart from `runs`.

use sea_orm::entity::prelude::*;

/// One row of `run_tracks`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "run_tracks")]
pub struct Model {
    /// The run.
    #[sea_orm(primary_key, auto_increment = false)]
    pub run_id: Uuid,
    /// Its points as JSON (`[{latitude, longitude, at}]`).
    pub points: String,
}

/// `run_tracks` has no relations it navigates.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
