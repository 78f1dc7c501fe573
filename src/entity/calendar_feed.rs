//! `calendar_feeds`: a user's secret calendar feed, kept as the hash of its token and the nonce it
//! is derived from.

use sea_orm::entity::prelude::*;

/// One row of `calendar_feeds`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "calendar_feeds")]
pub struct Model {
    /// The feed's user.
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    /// SHA-256 (hex) of the token in the feed's URL.
    pub token_hash: String,
    /// Random, hex; the token is derived from it with the server's secret.
    pub nonce: String,
    /// When made (or last rotated).
    pub created_at: DateTimeUtc,
}

/// `calendar_feeds` has no relations it navigates.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
