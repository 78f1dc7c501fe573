//! Rally: one GraphQL server for live social events.
//!
//! The crate's map, one room per line. Domains (`accounts`, …) own their tables and rules; the rooms
//! above them (`graphql`, `http`) only translate, and the rooms below (`auth`, `media`, `entity`,
//! `db`) serve every domain.

pub mod accounts; // sign-up, sessions, profiles, avatars
pub mod auth; // passwords, access and refresh tokens, the viewer, guards, login limits
pub mod config; // every setting, from flags and RALLY_* env, with embedded defaults
pub mod cups; // cup sessions, drinks, live leaderboards
pub mod db; // connecting to SQLite or PostgreSQL, running migrations
pub mod entity; // SeaORM entities, one file per table
pub mod error; // the one error type and its extensions.code
pub mod events; // events, likes, staff, the template catalogue
pub mod games; // score games and the photo blur game
pub mod graphql; // schema builder, merged roots, context helpers, limits, pagination
pub mod http; // axum router, layers, health, metrics, media, GraphQL over HTTP
pub mod live; // typed topics, the per-instance hub, in-process and Redis brokers
pub mod media; // object store, upload checks, re-encoding
pub mod startup; // App::build -> port -> run_until_stopped
pub mod state; // AppState: db, media, keys, config

pub use config::Config;
pub use startup::App;
