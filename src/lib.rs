//! Rally: one GraphQL server for live social events.
//!
//! The crate's map, one room per line. Domains (`accounts`, …) own their tables and rules; the rooms
//! above them (`graphql`, `http`) only translate, and the rooms below (`auth`, `media`, `entity`,
//! `db`, `live`) serve every domain.

pub mod accounts; // sign-up, sessions, profiles, avatars
pub mod auth; // passwords, access and refresh tokens, ended sessions, the viewer, rate limits
pub mod config; // every setting, from flags and RALLY_* env, with embedded defaults
pub mod cups; // cup sessions, drinks, live leaderboards
pub mod db; // connecting, migrating, write transactions that publish after commit, pages
pub mod entity; // SeaORM entities, one file per table
pub mod error; // the one error type and its extensions.code
pub mod events; // events, likes, staff, the template catalogue
pub mod games; // score games and the photo blur game
pub mod graphql; // the toolkit resolvers use; the schema assembly and its HTTP and websocket transports
pub mod http; // axum router, layers, request ids, health, metrics, GraphiQL
pub mod jobs; // jobs done once across instances: the event finisher, token accrual, media sweep
pub mod live; // typed topics, the one publisher, the hub, brokers, the state-stream helper
pub mod media; // object store, upload checks, blur renderings, the /media routes
pub mod meetings; // availabilities, bookings, weekly slots, the calendar feed
pub mod model; // rules every domain shares (the text rule)
pub mod proximity; // consenting watchers, locations, activities, live status and alerts
pub mod runs; // tickets, runs, GPS tracks and GPX, territory cells, mining and the wallet
pub mod startup; // App::build -> port -> run_until_stopped
pub mod state; // AppState: db, broker, media, keys, config (no domain)

pub use config::Config;
pub use startup::App;
