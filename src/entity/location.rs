//! `locations`: the latest position of each user (no history).

use sea_orm::entity::prelude::*;

/// One row of `locations`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "locations")]
pub struct Model {
    /// The user.
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    /// Degrees; null with `longitude` when the GPS is off.
    pub latitude: Option<f64>,
    /// Degrees; null with `latitude` when the GPS is off.
    pub longitude: Option<f64>,
    /// When the last accepted update arrived.
    pub updated_at: DateTimeUtc,
}

/// `locations` has no relations it navigates.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
