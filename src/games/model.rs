//! Game rules without IO, and the live payload with its topics.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::entity::game::{self, Kind, Status};
use crate::error::{Error, Result};
use crate::live::{Topics, Versioned};

/// The changes of one game: `game:{id}`, each carrying the game as committed.
pub const CHANGES: Topics<GameState> = Topics::per("game");

/// A game as clients see it (wire v1). Fields are only ever added, with defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GameState {
    /// UUID v7.
    pub id: Uuid,
    /// The event it is played at.
    pub event_id: Uuid,
    /// SCORE or BLUR.
    pub kind: Kind,
    /// Shown to players.
    pub title: String,
    /// PENDING, RUNNING or FINISHED.
    pub status: Status,
    /// Grows with each committed change.
    pub version: i64,
    /// When created.
    pub created_at: DateTime<Utc>,
}

impl From<game::Model> for GameState {
    fn from(row: game::Model) -> Self {
        Self {
            id: row.id,
            event_id: row.event_id,
            kind: row.kind,
            title: row.title,
            status: row.status,
            version: row.version,
            created_at: row.created_at,
        }
    }
}

impl Versioned for GameState {
    type Version = i64;

    fn version(&self) -> i64 {
        self.version
    }
}

/// The sharpest level.
pub const SHARP: i32 = 0;
/// The level a round starts at.
pub const START_LEVEL: i32 = 10;

/// Points for a right guess at `level`: earlier (blurrier) guesses win more.
pub fn guess_points(level: i32) -> i32 {
    level.clamp(SHARP, START_LEVEL) + 1
}

/// Points awarded in one call: 1 to 1000.
pub fn parse_points(points: i32) -> Result<i32> {
    if (1..=1000).contains(&points) {
        Ok(points)
    } else {
        Err(Error::bad_input("points", "points are 1 to 1000"))
    }
}

/// A game title: 1-120 characters, a name by the shared text rule.
pub fn parse_title(raw: &str) -> Result<String> {
    crate::model::name(raw, "title", 1, 120)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blurrier_guesses_win_more() {
        assert_eq!(guess_points(START_LEVEL), 11);
        assert_eq!(guess_points(SHARP), 1);
        assert!(guess_points(5) > guess_points(4));
    }

    #[test]
    fn a_game_written_by_the_previous_version_or_a_newer_one_decodes() {
        // `game:{id}` as the previous release published it (the database row), and with a field
        // this version does not know.
        for json in [
            r#"{"id":"0193a5a0-0000-7000-8000-000000000001","event_id":"0193a5a0-0000-7000-8000-000000000002","kind":"Blur","title":"Who is it?","status":"Running","version":4,"created_at":"2026-12-01T20:00:00Z"}"#,
            r#"{"id":"0193a5a0-0000-7000-8000-000000000001","event_id":"0193a5a0-0000-7000-8000-000000000002","kind":"Blur","title":"Who is it?","status":"Running","version":4,"created_at":"2026-12-01T20:00:00Z","rounds":3}"#,
        ] {
            let game: GameState = serde_json::from_str(json).unwrap();
            assert_eq!(game.kind, Kind::Blur);
            assert_eq!(game.status, Status::Running);
            assert_eq!(game.version, 4);
        }
    }

    #[test]
    fn the_previous_version_decodes_what_this_one_publishes() {
        let row = game::Model {
            id: Uuid::now_v7(),
            event_id: Uuid::now_v7(),
            kind: Kind::Score,
            title: "Darts".into(),
            status: Status::Pending,
            version: 1,
            created_at: Utc::now(),
        };
        let published = serde_json::to_string(&GameState::from(row.clone())).unwrap();
        let decoded: game::Model = serde_json::from_str(&published).unwrap();
        assert_eq!(decoded, row);
    }

    #[test]
    fn inputs_are_bounded() {
        assert!(parse_points(0).is_err());
        assert!(parse_points(1001).is_err());
        assert!(parse_title(" ").is_err());
        assert_eq!(parse_title(" Darts ").unwrap(), "Darts");
    }
}
