//! Cup rules without IO: cup codes, drink input, alcohol grams, calories, the Widmark estimate, and
//! the live payloads with their topics.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::entity::cup_session::{self, Status};
use crate::entity::user::BodyType;
use crate::error::{Error, Result};
use crate::live::{Topics, Versioned};

/// Every change of every cup session at an event: `event:{id}:sessions`, each carrying the session
/// as committed (private fields included: only crew and the guest get them past GraphQL).
pub const SESSIONS: Topics<CupSessionState> = Topics::stream("event", "sessions");

/// Score changes at an event: `event:{id}:scores` (leaderboards recompute on each).
pub const SCORES: Topics<ScoresChanged> = Topics::stream("event", "scores");

/// The payload of [`SCORES`] (wire v1): the event's scores changed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScoresChanged {
    /// The event.
    pub event_id: Uuid,
}

/// A cup session (wire v1): what the GraphQL `CupSession` resolves from, whether it came from the
/// database or a live message. Fields are only ever added, with defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CupSessionState {
    /// UUID v7.
    pub id: Uuid,
    /// The event.
    pub event_id: Uuid,
    /// The guest.
    pub user_id: Uuid,
    /// OPEN or CLOSED.
    pub status: Status,
    /// Clinks counted.
    pub cheers: i32,
    /// Drinks ordered.
    pub orders: i32,
    /// Points won in games.
    pub game_points: i32,
    /// cheers + game points.
    pub score: i32,
    /// When the score was reached (the leaderboard's tie-break).
    pub score_reached_at: DateTime<Utc>,
    /// Grams of pure alcohol ordered.
    pub alcohol_grams: f64,
    /// Money owed, cents.
    pub bill_cents: i64,
    /// kcal ordered.
    pub calories: i32,
    /// When the first drink was ordered.
    #[serde(default)]
    pub first_drink_at: Option<DateTime<Utc>>,
    /// When the cup was handed out.
    pub opened_at: DateTime<Utc>,
    /// When the session closed.
    #[serde(default)]
    pub closed_at: Option<DateTime<Utc>>,
    /// Grows with each committed change.
    pub version: i64,
}

impl From<cup_session::Model> for CupSessionState {
    fn from(row: cup_session::Model) -> Self {
        Self {
            id: row.id,
            event_id: row.event_id,
            user_id: row.user_id,
            status: row.status,
            cheers: row.cheers,
            orders: row.orders,
            game_points: row.game_points,
            score: row.score,
            score_reached_at: row.score_reached_at,
            alcohol_grams: row.alcohol_grams,
            bill_cents: row.bill_cents,
            calories: row.calories,
            first_drink_at: row.first_drink_at,
            opened_at: row.opened_at,
            closed_at: row.closed_at,
            version: row.version,
        }
    }
}

/// A guest's sessions at one event follow each other: a newer session (ids are UUID v7, so they
/// grow with time) supersedes any version of an older one.
impl Versioned for CupSessionState {
    type Version = (Uuid, i64);

    fn version(&self) -> (Uuid, i64) {
        (self.id, self.version)
    }
}

/// Density of ethanol, g/ml.
pub const ETHANOL_DENSITY: f64 = 0.789;
/// Energy of ethanol, kcal/g (used when a drink's calories are not given).
pub const ETHANOL_KCAL_PER_GRAM: f64 = 7.0;
/// Elimination rate, BAC percent per hour.
pub const ELIMINATION_PER_HOUR: f64 = 0.015;

/// A drink, parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct Drink {
    /// 1-80 characters.
    pub name: String,
    /// 1-2000 ml.
    pub volume_ml: i32,
    /// 0-100 percent.
    pub abv: f64,
    /// 0-100000 cents.
    pub price_cents: i32,
    /// Given, or estimated from the alcohol.
    pub calories: i32,
}

impl Drink {
    /// Checks a drink; `prefix` is the argument name (`drink`).
    pub fn parse(
        name: &str,
        volume_ml: i32,
        abv: f64,
        price_cents: i32,
        calories: Option<i32>,
        prefix: &str,
    ) -> Result<Self> {
        let name = crate::model::name(name, &format!("{prefix}.name"), 1, 80)?;
        if !(1..=2000).contains(&volume_ml) {
            return Err(Error::bad_input(
                format!("{prefix}.volumeMl"),
                "volume is 1 to 2000 ml",
            ));
        }
        if !abv.is_finite() || !(0.0..=100.0).contains(&abv) {
            return Err(Error::bad_input(
                format!("{prefix}.abv"),
                "abv is 0 to 100 percent",
            ));
        }
        if !(0..=100_000).contains(&price_cents) {
            return Err(Error::bad_input(
                format!("{prefix}.priceCents"),
                "price is 0 to 100000 cents",
            ));
        }
        if calories.is_some_and(|c| !(0..=5000).contains(&c)) {
            return Err(Error::bad_input(
                format!("{prefix}.calories"),
                "calories are 0 to 5000 kcal",
            ));
        }
        let grams = alcohol_grams(volume_ml, abv);
        Ok(Self {
            name,
            volume_ml,
            abv,
            price_cents,
            calories: calories.unwrap_or((grams * ETHANOL_KCAL_PER_GRAM).round() as i32),
        })
    }

