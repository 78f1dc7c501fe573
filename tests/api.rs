//! Rally's black-box suite: one binary, every test against a real server on port 0 with its own
//! database. Tests run on SQLite always and on PostgreSQL when `RALLY_TEST_DATABASE_URL` is set.

#![expect(
    clippy::expect_used,
    reason = "a test that cannot do its setup must fail loudly"
)]

mod common;

#[path = "api/accounts.rs"]
mod accounts;
#[path = "api/auth.rs"]
mod auth;
#[path = "api/cli.rs"]
mod cli;
#[path = "api/cup_codes.rs"]
mod cup_codes;
#[path = "api/cups.rs"]
mod cups;
#[path = "api/events.rs"]
mod events;
#[path = "api/fanout.rs"]
mod fanout;
#[path = "api/games.rs"]
mod games;
#[path = "api/http_surface.rs"]
mod http_surface;
#[path = "api/limits.rs"]
mod limits;
#[path = "api/live.rs"]
mod live;
#[path = "api/media.rs"]
mod media;
#[path = "api/meetings.rs"]
mod meetings;
#[path = "api/nulls.rs"]
mod nulls;
#[path = "api/proximity.rs"]
mod proximity;
#[path = "api/query_plans.rs"]
mod query_plans;
#[path = "api/runs.rs"]
mod runs;
#[path = "api/scale_out.rs"]
mod scale_out;
#[path = "api/sessions.rs"]
mod sessions;
#[path = "api/text.rs"]
mod text;
