//! Events: creating, changing, finding and liking events, their staff, and the admin-kept catalogue
//! of templates ("available events").
//!
//! Owns `events`, `event_likes`, `event_staff` and `event_templates`, and the crew rule
//! ([`model::is_crew`], applied with storage by [`service::require_crew`]) that cups and games
//! authorize with. Uses `accounts` (by its service) to resolve handles, `media` for event pictures,
//! `live` to announce every committed change on `event:{id}` (and status changes on
//! `events:status`) and `db`. [`graphql`] names the GraphQL types the schema links an event to
//! (`User`, `Game`, `Leaderboard`).

pub mod graphql;
pub mod model;
pub mod service;
