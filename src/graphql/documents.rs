//! Parsed documents, cached by their text. Apps send the same few documents again and again, and for
//! a small operation parsing is the engine's most expensive step; a cached document still goes
//! through every limit and validation rule (async-graphql checks a pre-parsed document the same way).
//!
//! Also Apollo's automatic persisted queries ([`Documents::resolve_persisted`]): a client sends the
//! SHA-256 of a document instead of the document; the first time, the server does not know it and
//! says `PersistedQueryNotFound`, the client sends both, and the server keeps the pair after checking
//! the hash. Each instance keeps its own pairs (a client registers again on an instance that has
//! not seen the hash: one extra round trip, no shared store on the request path).

use std::num::NonZeroUsize;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use async_graphql::Value;
use async_graphql::parser::parse_query;
use async_graphql::parser::types::ExecutableDocument;
use lru::LruCache;
use sha2::{Digest, Sha256};

use super::limits::{Expansion, aliases, size};

/// Documents longer than this are parsed every time (they are rare, and would crowd the cache).
const MAX_CACHED_LEN: usize = 16 * 1024;

/// Documents whose parsed form holds more nodes than this are parsed every time: a parsed field
/// takes a hundred times the bytes of its text (`{ a a a … }`), so a cache of a thousand 16 KiB
/// documents bounded by their text alone could hold gigabytes. An app's documents hold a few
/// hundred nodes at most.
const MAX_CACHED_NODES: usize = 1024;

/// A bounded, least-recently-used cache of parsed documents, and of persisted documents by hash.
pub struct Documents {
    cache: Mutex<LruCache<Box<str>, Arc<Parsed>>>,
    persisted: Mutex<LruCache<[u8; 32], Box<str>>>,
}

/// Why a `persistedQuery` extension cannot be honoured.
#[derive(Debug, PartialEq, Eq)]
pub enum PersistedQueryError {
    /// The hash names no document this instance knows: the client sends the document with it.
    NotFound,
    /// The extension is malformed, of another version, or its hash is not the document's.
    Invalid(&'static str),
}

impl Documents {
    /// Room for `capacity` documents (and as many persisted ones).
    pub fn new(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            cache: Mutex::new(LruCache::new(capacity)),
            persisted: Mutex::new(LruCache::new(capacity)),
        }
    }

    /// Honours Apollo's `extensions.persistedQuery { version: 1, sha256Hash }`: a request with the
    /// hash alone gets the document kept under it; a request with both has the pair kept once the
    /// hash is checked. A request without the extension is left alone.
    pub fn resolve_persisted(
        &self,
        request: &mut async_graphql::Request,
    ) -> Result<(), PersistedQueryError> {
        use PersistedQueryError::{Invalid, NotFound};
        let Some(extension) = request.extensions.get("persistedQuery") else {
            return Ok(());
        };
        let Value::Object(fields) = extension else {
            return Err(Invalid("persistedQuery must be an object"));
        };
        if !matches!(fields.get("version"), Some(Value::Number(v)) if v.as_i64() == Some(1)) {
            return Err(Invalid("only version 1 of persisted queries is supported"));
        }
        let hash = match fields.get("sha256Hash") {
            Some(Value::String(hex)) => {
                parse_sha256(hex).ok_or(Invalid("sha256Hash must be 64 hexadecimal digits"))?
            }
            _ => return Err(Invalid("sha256Hash is missing")),
        };
        if request.query.is_empty() {
            let known = lock(&self.persisted).get(&hash).cloned().ok_or(NotFound)?;
            request.query = known.into();
            return Ok(());
        }
        if Sha256::digest(request.query.as_bytes())[..] != hash[..] {
            return Err(Invalid("sha256Hash is not the SHA-256 of the query"));
        }
        if request.query.len() <= MAX_CACHED_LEN {
            lock(&self.persisted).put(hash, request.query.as_str().into());
        }
        Ok(())
    }

