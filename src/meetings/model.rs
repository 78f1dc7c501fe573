//! Meeting rules without IO: slots and their checks, weekly patterns in a time zone, cancellation
//! reasons, the live payload with its topic.
//!
//! Slot times are kept to the whole second (stored timestamps stay one fixed width, so SQLite
//! orders them correctly as text). A weekly pattern is expanded in its IANA zone (chrono-tz) with
//! RFC 5545's rules: the wall clock holds across daylight-saving changes; a start inside a
//! spring-forward gap is read with the offset before the gap (so it moves forward by the gap); a
//! start that occurs twice at fall-back takes the first occurrence.

use chrono::{
    DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Offset, SubsecRound,
    TimeZone, Utc,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::entity::meeting::{self, Status};
use crate::error::{Error, Result};
use crate::live::{self, Topics};
use crate::model::{name, optional_text};

/// Longest span of a weekly pattern, from its first to its last date.
pub const MAX_PATTERN_DAYS: i64 = 366;
/// The last date a weekly pattern may reach: the time-zone database (chrono-tz's tables) knows
/// daylight-saving changes up to 2099, and a wall-clock time after that would get a wrong offset.
pub const LAST_PATTERN_YEAR: i32 = 2099;
/// Longest cancellation reason, in characters.
pub const MAX_REASON: usize = 500;

/// A slot, checked: whole seconds, end after start, in the future, not too long, with a title.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    /// Start (whole seconds).
    pub start: DateTime<Utc>,
    /// End (whole seconds), after the start.
    pub end: DateTime<Utc>,
    /// 1-200 characters.
    pub title: String,
    /// At most 5000 characters.
    pub description: Option<String>,
}

/// The limits a slot is checked against.
#[derive(Clone, Copy, Debug)]
pub struct SlotRules {
    /// Now: a slot must start after it.
    pub now: DateTime<Utc>,
    /// Longest slot.
    pub max_length: Duration,
}

impl Slot {
    /// Checks a slot given as `input` (`input.startTime`, `input.endTime`, …).
    pub fn parse(
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        title: &str,
        description: Option<&str>,
        rules: SlotRules,
    ) -> Result<Self> {
        let start = crate::model::instant(start, "input.startTime")?.trunc_subsecs(0);
        let end = crate::model::instant(end, "input.endTime")?.trunc_subsecs(0);
        if end <= start {
            return Err(Error::bad_input(
                "input.endTime",
                "the end must be after the start",
            ));
        }
        if start <= rules.now {
            return Err(Error::bad_input(
                "input.startTime",
                "an availability starts in the future",
            ));
        }
        if end - start > rules.max_length {
            return Err(Error::bad_input(
                "input.endTime",
                format!(
                    "an availability lasts at most {} minutes",
                    rules.max_length.num_minutes()
                ),
            ));
        }
        Ok(Self {
            start,
            end,
            title: name(title, "input.title", 1, 200)?,
            description: optional_text(description, "input.description", 5000)?,
        })
    }