    /// Grams of pure alcohol in the drink.
    pub fn alcohol_grams(&self) -> f64 {
        alcohol_grams(self.volume_ml, self.abv)
    }
}

/// volume x abv x 0.789 g/ml.
pub fn alcohol_grams(volume_ml: i32, abv: f64) -> f64 {
    f64::from(volume_ml) * (abv / 100.0) * ETHANOL_DENSITY
}

/// Body water ratio of the Widmark formula.
pub fn body_water_ratio(body: Option<BodyType>) -> f64 {
    match body {
        Some(BodyType::Male) => 0.68,
        Some(BodyType::Female) => 0.55,
        Some(BodyType::Unspecified) | None => 0.62,
    }
}

/// Widmark: grams / (ratio x weight in g) x 100, minus 0.015 per hour since the first drink, never
/// below zero; `None` without a body weight.
pub fn estimated_bac(
    grams: f64,
    weight_kg: Option<f64>,
    body: Option<BodyType>,
    first_drink_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<f64> {
    let weight_kg = weight_kg.filter(|w| *w > 0.0)?;
    let peak = grams / (body_water_ratio(body) * weight_kg * 1000.0) * 100.0;
    let hours = first_drink_at
        .map(|first| (now - first).num_milliseconds().max(0) as f64 / 3_600_000.0)
        .unwrap_or(0.0);
    Some((peak - ELIMINATION_PER_HOUR * hours).max(0.0))
}

/// The characters of a cup code: digits and capitals without the look-alikes 0/O, 1/I/L.
const CODE_ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
/// Characters in a cup code: 31^8 (about 2^39.6) codes, so trying cannot find one within its few
/// minutes, however many staff accounts try (each is also rate limited).
const CODE_LENGTH: usize = 8;

/// A cup code: what a guest shows at the bar (typed, or read from a QR code) so staff may open their
/// cup. Random, single use, short-lived; only its HMAC is stored.
#[derive(Clone, PartialEq, Eq)]
pub struct CupCode(String);

impl CupCode {
    /// A new random code (from the OS's generator).
    pub fn generate() -> Self {
        use rand::Rng;
        let mut rng = rand::rngs::OsRng;
        Self(
            (0..CODE_LENGTH)
                .map(|_| char::from(CODE_ALPHABET[rng.gen_range(0..CODE_ALPHABET.len())]))
                .collect(),
        )
    }

    /// A code as staff typed it: case, spaces and dashes do not matter. `None` when it cannot be a
    /// code (which the caller refuses exactly like a wrong one).
    pub fn parse(typed: &str) -> Option<Self> {
        if typed.len() > 4 * CODE_LENGTH {
            return None;
        }
        let code: String = typed
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        (code.len() == CODE_LENGTH && code.bytes().all(|b| CODE_ALPHABET.contains(&b)))
            .then_some(Self(code))
    }

    /// The code's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What the HMAC of a code covers: the code bound to its guest and event, so a code is worth
    /// nothing for anyone or anywhere else.
    pub fn message(&self, event: Uuid, guest: Uuid) -> String {
        format!("{event}:{guest}:{}", self.0)
    }
}

impl std::fmt::Debug for CupCode {
    /// Never printed: codes are secrets while they live.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CupCode(..)")
    }
}

