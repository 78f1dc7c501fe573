//! `users`: accounts, their profiles and credentials.

use sea_orm::entity::prelude::*;

/// A user's permission level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum Role {
    /// Everyone.
    #[sea_orm(string_value = "USER")]
    User,
    /// Keeps the event catalogue, sees private fields.
    #[sea_orm(string_value = "ADMIN")]
    Admin,
}

/// Body type for the blood alcohol estimate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum BodyType {
    /// Body water ratio 0.55.
    #[sea_orm(string_value = "FEMALE")]
    Female,
    /// Body water ratio 0.68.
    #[sea_orm(string_value = "MALE")]
    Male,
    /// Body water ratio 0.62.
    #[sea_orm(string_value = "UNSPECIFIED")]
    Unspecified,
}

/// One row of `users`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    /// UUID v7.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Canonical lower-case handle, unique.
    pub handle: String,
    /// Canonical lower-case email, unique.
    pub email: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Name shown to others.
    pub display_name: String,
    /// Free text about the user.
    pub bio: Option<String>,
    /// Object-store key of the avatar.
    pub avatar_key: Option<String>,
    /// Permission level.
    pub role: Role,
    /// For the blood alcohol estimate only.
    pub body_weight_kg: Option<f64>,
    /// For the blood alcohol estimate only.
    pub body_type: Option<BodyType>,
    /// When the account was made.
    pub created_at: DateTimeUtc,
    /// When the profile last changed.
    pub updated_at: DateTimeUtc,
}

/// Relations of `users`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The user's refresh tokens.
    #[sea_orm(has_many = "super::refresh_token::Entity")]
    RefreshTokens,
}

impl Related<super::refresh_token::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::RefreshTokens.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