    /// Whether the two slots share any instant (back to back is not an overlap).
    pub fn overlaps(&self, other: &Slot) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// A weekly pattern, checked.
#[derive(Clone, Debug)]
pub struct WeeklyPattern {
    /// The zone its wall-clock times are in.
    pub zone: Tz,
    /// The days it covers.
    pub weekdays: Vec<chrono::Weekday>,
    /// Local start on each day.
    pub start_local: NaiveTime,
    /// Length of each slot.
    pub duration: Duration,
    /// First local date (inclusive).
    pub from: NaiveDate,
    /// Last local date (inclusive).
    pub until: NaiveDate,
}

impl WeeklyPattern {
    /// Checks a pattern given as `input`.
    pub fn parse(
        zone: &str,
        weekdays: Vec<chrono::Weekday>,
        start_local: &str,
        duration_minutes: i32,
        from: &str,
        until: &str,
        max_length: Duration,
    ) -> Result<Self> {
        let zone: Tz = zone
            .trim()
            .parse()
            .map_err(|_| Error::bad_input("input.timeZone", "not an IANA time zone name"))?;
        let start_local = NaiveTime::parse_from_str(start_local.trim(), "%H:%M")
            .map_err(|_| Error::bad_input("input.startLocal", "a local time is HH:MM"))?;
        let duration = Duration::minutes(i64::from(duration_minutes));
        if duration_minutes < 1 || duration > max_length {
            return Err(Error::bad_input(
                "input.durationMinutes",
                format!("a slot lasts 1 to {} minutes", max_length.num_minutes()),
            ));
        }
        let date = |raw: &str, field: &str| {
            let day = NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d")
                .map_err(|_| Error::bad_input(field, "a date is YYYY-MM-DD"))?;
            crate::model::date(day, field)
        };
        let from = date(from, "input.fromDate")?;
        let until = date(until, "input.untilDate")?;
        if until < from {
            return Err(Error::bad_input(
                "input.untilDate",
                "the last date is not before the first",
            ));
        }
        if until.year() > LAST_PATTERN_YEAR {
            return Err(Error::bad_input(
                "input.untilDate",
                format!("time-zone rules are known up to {LAST_PATTERN_YEAR}-12-31"),
            ));
        }
        if (until - from).num_days() > MAX_PATTERN_DAYS {
            return Err(Error::bad_input(
                "input.untilDate",
                format!("a pattern spans at most {MAX_PATTERN_DAYS} days"),
            ));
        }
        if weekdays.is_empty() {
            return Err(Error::bad_input(
                "input.weekdays",
                "name at least one weekday",
            ));
        }
        // A week has seven days: a longer list repeats some (and a list is read once per day of
        // the pattern).
        let named = weekdays.len();
        let mut weekdays = weekdays;
        if named <= 7 {
            weekdays.sort_by_key(chrono::Weekday::num_days_from_monday);
            weekdays.dedup();
        }
        if named > 7 || weekdays.len() != named {
            return Err(Error::bad_input(
                "input.weekdays",
                "name each weekday at most once",
            ));
        }
        Ok(Self {
            zone,
            weekdays,
            start_local,
            duration,
            from,
            until,
        })
    }

    /// The (start, end) of every slot, soonest first: one per matching local date.
    pub fn expand(&self) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        self.from
            .iter_days()
            .take_while(|day| *day <= self.until)
            .filter(|day| self.weekdays.contains(&day.weekday()))
            .map(|day| {
                let start = resolve_local(self.zone, day.and_time(self.start_local));
                (start, start + self.duration)
            })
            .collect()
    }
}

/// The instant of the wall-clock time `local` in `zone` (RFC 5545, section 3.3.5): the first of two
/// occurrences at fall-back; in a spring-forward gap, the offset in force before the gap (so 02:30
/// in a 02:00 -> 03:00 gap is 03:30 after it).
pub fn resolve_local(zone: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    if let Some(first) = zone.from_local_datetime(&local).earliest() {
        return first.with_timezone(&Utc);
    }
    // In a gap: the offset of the moment just before it. Gaps last hours, so a day earlier is safely
    // before it and (barring two changes within a day, which no zone has) in the same offset.
    let before = local - Duration::days(1);
    let offset = zone
        .from_local_datetime(&before)
        .earliest()
        .map(|before| before.offset().fix())
        .unwrap_or_else(|| zone.offset_from_utc_datetime(&local).fix());
    Utc.from_utc_datetime(&(local - Duration::seconds(i64::from(offset.local_minus_utc()))))
}

/// A cancellation reason: at most 500 characters, blank means none.
pub fn parse_reason(reason: Option<&str>) -> Result<Option<String>> {
    optional_text(reason, "reason", MAX_REASON)
}

/// Which of the caller's meetings to list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Meetings on their own slots.
    Owner,
    /// Meetings they booked.
    Participant,
    /// Both.
    Any,
}

/// What happened to a meeting: the payload of `user:{id}:meetings` (wire v1).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MeetingChanged {
    /// The meeting as committed.
    pub meeting: MeetingState,
    /// What happened.
    pub kind: MeetingEvent,
}

/// Kinds of meeting change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MeetingEvent {
    /// A slot was booked.
    Booked,
    /// The meeting was cancelled.
    Cancelled,
}

