//! Proximity rules without IO: positions and radii parsed from input, distances (haversine, from
//! the geo crate), the status of an activity (nearest, stale, GPS off), the alert hysteresis, and the
//! live payloads with their topics.

use chrono::{DateTime, Duration, Utc};
use geo::{Distance, Haversine, Point};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::live::Topics;

/// Tracking commands for one watched person's devices: `user:{id}:tracking`.
pub const TRACKING: Topics<TrackingCommand> = Topics::stream("user", "tracking");

/// Something that touches one activity's status changed: `activity:{id}` (subscribers recompute).
pub const ACTIVITY: Topics<ActivityTouched> = Topics::per("activity");

/// Proximity alerts for one activity owner: `user:{id}:alerts`.
pub const ALERTS: Topics<ProximityAlert> = Topics::stream("user", "alerts");

/// START or STOP sharing location.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Command {
    /// Begin sending positions.
    Start,
    /// Stop sending positions.
    Stop,
}

/// The payload of [`TRACKING`] (wire v1): a command for the watched person's devices.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrackingCommand {
    /// START or STOP.
    pub command: Command,
    /// The activity that asks.
    pub activity_id: Uuid,
    /// Its owner.
    pub requested_by: Uuid,
}

/// The payload of [`ACTIVITY`] (wire v1): the activity's status may have changed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ActivityTouched {
    /// The activity.
    pub activity_id: Uuid,
    /// The activity itself or who it watches changed (not only someone's position): followers
    /// reload the activity and its links, not only the positions. Messages of releases before it
    /// lack the field and count as a reload (the safe reading).
    #[serde(default = "reload_by_default")]
    pub reload: bool,
}

fn reload_by_default() -> bool {
    true
}

/// The payload of [`ALERTS`] (wire v1): a watched person entered an activity's radius.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProximityAlert {
    /// The activity.
    pub activity_id: Uuid,
    /// Who came near.
    pub user_id: Uuid,
    /// How near, meters.
    pub distance_meters: f64,
    /// When they entered (what names this entry: a stream sends each entry once, whether it came
    /// as a message or from a catch-up). Messages of older releases lack it.
    #[serde(default)]
    pub entered_at: Option<DateTime<Utc>>,
}

impl ProximityAlert {
    /// The entry this alert is about: activity, person and when; `None` without a time.
    pub fn entry(&self) -> Option<(Uuid, Uuid, DateTime<Utc>)> {
        Some((self.activity_id, self.user_id, self.entered_at?))
    }
}

/// A position on Earth, in degrees.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Position {
    /// -90 to 90.
    pub latitude: f64,
    /// -180 to 180.
    pub longitude: f64,
}

impl Position {
    /// A device's report: both values, or both null for GPS off (`None`). One null, NaN or a value
    /// out of range is BAD_USER_INPUT naming that argument.
    pub fn parse(latitude: Option<f64>, longitude: Option<f64>) -> Result<Option<Self>> {
        match (latitude, longitude) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err(Error::bad_input(
                "latitude",
                "latitude and longitude are both given, or both null for GPS off",
            )),
            (Some(_), None) => Err(Error::bad_input(
                "longitude",
                "latitude and longitude are both given, or both null for GPS off",
            )),
            (Some(latitude), Some(longitude)) => {
                if !(latitude.is_finite() && (-90.0..=90.0).contains(&latitude)) {
                    return Err(Error::bad_input(
                        "latitude",
                        "latitude is a number from -90 to 90",
                    ));
                }
                if !(longitude.is_finite() && (-180.0..=180.0).contains(&longitude)) {
                    return Err(Error::bad_input(
                        "longitude",
                        "longitude is a number from -180 to 180",
                    ));
                }
                Ok(Some(Self {
                    latitude,
                    longitude,
                }))
            }
        }
    }

    /// Great-circle distance in meters (haversine on the mean Earth radius).
    pub fn distance_to(self, other: Self) -> f64 {
        Haversine.distance(
            Point::new(self.longitude, self.latitude),
            Point::new(other.longitude, other.latitude),
        )
    }
}

