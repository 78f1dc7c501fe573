//! Media: uploaded pictures, checked, re-encoded and kept in an object store; blur renderings
//! cached beside them; the `/media` routes.
//!
//! Uses `error` only: the blur game decides which rendering may be seen (see [`Renditions`]).
//!
//! The store is chosen by `RALLY_MEDIA_URL` ([`MediaStore::open`]): `object_store`'s local folder
//! by default, or S3 (any S3-compatible service), Google Cloud Storage or Azure, which several
//! instances share. Objects are immutable: a new avatar is a new key, so `/media/{key}` can be
//! cached forever, and a blur rendering cached by one instance is good for all. Decoding and
//! encoding run on the blocking pool; reads are streamed from the store.

mod image;
mod routes;

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreScheme, PutPayload};
use url::Url;
use uuid::Uuid;

pub use self::image::{ImageLimits, Picture, decode_turn, prepare_picture, render_blurred};
pub use self::routes::{Renditions, routes};
use crate::error::{Error, Result};

/// Where media objects live, and how clients reach them.
#[derive(Clone)]
pub struct MediaStore {
    store: Arc<dyn ObjectStore>,
    kind: &'static str,
    public_base: String,
}

/// A stored object being read: a part of it (`range`, all of it without a `Range`) as a stream.
pub struct Reading {
    /// Its content type.
    pub content_type: &'static str,
    /// The bytes sent.
    pub range: Range<u64>,
    /// The whole object's size.
    pub size: u64,
    /// The bytes, as the store sends them.
    pub body: BoxStream<'static, object_store::Result<Bytes>>,
}

/// What a read finds.
pub enum Lookup {
    /// The object (or the part asked for).
    Found(Reading),
    /// No such object.
    Missing,
    /// The object exists, but the range asked for starts past its end.
    Unsatisfiable {
        /// The object's size.
        size: u64,
    },
}

/// Longest wait for the store to answer a readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

impl MediaStore {
    /// The store at `url` (`file://`, `s3://`, `gs://` or `az://`, with an optional key prefix in
    /// the path); URLs given to clients start with `public_base`. Cloud stores take their
    /// credentials and endpoint from the environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`); an S3
    /// endpoint may be plain HTTP only when `AWS_ENDPOINT_URL` says `http://`.
    pub fn open(url: &Url, public_base: Option<&str>) -> anyhow::Result<Self> {
        let (scheme, prefix) =
            ObjectStoreScheme::parse(url).context("RALLY_MEDIA_URL names no object store")?;
        let prefix = key_prefix(url, &scheme, prefix)?;
        let (store, kind): (Arc<dyn ObjectStore>, _) = match scheme {
            ObjectStoreScheme::Local => {
                let dir = url
                    .to_file_path()
                    .map_err(|()| anyhow::anyhow!("{url} is not a local folder"))?;
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                let local = LocalFileSystem::new_with_prefix(&dir)?;
                return Ok(Self::with(Arc::new(local), "file", public_base));
            }
            ObjectStoreScheme::AmazonS3 => {
                let builder = AmazonS3Builder::from_env().with_url(url.as_str());
                let plain_http = builder
                    .get_config_value(&AmazonS3ConfigKey::Endpoint)
                    .is_some_and(|endpoint| endpoint.starts_with("http://"));
                (Arc::new(builder.with_allow_http(plain_http).build()?), "s3")
            }
            ObjectStoreScheme::GoogleCloudStorage => (
                Arc::new(
                    GoogleCloudStorageBuilder::from_env()
                        .with_url(url.as_str())
                        .build()?,
                ),
                "gcs",
            ),
            ObjectStoreScheme::MicrosoftAzure => (
                Arc::new(
                    MicrosoftAzureBuilder::from_env()
                        .with_url(url.as_str())
                        .build()?,
                ),
                "azure",
            ),
            other => bail!(
                "RALLY_MEDIA_URL: {other:?} is not a media store; use file://, s3://, gs:// or az://"
            ),
        };
        let store: Arc<dyn ObjectStore> = if prefix.as_ref().is_empty() {
            store
        } else {
            Arc::new(PrefixStore::new(store, prefix))
        };
        Ok(Self::with(store, kind, public_base))
    }

    fn with(store: Arc<dyn ObjectStore>, kind: &'static str, public_base: Option<&str>) -> Self {
        Self {
            store,
            kind,
            public_base: public_base.unwrap_or("").trim_end_matches('/').to_owned(),
        }
    }

