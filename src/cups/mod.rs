//! Cups: a guest's cup at an event, recorded by the bartender's gateway device; bill, calories,
//! alcohol and an estimated blood alcohol level follow; live leaderboards over websockets.
//!
//! Owns `cup_sessions` and `drink_orders`. Uses `events` (its service for the event and its status,
//! its crew rule), `accounts` (its service for handles and body data), `live` to announce every
//! change on `event:{id}:sessions` and every score change on `event:{id}:scores`, and `db` for
//! transactions. The games domain adds points through [`service::add_game_points`], which announces
//! the new score when the games' transaction commits. [`graphql`] also names the GraphQL types of
//! `events` and `accounts` that the schema links a cup to.

pub mod graphql;
pub mod leaderboard;
pub mod model;
pub mod service;

pub use leaderboard::Leaderboards;
