//! Cups: a guest's cup at an event, recorded by the bartender's gateway device; bill, calories,
//! alcohol and an estimated blood alcohol level follow; live leaderboards over websockets.
//!
//! Owns `cup_sessions` and `drink_orders`. Uses `events` (by its service) for the event's status,
//! organizer and staff, `accounts` for handles and body data, and `live` to announce every change on
//! `event:{id}:sessions` and every score change on `event:{id}:scores`. The games domain adds points
//! through [`service::add_game_points`].

pub mod graphql;
pub mod leaderboard;
pub mod model;
pub mod service;

pub use leaderboard::Leaderboards;
