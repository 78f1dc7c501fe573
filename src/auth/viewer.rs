//! The per-request caller: read once from the `Authorization` header (HTTP) or the websocket's
//! `connection_init` payload, then available to every resolver.

use std::net::IpAddr;

use uuid::Uuid;

use super::TokenKeys;
use crate::error::{Error, Result};

/// A signed-in caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The user's id.
    pub user_id: Uuid,
    /// Whether the token was issued to an admin.
    pub is_admin: bool,
    /// When the token expires, seconds since the epoch.
    pub expires_at: i64,
}

/// Who is calling.
///
/// A request with a bad token is not anonymous: anything that asks who is calling gets
/// UNAUTHENTICATED, so a client learns its token went bad instead of silently seeing less. Only
/// operations that need no identity (signup, login, refresh) ignore it.
#[derive(Clone, Debug, Default)]
pub enum Viewer {
    /// No credentials were sent.
    #[default]
    Anonymous,
    /// A valid access token.
    User(Identity),
    /// Credentials were sent but are not valid.
    Invalid,
}

impl Viewer {
    /// Reads an `Authorization` value: `Bearer <jwt>` (the scheme is case-insensitive; a bare token
    /// is accepted too, for websocket clients that send `token`).
    pub fn from_credentials(value: Option<&str>, keys: &TokenKeys) -> Self {
        let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
            return Self::Anonymous;
        };
        let token = match value.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
            Some(_) => return Self::Invalid,
            None => value,
        };
        match keys.verify(token) {
            Ok(claims) => Self::User(Identity {
                user_id: claims.sub,
                is_admin: claims.role == "ADMIN",
                expires_at: claims.exp,
            }),
            Err(_) => Self::Invalid,
        }
    }

    /// The caller if signed in; `None` if anonymous; UNAUTHENTICATED for a bad token.
    pub fn identity(&self) -> Result<Option<Identity>> {
        match self {
            Self::Anonymous => Ok(None),
            Self::User(identity) => Ok(Some(*identity)),
            Self::Invalid => Err(Error::Unauthenticated("invalid or expired access token")),
        }
    }

    /// The caller, who must be signed in.
    pub fn require(&self) -> Result<Identity> {
        self.identity()?
            .ok_or(Error::Unauthenticated("sign in to do this"))
    }
}

/// The client's network address, for per-address rate limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);
