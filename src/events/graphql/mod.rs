//! The events part of the schema: events, likes, staff, the template catalogue, and the
//! `eventUpdated` / `eventStatusChanged` subscriptions.
//!
//! Uses the GraphQL toolkit and the events service; names the GraphQL types the schema links an
//! event to (`User`, `Game`, `Leaderboard`), reaching games and cups only through their one public
//! function each ([`crate::games::graphql::games_of`], [`crate::cups::graphql::leaderboard_of`]).

mod inputs;
mod loaders;
mod mutation;
mod query;
mod subscription;
mod types;

pub use self::loaders::{
    EventLoader, EventWithOrganizerLoader, LikeLoader, StaffLoader, TemplateLoader,
};
pub use self::mutation::EventsMutation;
pub use self::query::EventsQuery;
pub use self::subscription::EventsSubscription;
pub use self::types::{Event, EventStaff, EventStatus, EventTemplate, StaffRole};
