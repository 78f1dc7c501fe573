//! Scheduled jobs, each moment done once across every instance: the nightly event finisher, token
//! accrual, the media sweep and the forgetting of old rows (positions, expired refresh tokens).
//!
//! Owns `job_leases` and `job_runs`. Uses `events`, `runs`, `proximity` and `accounts` (their
//! service functions, which do the work inside the job's write transaction), `games`, `accounts`
//! and `media` (the sweep's store I/O and the rows it checks, after the moment's transaction),
//! `db` and `config`. An instance holding a job's lease (a conditional update with an expiry, so a crashed holder's
//! lease passes on) does each due moment in one transaction that first inserts the moment's
//! ledger row: the row's key makes a moment done once even when two instances race, and the work
//! commits with it or not at all.

pub mod schedule;
pub mod service;