/// The meetings of one user, as they happen: `user:{id}:meetings`.
pub const MEETINGS: Topics<MeetingChanged> = Topics::stream("user", "meetings");

/// A meeting as clients see it (wire v1). Fields are only ever added, with defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeetingState {
    /// UUID v7.
    pub id: Uuid,
    /// The slot booked.
    pub availability_id: Uuid,
    /// The slot's owner.
    pub owner_id: Uuid,
    /// Who booked it.
    pub participant_id: Uuid,
    /// Start.
    pub start_time: DateTime<Utc>,
    /// End.
    pub end_time: DateTime<Utc>,
    /// CONFIRMED or CANCELLED.
    pub status: MeetingStatus,
    /// When booked.
    pub created_at: DateTime<Utc>,
    /// When cancelled.
    #[serde(default)]
    pub cancelled_at: Option<DateTime<Utc>>,
    /// Who cancelled.
    #[serde(default)]
    pub cancelled_by: Option<Uuid>,
    /// Why.
    #[serde(default)]
    pub cancellation_reason: Option<String>,
}

/// A meeting's status on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MeetingStatus {
    /// Booked.
    Confirmed,
    /// Called off.
    Cancelled,
}

impl From<meeting::Model> for MeetingState {
    fn from(row: meeting::Model) -> Self {
        Self {
            id: row.id,
            availability_id: row.availability_id,
            owner_id: row.owner_id,
            participant_id: row.participant_id,
            start_time: row.start_time,
            end_time: row.end_time,
            status: match row.status {
                Status::Confirmed => MeetingStatus::Confirmed,
                Status::Cancelled => MeetingStatus::Cancelled,
            },
            created_at: row.created_at,
            cancelled_at: row.cancelled_at,
            cancelled_by: row.cancelled_by,
            cancellation_reason: row.cancellation_reason,
        }
    }
}

/// What one `myMeetings` stream has sent: each change (a meeting's booking or cancellation) once.
pub type Sent = live::Sent<(Uuid, MeetingEvent)>;

/// The changes of `row` that concern `user` (as owner its booking, as either side its
/// cancellation) since [`Sent::since`] and were not sent yet, now recorded as sent; whether there
/// was any.
pub fn unsent(sent: &mut Sent, user: Uuid, row: &meeting::Model, now: DateTime<Utc>) -> bool {
    let since = sent.since(now);
    let booked = row.owner_id == user
        && row.created_at >= since
        && sent.first((row.id, MeetingEvent::Booked), now);
    let cancelled = row
        .cancelled_at
        .is_some_and(|at| at >= since && sent.first((row.id, MeetingEvent::Cancelled), now));
    booked || cancelled
}

