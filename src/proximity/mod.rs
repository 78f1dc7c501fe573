//! Proximity alerts: a user starts an activity; the people they watch (who consented) share their
//! location; the owner sees the nearest person and distance, who is stale and whose GPS is off, live,
//! and is alerted when someone comes within the radius.
//!
//! Owns `monitor_links`, `locations`, `activities` and `proximity_states`. Uses `accounts` (its
//! service, for handles), `auth` (the caller), `live` (`user:{id}:tracking` for devices,
//! `activity:{id}` for status streams, `user:{id}:alerts` for alerts) and `db`. A watcher never
//! receives another person's coordinates, only distances (exact ones, from which an owner who
//! moves could work out a position: consent covers that); a person's own `updateLocation` answer is
//! the only place their coordinates appear. The GraphQL part names `User`.

pub mod graphql;
pub mod model;
pub mod service;
