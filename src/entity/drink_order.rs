//! `drink_orders`: each drink recorded on a cup session.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One row of `drink_orders`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "drink_orders")]
pub struct Model {
    /// UUID v7.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The cup session.
    pub session_id: Uuid,
    /// What was served.
    pub name: String,
    /// Millilitres.
    pub volume_ml: i32,
    /// Alcohol by volume, percent.
    pub abv: f64,
    /// Price in cents.
    pub price_cents: i32,
    /// kcal.
    pub calories: i32,
    /// Grams of pure alcohol.
    pub alcohol_grams: f64,
    /// When ordered.
    pub ordered_at: DateTimeUtc,
}

/// `drink_orders` has no relations it navigates.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