/// Smallest and largest alert radius, meters.
pub const RADIUS_RANGE: std::ops::RangeInclusive<f64> = 1.0..=50_000.0;

/// An activity's alert radius: 1 m to 50 km.
pub fn parse_radius(meters: f64) -> Result<f64> {
    if meters.is_finite() && RADIUS_RANGE.contains(&meters) {
        Ok(meters)
    } else {
        Err(Error::bad_input(
            "alertRadiusMeters",
            "alertRadiusMeters is 1 to 50000",
        ))
    }
}

/// How far a person who set off an alert must go before they can set off another: the radius plus
/// 10% of it, at least 20 m (GPS noise at the edge never flaps).
pub fn exit_distance(radius: f64) -> f64 {
    radius + (radius * 0.1).max(20.0)
}

/// What a distance means for a person's alert state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crossing {
    /// Within the radius: an alert if they were outside.
    Inside,
    /// Beyond the exit distance: outside again.
    Outside,
    /// Between radius and exit distance: no change either way.
    Edge,
}

/// Where `distance` lies for an activity of `radius`.
pub fn crossing(distance: f64, radius: f64) -> Crossing {
    if distance <= radius {
        Crossing::Inside
    } else if distance > exit_distance(radius) {
        Crossing::Outside
    } else {
        Crossing::Edge
    }
}

/// A watched person's last report, as the status needs it.
#[derive(Clone, Copy, Debug)]
pub struct Report {
    /// Who.
    pub user_id: Uuid,
    /// Where, or `None` for GPS off.
    pub position: Option<Position>,
    /// When.
    pub at: DateTime<Utc>,
}

/// The nearest watched person.
#[derive(Clone, Debug, PartialEq)]
pub struct Nearest {
    /// Who.
    pub user_id: Uuid,
    /// Meters from the owner.
    pub distance_meters: f64,
    /// Their report's time.
    pub updated_at: DateTime<Utc>,
}

/// An activity's status at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Status {
    /// Closest watched person with a fresh position (needs the owner's position).
    pub nearest: Option<Nearest>,
    /// Watched people with no report, or a report older than the stale threshold.
    pub stale: Vec<Uuid>,
    /// Watched people whose fresh report says GPS off.
    pub gps_off: Vec<Uuid>,
    /// When the next fresh report goes stale (the status changes then with no update).
    pub next_stale_at: Option<DateTime<Utc>>,
}

/// The status of an activity whose owner is at `owner` (if known), watching the people of
/// `watched` (their reports, `None` for people who never reported), at `now`.
pub fn status(
    owner: Option<Position>,
    watched: &[(Uuid, Option<Report>)],
    now: DateTime<Utc>,
    stale_after: Duration,
) -> Status {
    let mut status = Status {
        nearest: None,
        stale: Vec::new(),
        gps_off: Vec::new(),
        next_stale_at: None,
    };
    for (user_id, report) in watched {
        let Some(report) = report.filter(|report| now - report.at <= stale_after) else {
            status.stale.push(*user_id);
            continue;
        };
        let goes_stale = report.at + stale_after;
        status.next_stale_at = Some(
            status
                .next_stale_at
                .map_or(goes_stale, |t| t.min(goes_stale)),
        );
        let Some(position) = report.position else {
            status.gps_off.push(*user_id);
            continue;
        };
        let Some(owner) = owner else { continue };
        let distance = owner.distance_to(position);
        if status
            .nearest
            .as_ref()
            .is_none_or(|nearest| distance < nearest.distance_meters)
        {
            status.nearest = Some(Nearest {
                user_id: *user_id,
                distance_meters: distance,
                updated_at: report.at,
            });
        }
    }
    status
}

