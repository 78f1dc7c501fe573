//! Event rules without IO: parsed inputs, the status life-cycle, and the live change payload.
//!
//! Event times are kept to the second: that is all an event needs, and it keeps stored timestamps in
//! one fixed-width form, so SQLite compares and orders them correctly as text.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::entity::event::{self, Status};
use crate::error::{Error, Result};

/// A time truncated to the whole second.
pub fn to_second(time: DateTime<Utc>) -> DateTime<Utc> {
    time.trunc_subsecs(0)
}

/// Whether an event may move from `from` to `to`: SCHEDULED -> LIVE -> FINISHED, and SCHEDULED or
/// LIVE -> CANCELLED. Staying put is allowed (a no-op).
pub fn can_move(from: Status, to: Status) -> bool {
    use Status::{Cancelled, Finished, Live, Scheduled};
    from == to
        || matches!(
            (from, to),
            (Scheduled, Live) | (Live, Finished) | (Scheduled | Live, Cancelled)
        )
}

/// Checks a text field: trimmed, `min..=max` characters, no control characters but newlines/tabs.
pub fn text(raw: &str, field: &str, min: usize, max: usize) -> Result<String> {
    let value = raw.trim();
    let length = value.chars().count();
    if length < min || length > max {
        return Err(Error::bad_input(
            field,
            format!("{field} has {min} to {max} characters"),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(Error::bad_input(
            field,
            format!("{field} has control characters"),
        ));
    }
    Ok(value.to_owned())
}

/// An optional text: empty means none.
pub fn optional_text(raw: Option<&str>, field: &str, max: usize) -> Result<Option<String>> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(value) => text(value, field, 1, max).map(Some),
    }
}

/// Checks that an end is after its start.
pub fn check_times(
    starts_at: DateTime<Utc>,
    ends_at: Option<DateTime<Utc>>,
    field: &str,
) -> Result<()> {
    match ends_at {
        Some(end) if end <= starts_at => {
            Err(Error::bad_input(field, "the end must be after the start"))
        }
        _ => Ok(()),
    }
}

/// A catalogue entry, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateSpec {
    /// 1-120 characters.
    pub name: String,
    /// At most 5000 characters.
    pub description: Option<String>,
    /// 1 minute to 7 days.
    pub default_duration_minutes: i32,
    /// At least 1 when set.
    pub capacity: Option<i32>,
}

impl TemplateSpec {
    /// Checks every field; `prefix` is the argument name (`input`).
    pub fn parse(
        name: &str,
        description: Option<&str>,
        default_duration_minutes: i32,
        capacity: Option<i32>,
        prefix: &str,
    ) -> Result<Self> {
        if !(1..=7 * 24 * 60).contains(&default_duration_minutes) {
            return Err(Error::bad_input(
                format!("{prefix}.defaultDurationMinutes"),
                "the duration is 1 minute to 7 days",
            ));
        }
        if capacity.is_some_and(|c| c < 1) {
            return Err(Error::bad_input(
                format!("{prefix}.capacity"),
                "capacity is at least 1",
            ));
        }
        Ok(Self {
            name: text(name, &format!("{prefix}.name"), 1, 120)?,
            description: optional_text(description, &format!("{prefix}.description"), 5000)?,
            default_duration_minutes,
            capacity,
        })
    }
}

/// The end of an event starting at `starts_at` made from a template of `duration_minutes`.
pub fn default_end(starts_at: DateTime<Utc>, duration_minutes: i32) -> DateTime<Utc> {
    starts_at + Duration::minutes(i64::from(duration_minutes))
}

/// What happened to an event: the payload of `event:{id}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EventChange {
    /// The event as committed.
    pub event: event::Model,
    /// What kind of change.
    pub kind: ChangeKind,
    /// Who made it.
    pub actor: Option<Uuid>,
}

/// Kinds of event change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKind {
    /// Details, status, picture or staff changed.
    Updated,
    /// `actor` liked it.
    Liked,
    /// `actor` took their like back.
    Unliked,
    /// It is gone.
    Deleted,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_moves_forward_only() {
        use Status::*;
        assert!(can_move(Scheduled, Live));
        assert!(can_move(Live, Finished));
        assert!(can_move(Scheduled, Cancelled));
        assert!(can_move(Live, Cancelled));
        assert!(can_move(Live, Live));
        assert!(!can_move(Scheduled, Finished));
        assert!(!can_move(Finished, Live));
        assert!(!can_move(Cancelled, Scheduled));
        assert!(!can_move(Live, Scheduled));
    }

    #[test]
    fn templates_are_checked() {
        let spec = TemplateSpec::parse(" Pub quiz ", Some(""), 90, Some(40), "input").unwrap();
        assert_eq!(spec.name, "Pub quiz");
        assert_eq!(spec.description, None);
        let start = Utc::now();
        assert_eq!(
            default_end(start, spec.default_duration_minutes) - start,
            Duration::minutes(90)
        );
        for (duration, capacity, field) in [
            (0, None, "input.defaultDurationMinutes"),
            (60, Some(0), "input.capacity"),
        ] {
            match TemplateSpec::parse("x", None, duration, capacity, "input") {
                Err(Error::BadInput { field: f, .. }) => assert_eq!(f, field),
                other => panic!("expected BAD_USER_INPUT, got {other:?}"),
            }
        }
    }

    #[test]
    fn texts_and_times_are_checked() {
        assert!(text("  ", "input.title", 1, 10).is_err());
        assert!(text("a\u{0}b", "input.title", 1, 10).is_err());
        assert_eq!(text(" ok\nfine ", "t", 1, 10).unwrap(), "ok\nfine");
        let now = Utc::now();
        assert!(check_times(now, Some(now), "input.endsAt").is_err());
        assert!(check_times(now, Some(now + Duration::seconds(1)), "input.endsAt").is_ok());
        assert_eq!(to_second(now).timestamp_subsec_nanos(), 0);
    }
}
