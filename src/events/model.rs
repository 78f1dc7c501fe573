//! Event rules without IO: parsed inputs, the status life-cycle, the crew rule, and the live
//! payload with its topics.
//!
//! Event times are kept to the second: that is all an event needs, and it keeps stored timestamps in
//! one fixed-width form, so SQLite compares and orders them correctly as text.

use std::collections::HashMap;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Identity;
use crate::entity::event::{self, Status};
use crate::entity::event_staff::StaffRole;
use crate::error::{Error, Result};
use crate::live::{Topic, Topics, Versioned};
pub use crate::model::{optional_text, text};

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

/// Checks that an end is after its start, and within the years the API takes ([`crate::model::YEARS`]).
pub fn check_times(
    starts_at: DateTime<Utc>,
    ends_at: Option<DateTime<Utc>>,
    field: &str,
) -> Result<()> {
    match ends_at {
        Some(end) if end <= starts_at => {
            Err(Error::bad_input(field, "the end must be after the start"))
        }
        // A template's duration can carry a start late in year 9999 past the range.
        Some(end) => crate::model::instant(end, field).map(drop),
        None => Ok(()),
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
            name: crate::model::name(name, &format!("{prefix}.name"), 1, 120)?,
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

/// Whether `actor` runs an event organized by `organizer_id` where they hold `staff_role` (if
/// any): its organizer, an admin, or a staff member with one of `roles` (any role when `roles` is
/// empty). The one "crew" rule; [`crate::events::service::require_crew`] applies it with storage.
pub fn is_crew(
    actor: Identity,
    organizer_id: Uuid,
    staff_role: Option<StaffRole>,
    roles: &[StaffRole],
) -> bool {
    actor.user_id == organizer_id
        || actor.is_admin
        || staff_role.is_some_and(|role| roles.is_empty() || roles.contains(&role))
}

/// The changes of one event: `event:{id}`.
pub const CHANGES: Topics<EventChanged> = Topics::per("event");

/// Status changes of every event (`events:status-changes`), with the same payload as [`CHANGES`].
/// (The previous release published bare rows on `events:status`; a new shape is a new topic.)
pub fn status_changes() -> Topic<EventChanged> {
    Topic::single("events", "status-changes")
}

/// What happened to an event (wire v1). Fields are only ever added, with defaults.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EventChanged {
    /// The event as committed.
    pub event: EventState,
    /// What kind of change.
    pub kind: ChangeKind,
    /// Who made it (none for the system).
    #[serde(default)]
    pub actor: Option<Uuid>,
}

/// An event as clients see it (wire v1): what the GraphQL `Event` resolves from, whether it came
/// from the database or from a live message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventState {
    /// UUID v7.
    pub id: Uuid,
    /// Shown everywhere.
    pub title: String,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// Where.
    #[serde(default)]
    pub venue: Option<String>,
    /// When it starts.
    pub starts_at: DateTime<Utc>,
    /// When it ends, if known.
    #[serde(default)]
    pub ends_at: Option<DateTime<Utc>>,
    /// Life-cycle state.
    pub status: Status,
    /// Media key of the picture.
    #[serde(default)]
    pub image_key: Option<String>,
    /// Who runs it.
    pub organizer_id: Uuid,
    /// The catalogue entry it came from.
    #[serde(default)]
    pub template_id: Option<Uuid>,
    /// Number of likes.
    pub like_count: i32,
    /// Grows with each committed change.
    pub version: i64,
    /// When created (kept on the wire: the previous release requires it to decode a change).
    pub created_at: DateTime<Utc>,
    /// When last changed (likewise).
    pub updated_at: DateTime<Utc>,
}

