//! IDs as clients see them: UUIDs in `ID` strings. A string that is not one names nothing.

use async_graphql::ID;
use uuid::Uuid;

use crate::error::{Error, Result};

/// The UUID in `id`, or `None` when it is not one.
pub fn parse(id: &ID) -> Option<Uuid> {
    Uuid::parse_str(id.trim()).ok()
}

/// The UUID in `id`, or NOT_FOUND naming `what`.
pub fn require(id: &ID, what: &'static str) -> Result<Uuid> {
    parse(id).ok_or(Error::NotFound(what))
}

/// The `ID` of a UUID.
pub fn to_id(id: Uuid) -> ID {
    ID(id.to_string())
}
