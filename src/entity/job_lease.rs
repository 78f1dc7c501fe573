//! `job_leases`: which instance runs a scheduled job now, until when.

use sea_orm::entity::prelude::*;

/// One row of `job_leases`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "job_leases")]
pub struct Model {
    /// The job's name.
    #[sea_orm(primary_key, auto_increment = false)]
    pub job: String,
    /// The instance holding it.
    pub holder: String,
    /// When another instance may take it.
    pub expires_at: DateTimeUtc,
}

/// `job_leases` has no relations it navigates.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
