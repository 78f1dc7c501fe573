//! Games between guests at an event: score games (the game master awards points) and the photo blur
//! game (a photo of a player, blurred server-side and sharper at each reveal; the first right guess
//! wins).
//!
//! Owns `games`, `game_players` and `blur_rounds`. Points go into the player's cup session score
//! through `cups`' service, in the same transaction; `media` keeps the photos and blurred renderings;
//! every change is announced on `game:{id}`.

pub mod graphql;
pub mod model;
pub mod service;
