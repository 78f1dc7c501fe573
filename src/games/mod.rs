//! Games between guests at an event: score games (the game master awards points) and the photo blur
//! game (a photo of a player, blurred server-side and sharper at each reveal; the first right guess
//! wins).
//!
//! Owns `games`, `game_players` and `blur_rounds`. Uses `events` (its crew rule: game masters and
//! organizers run games), `accounts` (handles), `cups` (points go into the player's cup session
//! score through its service, in the same transaction, which also announces the new score), `media`
//! (photos and blurred renderings; [`service::BlurRenditions`] tells the media routes which
//! rendering may be seen), `live` (every change on `game:{id}`) and `db`. [`graphql`] also names the
//! GraphQL types the schema links a game to (`Event`, `User`).

pub mod graphql;
pub mod model;
pub mod service;
