//! Meetings: people publish availabilities (single, or weekly in a time zone), others book them;
//! exactly one booker wins; a meeting is seen by its two people only; a private calendar feed.
//!
//! Owns `availabilities`, `meetings` and `calendar_feeds`. Uses `accounts` (its service, for
//! handles and display names), `auth` (the server's derived secrets, token hashes), `live` (each
//! booking and cancellation on `user:{id}:meetings`) and `db`. The GraphQL part names `User`, the
//! type the schema links a slot and a meeting to; [`calendar::routes`] serves the feed.

pub mod calendar;
pub mod graphql;
pub mod model;
pub mod service;
