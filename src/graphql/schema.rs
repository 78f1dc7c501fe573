//! The assembly: one root per domain merged into the schema, the one builder shared by the server
//! and `rally schema` (so `schema.graphql` is exactly what is served), the SDL, and the one place
//! every DataLoader and per-instance service is registered as schema data.
//!
//! Only `main` (`rally schema`), startup, the HTTP router and the transports use this module;
//! domains use the toolkit.

use async_graphql::{MergedObject, MergedSubscription, Schema, SchemaBuilder, ValidationMode};

use super::limits::QueryLimits;
use super::loaders::app_wide;
use crate::accounts::graphql::{AccountsMutation, AccountsQuery, UserLoader};
use crate::cups::Leaderboards;
use crate::cups::graphql::{CupsMutation, CupsQuery, CupsSubscription, DrinksLoader};
use crate::events::graphql::{
    EventLoader, EventWithOrganizerLoader, EventsMutation, EventsQuery, EventsSubscription,
    LikeLoader, StaffLoader, TemplateLoader,
};
use crate::games::graphql::{
    GamesLoader, GamesMutation, GamesQuery, GamesSubscription, PlayersLoader, RoundsLoader,
};
use crate::meetings::graphql::{
    AvailabilityLoader, MeetingsMutation, MeetingsQuery, MeetingsSubscription,
};
use crate::proximity::graphql::{ProximityMutation, ProximityQuery, ProximitySubscription};
use crate::runs::graphql::{RunsMutation, RunsQuery, RunsSubscription};
use crate::state::AppState;

/// Every query root, merged.
#[derive(MergedObject, Default)]
pub struct Query(
    AccountsQuery,
    EventsQuery,
    CupsQuery,
    GamesQuery,
    MeetingsQuery,
    ProximityQuery,
    RunsQuery,
);

/// Every mutation root, merged.
#[derive(MergedObject, Default)]
pub struct Mutation(
    AccountsMutation,
    EventsMutation,
    CupsMutation,
    GamesMutation,
    MeetingsMutation,
    ProximityMutation,
    RunsMutation,
);

/// Every subscription root, merged.
#[derive(MergedSubscription, Default)]
pub struct Subscription(
    EventsSubscription,
    CupsSubscription,
    GamesSubscription,
    MeetingsSubscription,
    ProximitySubscription,
    RunsSubscription,
);

/// Subscriptions whose stream starts with the current state (then follows its changes): a subscriber
/// joining a shared execution late gets its latest payload first.
pub const STATE_SUBSCRIPTIONS: &[&str] = &[
    "eventUpdated",
    "leaderboard",
    "gameUpdated",
    "myCupSession",
    "activityUpdated",
];

/// Subscriptions that stream events from the moment of subscribing (nothing to replay).
pub const EVENT_SUBSCRIPTIONS: &[&str] = &[
    "eventStatusChanged",
    "cupSessionUpdated",
    "myMeetings",
    "trackingCommands",
    "proximityAlerts",
    "territoryChanged",
];

/// Subscriptions never shared between subscribers: those that begin with what is owed to this
/// subscriber alone (trackingCommands replays the START of every running activity to each device
/// that subscribes, so a second device of the same person gets its own replay), and event streams
/// that catch up on what their subscriber missed (myMeetings, proximityAlerts, and
/// cupSessionUpdated, whose staff feed sends every session as it is now). Run alone, a stream
/// waits for its client, so a client that falls behind makes the stream itself fall behind its
/// topic, which it notices and catches up on; a member of a shared execution that falls behind
/// loses the oldest events, which no catch-up sees.
pub const UNSHARED_SUBSCRIPTIONS: &[&str] = &[
    "trackingCommands",
    "myMeetings",
    "proximityAlerts",
    "cupSessionUpdated",
];

/// Rally's schema type.
pub type RallySchema = Schema<Query, Mutation, Subscription>;

