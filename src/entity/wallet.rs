//! `wallets`: tokens a user mined from held territory.

use sea_orm::entity::prelude::*;

/// One row of `wallets`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "wallets")]
pub struct Model {
    /// The user.
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    /// Claimed tokens.
    pub tokens: i64,
    /// Accrued, not yet claimed (at most the cap).
    pub claimable: i64,
    /// Last accrual or claim.
    pub updated_at: DateTimeUtc,
}

/// `wallets` has no relations it navigates.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
