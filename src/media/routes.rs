//! The media routes: `/media/{key}` for stored pictures, and `/media/rounds/{round}/{level}.jpg` for
//! blur renderings, whose visibility the games domain decides through [`Renditions`] (so media
//! knows no domain). [`MediaStore::blur_url`] is the one definition of the rendering URL.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use object_store::GetRange;
use uuid::Uuid;

use super::{Lookup, MediaStore, Reading};
use crate::error::Result;

/// Where blur renderings live: `{ROUNDS}/{round}/{level}.jpg`; the route and
/// [`MediaStore::blur_url`] both come from it.
const ROUNDS: &str = "/media/rounds";

/// Cached forever: media keys are immutable.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Who may see which rendering: the blur game answers for its rounds.
pub trait Renditions: Send + Sync + 'static {
    /// The JPEG of `round` at `level`, or `None` when there is no such round or the level is not
    /// revealed yet.
    fn blurred(
        &self,
        round: Uuid,
        level: i32,
    ) -> Pin<Box<dyn Future<Output = Result<Option<Bytes>>> + Send + '_>>;
}

#[derive(Clone)]
struct Media {
    store: MediaStore,
    renditions: Arc<dyn Renditions>,
}

impl MediaStore {
    /// The URL of `round`'s rendering at `level`.
    pub fn blur_url(&self, round: Uuid, level: i32) -> String {
        format!("{}{ROUNDS}/{round}/{level}.jpg", self.public_base)
    }
}

/// The media routes over `store`.
pub fn routes(store: MediaStore, renditions: Arc<dyn Renditions>) -> Router {
    Router::new()
        .route("/media/{key}", get(media))
        .route(&format!("{ROUNDS}/{{round}}/{{file}}"), get(blurred))
        .with_state(Media { store, renditions })
}

/// A stored picture, streamed from the store; a single `Range` is answered with its part (206),
/// or 416 when it starts past the end; several ranges get the whole object (as HTTP allows).
async fn media(
    State(media): State<Media>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    let etag = format!("\"{key}\"");
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag))
    {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    let range = requested_range(&headers);
    let partial = range.is_some();
    let lookup = media.store.read(&key, range).await.map(Some);
    respond(lookup, |lookup| match lookup {
        Lookup::Found(reading) => stream(reading, partial, etag),
        Lookup::Missing => not_found(),
        Lookup::Unsatisfiable { size } => (
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(header::CONTENT_RANGE, format!("bytes */{size}"))],
        )
            .into_response(),
    })
}

fn stream(reading: Reading, partial: bool, etag: String) -> Response {
    let Reading {
        content_type,
        range,
        size,
        body,
    } = reading;
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(range.end - range.start),
    );
    if let Ok(etag) = HeaderValue::try_from(etag) {
        headers.insert(header::ETAG, etag);
    }
    if partial {
        let content_range = format!(
            "bytes {}-{}/{size}",
            range.start,
            range.end.saturating_sub(1)
        );
        if let Ok(value) = HeaderValue::try_from(content_range) {
            headers.insert(header::CONTENT_RANGE, value);
        }
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    response
}

/// The one byte range a request asks for (`bytes=a-b`, `bytes=a-`, `bytes=-n`); `None` for no
/// `Range`, several ranges or a malformed one, which HTTP lets a server answer with the whole.
fn requested_range(headers: &HeaderMap) -> Option<GetRange> {
    let spec = headers
        .get(header::RANGE)?
        .to_str()
        .ok()?
        .trim()
        .strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    match (first.trim(), last.trim()) {
        ("", suffix) => Some(GetRange::Suffix(suffix.parse().ok()?)),
        (first, "") => Some(GetRange::Offset(first.parse().ok()?)),
        (first, last) => {
            let (first, last) = (first.parse::<u64>().ok()?, last.parse::<u64>().ok()?);
            (first <= last).then(|| GetRange::Bounded(first..last.saturating_add(1)))
        }
    }
}

/// A blur round's photo at a level (`/media/rounds/{round}/{level}.jpg`), rendered server-side.
async fn blurred(
    State(media): State<Media>,
    Path((round, file)): Path<(String, String)>,
) -> Response {
    let parsed = Uuid::parse_str(&round).ok().zip(
        file.strip_suffix(".jpg")
            .and_then(|level| level.parse::<i32>().ok()),
    );
    let Some((round, level)) = parsed else {
        return not_found();
    };
    let rendered = media.renditions.blurred(round, level).await;
    respond(rendered, |bytes| {
        (
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CACHE_CONTROL, IMMUTABLE),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            Body::from(bytes),
        )
            .into_response()
    })
}

/// The response of a lookup: `found` for an object, 404 for none, 500 (logged) for a failure.
fn respond<T>(lookup: Result<Option<T>>, found: impl FnOnce(T) -> Response) -> Response {
    match lookup {
        Ok(Some(object)) => found(object),
        Ok(None) => not_found(),
        Err(err) => {
            err.report();
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "no such media").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(value: &str) -> Option<GetRange> {
        let mut headers = HeaderMap::new();
        headers.insert(header::RANGE, HeaderValue::from_str(value).unwrap());
        requested_range(&headers)
    }

    #[test]
    fn one_byte_range_is_understood_and_the_rest_ignored() {
        assert_eq!(range("bytes=0-99"), Some(GetRange::Bounded(0..100)));
        assert_eq!(range("bytes=100-"), Some(GetRange::Offset(100)));
        assert_eq!(range("bytes=-10"), Some(GetRange::Suffix(10)));
        assert_eq!(range("bytes=5-5"), Some(GetRange::Bounded(5..6)));
        for ignored in [
            "bytes=9-2",
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=a-b",
            "bytes=-",
        ] {
            assert_eq!(range(ignored), None, "{ignored}");
        }
        assert_eq!(requested_range(&HeaderMap::new()), None);
    }
}
