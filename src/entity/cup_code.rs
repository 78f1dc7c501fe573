//! `cup_codes`: single-use codes a guest shows at the bar so staff may open their cup.

use sea_orm::entity::prelude::*;

/// One row of `cup_codes`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "cup_codes")]
pub struct Model {
    /// Stable id (UUID v7).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The event the code is for.
    pub event_id: Uuid,
    /// The guest who asked for it.
    pub user_id: Uuid,
    /// HMAC-SHA256 (base64url) of the code bound to guest and event, keyed with the server's secret
    /// (the code itself is never stored).
    pub code_hash: String,
    /// When it was asked for.
    pub created_at: DateTimeUtc,
    /// After this it opens nothing.
    pub expires_at: DateTimeUtc,
    /// Set when a cup was opened with it; a used code opens nothing.
    pub used_at: Option<DateTimeUtc>,
}

/// `cup_codes` has no relations it navigates.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
