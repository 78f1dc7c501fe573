//! `proximity_states`: whether a watched person is inside an activity's alert radius (for
//! edge-triggered alerts), and when and how near they last entered it (for streams that catch up
//! on alerts they missed).

use sea_orm::entity::prelude::*;

/// One row of `proximity_states`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "proximity_states")]
pub struct Model {
    /// The activity.
    #[sea_orm(primary_key, auto_increment = false)]
    pub activity_id: Uuid,
    /// The watched person.
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    /// Inside the radius since the last alert (until they go beyond the exit distance).
    pub inside: bool,
    /// When they last entered the radius (null on rows older than the column: never caught up).
    pub entered_at: Option<DateTimeUtc>,
    /// How near they were then, meters.
    pub entered_meters: Option<f64>,
}

/// `proximity_states` has no relations it navigates.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
