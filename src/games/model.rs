//! Game rules without IO.

use crate::error::{Error, Result};

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

/// A game title: 1-120 characters.
pub fn parse_title(raw: &str) -> Result<String> {
    let title = raw.trim();
    if title.is_empty() || title.chars().count() > 120 || title.chars().any(char::is_control) {
        return Err(Error::bad_input("title", "a title has 1 to 120 characters"));
    }
    Ok(title.to_owned())
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
    fn inputs_are_bounded() {
        assert!(parse_points(0).is_err());
        assert!(parse_points(1001).is_err());
        assert!(parse_title(" ").is_err());
        assert_eq!(parse_title(" Darts ").unwrap(), "Darts");
    }
}
