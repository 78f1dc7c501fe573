//! Events: creating, changing, finding and liking events, their staff, and the admin-kept catalogue
//! of templates ("available events").
//!
//! Owns `events`, `event_likes`, `event_staff` and `event_templates`. Uses `accounts` (by its service)
//! to resolve handles, `media` for event pictures and `live` to announce every committed change on
//! `event:{id}` (and status changes on `events:status`).

pub mod graphql;
pub mod model;
pub mod service;
