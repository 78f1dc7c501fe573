//! The calendar feed: `GET /calendar/{token}.ics`, an RFC 5545 calendar of a user's meetings that
//! Google Calendar, Apple Calendar and Outlook subscribe to without a token of ours.
//!
//! The URL is the secret: its token is derived from a random nonce with the server's secret, only
//! its hash is stored, and rotating the feed replaces both (the old URL answers 404 at once), as
//! rotating the server's secret does for every feed. Each feed is rate limited
//! (`RALLY_CALENDAR_FEED_PER_MINUTE`), once its token is known to open one (unknown tokens take no
//! limiter memory); responses carry an ETag of their
//! content, so polling calendar apps mostly get 304. The iCalendar text (escaping) is the
//! `icalendar` crate's; its lines are folded again here (see `fold`).

use std::num::NonZeroU32;
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use icalendar::{Calendar, Component, EventLike, EventStatus};
use uuid::Uuid;

use super::service::{self, FeedEntry};
use crate::auth::token_hash;
use crate::entity::meeting::Status;
use crate::state::AppState;

/// The path of a feed with `token`.
pub fn feed_path(token: &str) -> String {
    format!("/calendar/{token}.ics")
}

/// The iCalendar text of a feed.
pub fn render(entries: &[FeedEntry]) -> String {
    let mut calendar = Calendar::new();
    calendar.name("Rally meetings");
    for FeedEntry { meeting, with } in entries {
        let status = match meeting.status {
            Status::Confirmed => EventStatus::Confirmed,
            Status::Cancelled => EventStatus::Cancelled,
        };
        let mut description = format!("With {with}");
        if let Some(more) = &meeting.description {
            description.push_str("\n\n");
            description.push_str(more);
        }
        calendar.push(
            icalendar::Event::new()
                .uid(&format!("{}@rally", meeting.id))
                .timestamp(meeting.updated_at)
                .starts(meeting.start_time)
                .ends(meeting.end_time)
                .summary(&meeting.title)
                .description(&description)
                .status(status)
                .add_property("SEQUENCE", meeting.sequence.to_string())
                .done(),
        );
    }
    fold(&calendar.done().to_string())
}

/// RFC 5545 (3.1): content lines are at most 75 octets, continued on lines that start with a space.
const LINE_OCTETS: usize = 75;

/// `text`'s content lines folded to at most 75 octets each, never inside a UTF-8 character. The
/// `icalendar` crate folds too, but leaves a 76-octet line when exactly 75 octets remain after a
/// fold (a 150-octet line becomes 75 + 1 + 75), so its folds are undone and made again. Unfolding
/// is safe: escaped text holds no line breaks of its own.
fn fold(text: &str) -> String {
    let unfolded = text.replace("\r\n ", "");
    let mut folded = String::with_capacity(unfolded.len() + unfolded.len() / 24);
    for line in unfolded.split_terminator("\r\n") {
        let mut rest = line;
        let mut room = LINE_OCTETS;
        while rest.len() > room {
            let mut cut = room;
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            folded.push_str(&rest[..cut]);
            folded.push_str("\r\n ");
            rest = &rest[cut..];
            room = LINE_OCTETS - 1;
        }
        folded.push_str(rest);
        folded.push_str("\r\n");
    }
    folded
}

#[derive(Clone)]
struct Feeds {
    app: AppState,
    limits: Arc<DefaultKeyedRateLimiter<Uuid>>,
}

/// The `/calendar/{token}.ics` route.
pub fn routes(app: AppState) -> Router {
    let per_minute =
        NonZeroU32::new(app.config.calendar_feed_per_minute).unwrap_or(NonZeroU32::MIN);
    let limits = Arc::new(RateLimiter::keyed(Quota::per_minute(per_minute)));
    tokio::spawn(forget_full_buckets(Arc::downgrade(&limits)));
    Router::new()
        .route("/calendar/{file}", get(feed))
        .with_state(Feeds { app, limits })
}

/// Keeps the limiter's memory bounded; ends with the router.
async fn forget_full_buckets(limits: Weak<DefaultKeyedRateLimiter<Uuid>>) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    loop {
        every.tick().await;
        let Some(limits) = limits.upgrade() else {
            return;
        };
        limits.retain_recent();
        limits.shrink_to_fit();
    }
}

async fn feed(
    State(feeds): State<Feeds>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(token) = file.strip_suffix(".ics") else {
        return not_found();
    };
    let owner = match service::feed_owner(&feeds.app, token).await {
        Ok(Some(owner)) => owner,
        Ok(None) => return not_found(),
        Err(err) => {
            err.report();
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    if let Err(not_until) = feeds.limits.check_key(&owner) {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        let seconds = wait.as_secs_f64().ceil().max(1.0).to_string();
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, seconds)],
            "too many requests for this feed",
        )
            .into_response();
    }
    let entries = match service::feed(&feeds.app, owner).await {
        Ok(entries) => entries,
        Err(err) => {
            err.report();
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let body = render(&entries);
    let etag = format!("\"{}\"", &token_hash(&body)[..32]);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag))
    {
        // RFC 9110 (15.4.5): a 304 carries the Cache-Control a 200 would have.
        return (
            StatusCode::NOT_MODIFIED,
            [
                (header::CACHE_CONTROL, CACHE_CONTROL.to_owned()),
                (header::ETAG, etag),
            ],
        )
            .into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                "text/calendar; charset=utf-8".to_owned(),
            ),
            (header::CACHE_CONTROL, CACHE_CONTROL.to_owned()),
            (header::ETAG, etag),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        ],
        body,
    )
        .into_response()
}

/// How the feed may be cached: by the calendar app only, five minutes.
const CACHE_CONTROL: &str = "private, max-age=300";

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "no such calendar").into_response()
}

#[cfg(test)]
mod tests {
    use super::{LINE_OCTETS, fold};

    /// Every physical line of `folded` fits, and unfolding (RFC 5545: drop each CRLF followed by
    /// one space) gives `line` back.
    fn assert_folds(line: &str) {
        let folded = fold(&format!("{line}\r\n"));
        assert!(folded.ends_with("\r\n"), "{folded:?}");
        for physical in folded.split_terminator("\r\n") {
            assert!(
                physical.len() <= LINE_OCTETS,
                "{} octets: {physical:?}",
                physical.len()
            );
        }
        assert_eq!(folded.replace("\r\n ", ""), format!("{line}\r\n"));
    }

    #[test]
    fn lines_fold_to_75_octets_at_every_length() {
        for len in [9, 74, 75, 76, 149, 150, 151, 223, 224, 225, 1_000] {
            assert_folds(&format!("SUMMARY:{}", "x".repeat(len - "SUMMARY:".len())));
        }
        // The `icalendar` crate's own folding of 150 octets: 75, then a space and 75 more.
        let crate_folded = format!("{}\r\n {}\r\n", "x".repeat(75), "x".repeat(75));
        let refolded = fold(&crate_folded);
        assert_eq!(
            refolded,
            format!("{}\r\n {}\r\n {}\r\n", "x".repeat(75), "x".repeat(74), "x")
        );
    }

    #[test]
    fn folds_never_split_a_character() {
        for pad in 0..4 {
            let line = format!("SUMMARY:{}{}", "x".repeat(pad), "老虎🐯é".repeat(20));
            assert_folds(&line);
        }
    }

    #[test]
    fn short_lines_and_many_lines_pass_unchanged() {
        let text = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n";
        assert_eq!(fold(text), text);
    }
}