impl From<event::Model> for EventState {
    fn from(row: event::Model) -> Self {
        Self {
            id: row.id,
            title: row.title,
            description: row.description,
            venue: row.venue,
            starts_at: row.starts_at,
            ends_at: row.ends_at,
            status: row.status,
            image_key: row.image_key,
            organizer_id: row.organizer_id,
            template_id: row.template_id,
            like_count: row.like_count,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

impl Versioned for EventState {
    type Version = i64;

    fn version(&self) -> i64 {
        self.version
    }
}

/// The newest version of each event a status stream has sent (with its status, so a catch-up
/// sends no status twice), so it never sends an older one after it: messages of two instances are
/// not ordered (an instance hears its own change at once and another's earlier one through Redis
/// later). It forgets everything when it would hold more than [`Newest::MOST`] events (a stream of
/// every event's changes must not grow without bound); an old change of a forgotten event may pass
/// then (two instances' messages cross within moments, while a thousand other events change
/// status).
#[derive(Debug, Default)]
pub struct Newest {
    /// Each event's newest version sent, and its status then.
    sent: HashMap<Uuid, (i64, Status)>,
}

impl Newest {
    /// Events remembered at most (each signed-in subscriber's stream keeps its own).
    pub const MOST: usize = 1_000;

    /// Whether `event` is newer than any version of it sent so far; if so it is the newest now.
    pub fn admits(&mut self, event: &EventState) -> bool {
        if self
            .sent
            .get(&event.id)
            .is_some_and(|&(sent, _)| sent >= event.version)
        {
            return false;
        }
        if self.sent.len() >= Self::MOST && !self.sent.contains_key(&event.id) {
            self.sent.clear();
        }
        self.sent.insert(event.id, (event.version, event.status));
        true
    }

    /// Whether `event`, as a catch-up found it, tells of a status change not sent yet: its status
    /// differs from the one last sent (an event never enters a status twice, see [`can_move`]) and
    /// [`admits`](Self::admits) it. A newer version in the status sent (liked or edited since) is
    /// remembered as the newest, not sent.
    pub fn admits_found(&mut self, event: &EventState) -> bool {
        if let Some(sent) = self.sent.get_mut(&event.id)
            && sent.1 == event.status
        {
            sent.0 = sent.0.max(event.version);
            return false;
        }
        self.admits(event)
    }
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

    /// Event `id` at `version`, in `status`.
    fn state_in(id: Uuid, version: i64, status: Status) -> EventState {
        let at = Utc::now();
        EventState {
            id,
            title: "Night".into(),
            description: None,
            venue: None,
            starts_at: at,
            ends_at: None,
            status,
            image_key: None,
            organizer_id: id,
            template_id: None,
            like_count: 0,
            version,
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn a_status_stream_never_sends_an_older_change_after_a_newer_one() {
        let state = |id: Uuid, version: i64| state_in(id, version, Status::Live);
        let (one, other) = (Uuid::now_v7(), Uuid::now_v7());
        let mut newest = Newest::default();
        assert!(newest.admits(&state(one, 3)), "FINISHED, heard first here");
        assert!(
            !newest.admits(&state(one, 2)),
            "LIVE, from another instance, later"
        );
        assert!(!newest.admits(&state(one, 3)), "nor the same change twice");
        assert!(newest.admits(&state(other, 1)), "other events go on");
        assert!(newest.admits(&state(one, 4)));
        for _ in 0..Newest::MOST {
            newest.admits(&state(Uuid::now_v7(), 1));
        }
        assert!(newest.sent.len() <= Newest::MOST, "bounded");
    }

    #[test]
    fn a_catch_up_sends_only_statuses_not_sent_yet() {
        let state = state_in;
        let (one, other) = (Uuid::now_v7(), Uuid::now_v7());
        let mut newest = Newest::default();
        assert!(
            newest.admits(&state(one, 2, Status::Live)),
            "LIVE, as a message"
        );
        assert!(
            !newest.admits_found(&state(one, 5, Status::Live)),
            "liked three times since: still LIVE, not sent again"
        );
        assert!(
            !newest.admits(&state(one, 4, Status::Live)),
            "and version 5 is the newest now"
        );
        assert!(newest.admits_found(&state(one, 6, Status::Finished)));
        assert!(
            !newest.admits_found(&state(one, 6, Status::Finished)),
            "once"
        );
        assert!(
            newest.admits_found(&state(other, 3, Status::Cancelled)),
            "an event not sent before"
        );
    }

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
    fn the_crew_is_the_organizer_admins_and_staff_in_role() {
        let organizer = Uuid::now_v7();
        let someone = Identity {
            user_id: Uuid::now_v7(),
            is_admin: false,
            expires_at: 0,
            session_id: None,
        };
        let admin = Identity {
            is_admin: true,
            ..someone
        };
        let host = Identity {
            user_id: organizer,
            ..someone
        };
        assert!(is_crew(host, organizer, None, &[StaffRole::GameMaster]));
        assert!(is_crew(admin, organizer, None, &[]));
        assert!(!is_crew(someone, organizer, None, &[]));
        assert!(is_crew(someone, organizer, Some(StaffRole::Bartender), &[]));
        assert!(!is_crew(
            someone,
            organizer,
            Some(StaffRole::Bartender),
            &[StaffRole::GameMaster]
        ));
        assert!(is_crew(
            someone,
            organizer,
            Some(StaffRole::GameMaster),
            &[StaffRole::GameMaster]
        ));
    }

    #[test]
    fn a_change_written_by_the_previous_version_still_decodes() {
        // `event:{id}` as the previous release published it: the whole database row.
        let old = r#"{"event":{"id":"0193a5a0-0000-7000-8000-000000000001","title":"Quiz","description":null,"venue":"The Crown","starts_at":"2026-12-24T19:00:00Z","ends_at":null,"status":"Live","image_key":null,"organizer_id":"0193a5a0-0000-7000-8000-000000000002","template_id":null,"like_count":3,"version":7,"created_at":"2026-12-01T10:00:00Z","updated_at":"2026-12-01T11:00:00Z"},"kind":"Liked","actor":"0193a5a0-0000-7000-8000-000000000003"}"#;
        let change: EventChanged = serde_json::from_str(old).unwrap();
        assert_eq!(change.event.title, "Quiz");
        assert_eq!(change.event.status, Status::Live);
        assert_eq!(change.event.like_count, 3);
        assert_eq!(change.event.version, 7);
        assert_eq!(change.kind, ChangeKind::Liked);
    }

    #[test]
    fn a_change_with_fields_this_version_does_not_know_decodes() {
        let newer = r#"{"event":{"id":"0193a5a0-0000-7000-8000-000000000001","title":"Quiz","starts_at":"2026-12-24T19:00:00Z","status":"Scheduled","organizer_id":"0193a5a0-0000-7000-8000-000000000002","like_count":0,"version":1,"created_at":"2026-12-01T10:00:00Z","updated_at":"2026-12-01T10:00:00Z","capacity":40},"kind":"Updated","reason":"a field from the future"}"#;
        let change: EventChanged = serde_json::from_str(newer).unwrap();
        assert_eq!(change.event.venue, None);
        assert_eq!(change.actor, None);
        assert_eq!(change.kind, ChangeKind::Updated);
    }

    #[test]
    fn the_previous_version_decodes_what_this_one_publishes() {
        // The previous release decoded `event:{id}` into this shape (the whole row).
        #[derive(Deserialize)]
        struct PreviousChange {
            event: event::Model,
            kind: ChangeKind,
        }
        let now = Utc::now();
        let row = event::Model {
            id: Uuid::now_v7(),
            title: "Quiz".into(),
            description: Some("Bring a pen".into()),
            venue: None,
            starts_at: to_second(now),
            ends_at: None,
            status: Status::Live,
            image_key: None,
            organizer_id: Uuid::now_v7(),
            template_id: None,
            like_count: 2,
            version: 5,
            created_at: now,
            updated_at: now,
        };
        let published = serde_json::to_string(&EventChanged {
            event: row.clone().into(),
            kind: ChangeKind::Updated,
            actor: None,
        })
        .unwrap();
        let decoded: PreviousChange = serde_json::from_str(&published).unwrap();
        assert_eq!(decoded.event, row);
        assert_eq!(decoded.kind, ChangeKind::Updated);
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
