//! The calendar feed: `GET /calendar/{token}.ics`, an RFC 5545 calendar of a user's meetings that
//! Google Calendar, Apple Calendar and Outlook subscribe to without a token of ours.
//!
//! The URL is the secret: its token is derived from a random nonce with the server's secret, only
//! its hash is stored, and rotating the feed replaces both (the old URL answers 404 at once). Each
//! token is rate limited (`RALLY_CALENDAR_FEED_PER_MINUTE`); responses carry an ETag of their
//! content, so polling calendar apps mostly get 304. The iCalendar text (line folding, escaping) is
//! the `icalendar` crate's.

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
    for FeedEntry {
        meeting,
        slot,
        with,
    } in entries
    {
        let status = match meeting.status {
            Status::Confirmed => EventStatus::Confirmed,
            Status::Cancelled => EventStatus::Cancelled,
        };
        let mut description = format!("With {with}");
        if let Some(more) = &slot.description {
            description.push_str("\n\n");
            description.push_str(more);
        }
        calendar.push(
            icalendar::Event::new()
                .uid(&format!("{}@rally", meeting.id))
                .timestamp(meeting.updated_at)
                .starts(meeting.start_time)
                .ends(meeting.end_time)
                .summary(&slot.title)
                .description(&description)
                .status(status)
                .add_property("SEQUENCE", meeting.sequence.to_string())
                .done(),
        );
    }
    calendar.done().to_string()
}

#[derive(Clone)]
struct Feeds {
    app: AppState,
    limits: Arc<DefaultKeyedRateLimiter<String>>,
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
async fn forget_full_buckets(limits: Weak<DefaultKeyedRateLimiter<String>>) {
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
    let hash = token_hash(token);
    if let Err(not_until) = feeds.limits.check_key(&hash) {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        let seconds = wait.as_secs_f64().ceil().max(1.0).to_string();
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, seconds)],
            "too many requests for this feed",
        )
            .into_response();
    }
    let entries = match service::feed(&feeds.app, &hash).await {
        Ok(Some(entries)) => entries,
        Ok(None) => return not_found(),
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
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                "text/calendar; charset=utf-8".to_owned(),
            ),
            (header::CACHE_CONTROL, "private, max-age=300".to_owned()),
            (header::ETAG, etag),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        ],
        body,
    )
        .into_response()
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "no such calendar").into_response()
}
