//! The cups part of the schema: the gateway's mutations, cup sessions with their private side, and
//! the live `leaderboard`, `cupSessionUpdated` and `myCupSession` subscriptions.
//!
//! Uses the GraphQL toolkit, the cups service, and the GraphQL types of the domains the schema links
//! a cup to (`Event`, `User`). [`leaderboard_of`] is what `Event.leaderboard` calls.

mod loaders;
mod mutation;
mod query;
mod subscription;
mod types;

pub use self::loaders::DrinksLoader;
pub use self::mutation::CupsMutation;
pub use self::query::CupsQuery;
pub use self::subscription::CupsSubscription;
pub use self::types::{CupSession, Leaderboard, leaderboard_of};