    /// The kind of store (`file`, `s3`, `gcs`, `azure`), for `/readyz`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Whether the store answers (a missing probe object is an answer).
    pub async fn reachable(&self) -> bool {
        let probe = Path::from("readyz-probe");
        match tokio::time::timeout(PROBE_TIMEOUT, self.store.head(&probe)).await {
            Ok(Ok(_) | Err(object_store::Error::NotFound { .. })) => true,
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "media store not reachable");
                false
            }
            Err(_) => false,
        }
    }

    /// Stores an encoded picture under a new key and returns the key.
    #[tracing::instrument(skip_all, fields(bytes = picture.bytes.len()))]
    async fn put_picture(&self, picture: Picture) -> Result<String> {
        let key = format!("{}.{}", Uuid::now_v7(), picture.extension);
        self.store
            .put(&Path::from(key.as_str()), PutPayload::from(picture.bytes))
            .await
            .map_err(Error::internal)?;
        Ok(key)
    }

    /// Stores `picture` under a new key and hands the key to `swap`, which puts it on its row and
    /// answers the row with the key it replaced (read in the same write, under the row's lock): the
    /// replaced picture is deleted afterwards, and the new one when `swap` fails, so racing uploads
    /// leave only pictures that something shows.
    pub async fn replace_picture<T, F>(
        &self,
        picture: Picture,
        swap: impl FnOnce(String) -> F,
    ) -> Result<T>
    where
        F: Future<Output = Result<(T, Option<String>)>>,
    {
        let key = self.put_picture(picture).await?;
        match swap(key.clone()).await {
            Ok((row, replaced)) => {
                if let Some(replaced) = replaced {
                    self.delete(&replaced).await;
                }
                Ok(row)
            }
            Err(err) => {
                self.delete(&key).await;
                Err(err)
            }
        }
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
    /// Renders take turns with the uploads' decodes, and a render that waited for its turn looks
    /// in the cache again: a burst of requests for a rendering just revealed renders it about once
    /// per turn, not once per request. (The turn is held through the store's reads and the cache's
    /// write too, so that the next in line finds the rendering cached.)
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
        let _turn = decode_turn().await?;
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

    /// Starts reading the public object `key`, all of it or `range`.
    #[tracing::instrument(skip(self))]
    pub async fn read(&self, key: &str, range: Option<GetRange>) -> Result<Lookup> {
        let Some(content_type) = parse_key(key) else {
            return Ok(Lookup::Missing);
        };
        let path = Path::from(key);
        if matches!(range, Some(GetRange::Suffix(0))) {
            // The last zero bytes: nothing to send, which HTTP answers with 416 and the size.
            return match self.store.head(&path).await {
                Ok(meta) => Ok(Lookup::Unsatisfiable { size: meta.size }),
                Err(object_store::Error::NotFound { .. }) => Ok(Lookup::Missing),
                Err(err) => Err(Error::internal(err)),
            };
        }
        let options = GetOptions {
            range: range.clone(),
            ..GetOptions::default()
        };
        match self.store.get_opts(&path, options).await {
            Ok(found) => Ok(Lookup::Found(Reading {
                content_type,
                range: found.range.clone(),
                size: found.meta.size,
                body: found
                    .into_stream()
                    .inspect_err(|err| tracing::warn!(error = %err, "media stream cut"))
                    .boxed(),
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(Lookup::Missing),
            // Stores refuse a range past the end in their own words: the size tells.
            Err(err) => match (range, self.store.head(&path).await) {
                (_, Err(object_store::Error::NotFound { .. })) => Ok(Lookup::Missing),
                (Some(range), Ok(meta)) if starts_past_end(&range, meta.size) => {
                    Ok(Lookup::Unsatisfiable { size: meta.size })
                }
                _ => Err(Error::internal(err)),
            },
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

    /// The keys under `prefix` (a folder, like `private/`) last written before `before`.
    pub async fn keys_written_before(
        &self,
        prefix: &str,
        before: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<String>> {
        let mut listed = self.store.list(Some(&Path::from(prefix)));
        let mut keys = Vec::new();
        while let Some(object) = listed.next().await {
            let object = object.map_err(Error::internal)?;
            if object.last_modified < before {
                keys.push(object.location.to_string());
            }
        }
        Ok(keys)
    }

    /// The public pictures (`<uuid>.<png|jpg>`, at the top of the store, where pictures are put)
    /// last written before `before`, as the store lists them (page by page: a store of millions
    /// is never held at once).
    pub fn pictures_written_before(
        &self,
        before: chrono::DateTime<chrono::Utc>,
    ) -> BoxStream<'static, Result<String>> {
        self.store
            .list(None)
            .map_err(Error::internal)
            .try_filter_map(move |object| async move {
                let key = object.location.to_string();
                Ok((object.last_modified < before && parse_key(&key).is_some()).then_some(key))
            })
            .boxed()
    }

    /// The URL clients fetch `key` from.
    pub fn url(&self, key: &str) -> String {
        format!("{}/media/{key}", self.public_base)
    }
}

/// The key prefix inside the store named by `url`. `object_store` reads `az://a/b/c` as account
/// `a`, container `b`, prefix `c`, but its Azure builder (and Rally's documentation) as container
/// `a`, prefix `b/c`: the prefix is then the whole path.
fn key_prefix(url: &Url, scheme: &ObjectStoreScheme, parsed: Path) -> anyhow::Result<Path> {
    match (scheme, url.scheme()) {
        (ObjectStoreScheme::MicrosoftAzure, "az" | "adl" | "azure") => {
            Ok(Path::from_url_path(url.path())?)
        }
        _ => Ok(parsed),
    }
}

/// Whether `range` asks for nothing of an object of `size` bytes.
fn starts_past_end(range: &GetRange, size: u64) -> bool {
    match range {
        GetRange::Bounded(bounds) => bounds.start >= size,
        GetRange::Offset(start) => *start >= size,
        GetRange::Suffix(length) => *length == 0,
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
    fn the_key_prefix_is_the_path_after_the_bucket_or_container() {
        for (url, prefix) in [
            ("s3://bucket/rally/media", "rally/media"),
            ("s3://bucket", ""),
            ("gs://bucket/media", "media"),
            ("az://container/rally/media", "rally/media"),
            ("az://container", ""),
        ] {
            let url = Url::parse(url).unwrap();
            let (scheme, parsed) = ObjectStoreScheme::parse(&url).unwrap();
            assert_eq!(
                key_prefix(&url, &scheme, parsed).unwrap().as_ref(),
                prefix,
                "{url}"
            );
        }
    }

    #[test]
    fn only_well_formed_keys_name_media() {
        let id = Uuid::now_v7();
        assert_eq!(parse_key(&format!("{id}.png")), Some("image/png"));
        assert_eq!(parse_key(&format!("{id}.jpg")), Some("image/jpeg"));
        assert_eq!(parse_key("../../etc/passwd"), None);
        assert_eq!(parse_key(&format!("{id}.svg")), None);
    }
}