/// Cheers counted in one call: 1 to 100.
pub fn parse_cheers(count: i32) -> Result<i32> {
    if (1..=100).contains(&count) {
        Ok(count)
    } else {
        Err(Error::bad_input("count", "count is 1 to 100"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_random_and_read_back_however_typed() {
        let code = CupCode::generate();
        assert_eq!(code.as_str().len(), 8);
        assert_ne!(code, CupCode::generate());
        let typed = format!(
            " {}-{} ",
            code.as_str()[..4].to_lowercase(),
            &code.as_str()[4..]
        );
        assert_eq!(CupCode::parse(&typed), Some(code.clone()));
        assert!(!format!("{code:?}").contains(code.as_str()));
        for bad in [
            "",
            "ABCDEFG",
            "ABCDEFGHJ",
            "ABCDEFG0",
            "ABCDEFGI",
            &"A".repeat(100),
        ] {
            assert_eq!(CupCode::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_pint_of_lager_has_about_20_grams() {
        let pint = Drink::parse("Lager", 500, 5.0, 650, None, "drink").unwrap();
        assert!((pint.alcohol_grams() - 19.725).abs() < 1e-9);
        assert_eq!(pint.calories, 138);
        let given = Drink::parse("Cider", 330, 4.5, 500, Some(170), "drink").unwrap();
        assert_eq!(given.calories, 170);
    }

    #[test]
    fn bad_drinks_name_their_field() {
        for (drink, field) in [
            (Drink::parse(" ", 100, 5.0, 1, None, "drink"), "drink.name"),
            (
                Drink::parse("x", 0, 5.0, 1, None, "drink"),
                "drink.volumeMl",
            ),
            (Drink::parse("x", 100, 101.0, 1, None, "drink"), "drink.abv"),
            (
                Drink::parse("x", 100, f64::NAN, 1, None, "drink"),
                "drink.abv",
            ),
            (
                Drink::parse("x", 100, 5.0, -1, None, "drink"),
                "drink.priceCents",
            ),
            (
                Drink::parse("x", 100, 5.0, 1, Some(-5), "drink"),
                "drink.calories",
            ),
        ] {
            match drink {
                Err(Error::BadInput { field: f, .. }) => assert_eq!(f, field),
                other => panic!("expected BAD_USER_INPUT, got {other:?}"),
            }
        }
    }

    #[test]
    fn widmark_follows_body_and_time() {
        let now = Utc::now();
        assert_eq!(estimated_bac(20.0, None, None, Some(now), now), None);
        let male = estimated_bac(20.0, Some(80.0), Some(BodyType::Male), Some(now), now).unwrap();
        assert!((male - 20.0 / (0.68 * 80_000.0) * 100.0).abs() < 1e-12);
        let female =
            estimated_bac(20.0, Some(80.0), Some(BodyType::Female), Some(now), now).unwrap();
        assert!(female > male);
        let later = now + chrono::Duration::hours(2);
        let after =
            estimated_bac(20.0, Some(80.0), Some(BodyType::Male), Some(now), later).unwrap();
        assert!((male - after - 0.03).abs() < 1e-9);
        let much_later = now + chrono::Duration::hours(20);
        assert_eq!(
            estimated_bac(20.0, Some(80.0), None, Some(now), much_later),
            Some(0.0)
        );
    }

    #[test]
    fn a_session_written_by_the_previous_version_or_a_newer_one_decodes() {
        // `event:{id}:sessions` as the previous release published it (the database row), and with
        // a field this version does not know.
        let old = r#"{"id":"0193a5a0-0000-7000-8000-000000000001","event_id":"0193a5a0-0000-7000-8000-000000000002","user_id":"0193a5a0-0000-7000-8000-000000000003","status":"Open","cheers":4,"orders":1,"game_points":3,"score":7,"score_reached_at":"2026-12-01T21:00:00Z","alcohol_grams":19.725,"bill_cents":650,"calories":138,"first_drink_at":"2026-12-01T20:30:00Z","opened_at":"2026-12-01T20:00:00Z","closed_at":null,"version":6}"#;
        let newer = old.replace(r#""version":6"#, r#""version":6,"tab":"table 4""#);
        for json in [old, newer.as_str()] {
            let session: CupSessionState = serde_json::from_str(json).unwrap();
            assert_eq!(session.status, Status::Open);
            assert_eq!(session.score, 7);
            assert_eq!(session.bill_cents, 650);
            assert_eq!(session.version, 6);
        }
    }

    #[test]
    fn the_previous_version_decodes_what_this_one_publishes() {
        let now = Utc::now();
        let row = cup_session::Model {
            id: Uuid::now_v7(),
            event_id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            status: Status::Open,
            cheers: 1,
            orders: 2,
            game_points: 3,
            score: 4,
            score_reached_at: now,
            alcohol_grams: 12.5,
            bill_cents: 900,
            calories: 200,
            first_drink_at: Some(now),
            opened_at: now,
            closed_at: None,
            version: 3,
        };
        let published = serde_json::to_string(&CupSessionState::from(row.clone())).unwrap();
        let decoded: cup_session::Model = serde_json::from_str(&published).unwrap();
        assert_eq!(decoded, row);
    }

    #[test]
    fn a_newer_session_supersedes_an_older_one() {
        let state = |id: Uuid, version: i64| {
            let now = Utc::now();
            CupSessionState::from(cup_session::Model {
                id,
                event_id: Uuid::nil(),
                user_id: Uuid::nil(),
                status: Status::Open,
                cheers: 0,
                orders: 0,
                game_points: 0,
                score: 0,
                score_reached_at: now,
                alcohol_grams: 0.0,
                bill_cents: 0,
                calories: 0,
                first_drink_at: None,
                opened_at: now,
                closed_at: None,
                version,
            })
        };
        let old = Uuid::now_v7();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let new = Uuid::now_v7();
        assert!(state(new, 1).version() > state(old, 9).version());
        assert!(state(old, 3).version() > state(old, 2).version());
        assert!(state(old, 9).version() < state(new, 1).version());
    }

    #[test]
    fn cheers_come_in_sane_counts() {
        assert!(parse_cheers(0).is_err());
        assert!(parse_cheers(101).is_err());
        assert_eq!(parse_cheers(3).unwrap(), 3);
    }
}
