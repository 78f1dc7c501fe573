//! SeaORM entities, one file per table. Generated-style code only: no behaviour lives here; domain
//! services own every read and write, and GraphQL types convert from these models in each domain.

pub mod activity;
pub mod availability;
pub mod blur_guess;
pub mod blur_round;
pub mod calendar_feed;
pub mod cup_code;
pub mod cup_session;
pub mod drink_order;
pub mod event;
pub mod event_like;
pub mod event_staff;
pub mod event_template;
pub mod game;
pub mod game_player;
pub mod job_lease;
pub mod job_run;
pub mod location;
pub mod meeting;
pub mod monitor_link;
pub mod proximity_state;
pub mod refresh_token;
pub mod run;
pub mod run_track;
pub mod territory;
pub mod ticket;
pub mod user;
pub mod wallet;
