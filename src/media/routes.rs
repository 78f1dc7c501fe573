//! The media routes: `/media/{key}` for stored pictures, and `/media/rounds/{round}/{level}.jpg` for
//! blur renderings, whose visibility the games domain decides through [`Renditions`] (so media
//! knows no domain). [`MediaStore::blur_url`] is the one definition of the rendering URL.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use uuid::Uuid;

use super::MediaStore;
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
    let found = media.store.get(&key).await;
    respond(found, |(bytes, content_type)| {
        (
            [
                (header::CONTENT_TYPE, content_type.to_owned()),
                (header::CACHE_CONTROL, IMMUTABLE.to_owned()),
                (header::ETAG, etag),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            ],
            Body::from(bytes),
        )
            .into_response()
    })
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
