//! `job_runs`: the ledger of scheduled moments done, one row per (job, moment).

use sea_orm::entity::prelude::*;

/// One row of `job_runs`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "job_runs")]
pub struct Model {
    /// The job's name.
    #[sea_orm(primary_key, auto_increment = false)]
    pub job: String,
    /// The scheduled moment it did.
    #[sea_orm(primary_key, auto_increment = false)]
    pub moment: DateTimeUtc,
    /// The instance that did it.
    pub holder: String,
    /// When.
    pub ran_at: DateTimeUtc,
    /// How many rows it changed.
    pub changed: i32,
}

/// `job_runs` has no relations it navigates.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
