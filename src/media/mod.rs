//! Media: uploaded pictures, checked, re-encoded and kept in an object store; blur renderings
//! cached beside them; the `/media` routes.
//!
//! Uses `error` only: the blur game decides which rendering may be seen (see [`Renditions`]).
//!
//! The store is `object_store`'s local folder by default (`RALLY_MEDIA_DIR`); any other
//! `ObjectStore` (S3, GCS, Azure) plugs in the same way. Objects are immutable: a new avatar is a new
//! key, so `/media/{key}` can be cached forever. Decoding and encoding run on the blocking pool.

mod image;
mod routes;

use std::sync::Arc;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};
use uuid::Uuid;

pub use self::image::{ImageLimits, Picture, prepare_picture, render_blurred};
pub use self::routes::{Renditions, routes};
use crate::error::{Error, Result};

/// Where media objects live, and how clients reach them.
#[derive(Clone)]
pub struct MediaStore {
    store: Arc<dyn ObjectStore>,
    public_base: String,
}

impl MediaStore {
    /// A store in the local folder `dir` (created if missing); URLs start with `public_base`.
    pub fn local(dir: &std::path::Path, public_base: Option<&str>) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let store = LocalFileSystem::new_with_prefix(dir)?;
        Ok(Self {
            store: Arc::new(store),
            public_base: public_base.unwrap_or("").trim_end_matches('/').to_owned(),
        })
    }

    /// Stores an encoded picture under a new key and returns the key.
    #[tracing::instrument(skip_all, fields(bytes = picture.bytes.len()))]
    pub async fn put_picture(&self, picture: Picture) -> Result<String> {
        let key = format!("{}.{}", Uuid::now_v7(), picture.extension);
        self.store
            .put(&Path::from(key.as_str()), PutPayload::from(picture.bytes))
            .await
            .map_err(Error::internal)?;
        Ok(key)
    }

    /// Stores an encoded picture under a new key that `/media/{key}` never serves (originals whose
    /// content is a secret, like the answer of a blur round).
    pub async fn put_private(&self, picture: Picture) -> Result<String> {
        let key = format!("private/{}.{}", Uuid::now_v7(), picture.extension);
        self.put_raw(&key, picture.bytes).await?;
        Ok(key)
    }

    /// Stores `bytes` under `key` (derived renderings, caches).
    pub async fn put_raw(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        self.store
            .put(&Path::from(key), PutPayload::from(bytes))
            .await
            .map_err(Error::internal)?;
        Ok(())
    }

    /// The bytes under `key`, whatever it is, or `None`.
    pub async fn get_raw(&self, key: &str) -> Result<Option<Bytes>> {
        match self.store.get(&Path::from(key)).await {
            Ok(found) => Ok(Some(found.bytes().await.map_err(Error::internal)?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(Error::internal(err)),
        }
    }

    /// The rendering `name` of the private original `original` at blur `level` (longest side
    /// `side`): from the cache, or rendered now and cached. `None` when the original is gone.
    pub async fn blurred(
        &self,
        original: &str,
        name: &str,
        level: i32,
        side: u32,
    ) -> Result<Option<Bytes>> {
        let cache_key = format!("private/blur/{name}/{level}.jpg");
        if let Some(cached) = self.get_raw(&cache_key).await? {
            return Ok(Some(cached));
        }
        let Some(original) = self.get_raw(original).await? else {
            return Ok(None);
        };
        let rendered = render_blurred(original, level, side).await?;
        self.put_raw(&cache_key, rendered.clone()).await?;
        Ok(Some(Bytes::from(rendered)))
    }

    /// The bytes and content type of `key`, or `None` when there is no such object.
    pub async fn get(&self, key: &str) -> Result<Option<(Bytes, &'static str)>> {
        let Some(content_type) = parse_key(key) else {
            return Ok(None);
        };
        match self.store.get(&Path::from(key)).await {
            Ok(found) => Ok(Some((
                found.bytes().await.map_err(Error::internal)?,
                content_type,
            ))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(Error::internal(err)),
        }
    }

    /// Removes `key`; a missing object is not an error (deletes are best-effort clean-up).
    pub async fn delete(&self, key: &str) {
        if let Err(err) = self.store.delete(&Path::from(key)).await
            && !matches!(err, object_store::Error::NotFound { .. })
        {
            tracing::warn!(key, error = %err, "could not delete media object");
        }
    }

    /// The URL clients fetch `key` from.
    pub fn url(&self, key: &str) -> String {
        format!("{}/media/{key}", self.public_base)
    }
}

/// The content type of a well-formed key (`<uuid>.<png|jpg>`); anything else names nothing.
fn parse_key(key: &str) -> Option<&'static str> {
    let (id, extension) = key.split_once('.')?;
    Uuid::parse_str(id).ok()?;
    match extension {
        "png" => Some("image/png"),
        "jpg" => Some("image/jpeg"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_keys_name_media() {
        let id = Uuid::now_v7();
        assert_eq!(parse_key(&format!("{id}.png")), Some("image/png"));
        assert_eq!(parse_key(&format!("{id}.jpg")), Some("image/jpeg"));
        assert_eq!(parse_key("../../etc/passwd"), None);
        assert_eq!(parse_key(&format!("{id}.svg")), None);
    }
}