/// An activity with its status, as `activity` and `activityUpdated` return it.
#[derive(Clone, Debug)]
pub struct ActivityView {
    /// The activity row.
    pub activity: crate::entity::activity::Model,
    /// Its status when computed.
    pub status: Status,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_both_coordinates_or_neither() {
        assert_eq!(Position::parse(None, None).unwrap(), None);
        let cases = [
            (None, Some(1.0), "latitude"),
            (Some(1.0), None, "longitude"),
            (Some(f64::NAN), Some(1.0), "latitude"),
            (Some(91.0), Some(1.0), "latitude"),
            (Some(1.0), Some(-180.5), "longitude"),
            (Some(1.0), Some(f64::INFINITY), "longitude"),
        ];
        for (latitude, longitude, field) in cases {
            match Position::parse(latitude, longitude) {
                Err(Error::BadInput { field: named, .. }) => assert_eq!(named, field),
                other => panic!("{latitude:?},{longitude:?}: {other:?}"),
            }
        }
        assert!(Position::parse(Some(-90.0), Some(180.0)).unwrap().is_some());
    }

    #[test]
    fn radii_are_1_m_to_50_km() {
        assert!(parse_radius(1.0).is_ok());
        assert!(parse_radius(50_000.0).is_ok());
        for bad in [0.5, 50_001.0, f64::NAN, -3.0] {
            assert!(parse_radius(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_edge_does_not_flap() {
        assert_eq!(exit_distance(100.0), 120.0, "20 m beats 10% of 100 m");
        assert_eq!(exit_distance(1000.0), 1100.0, "10% beats 20 m");
        assert_eq!(crossing(100.0, 100.0), Crossing::Inside);
        assert_eq!(crossing(110.0, 100.0), Crossing::Edge);
        assert_eq!(crossing(120.0, 100.0), Crossing::Edge, "beyond, not at");
        assert_eq!(crossing(120.5, 100.0), Crossing::Outside);
    }

    #[test]
    fn a_report_is_fresh_up_to_the_threshold_itself() {
        let now = Utc::now();
        let person = Uuid::now_v7();
        let here = Position {
            latitude: 48.8566,
            longitude: 2.3522,
        };
        let aged = |seconds| {
            vec![(
                person,
                Some(Report {
                    user_id: person,
                    position: Some(here),
                    at: now - Duration::seconds(seconds),
                }),
            )]
        };
        let threshold = Duration::seconds(300);
        let at_threshold = status(Some(here), &aged(300), now, threshold);
        assert!(at_threshold.stale.is_empty());
        assert_eq!(at_threshold.nearest.map(|n| n.user_id), Some(person));
        let past = status(Some(here), &aged(301), now, threshold);
        assert_eq!(past.stale, vec![person]);
        assert!(past.nearest.is_none());
    }

    #[test]
    fn the_status_sorts_people_into_nearest_stale_and_gps_off() {
        let now = Utc::now();
        let owner = Position {
            latitude: 48.8566,
            longitude: 2.3522,
        };
        let near = Uuid::now_v7();
        let far = Uuid::now_v7();
        let off = Uuid::now_v7();
        let old = Uuid::now_v7();
        let never = Uuid::now_v7();
        let at = |seconds_ago| now - Duration::seconds(seconds_ago);
        let report = |user_id, position, seconds_ago| {
            Some(Report {
                user_id,
                position,
                at: at(seconds_ago),
            })
        };
        let near_position = Position {
            latitude: 48.8576,
            longitude: 2.3522,
        };
        let watched = vec![
            (
                far,
                report(
                    far,
                    Some(Position {
                        latitude: 48.9,
                        longitude: 2.35,
                    }),
                    10,
                ),
            ),
            (near, report(near, Some(near_position), 30)),
            (off, report(off, None, 5)),
            (old, report(old, Some(near_position), 301)),
            (never, None),
        ];
        let status = status(Some(owner), &watched, now, Duration::seconds(300));
        let nearest = status.nearest.expect("nearest");
        assert_eq!(nearest.user_id, near);
        assert!(
            (nearest.distance_meters - 111.2).abs() < 0.5,
            "{}",
            nearest.distance_meters
        );
        assert_eq!(status.stale, vec![old, never]);
        assert_eq!(status.gps_off, vec![off]);
        assert_eq!(status.next_stale_at, Some(at(30) + Duration::seconds(300)));
    }
}
