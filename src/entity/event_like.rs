//! `event_likes`: who liked which event (one row per pair).

use sea_orm::entity::prelude::*;

/// One row of `event_likes`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "event_likes")]
pub struct Model {
    /// The event.
    #[sea_orm(primary_key, auto_increment = false)]
    pub event_id: Uuid,
    /// Who liked it.
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    /// When.
    pub created_at: DateTimeUtc,
}

/// `event_likes` has no relations it navigates.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
