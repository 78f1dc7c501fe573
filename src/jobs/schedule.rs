//! When jobs are due, without IO: daily at a local time in a time zone (through daylight-saving
//! changes), or every fixed interval. Every function takes `now`, so tests choose the clock.

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// When a job is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// Every day at `at`, local time in `zone`.
    Daily {
        /// The local time of day.
        at: NaiveTime,
        /// The time zone.
        zone: Tz,
    },
    /// At every whole multiple of the interval since the Unix epoch.
    Every(Duration),
}

/// `at` on `day` in `zone`: the earlier instant when the clock passes it twice (autumn), the first
/// valid instant after it when the clock skips it (spring).
fn local(zone: Tz, day: NaiveDate, at: NaiveTime) -> DateTime<Utc> {
    let wanted = day.and_time(at);
    if let Some(instant) = zone.from_local_datetime(&wanted).earliest() {
        return instant.with_timezone(&Utc);
    }
    (1..=24 * 60)
        .find_map(|minutes| {
            zone.from_local_datetime(&(wanted + Duration::minutes(minutes)))
                .earliest()
        })
        .map_or_else(|| wanted.and_utc(), |instant| instant.with_timezone(&Utc))
}

impl Schedule {
    /// The latest moment at or before `now`.
    pub fn latest(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match *self {
            Self::Daily { at, zone } => {
                let today = now.with_timezone(&zone).date_naive();
                let moment = local(zone, today, at);
                if moment <= now {
                    moment
                } else {
                    local(zone, today - Duration::days(1), at)
                }
            }
            Self::Every(interval) => {
                let step = interval.num_milliseconds().max(1);
                let moment = now.timestamp_millis().div_euclid(step) * step;
                DateTime::from_timestamp_millis(moment).unwrap_or(now)
            }
        }
    }

    /// The first moment after `now`.
    pub fn next(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match *self {
            Self::Daily { at, zone } => {
                let today = now.with_timezone(&zone).date_naive();
                let moment = local(zone, today, at);
                if moment > now {
                    moment
                } else {
                    local(zone, today + Duration::days(1), at)
                }
            }
            Self::Every(interval) => self.latest(now) + interval.max(Duration::milliseconds(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn daily(at: &str, zone: Tz) -> Schedule {
        Schedule::Daily {
            at: NaiveTime::parse_from_str(at, "%H:%M:%S").unwrap(),
            zone,
        }
    }

    #[test]
    fn a_daily_moment_is_today_once_passed_else_yesterday() {
        let finish = daily("22:00:00", chrono_tz::UTC);
        assert_eq!(
            finish.latest(utc("2026-12-02T21:59:59Z")),
            utc("2026-12-01T22:00:00Z")
        );
        assert_eq!(
            finish.latest(utc("2026-12-02T22:00:00Z")),
            utc("2026-12-02T22:00:00Z")
        );
        assert_eq!(
            finish.next(utc("2026-12-02T22:00:00Z")),
            utc("2026-12-03T22:00:00Z")
        );
        assert_eq!(
            finish.next(utc("2026-12-02T08:00:00Z")),
            utc("2026-12-02T22:00:00Z")
        );
    }

    #[test]
    fn a_zone_far_from_utc_moves_the_moment_and_the_day() {
        // 22:00 in Kiritimati (UTC+14) is 08:00 UTC the same calendar day.
        let finish = daily("22:00:00", chrono_tz::Pacific::Kiritimati);
        assert_eq!(
            finish.latest(utc("2026-12-02T09:00:00Z")),
            utc("2026-12-02T08:00:00Z")
        );
        assert_eq!(
            finish.latest(utc("2026-12-02T07:59:00Z")),
            utc("2026-12-01T08:00:00Z")
        );
        // 22:00 in Honolulu (UTC-10) is 08:00 UTC the next calendar day.
        let finish = daily("22:00:00", chrono_tz::Pacific::Honolulu);
        assert_eq!(
            finish.next(utc("2026-12-02T09:00:00Z")),
            utc("2026-12-03T08:00:00Z")
        );
    }

    #[test]
    fn daylight_saving_changes_keep_one_moment_a_day() {
        let paris = chrono_tz::Europe::Paris;
        // 02:30 does not exist on 2026-03-29 in Paris: the moment is the first instant after the gap.
        let skipped = daily("02:30:00", paris);
        assert_eq!(
            skipped.next(utc("2026-03-28T23:00:00Z")),
            utc("2026-03-29T01:00:00Z")
        );
        // 02:30 happens twice on 2026-10-25: the first one counts, once.
        let twice = daily("02:30:00", paris);
        let first = twice.next(utc("2026-10-24T23:00:00Z"));
        assert_eq!(first, utc("2026-10-25T00:30:00Z"));
        assert_eq!(twice.next(first), utc("2026-10-26T01:30:00Z"));
    }

    #[test]
    fn an_interval_counts_from_the_epoch() {
        let hourly = Schedule::Every(Duration::hours(1));
        assert_eq!(
            hourly.latest(utc("2026-12-02T10:59:59Z")),
            utc("2026-12-02T10:00:00Z")
        );
        assert_eq!(
            hourly.next(utc("2026-12-02T10:00:00Z")),
            utc("2026-12-02T11:00:00Z")
        );
    }
}