    /// The parsed document of `query`, from the cache or parsed now (and remembered unless it is
    /// long). `None` when it does not parse: the engine reports the syntax error.
    pub fn parse(&self, query: &str) -> Option<Arc<Parsed>> {
        if query.len() > MAX_CACHED_LEN {
            return Parsed::of(query).map(Arc::new);
        }
        if let Some(parsed) = lock(&self.cache).get(query) {
            return Some(parsed.clone());
        }
        let parsed = Arc::new(Parsed::of(query)?);
        if parsed.nodes <= MAX_CACHED_NODES {
            lock(&self.cache).put(query.into(), parsed.clone());
        }
        Some(parsed)
    }
}

/// A parsed document, with what is checked on it before every execution.
pub struct Parsed {
    /// The document (the engine takes a copy of it for each execution).
    pub document: ExecutableDocument,
    /// Its aliased fields (see `limits::check_aliases`).
    pub aliases: usize,
    /// Its fields with fragments expanded (see `limits::check_expansion`).
    pub expansion: Expansion,
    /// The nodes its parsed form holds.
    nodes: usize,
    /// Whether it passed the engine's full validation once.
    pub validated: AtomicBool,
}

impl Parsed {
    fn of(query: &str) -> Option<Self> {
        let document = parse_query(query).ok()?;
        let aliases = aliases(&document);
        let size = size(&document);
        Some(Self {
            document,
            aliases,
            expansion: size.expansion,
            nodes: size.nodes,
            validated: AtomicBool::new(false),
        })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The 32 bytes of a SHA-256 written as 64 hexadecimal digits (either case).
fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let digits = hex.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let mut hash = [0u8; 32];
    for (byte, pair) in hash.iter_mut().zip(digits.chunks_exact(2)) {
        let high = char::from(pair[0]).to_digit(16)?;
        let low = char::from(pair[1]).to_digit(16)?;
        *byte = u8::try_from(high * 16 + low).ok()?;
    }
    Some(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_document_is_the_parsed_one_and_bad_ones_are_left_alone() {
        let documents = Documents::new(2);
        let first = documents.parse("{ a: __typename }").expect("parsed");
        assert_eq!(first.aliases, 1);
        let again = documents.parse("{ a: __typename }").expect("parsed");
        assert!(
            Arc::ptr_eq(&first, &again),
            "the second one comes from the cache"
        );
        assert!(documents.parse("{ nope").is_none(), "the engine reports it");
        assert_eq!(lock(&documents.cache).len(), 1);
        let junk = format!("{{ {} }}", "a ".repeat(MAX_CACHED_NODES + 1));
        assert!(documents.parse(&junk).is_some());
        assert_eq!(lock(&documents.cache).len(), 1, "too big to keep");
    }

    fn persisted(query: &str, hash: &str) -> async_graphql::Request {
        let extension = serde_json::json!({ "version": 1, "sha256Hash": hash });
        let mut request = async_graphql::Request::new(query);
        request.extensions.insert(
            "persistedQuery".into(),
            Value::from_json(extension).expect("a GraphQL value"),
        );
        request
    }

    #[test]
    fn a_persisted_query_is_known_by_its_hash_once_sent_with_it() {
        let documents = Documents::new(4);
        let query = "{ __typename }";
        // SHA-256 of "{ __typename }", computed independently (sha256sum).
        let hash = "7f56e67dd21ab3f30d1ff8b7bed08893f0a0db86449836189b361dd1e56ddb4b";
        let mut unknown = persisted("", hash);
        assert_eq!(
            documents.resolve_persisted(&mut unknown),
            Err(PersistedQueryError::NotFound)
        );
        let mut registering = persisted(query, hash);
        assert_eq!(documents.resolve_persisted(&mut registering), Ok(()));
        let mut by_hash = persisted("", &hash.to_uppercase());
        assert_eq!(documents.resolve_persisted(&mut by_hash), Ok(()));
        assert_eq!(by_hash.query, query);

        let mut lying = persisted("{ me { id } }", hash);
        assert!(matches!(
            documents.resolve_persisted(&mut lying),
            Err(PersistedQueryError::Invalid(_))
        ));
        let mut garbled = persisted("", "xyz");
        assert!(matches!(
            documents.resolve_persisted(&mut garbled),
            Err(PersistedQueryError::Invalid(_))
        ));
        let mut plain = async_graphql::Request::new(query);
        assert_eq!(documents.resolve_persisted(&mut plain), Ok(()));
    }
}
