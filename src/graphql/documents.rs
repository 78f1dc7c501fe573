//! Parsed documents, cached by their text. Apps send the same few documents again and again, and for
//! a small operation parsing is the engine's most expensive step; a cached document still goes
//! through every limit and validation rule (async-graphql checks a pre-parsed document the same way).

use std::num::NonZeroUsize;
use std::sync::Mutex;

use async_graphql::parser::parse_query;
use async_graphql::parser::types::ExecutableDocument;
use lru::LruCache;

/// Documents longer than this are parsed every time (they are rare, and would crowd the cache).
const MAX_CACHED_LEN: usize = 16 * 1024;

/// A bounded, least-recently-used cache of parsed documents.
pub struct Documents {
    cache: Mutex<LruCache<Box<str>, ExecutableDocument>>,
}

impl Documents {
    /// Room for `capacity` documents.
    pub fn new(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            cache: Mutex::new(LruCache::new(capacity)),
        }
    }

    /// Attaches the parsed document to `request` (from the cache, or parsed now and remembered).
    /// A document that does not parse is left for the engine to report.
    pub fn prepare(&self, request: &mut async_graphql::Request) {
        if request.query.len() > MAX_CACHED_LEN {
            return;
        }
        let cached = self.lock().get(request.query.as_str()).cloned();
        let document = match cached {
            Some(document) => document,
            None => {
                let Ok(document) = parse_query(&request.query) else {
                    return;
                };
                self.lock()
                    .put(request.query.as_str().into(), document.clone());
                document
            }
        };
        request.set_parsed_query(document);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<Box<str>, ExecutableDocument>> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_document_is_the_parsed_one_and_bad_ones_are_left_alone() {
        let documents = Documents::new(2);
        let mut request = async_graphql::Request::new("{ __typename }");
        documents.prepare(&mut request);
        let first = format!("{:?}", request.parsed_query().unwrap());
        let mut again = async_graphql::Request::new("{ __typename }");
        documents.prepare(&mut again);
        assert_eq!(format!("{:?}", again.parsed_query().unwrap()), first);
        assert_eq!(documents.lock().len(), 1);

        let mut broken = async_graphql::Request::new("{ nope");
        documents.prepare(&mut broken);
        assert!(
            broken.parsed_query().is_err(),
            "the engine still sees the syntax error"
        );
        assert_eq!(documents.lock().len(), 1);
    }
}
