//! Runs: organizers issue event tickets; a ticket starts a run while its event is LIVE; a saved
//! GPS track (or GPX file) is judged for plausibility, measured, and captures the H3 cells it
//! passes through (not across a pause or a long gap between fixes); held cells mine tokens up to a cap, claimed into the wallet.
//!
//! Owns `tickets`, `runs`, `territories` and `wallets`. Uses `accounts` and `events` (their
//! services, for handles and events), `auth` (the caller), `live` (`event:{id}:territory`), `db`
//! and `config`. The jobs (`crate::jobs`) call [`service::expire_tickets`] and
//! [`service::accrue`] inside their transactions. The GraphQL part names `User` and `Event`.

pub mod gpx; // streaming GPX reader
pub mod graphql;
pub mod model;
pub mod service;