/// The schema with its limits, before app-wide data is attached. No extension is registered: one
/// would cost every field of every request (see `execution`, which does their work per request).
pub fn schema_builder(limits: QueryLimits) -> SchemaBuilder<Query, Mutation, Subscription> {
    let builder = Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .limit_depth(limits.max_depth)
    .limit_complexity(limits.max_complexity)
    .limit_recursive_depth(limits.max_depth.max(32))
    .limit_directives(limits.max_directives);
    if limits.introspection {
        builder
    } else {
        builder.disable_introspection()
    }
}

/// The served schema twice over, sharing the app state, the loaders and the per-instance services:
/// one validating every document fully, its twin in the engine's fast validation mode for
/// documents that cannot fail validation any more (see `execution`).
pub struct Schemas {
    /// Full validation: what every document meets first.
    pub strict: RallySchema,
    /// Fast validation (limits only), for documents validated before.
    pub validated: RallySchema,
}

/// The served schemas: limits, app state, loaders and per-instance services.
pub fn build(limits: QueryLimits, state: &AppState, leaderboards: Leaderboards) -> Schemas {
    let users = app_wide(UserLoader(state.clone()));
    let staff = app_wide(StaffLoader(state.clone()));
    let templates = app_wide(TemplateLoader(state.clone()));
    let likes = app_wide(LikeLoader(state.clone()));
    let events = app_wide(EventLoader(state.clone()));
    let events_with_organizers = app_wide(EventWithOrganizerLoader(state.clone()));
    let drinks = app_wide(DrinksLoader(state.clone()));
    let games = app_wide(GamesLoader(state.clone()));
    let players = app_wide(PlayersLoader(state.clone()));
    let rounds = app_wide(RoundsLoader(state.clone()));
    let availabilities = app_wide(AvailabilityLoader(state.clone()));
    let schema = |validation| {
        schema_builder(limits)
            .validation_mode(validation)
            .data(state.clone())
            .data(leaderboards.clone())
            .data(users.clone())
            .data(staff.clone())
            .data(templates.clone())
            .data(likes.clone())
            .data(events.clone())
            .data(events_with_organizers.clone())
            .data(drinks.clone())
            .data(games.clone())
            .data(players.clone())
            .data(rounds.clone())
            .data(availabilities.clone())
            .finish()
    };
    Schemas {
        strict: schema(ValidationMode::Strict),
        validated: schema(ValidationMode::Fast),
    }
}

/// The SDL of the schema, as committed in `schema.graphql` (indented with two spaces, as the API
/// contract is).
pub fn sdl() -> String {
    let sdl = schema_builder(QueryLimits::default()).finish().sdl();
    let mut out = String::with_capacity(sdl.len());
    for line in sdl.lines() {
        let body = line.trim_start_matches('\t');
        out.push_str(&"  ".repeat(line.len() - body.len()));
        out.push_str(body);
        out.push('\n');
    }
    out
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subscription_is_either_a_state_or_an_event_stream() {
        let sdl = sdl();
        let start = sdl
            .find("type Subscription {")
            .expect("a subscription root");
        let body = &sdl[start..];
        let body = &body[..body.find("\n}").expect("its end")];
        let mut fields: Vec<&str> = body
            .lines()
            .skip(1)
            .filter_map(|line| {
                // A field line starts with its name followed by its arguments or its type.
                let line = line.trim();
                let name_end = line.find(|c: char| !c.is_ascii_alphanumeric())?;
                let (name, rest) = line.split_at(name_end);
                (!name.is_empty() && (rest.starts_with('(') || rest.starts_with(':')))
                    .then_some(name)
            })
            .collect();
        fields.sort_unstable();
        let mut classified: Vec<&str> = STATE_SUBSCRIPTIONS
            .iter()
            .chain(EVENT_SUBSCRIPTIONS)
            .copied()
            .collect();
        classified.sort_unstable();
        assert_eq!(
            fields, classified,
            "classify new subscriptions in graphql/mod.rs"
        );
    }
}
