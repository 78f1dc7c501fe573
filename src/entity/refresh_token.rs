//! `refresh_tokens`: hashes of issued refresh tokens, grouped in rotation families.

use sea_orm::entity::prelude::*;

/// One row of `refresh_tokens`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "refresh_tokens")]
pub struct Model {
    /// UUID v7.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Whose token.
    pub user_id: Uuid,
    /// The login this token descends from; revoked together. A UUID v7 made at sign-in: its time
    /// is when the session began (`RALLY_SESSION_MAX_DAYS` counts from it).
    pub family_id: Uuid,
    /// Hex SHA-256 of the token; the token itself is never stored.
    pub token_hash: String,
    /// When issued.
    pub created_at: DateTimeUtc,
    /// When it stops working.
    pub expires_at: DateTimeUtc,
    /// When it was exchanged for its successor.
    pub used_at: Option<DateTimeUtc>,
    /// When its family was revoked (logout or reuse).
    pub revoked_at: Option<DateTimeUtc>,
}

/// Relations of `refresh_tokens`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The owner.
    #[sea_orm(
        belongs_to = "super::user::Entity",
        from = "Column::UserId",
        to = "super::user::Column::Id",
        on_delete = "Cascade"
    )]
    User,
}

impl Related<super::user::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::User.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