/// Whether `user` takes part in `meeting` (its owner or participant): the only people who see it.
pub fn takes_part(user: Uuid, owner_id: Uuid, participant_id: Uuid) -> bool {
    user == owner_id || user == participant_id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> SlotRules {
        SlotRules {
            now: Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap(),
            max_length: Duration::minutes(480),
        }
    }

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2027, 2, 1, h, 0, 0).unwrap()
    }

    /// A meeting of `owner` booked by `participant` at `booked`, cancelled at `cancelled`.
    fn meeting_row(
        owner: Uuid,
        participant: Uuid,
        booked: DateTime<Utc>,
        cancelled: Option<DateTime<Utc>>,
    ) -> meeting::Model {
        meeting::Model {
            id: Uuid::new_v4(),
            availability_id: Uuid::new_v4(),
            owner_id: owner,
            participant_id: participant,
            start_time: at(20),
            end_time: at(21),
            status: if cancelled.is_some() {
                Status::Cancelled
            } else {
                Status::Confirmed
            },
            sequence: 0,
            created_at: booked,
            updated_at: cancelled.unwrap_or(booked),
            cancelled_at: cancelled,
            cancelled_by: cancelled.map(|_| owner),
            cancellation_reason: None,
            title: "Coaching".to_owned(),
            description: None,
        }
    }

    #[test]
    fn a_catch_up_sends_what_the_stream_has_not_sent_once() {
        let (owner, participant) = (Uuid::new_v4(), Uuid::new_v4());
        let minutes = |m: i64| at(10) + Duration::minutes(m);
        // Both streams began at 10:00.
        let (mut owners, mut participants) = (Sent::new(at(10)), Sent::new(at(10)));
        let heard = meeting_row(owner, participant, minutes(5), None);
        assert!(owners.first((heard.id, MeetingEvent::Booked), minutes(5)));
        assert!(
            !owners.first((heard.id, MeetingEvent::Booked), minutes(6)),
            "once"
        );
        // Missed: a booking, then its cancellation, and a booking before the stream began.
        let missed = meeting_row(owner, participant, minutes(7), Some(minutes(8)));
        let older = meeting_row(owner, participant, at(9) - Duration::minutes(2), None);
        let now = minutes(9);
        assert!(!unsent(&mut owners, owner, &heard, now), "already sent");
        assert!(unsent(&mut owners, owner, &missed, now));
        assert!(!unsent(&mut owners, owner, &missed, now), "once");
        assert!(
            !unsent(&mut owners, owner, &older, now),
            "before the stream began"
        );
        // A participant hears of cancellations only.
        assert!(!unsent(&mut participants, participant, &heard, now));
        assert!(unsent(&mut participants, participant, &missed, now));
        // Hours later, only the last hour is looked at.
        let late = at(14);
        assert_eq!(owners.since(late), late - live::CATCH_UP_WINDOW);
        let stale = meeting_row(owner, participant, late - Duration::minutes(61), None);
        assert!(!unsent(&mut owners, owner, &stale, late));
    }

    #[test]
    fn slots_are_checked_field_by_field() {
        let field = |r: Result<Slot>| match r {
            Err(Error::BadInput { field, .. }) => field,
            other => panic!("expected BAD_USER_INPUT, got {other:?}"),
        };
        assert_eq!(
            field(Slot::parse(at(10), at(10), "x", None, rules())),
            "input.endTime"
        );
        assert_eq!(
            field(Slot::parse(at(10), at(19), "x", None, rules())),
            "input.endTime"
        );
        let past = Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap();
        assert_eq!(
            field(Slot::parse(
                past,
                past + Duration::hours(1),
                "x",
                None,
                rules()
            )),
            "input.startTime"
        );
        assert_eq!(
            field(Slot::parse(at(10), at(11), " ", None, rules())),
            "input.title"
        );
        let slot = Slot::parse(
            at(10) + Duration::milliseconds(700),
            at(18),
            " Coaching ",
            Some(""),
            rules(),
        )
        .unwrap();
        assert_eq!(slot.start, at(10), "whole seconds");
        assert_eq!(slot.title, "Coaching");
        assert_eq!(slot.description, None);
    }

    #[test]
    fn back_to_back_is_not_an_overlap() {
        let a = Slot::parse(at(9), at(10), "a", None, rules()).unwrap();
        let b = Slot::parse(at(10), at(11), "b", None, rules()).unwrap();
        let c = Slot::parse(at(9), at(12), "c", None, rules()).unwrap();
        assert!(!a.overlaps(&b));
        assert!(a.overlaps(&c) && c.overlaps(&b));
    }

    #[test]
    fn a_start_in_the_spring_gap_moves_forward_and_a_doubled_one_takes_the_first() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let gap = NaiveDate::from_ymd_opt(2027, 3, 14)
            .unwrap()
            .and_hms_opt(2, 30, 0)
            .unwrap();
        assert_eq!(
            resolve_local(ny, gap),
            Utc.with_ymd_and_hms(2027, 3, 14, 7, 30, 0).unwrap()
        );
        let twice = NaiveDate::from_ymd_opt(2027, 11, 7)
            .unwrap()
            .and_hms_opt(1, 30, 0)
            .unwrap();
        assert_eq!(
            resolve_local(ny, twice),
            Utc.with_ymd_and_hms(2027, 11, 7, 5, 30, 0).unwrap()
        );
        let plain = NaiveDate::from_ymd_opt(2027, 7, 1)
            .unwrap()
            .and_hms_opt(9, 0, 0)
            .unwrap();
        assert_eq!(
            resolve_local(ny, plain),
            Utc.with_ymd_and_hms(2027, 7, 1, 13, 0, 0).unwrap()
        );
    }

    #[test]
    fn weekly_patterns_keep_the_wall_clock_and_name_bad_fields() {
        let pattern = WeeklyPattern::parse(
            "Europe/Paris",
            vec![chrono::Weekday::Mon],
            "09:00",
            60,
            "2027-03-22",
            "2027-04-05",
            Duration::minutes(480),
        )
        .unwrap();
        let starts: Vec<_> = pattern.expand().into_iter().map(|(s, _)| s).collect();
        assert_eq!(
            starts,
            [
                Utc.with_ymd_and_hms(2027, 3, 22, 8, 0, 0).unwrap(),
                Utc.with_ymd_and_hms(2027, 3, 29, 7, 0, 0).unwrap(),
                Utc.with_ymd_and_hms(2027, 4, 5, 7, 0, 0).unwrap(),
            ]
        );
        let field = |zone: &str,
                     time: &str,
                     minutes: i32,
                     from: &str,
                     until: &str,
                     days: Vec<chrono::Weekday>| {
            match WeeklyPattern::parse(
                zone,
                days,
                time,
                minutes,
                from,
                until,
                Duration::minutes(480),
            ) {
                Err(Error::BadInput { field, .. }) => field,
                other => panic!("expected BAD_USER_INPUT, got {other:?}"),
            }
        };
        let mon = || vec![chrono::Weekday::Mon];
        assert_eq!(
            field(
                "Mars/Olympus",
                "09:00",
                60,
                "2027-01-01",
                "2027-01-31",
                mon()
            ),
            "input.timeZone"
        );
        assert_eq!(
            field("UTC", "9h", 60, "2027-01-01", "2027-01-31", mon()),
            "input.startLocal"
        );
        assert_eq!(
            field("UTC", "09:00", 0, "2027-01-01", "2027-01-31", mon()),
            "input.durationMinutes"
        );
        assert_eq!(
            field("UTC", "09:00", 60, "2027-13-01", "2027-01-31", mon()),
            "input.fromDate"
        );
        assert_eq!(
            field("UTC", "09:00", 60, "2027-01-31", "2027-01-01", mon()),
            "input.untilDate"
        );
        assert_eq!(
            field("UTC", "09:00", 60, "2027-01-01", "2028-01-03", mon()),
            "input.untilDate"
        );
        assert_eq!(
            field("UTC", "09:00", 60, "2099-12-01", "2100-01-04", mon()),
            "input.untilDate"
        );
        assert_eq!(
            field("UTC", "09:00", 60, "2027-01-01", "2027-01-31", vec![]),
            "input.weekdays"
        );
        assert_eq!(
            field(
                "UTC",
                "09:00",
                60,
                "2027-01-01",
                "2027-01-31",
                vec![chrono::Weekday::Mon; 8]
            ),
            "input.weekdays"
        );
        use chrono::Weekday::{Mon, Tue};
        assert_eq!(
            field(
                "UTC",
                "09:00",
                60,
                "2027-01-01",
                "2027-01-31",
                vec![Mon, Tue, Mon]
            ),
            "input.weekdays"
        );
    }

    #[test]
    fn a_meeting_written_by_this_version_or_a_newer_one_decodes() {
        let json = r#"{"meeting":{"id":"0193a5a0-0000-7000-8000-000000000001","availability_id":"0193a5a0-0000-7000-8000-000000000002","owner_id":"0193a5a0-0000-7000-8000-000000000003","participant_id":"0193a5a0-0000-7000-8000-000000000004","start_time":"2027-02-01T10:00:00Z","end_time":"2027-02-01T11:00:00Z","status":"Confirmed","created_at":"2027-01-01T10:00:00Z","room":"B"},"kind":"Booked","note":"from the future"}"#;
        let change: MeetingChanged = serde_json::from_str(json).unwrap();
        assert_eq!(change.kind, MeetingEvent::Booked);
        assert_eq!(change.meeting.status, MeetingStatus::Confirmed);
        assert_eq!(change.meeting.cancelled_by, None);
    }
}
