//! Cup rules without IO: drink input, alcohol grams, calories and the Widmark estimate.

use chrono::{DateTime, Utc};

use crate::entity::user::BodyType;
use crate::error::{Error, Result};

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
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 80 || name.chars().any(char::is_control) {
            return Err(Error::bad_input(
                format!("{prefix}.name"),
                "a drink name has 1 to 80 characters",
            ));
        }
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
            name: name.to_owned(),
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
    fn cheers_come_in_sane_counts() {
        assert!(parse_cheers(0).is_err());
        assert!(parse_cheers(101).is_err());
        assert_eq!(parse_cheers(3).unwrap(), 3);
    }
}
