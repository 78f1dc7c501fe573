//! Relay connections: `first`/`after` arguments checked once, opaque cursors, the connection built
//! from a page of rows, and the complexity a page adds. (Services fetch the page itself with
//! [`crate::db::page`]: `first + 1` rows tell whether more follow.)
//!
//! A cursor is the base64url of `v1:<sort key>`; clients must treat it as opaque, which lets the
//! encoding change without breaking them.

use async_graphql::OutputType;
use async_graphql::connection::{Connection, Edge};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::{Error, Result};

/// Largest page a client may ask for.
pub const MAX_PAGE: i32 = 100;
/// The page size when the client names none.
pub const DEFAULT_PAGE: i32 = 20;

/// A checked page request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRequest {
    /// How many rows to return.
    pub limit: u64,
    /// The sort key to continue after.
    pub after: Option<String>,
}

impl PageRequest {
    /// Checks `first` (0..=100; null means the default) and decodes `after`.
    pub fn parse(first: Option<i32>, after: Option<&str>) -> Result<Self> {
        let first = first.unwrap_or(DEFAULT_PAGE);
        if !(0..=MAX_PAGE).contains(&first) {
            return Err(Error::bad_input(
                "first",
                format!("first is 0 to {MAX_PAGE}"),
            ));
        }
        let after = after.map(decode_cursor).transpose()?;
        Ok(Self {
            limit: u64::try_from(first).unwrap_or(0),
            after,
        })
    }
}

/// The complexity of a page of `first` items whose selection costs `child` each.
pub fn complexity(first: Option<i32>, child: usize) -> usize {
    usize::try_from(first.unwrap_or(DEFAULT_PAGE).clamp(0, MAX_PAGE)).unwrap_or(0) * child
}

/// The connection of one page: `rows` (at most the page's size), whether more follow, each row's
/// sort key (made into its cursor) and its GraphQL node.
pub fn connection<R, N: OutputType>(
    page: &PageRequest,
    rows: Vec<R>,
    more: bool,
    key: impl Fn(&R) -> String,
    node: impl Fn(R) -> N,
) -> Connection<String, N> {
    let mut connection = Connection::new(page.after.is_some(), more);
    connection.edges.extend(
        rows.into_iter()
            .map(|row| Edge::new(encode_cursor(&key(&row)), node(row))),
    );
    connection
}

/// The opaque cursor for `key`.
pub fn encode_cursor(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{key}"))
}

fn decode_cursor(cursor: &str) -> Result<String> {
    let bad = || Error::bad_input("after", "not a cursor from this API");
    let bytes = URL_SAFE_NO_PAD.decode(cursor.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    // Keys never hold control characters (PostgreSQL refuses a NUL in any text).
    if text.chars().any(char::is_control) {
        return Err(bad());
    }
    text.strip_prefix("v1:").map(str::to_owned).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let page = PageRequest::parse(Some(5), Some(&encode_cursor("alice"))).unwrap();
        assert_eq!(page.after.as_deref(), Some("alice"));
        assert_eq!(page.limit, 5);
    }

    #[test]
    fn bad_pages_name_their_argument() {
        for (first, after, field) in [
            (101, None, "first"),
            (-1, None, "first"),
            (5, Some("zz!"), "after"),
        ] {
            match PageRequest::parse(Some(first), after) {
                Err(Error::BadInput { field: f, .. }) => assert_eq!(f, field),
                other => panic!("expected BAD_USER_INPUT, got {other:?}"),
            }
        }
    }
}
