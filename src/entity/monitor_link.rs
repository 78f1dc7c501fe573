//! `monitor_links`: a watcher asks to be told when a watched person comes near; the watched person
//! accepts first.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// Whether the watched person consented.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum Status {
    /// Asked, not accepted: exposes nothing.
    #[sea_orm(string_value = "PENDING")]
    Pending,
    /// Accepted by the watched person.
    #[sea_orm(string_value = "ACCEPTED")]
    Accepted,
}

/// One row of `monitor_links`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "monitor_links")]
pub struct Model {
    /// Who watches.
    #[sea_orm(primary_key, auto_increment = false)]
    pub watcher_id: Uuid,
    /// Who is watched.
    #[sea_orm(primary_key, auto_increment = false)]
    pub watched_id: Uuid,
    /// PENDING or ACCEPTED.
    pub status: Status,
    /// When it was asked for.
    pub created_at: DateTimeUtc,
}

/// `monitor_links` has no relations it navigates.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
