//! `event_templates`: the admin-kept catalogue of "available events".

use sea_orm::entity::prelude::*;

/// One row of `event_templates`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "event_templates")]
pub struct Model {
    /// UUID v7.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Catalogue name.
    pub name: String,
    /// Default description of events made from it.
    pub description: Option<String>,
    /// Default length of events made from it.
    pub default_duration_minutes: i32,
    /// How many guests fit.
    pub capacity: Option<i32>,
    /// When created.
    pub created_at: DateTimeUtc,
    /// When last changed.
    pub updated_at: DateTimeUtc,
}

/// `event_templates` has no relations it navigates.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
